//! The signature of an HTTP-Redirect binding message (SAML Bindings §3.4.4.1): RSA over the
//! query string's own octets — `SAMLRequest=…[&RelayState=…]&SigAlg=…` exactly as the SP encoded
//! them — so verifying it needs no XML canonicalisation at all. Only RSA-SHA256 is accepted.

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use x509_cert::{Certificate, der::Decode as _};

const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// Why a redirect signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A parameter the signature needs is missing or repeated.
    #[error("{0} is missing or repeated")]
    Missing(&'static str),
    /// `SigAlg` names an algorithm we do not accept (SHA-1 and DSA are refused).
    #[error("signature algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    /// The SP's certificate cannot be read.
    #[error("the certificate cannot be read")]
    BadCertificate,
    /// The signature does not match.
    #[error("the signature does not verify")]
    Invalid,
}

fn decoded(raw: &str) -> String {
    url::form_urlencoded::parse(format!("v={raw}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Verifies the signature of the raw query string (as received, before any decoding) of a
/// `SAMLRequest` (or `SAMLResponse`) with the SP's certificate (DER).
pub fn verify_redirect_signature(raw_query: &str, certificate_der: &[u8]) -> Result<(), SignatureError> {
    let pairs: Vec<(&str, &str)> = raw_query.split('&').filter_map(|pair| pair.split_once('=')).collect();
    let one = |name: &'static str| -> Result<Option<&str>, SignatureError> {
        let mut found = pairs.iter().filter(|(k, _)| *k == name).map(|(_, v)| *v);
        match (found.next(), found.next()) {
            (Some(_), Some(_)) => Err(SignatureError::Missing(name)),
            (value, None) => Ok(value),
            (None, Some(_)) => Err(SignatureError::Missing(name)),
        }
    };
    let (kind, message) = match (one("SAMLRequest")?, one("SAMLResponse")?) {
        (Some(request), None) => ("SAMLRequest", request),
        (None, Some(response)) => ("SAMLResponse", response),
        _ => return Err(SignatureError::Missing("SAMLRequest")),
    };
    let algorithm = one("SigAlg")?.ok_or(SignatureError::Missing("SigAlg"))?;
    if decoded(algorithm) != RSA_SHA256 {
        return Err(SignatureError::UnsupportedAlgorithm(decoded(algorithm)));
    }
    let signature = one("Signature")?.ok_or(SignatureError::Missing("Signature"))?;
    let signature = STANDARD.decode(decoded(signature).trim()).map_err(|_| SignatureError::Invalid)?;
    let mut signed = format!("{kind}={message}");
    if let Some(relay_state) = one("RelayState")? {
        signed.push_str("&RelayState=");
        signed.push_str(relay_state);
    }
    signed.push_str("&SigAlg=");
    signed.push_str(algorithm);
    let certificate = Certificate::from_der(certificate_der).map_err(|_| SignatureError::BadCertificate)?;
    let key = certificate.tbs_certificate.subject_public_key_info.subject_public_key;
    let key = key.as_bytes().ok_or(SignatureError::BadCertificate)?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_missing_or_refused_is_named_before_any_key_is_read() {
        let no_cert = b"not a certificate";
        assert_eq!(verify_redirect_signature("RelayState=x", no_cert), Err(SignatureError::Missing("SAMLRequest")));
        assert_eq!(
            verify_redirect_signature("SAMLRequest=a&SAMLRequest=b", no_cert),
            Err(SignatureError::Missing("SAMLRequest"))
        );
        assert_eq!(verify_redirect_signature("SAMLRequest=a", no_cert), Err(SignatureError::Missing("SigAlg")));
        let sha1 = "SAMLRequest=a&SigAlg=http%3A%2F%2Fwww.w3.org%2F2000%2F09%2Fxmldsig%23rsa-sha1&Signature=AA%3D%3D";
        assert!(matches!(verify_redirect_signature(sha1, no_cert), Err(SignatureError::UnsupportedAlgorithm(_))));
        let unsigned = "SAMLRequest=a&SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256";
        assert_eq!(verify_redirect_signature(unsigned, no_cert), Err(SignatureError::Missing("Signature")));
        let signed = format!("{unsigned}&Signature=AA%3D%3D");
        assert_eq!(verify_redirect_signature(&signed, no_cert), Err(SignatureError::BadCertificate));
    }
}
