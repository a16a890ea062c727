//! Our signatures checked by a verifier no one here wrote, and an SP's checked by us: `xmlsec1` (Debian's, on libxml2 and
//! OpenSSL) verifies the Response's and the Assertion's signature and the metadata's against the
//! certificate, and refuses them after one character of the assertion changed. Keys and
//! certificate come from the `openssl` command, which also signs an HTTP-Redirect request as an
//! SP would, for `verify_redirect_signature`. Skipped (with the reason) where either tool is
//! missing; `TEST_REQUIRE_BACKENDS=1` (CI) makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests: a failed step is the test failing")]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use saml_core::{
    Assertion, Attribute, Failure, IdpEndpoints, PERSISTENT, SignError, Signer, error_response, idp_metadata,
    signed_response,
};
use time::macros::datetime;

fn tool(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|path| path.exists())
}

fn skip(reason: &str) {
    assert!(std::env::var_os("TEST_REQUIRE_BACKENDS").is_none(), "xmlsec: {reason}, and TEST_REQUIRE_BACKENDS is set");
    eprintln!("xmlsec: skipped: {reason}");
}

/// A key and a self-signed certificate made by `openssl`, signing through `openssl dgst`.
struct OpensslSigner {
    dir: tempfile::TempDir,
    certificate: Vec<u8>,
}

impl OpensslSigner {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=servicekonto test IdP", "-days", "1"])
            .args(["-keyout", "key.pem", "-out", "cert.pem"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        let pem = std::fs::read_to_string(dir.path().join("cert.pem")).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        Self { certificate: STANDARD.decode(body).unwrap(), dir }
    }

    fn certificate_pem(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
}

impl Signer for OpensslSigner {
    fn sign_rsa_sha256(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        let input = self.dir.path().join("signed-info");
        std::fs::write(&input, data).unwrap();
        let output = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign", "key.pem", "signed-info"])
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| SignError(e.to_string()))?;
        if !output.status.success() {
            return Err(SignError(String::from_utf8_lossy(&output.stderr).into_owned()));
        }
        Ok(output.stdout)
    }

    fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
}

/// Whether `xmlsec1` verifies the signature at `node` (an XPath; the document's first signature
/// when `None`) of `xml` with `certificate`.
fn verifies(xml: &str, certificate: &Path, node: Option<&str>) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signed.xml");
    std::fs::write(&file, xml).unwrap();
    let mut command = Command::new("xmlsec1");
    command
        .arg("--verify")
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:protocol:Response"])
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"])
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor"])
        .arg("--pubkey-cert-pem")
        .arg(certificate);
    if let Some(node) = node {
        command.args(["--node-xpath", node]);
    }
    let output = command.arg(&file).output().unwrap();
    if !output.status.success() {
        eprintln!("xmlsec1: {}", String::from_utf8_lossy(&output.stderr));
    }
    output.status.success()
}

const ASSERTION_SIGNATURE: &str = "//*[local-name()='Assertion']/*[local-name()='Signature']";

fn assertion() -> Assertion {
    Assertion {
        issuer: "https://konto.example".into(),
        response_id: "_r0f5c1b2".into(),
        assertion_id: "_a9e8d7c6".into(),
        in_response_to: Some("id-4711".into()),
        destination: "https://portal.example/acs".into(),
        audience: "https://portal.example/sp".into(),
        name_id: "pairwise-subject-of-erika".into(),
        name_id_format: PERSISTENT.into(),
        issue_instant: datetime!(2026-12-03 10:00 UTC),
        not_on_or_after: datetime!(2026-12-03 10:05 UTC),
        authn_instant: datetime!(2026-12-03 09:59 UTC),
        session_index: "_s1".into(),
        authn_context_class_ref: "http://eidas.europa.eu/LoA/high".into(),
        attributes: vec![
            Attribute {
                name: "http://eidas.europa.eu/attributes/naturalperson/CurrentGivenName".into(),
                name_format: "urn:oasis:names:tc:SAML:2.0:attrname-format:uri".into(),
                friendly_name: Some("FirstName".into()),
                values: vec!["Erika".into()],
            },
            Attribute {
                name: "address".into(),
                name_format: "urn:oasis:names:tc:SAML:2.0:attrname-format:basic".into(),
                friendly_name: None,
                values: vec!["Heidestraße 17 & \"Hof\" <2>\n51147 Köln".into()],
            },
        ],
    }
}

