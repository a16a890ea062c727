//! Enveloped XML signatures (XML-DSig 1.1) over our own canonical output: RSA-SHA256, exclusive
//! canonicalisation, SHA-256 digests, the certificate in `KeyInfo`.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};

use crate::xml::Element;

const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";

/// The signing key of an environment, held by the caller (the server's key service).
pub trait Signer {
    /// RSASSA-PKCS1-v1_5 with SHA-256 over `data`.
    fn sign_rsa_sha256(&self, data: &[u8]) -> Result<Vec<u8>, SignError>;

    /// The X.509 certificate of the key, DER, as published in metadata and `KeyInfo`.
    fn certificate_der(&self) -> &[u8];
}

/// The key could not sign.
#[derive(Debug, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(pub String);

/// The `ds:KeyInfo` naming `signer`'s certificate.
pub(crate) fn key_info(signer: &dyn Signer) -> Element {
    Element::new("ds", "KeyInfo").child(
        Element::new("ds", "X509Data")
            .child(Element::new("ds", "X509Certificate").text(STANDARD.encode(signer.certificate_der()))),
    )
}

/// Signs `element` (whose `ID` attribute is `id`) with an enveloped signature inserted as its
/// child number `position` (after the `Issuer`, where the SAML schemas want it).
pub(crate) fn sign_enveloped(
    element: &mut Element,
    id: &str,
    position: usize,
    signer: &dyn Signer,
) -> Result<(), SignError> {
    let digest = STANDARD.encode(Sha256::digest(element.canonical().as_bytes()));
    let signed_info = Element::new("ds", "SignedInfo")
        .child(Element::new("ds", "CanonicalizationMethod").attr("Algorithm", EXC_C14N))
        .child(Element::new("ds", "SignatureMethod").attr("Algorithm", RSA_SHA256))
        .child(
            Element::new("ds", "Reference")
                .attr("URI", format!("#{id}"))
                .child(
                    Element::new("ds", "Transforms")
                        .child(Element::new("ds", "Transform").attr("Algorithm", ENVELOPED))
                        .child(Element::new("ds", "Transform").attr("Algorithm", EXC_C14N)),
                )
                .child(Element::new("ds", "DigestMethod").attr("Algorithm", SHA256))
                .child(Element::new("ds", "DigestValue").text(digest)),
        );
    let value = signer.sign_rsa_sha256(signed_info.canonical().as_bytes())?;
    let signature = Element::new("ds", "Signature")
        .child(signed_info)
        .child(Element::new("ds", "SignatureValue").text(STANDARD.encode(value)))
        .child(key_info(signer));
    element.insert(position, signature);
    Ok(())
}
