"""A SAML service provider built on pysaml2, for the integration tests: nobody here wrote the code
that builds its AuthnRequests and LogoutRequests or verifies our Responses.

Usage: sp.py IDP_METADATA_URL WORKDIR [--sign]

It listens on a loopback port the kernel chose (its own: no other process can take it between
choosing and listening), prints "ready PORT" and answers:
  GET  /metadata   its metadata (pysaml2's own)
  GET  /login      an AuthnRequest to the IdP: ?binding=redirect|post, force=1, passive=1,
                   context=<class refs, comma separated>, comparison=exact|minimum|...,
                   nameid=persistent|transient, acs=<an ACS URL to ask for>, unsigned=1
                   Redirect binding: 303 to the IdP. POST binding: the HTML form pysaml2 makes.
  POST /acs        the IdP's Response: verified by pysaml2; 200 with a JSON account of it, or 400
                   with the JSON error pysaml2 raised
  GET  /logout     a LogoutRequest for the last subject (303 to the IdP)
  GET  /slo        the IdP's LogoutResponse, verified; 200 JSON or 400
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT, AuthnContextClassRef
from saml2.samlp import RequestedAuthnContext
from saml2.xmldsig import SIG_RSA_SHA256, DIGEST_SHA256

idp_metadata_url = sys.argv[1]
workdir = sys.argv[2]
sign = "--sign" in sys.argv[3:]
# Listening before the port goes into the configuration; the handler is set once it exists.
server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
port = server.server_address[1]
base = f"http://127.0.0.1:{port}"

key = os.path.join(workdir, "sp-key.pem")
cert = os.path.join(workdir, "sp-cert.pem")
if not os.path.exists(cert):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=pysaml2 test SP",
         "-days", "2", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )

idp_metadata = urllib.request.urlopen(idp_metadata_url, timeout=10).read().decode()
idp_entity_id = idp_metadata_url.rsplit("/saml/metadata", 1)[0]

config = SPConfig()
config.load({
    "entityid": f"{base}/sp",
    "key_file": key,
    "cert_file": cert,
    "encryption_keypairs": [{"key_file": key, "cert_file": cert}],
    "xmlsec_binary": shutil.which("xmlsec1"),
    "metadata": {"inline": [idp_metadata]},
    "allow_unknown_attributes": True,
    "accepted_time_diff": 5,
    "service": {
        "sp": {
            "endpoints": {
                "assertion_consumer_service": [(f"{base}/acs", BINDING_HTTP_POST)],
                "single_logout_service": [(f"{base}/slo", BINDING_HTTP_REDIRECT)],
            },
            "authn_requests_signed": sign,
            "logout_requests_signed": True,
            "want_assertions_signed": True,
            "want_response_signed": True,
            # IdP-initiated logins are tested too; solicited Responses must still answer an
            # outstanding request of ours.
            "allow_unsolicited": True,
            "name_id_format": [NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT],
        }
    },
})
client = Saml2Client(config)
outstanding = {}
last = {}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="application/json", headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def query(self):
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path == "/metadata":
                return self.answer(200, create_metadata_string(None, config=config), "application/samlmetadata+xml")
            if path == "/login":
                return self.login(self.query())
            if path == "/logout":
                return self.logout()
            if path == "/slo":
                return self.slo(self.query())
            return self.answer(404, json.dumps({"error": "not found"}))
        except Exception as error:  # the test reads what went wrong
            return self.answer(400, json.dumps({"error": type(error).__name__, "message": str(error)}))

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        try:
            if urllib.parse.urlsplit(self.path).path == "/acs":
                return self.acs(form)
            return self.answer(404, json.dumps({"error": "not found"}))
        except Exception as error:
            return self.answer(400, json.dumps({"error": type(error).__name__, "message": str(error)}))

    def login(self, q):
        binding = BINDING_HTTP_POST if q.get("binding") == "post" else BINDING_HTTP_REDIRECT
        extra = {}
        if q.get("context"):
            refs = [AuthnContextClassRef(text=r) for r in q["context"].split(",")]
            extra["requested_authn_context"] = RequestedAuthnContext(
                authn_context_class_ref=refs, comparison=q.get("comparison", "exact"))
        if q.get("force") == "1":
            extra["force_authn"] = "true"
        if q.get("passive") == "1":
            extra["is_passive"] = "true"
        if q.get("acs"):
            extra["assertion_consumer_service_url"] = q["acs"]
        nameid = NAMEID_FORMAT_TRANSIENT if q.get("nameid") == "transient" else NAMEID_FORMAT_PERSISTENT
        signed = sign and q.get("unsigned") != "1"
        request_id, info = client.prepare_for_authenticate(
            entityid=idp_entity_id, relay_state="relay-4711", binding=binding, nameid_format=nameid,
            sign=signed, sigalg=SIG_RSA_SHA256 if signed else None,
            digest_alg=DIGEST_SHA256 if signed else None, **extra)
        outstanding[request_id] = "/"
        headers = dict(info["headers"])
        if binding == BINDING_HTTP_REDIRECT:
            return self.answer(303, "", headers=[("Location", headers["Location"]), ("X-Request-Id", request_id)])
        return self.answer(200, info["data"], "text/html", headers=[("X-Request-Id", request_id)])

    def acs(self, form):
        response = client.parse_authn_request_response(form["SAMLResponse"], BINDING_HTTP_POST, outstanding)
        assertion = response.assertion
        statement = assertion.authn_statement[0]
        name_id = response.name_id
        last["name_id"] = name_id
        return self.answer(200, json.dumps({
            "name_id": name_id.text,
            "name_id_format": name_id.format,
            "attributes": response.ava,
            "authn_context": statement.authn_context.authn_context_class_ref.text,
            "session_index": statement.session_index,
            "in_response_to": response.in_response_to,
            "relay_state": form.get("RelayState"),
            "issuer": response.issuer(),
        }))

    def logout(self):
        answers = client.global_logout(last["name_id"], reason="", sign=True, sign_alg=SIG_RSA_SHA256)
        for _entity, (binding, info) in answers.items():
            location = dict(info["headers"])["Location"]
            return self.answer(303, "", headers=[("Location", location)])
        return self.answer(400, json.dumps({"error": "no logout request was made"}))

    def slo(self, q):
        response = client.parse_logout_request_response(
            q["SAMLResponse"], BINDING_HTTP_REDIRECT)
        success = response.response.status.status_code.value.endswith(":Success")
        return self.answer(200, json.dumps({"success": success, "relay_state": q.get("RelayState")}))


server.RequestHandlerClass = Handler
print(f"ready {port}", flush=True)
server.serve_forever()