#[test]
fn xmlsec1_verifies_our_signatures_and_refuses_a_changed_assertion() {
    if tool("xmlsec1").is_none() || tool("openssl").is_none() {
        return skip("xmlsec1 or openssl is not installed (apt-get install xmlsec1 openssl)");
    }
    let signer = OpensslSigner::new();
    let certificate = signer.certificate_pem();

    let response = signed_response(&assertion(), &signer, None).unwrap();
    assert!(verifies(&response, &certificate, None), "the Response's signature: {response}");
    assert!(verifies(&response, &certificate, Some(ASSERTION_SIGNATURE)), "the Assertion's signature");

    let changed = response.replace(">Erika<", ">Erica<");
    assert_ne!(changed, response);
    assert!(!verifies(&changed, &certificate, None), "a changed Response fails");
    assert!(!verifies(&changed, &certificate, Some(ASSERTION_SIGNATURE)), "a changed Assertion fails");

    let other = OpensslSigner::new();
    assert!(!verifies(&response, &other.certificate_pem(), None), "another key's certificate fails");

    let failed = error_response(
        "https://konto.example",
        "_e1",
        Some("id-4711"),
        "https://portal.example/acs",
        datetime!(2026-12-03 10:00 UTC),
        Failure::NoPassive,
        &signer,
    )
    .unwrap();
    assert!(failed.contains("status:NoPassive") && verifies(&failed, &certificate, None), "{failed}");

    let endpoints = IdpEndpoints {
        entity_id: "https://konto.example".into(),
        sso: "https://konto.example/saml/sso".into(),
        slo: "https://konto.example/saml/slo".into(),
    };
    let metadata = idp_metadata(&endpoints, "_m1", &signer).unwrap();
    assert!(verifies(&metadata, &certificate, None), "the metadata's signature: {metadata}");
}

/// `application/x-www-form-urlencoded` encoding of a value, as an SP's library writes it.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[test]
fn a_redirect_request_signed_with_openssl_verifies_and_any_change_is_refused() {
    if tool("openssl").is_none() {
        return skip("openssl is not installed");
    }
    let sp = OpensslSigner::new();
    let request = STANDARD.encode(b"deflated request stands here");
    let sig_alg = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
    let signed = format!("SAMLRequest={}&RelayState={}&SigAlg={}", encode(&request), encode("ab c/+"), encode(sig_alg));
    let signature = sp.sign_rsa_sha256(signed.as_bytes()).unwrap();
    let query = format!("{signed}&Signature={}", encode(&STANDARD.encode(signature)));
    assert_eq!(saml_core::verify_redirect_signature(&query, sp.certificate_der()), Ok(()));

    let changed = query.replace("RelayState=ab", "RelayState=xy");
    assert_eq!(
        saml_core::verify_redirect_signature(&changed, sp.certificate_der()),
        Err(saml_core::SignatureError::Invalid)
    );
    let other = OpensslSigner::new();
    assert_eq!(
        saml_core::verify_redirect_signature(&query, other.certificate_der()),
        Err(saml_core::SignatureError::Invalid)
    );
    let without_relay_state = query.replace(&format!("&RelayState={}", encode("ab c/+")), "");
    assert_eq!(
        saml_core::verify_redirect_signature(&without_relay_state, sp.certificate_der()),
        Err(saml_core::SignatureError::Invalid),
        "the relay state is part of what was signed"
    );
}

/// The environment's own RS256 signing key (as the server holds it) with its self-signed
/// certificate.
struct EnvironmentKey {
    key: std::sync::Arc<oidc_core::SigningKey>,
    certificate: Vec<u8>,
}

impl Signer for EnvironmentKey {
    fn sign_rsa_sha256(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        self.key.sign_bytes(data).map_err(|e| SignError(e.to_string()))
    }

    fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
}

