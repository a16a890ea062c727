//! Assertion encryption (XML Encryption 1.1, SAML Core §2.3.4): the signed Assertion, in the
//! canonical form it was signed in, encrypted with a fresh AES-256-GCM key, the key transported
//! with RSA-OAEP (MGF1 with SHA-1, the algorithm every SAML SP decrypts) to the SP's encryption
//! certificate. The decrypted Assertion verifies on its own: its signature covers its canonical
//! form, which exclusive canonicalisation makes independent of where it is embedded.

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom as _, SystemRandom},
    rsa::{OAEP_SHA1_MGF1SHA1, OaepPublicEncryptingKey, PublicEncryptingKey},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use x509_cert::{
    Certificate,
    der::{Decode as _, Encode as _},
};

use crate::xml::Element;

const ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";
const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
const RSA_OAEP: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

/// Why an assertion could not be encrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptError {
    /// The certificate cannot be read or holds no RSA key of at least 2048 bits.
    #[error("the encryption certificate holds no usable RSA key")]
    BadCertificate,
    /// The cryptographic library failed.
    #[error("encryption failed")]
    Failed,
}

/// `saml:EncryptedAssertion` with `plaintext` (the signed Assertion) encrypted for the RSA key of
/// `certificate_der`.
pub(crate) fn encrypted_assertion(plaintext: &str, certificate_der: &[u8]) -> Result<Element, EncryptError> {
    let certificate = Certificate::from_der(certificate_der).map_err(|_| EncryptError::BadCertificate)?;
    let spki =
        certificate.tbs_certificate.subject_public_key_info.to_der().map_err(|_| EncryptError::BadCertificate)?;
    let public = PublicEncryptingKey::from_der(&spki).map_err(|_| EncryptError::BadCertificate)?;
    if public.key_size_bits() < 2048 {
        return Err(EncryptError::BadCertificate);
    }
    let oaep = OaepPublicEncryptingKey::new(public).map_err(|_| EncryptError::BadCertificate)?;

    let random = SystemRandom::new();
    let mut key = [0u8; 32];
    let mut iv = [0u8; NONCE_LEN];
    random.fill(&mut key).map_err(|_| EncryptError::Failed)?;
    random.fill(&mut iv).map_err(|_| EncryptError::Failed)?;
    let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).map_err(|_| EncryptError::Failed)?);
    let mut data = plaintext.as_bytes().to_vec();
    sealing
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut data)
        .map_err(|_| EncryptError::Failed)?;
    // XML Encryption 1.1 §5.2.4: the IV, then the ciphertext with the tag appended.
    let mut cipher_value = iv.to_vec();
    cipher_value.extend_from_slice(&data);

    let mut wrapped = vec![0u8; oaep.ciphertext_size()];
    let wrapped = oaep.encrypt(&OAEP_SHA1_MGF1SHA1, &key, &mut wrapped, None).map_err(|_| EncryptError::Failed)?;
    let encrypted_key = Element::new("xenc", "EncryptedKey")
        .child(
            Element::new("xenc", "EncryptionMethod")
                .attr("Algorithm", RSA_OAEP)
                .child(Element::new("ds", "DigestMethod").attr("Algorithm", SHA1)),
        )
        .child(
            Element::new("xenc", "CipherData")
                .child(Element::new("xenc", "CipherValue").text(STANDARD.encode(&*wrapped))),
        );
    let data = Element::new("xenc", "EncryptedData")
        .attr("Type", ELEMENT)
        .child(Element::new("xenc", "EncryptionMethod").attr("Algorithm", AES256_GCM))
        .child(Element::new("ds", "KeyInfo").child(encrypted_key))
        .child(
            Element::new("xenc", "CipherData")
                .child(Element::new("xenc", "CipherValue").text(STANDARD.encode(cipher_value))),
        );
    Ok(Element::new("saml", "EncryptedAssertion").child(data))
}
