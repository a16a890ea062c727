//! SAML messages as an SP sends them: AuthnRequests and LogoutRequests, the XML itself and the
//! HTTP-Redirect (base64 of DEFLATE) and HTTP-POST (base64) encodings around it, and SP
//! metadata as the admin API reads it; the enveloped-signature check (its own canonicaliser).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = saml_core::parse_authn_request(text);
            let _ = saml_core::parse_logout_request(text);
            let _ = saml_core::parse_sp_metadata(text);
            let _ = saml_core::verify_enveloped(text, &[]);
            if let Ok(xml) = saml_core::decode_redirect(text) {
                let _ = saml_core::parse_authn_request(&xml);
                let _ = saml_core::parse_logout_request(&xml);
            }
            if let Ok(xml) = saml_core::decode_post(text) {
                let _ = saml_core::parse_authn_request(&xml);
            }
        }
    });
}