#[test]
fn the_environments_rs256_key_signs_with_a_stable_certificate_xmlsec1_accepts() {
    if tool("xmlsec1").is_none() {
        return skip("xmlsec1 is not installed");
    }
    let (key, _) = oidc_core::SigningKey::generate(oidc_core::SigningAlgorithm::RS256).unwrap();
    let key = std::sync::Arc::new(key);
    let certificate = key.certificate("konto.example").unwrap();
    assert_eq!(key.certificate("konto.example").unwrap(), certificate, "the same bytes at every call");
    let signer = EnvironmentKey { key, certificate };
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("cert.pem");
    let body = STANDARD.encode(&signer.certificate);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    std::fs::write(
        &pem_path,
        format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n")),
    )
    .unwrap();
    if tool("openssl").is_some() {
        // The certificate's own signature, made through the same key: openssl checks it.
        let output =
            Command::new("openssl").args(["verify", "-CAfile"]).arg(&pem_path).arg(&pem_path).output().unwrap();
        assert!(output.status.success(), "openssl verify: {}", String::from_utf8_lossy(&output.stdout));
    }
    let response = signed_response(&assertion(), &signer, None).unwrap();
    assert!(verifies(&response, &pem_path, None), "the Response's signature");
    assert!(verifies(&response, &pem_path, Some(ASSERTION_SIGNATURE)), "the Assertion's signature");
    let (es256, _) = oidc_core::SigningKey::generate(oidc_core::SigningAlgorithm::ES256).unwrap();
    assert!(std::sync::Arc::new(es256).certificate("konto.example").is_err(), "RS256 keys only");
}

#[test]
fn an_sp_certificate_from_metadata_checks_its_logout_signature_and_ours_verifies() {
    if tool("openssl").is_none() {
        return skip("openssl is not installed");
    }
    let sp = OpensslSigner::new();
    let metadata = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://portal.example/sp"><md:SPSSODescriptor AuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>
{}
</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://portal.example/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"#,
        STANDARD.encode(sp.certificate_der())
    );
    let read = saml_core::parse_sp_metadata(&metadata).unwrap();
    assert!(read.authn_requests_signed);
    assert_eq!(read.signing_certificates, vec![sp.certificate_der().to_vec()], "a key without `use` signs");
    assert_eq!(read.encryption_certificate.as_deref(), Some(sp.certificate_der()), "… and encrypts");

    // Our LogoutResponse as a redirect URL: its query signature verifies with our certificate
    // and with no other.
    let idp = OpensslSigner::new();
    let response = saml_core::LogoutResponse {
        issuer: "https://konto.example".into(),
        id: "_lr1".into(),
        in_response_to: "lo-1".into(),
        destination: "https://portal.example/slo?x=1".into(),
        issue_instant: datetime!(2026-12-03 10:00 UTC),
        success: true,
    };
    let url = saml_core::logout_response_url(&response, Some("zurück & weiter"), &idp).unwrap();
    let query = url.split_once("?x=1&").unwrap().1;
    assert!(saml_core::verify_redirect_signature(query, idp.certificate_der()).is_ok());
    assert!(saml_core::verify_redirect_signature(query, sp.certificate_der()).is_err());
}

#[test]
fn an_assertion_encrypted_for_the_sp_is_decrypted_by_xmlsec1_and_still_verifies() {
    if tool("xmlsec1").is_none() || tool("openssl").is_none() {
        return skip("xmlsec1 or openssl is not installed (apt-get install xmlsec1 openssl)");
    }
    let idp = OpensslSigner::new();
    let sp = OpensslSigner::new();
    let response = signed_response(&assertion(), &idp, Some(sp.certificate_der())).unwrap();
    assert!(response.contains("EncryptedAssertion") && !response.contains("Erika"), "nothing readable: {response}");
    assert!(verifies(&response, &idp.certificate_pem(), None), "the Response's signature over the encrypted form");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("encrypted.xml");
    std::fs::write(&file, &response).unwrap();
    let decrypted = dir.path().join("decrypted.xml");
    let output = Command::new("xmlsec1")
        .arg("--decrypt")
        .arg("--privkey-pem")
        .arg(sp.dir.path().join("key.pem"))
        .arg("--output")
        .arg(&decrypted)
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "xmlsec1 --decrypt: {}", String::from_utf8_lossy(&output.stderr));
    let decrypted = std::fs::read_to_string(&decrypted).unwrap();
    assert!(decrypted.contains(">Erika<"), "{decrypted}");
    assert!(
        verifies(&decrypted, &idp.certificate_pem(), Some(ASSERTION_SIGNATURE)),
        "the decrypted Assertion's own signature: {decrypted}"
    );
    let other = OpensslSigner::new();
    let output = Command::new("xmlsec1")
        .arg("--decrypt")
        .arg("--privkey-pem")
        .arg(other.dir.path().join("key.pem"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success(), "another key cannot decrypt");
}

#[test]
fn enveloped_signatures_verify_ours_and_those_xmlsec1_makes_and_nothing_changed() {
    if tool("xmlsec1").is_none() || tool("openssl").is_none() {
        return skip("xmlsec1 or openssl is not installed (apt-get install xmlsec1 openssl)");
    }
    let signer = OpensslSigner::new();
    let other = OpensslSigner::new();
    let ours = [signer.certificate_der().to_vec()];
    // Our own canonical output, signed at the root: verifies; changed or under another key not.
    let response = signed_response(&assertion(), &signer, None).unwrap();
    assert_eq!(saml_core::verify_enveloped(&response, &ours), Ok(()));
    assert_eq!(
        saml_core::verify_enveloped(&response.replace(">Erika<", ">Erica<"), &ours),
        Err(saml_core::SignatureError::Invalid)
    );
    assert_eq!(
        saml_core::verify_enveloped(&response, &[other.certificate_der().to_vec()]),
        Err(saml_core::SignatureError::Invalid)
    );

    // An AuthnRequest as an SP's library writes it — a default namespace, declarations on the
    // root that the signed parts do not all use, attributes in no particular order, a comment,
    // line breaks — signed by xmlsec1, verified by us.
    let template = r##"<?xml version="1.0" encoding="UTF-8"?>
<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:unused="urn:example:unused" Version="2.0" ID="id-post-1" IssueInstant="2026-12-03T10:00:00Z" AssertionConsumerServiceURL="https://portal.example/acs?a=1&amp;b=2" Destination="https://konto.example/saml/sso">
  <Issuer xmlns="urn:oasis:names:tc:SAML:2.0:assertion">https://portal.example/sp</Issuer>
  <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
    <ds:SignedInfo>
      <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
      <ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
      <ds:Reference URI="#id-post-1">
        <ds:Transforms>
          <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
          <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
        </ds:Transforms>
        <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
        <ds:DigestValue/>
      </ds:Reference>
    </ds:SignedInfo>
    <ds:SignatureValue/>
  </ds:Signature>
  <!-- a comment the canonical form leaves out -->
  <samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" AllowCreate="true"/>
</samlp:AuthnRequest>
"##;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("template.xml"), template).unwrap();
    let output = Command::new("xmlsec1")
        .arg("--sign")
        .arg("--privkey-pem")
        .arg(signer.dir.path().join("key.pem"))
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:protocol:AuthnRequest"])
        .arg(dir.path().join("template.xml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "xmlsec1 --sign: {}", String::from_utf8_lossy(&output.stderr));
    let signed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(saml_core::verify_enveloped(&signed, &ours), Ok(()), "{signed}");
    let request = saml_core::parse_authn_request(&signed).unwrap();
    assert!(request.signed && request.id == "id-post-1");
    for changed in [
        signed.replace("https://portal.example/sp", "https://evil.example/sp"),
        signed.replace("a=1&amp;b=2", "a=1&amp;b=3"),
        signed.replace(r#"AllowCreate="true""#, r#"AllowCreate="false""#),
    ] {
        assert_eq!(saml_core::verify_enveloped(&changed, &ours), Err(saml_core::SignatureError::Invalid));
    }
    // Signature wrapping: the signed request moved inside a new root with another ID.
    let body = signed.trim_start_matches(|c| c != '\n').trim_start();
    let wrapped = format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="id-evil" Version="2.0" IssueInstant="2026-12-03T10:00:00Z"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">https://evil.example</saml:Issuer>{body}</samlp:AuthnRequest>"#
    );
    assert!(saml_core::verify_enveloped(&wrapped, &ours).is_err(), "no signature of the root: refused");
    let unsigned = template.replace("<ds:SignatureValue/>", "");
    assert!(saml_core::verify_enveloped(&unsigned, &ours).is_err());
}
