//! The cryptography of EAC (TR-03110) on brainpoolP256r1 with AES-128, through OpenSSL: key
//! derivation, ECDH, plain-format ECDSA, CMAC and AES-CBC. Keys that several nodes must share
//! (the terminal's certificate chain, the sector key) derive from the configured secret, so
//! that nodes agree without exchanging anything.

use openssl::{
    bn::{BigNum, BigNumContext},
    derive::Deriver,
    ec::{EcGroup, EcKey, EcPoint, PointConversionForm},
    ecdsa::EcdsaSig,
    hash::{MessageDigest, hash},
    nid::Nid,
    pkey::{PKey, Private, Public},
    sign::Signer,
    symm::{Cipher, Crypter, Mode},
};

/// A cryptographic step failed; for input from the network this means the input was wrong.
#[derive(Debug, thiserror::Error)]
#[error("cryptography: {0}")]
pub struct CryptoError(pub String);

impl From<openssl::error::ErrorStack> for CryptoError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        CryptoError(e.to_string())
    }
}

/// The ID card's curve.
pub fn brainpool() -> Result<EcGroup, CryptoError> {
    Ok(EcGroup::from_curve_name(Nid::BRAINPOOL_P256R1)?)
}

/// A private key on brainpoolP256r1 derived from `secret` and `label` (the scalar is a
/// SHA-256 chain over both, reduced modulo the order).
pub fn derived_key(secret: &[u8], label: &str) -> Result<EcKey<Private>, CryptoError> {
    let group = brainpool()?;
    let mut ctx = BigNumContext::new()?;
    let mut order = BigNum::new()?;
    group.order(&mut order, &mut ctx)?;
    let digest = hash(MessageDigest::sha512(), &[secret, b"\0", label.as_bytes()].concat())?;
    let wide = BigNum::from_slice(&digest)?;
    let mut scalar = BigNum::new()?;
    scalar.nnmod(&wide, &order, &mut ctx)?;
    if scalar.num_bits() == 0 {
        return Err(CryptoError("derived a zero key".into()));
    }
    private_key(&group, &scalar)
}

fn private_key(group: &EcGroup, scalar: &BigNum) -> Result<EcKey<Private>, CryptoError> {
    let mut ctx = BigNumContext::new()?;
    let mut public = EcPoint::new(group)?;
    public.mul_generator2(group, scalar, &mut ctx)?;
    Ok(EcKey::from_private_components(group, scalar, &public)?)
}

/// A fresh ephemeral key.
pub fn ephemeral_key() -> Result<EcKey<Private>, CryptoError> {
    let group = brainpool()?;
    Ok(EcKey::generate(&group)?)
}

/// The private scalar, 32 bytes (to keep an ephemeral key in a session).
pub fn private_bytes(key: &EcKey<Private>) -> Result<Vec<u8>, CryptoError> {
    Ok(key.private_key().to_vec_padded(32)?)
}

/// A private key from its scalar.
pub fn key_from_private_bytes(bytes: &[u8]) -> Result<EcKey<Private>, CryptoError> {
    private_key(&brainpool()?, &BigNum::from_slice(bytes)?)
}

/// The public point, uncompressed (`04 ‖ x ‖ y`).
pub fn public_point<T: openssl::pkey::HasPublic>(key: &EcKey<T>) -> Result<Vec<u8>, CryptoError> {
    let mut ctx = BigNumContext::new()?;
    Ok(key.public_key().to_bytes(key.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)?)
}

/// The x coordinate of a point (TR-03110's `Comp()` for EC keys).
pub fn x_coordinate(point: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let group = brainpool()?;
    let mut ctx = BigNumContext::new()?;
    let point = EcPoint::from_bytes(&group, point, &mut ctx)?;
    let (mut x, mut y) = (BigNum::new()?, BigNum::new()?);
    point.affine_coordinates(&group, &mut x, &mut y, &mut ctx)?;
    Ok(x.to_vec_padded(32)?)
}

/// A public key from its point; refuses points not on the curve.
pub fn public_key(point: &[u8]) -> Result<EcKey<Public>, CryptoError> {
    let group = brainpool()?;
    let mut ctx = BigNumContext::new()?;
    let point = EcPoint::from_bytes(&group, point, &mut ctx)?;
    let key = EcKey::from_public_key(&group, &point)?;
    key.check_key()?;
    Ok(key)
}

/// ECDH: the x coordinate of `private · peer` (TR-03110-3 A.2.3, the shared secret of CA).
pub fn ecdh(private: &EcKey<Private>, peer_point: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let peer = PKey::from_ec_key(public_key(peer_point)?)?;
    let own = PKey::from_ec_key(private.clone())?;
    let mut deriver = Deriver::new(&own)?;
    deriver.set_peer(&peer)?;
    Ok(deriver.derive_to_vec()?)
}

/// ECDSA with SHA-256, the signature in plain format (`r ‖ s`, TR-03111), as card-verifiable
/// certificates and Terminal Authentication carry it.
pub fn sign(key: &EcKey<Private>, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let digest = hash(MessageDigest::sha256(), data)?;
    let signature = EcdsaSig::sign(&digest, key)?;
    Ok([signature.r().to_vec_padded(32)?, signature.s().to_vec_padded(32)?].concat())
}

/// Checks a plain-format ECDSA-SHA-256 signature.
pub fn verify(key: &EcKey<Public>, data: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
    if signature.len() != 64 {
        return Ok(false);
    }
    let digest = hash(MessageDigest::sha256(), data)?;
    let signature = EcdsaSig::from_private_components(
        BigNum::from_slice(&signature[..32])?,
        BigNum::from_slice(&signature[32..])?,
    )?;
    Ok(signature.verify(&digest, key)?)
}

/// Which session key the key derivation function makes (TR-03110-3 A.2.3.2).
#[derive(Debug, Clone, Copy)]
pub enum KeyPurpose {
    /// Encryption (counter 1).
    Encryption = 1,
    /// Message authentication (counter 2).
    Mac = 2,
}

/// KDF for AES-128: the first 16 bytes of SHA-1(secret ‖ nonce ‖ counter).
pub fn derive_session_key(secret: &[u8], nonce: &[u8], purpose: KeyPurpose) -> Result<[u8; 16], CryptoError> {
    let counter = (purpose as u32).to_be_bytes();
    let digest = hash(MessageDigest::sha1(), &[secret, nonce, &counter].concat())?;
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    Ok(key)
}

/// AES-128-CMAC cut to 8 bytes, the MAC of secure messaging and of CA's authentication token.
pub fn cmac8(key: &[u8; 16], data: &[u8]) -> Result<[u8; 8], CryptoError> {
    let pkey = PKey::cmac(&Cipher::aes_128_cbc(), key)?;
    let mut signer = Signer::new_without_digest(&pkey)?;
    signer.update(data)?;
    let full = signer.sign_to_vec()?;
    let mut mac = [0u8; 8];
    mac.copy_from_slice(full.get(..8).ok_or_else(|| CryptoError("short CMAC".into()))?);
    Ok(mac)
}

/// AES-128-CBC without padding (the caller pads, ISO 9797-1 method 2).
pub fn aes_cbc(mode: Mode, key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if !data.len().is_multiple_of(16) {
        return Err(CryptoError("not a whole number of blocks".into()));
    }
    let mut crypter = Crypter::new(Cipher::aes_128_cbc(), mode, key, Some(iv))?;
    crypter.pad(false);
    let mut out = vec![0u8; data.len() + 16];
    let mut n = crypter.update(data, &mut out)?;
    n += crypter.finalize(&mut out[n..])?;
    out.truncate(n);
    Ok(out)
}

/// A self-signed X.509 certificate for `key`, valid from now for a year, serial 1 (the TLS
/// certificate of the PAOS endpoint; the document signer of test cards).
pub fn self_signed_certificate(key: &PKey<Private>, common_name: &str) -> Result<openssl::x509::X509, CryptoError> {
    use openssl::{
        asn1::Asn1Time,
        x509::{X509, X509NameBuilder},
    };
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("C", "DE")?;
    name.append_entry_by_text("CN", common_name)?;
    let name = name.build();
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let serial = BigNum::from_u32(1)?.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    builder.set_pubkey(key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(365)?);
    builder.set_not_before(&from)?;
    builder.set_not_after(&until)?;
    builder.sign(key, MessageDigest::sha256())?;
    Ok(builder.build())
}

/// HMAC-SHA-256.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let pkey = PKey::hmac(key)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey)?;
    signer.update(data)?;
    Ok(signer.sign_to_vec()?)
}

/// SHA-256.
pub fn sha256(data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    Ok(hash(MessageDigest::sha256(), data)?.to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn derived_keys_are_stable_and_differ_by_label() {
        let a = derived_key(b"secret", "dv").unwrap();
        let b = derived_key(b"secret", "dv").unwrap();
        let c = derived_key(b"secret", "at").unwrap();
        assert_eq!(public_point(&a).unwrap(), public_point(&b).unwrap());
        assert_ne!(public_point(&a).unwrap(), public_point(&c).unwrap());
        assert_eq!(public_point(&a).unwrap().len(), 65);
    }

    #[test]
    fn ecdh_agrees_and_is_the_x_coordinate() {
        let a = ephemeral_key().unwrap();
        let b = ephemeral_key().unwrap();
        let ab = ecdh(&a, &public_point(&b).unwrap()).unwrap();
        let ba = ecdh(&b, &public_point(&a).unwrap()).unwrap();
        assert_eq!(ab, ba);
        assert_eq!(ab.len(), 32);
        // A point not on the curve is refused.
        let mut bad = public_point(&b).unwrap();
        bad[64] ^= 1;
        assert!(ecdh(&a, &bad).is_err());
    }

    #[test]
    fn plain_signatures_verify_and_changes_do_not() {
        let key = derived_key(b"secret", "at").unwrap();
        let public = public_key(&public_point(&key).unwrap()).unwrap();
        let signature = sign(&key, b"message").unwrap();
        assert_eq!(signature.len(), 64);
        assert!(verify(&public, b"message", &signature).unwrap());
        assert!(!verify(&public, b"messagf", &signature).unwrap());
    }

    /// RFC 4493's AES-128 test vector (example 2), cut to 8 bytes.
    #[test]
    fn cmac_matches_rfc_4493() {
        let key: [u8; 16] = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap().try_into().unwrap();
        let message = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        assert_eq!(hex::encode(cmac8(&key, &message).unwrap()), "070a16b46b4d4144");
    }

    /// ICAO Doc 9303 Part 11, Appendix G.1 (PACE, generic mapping, brainpoolP256r1, AES-128 —
    /// the worked example TR-03110 refers to): the session keys from the shared secret, and the
    /// terminal's authentication token over the chip's ephemeral key (our Chip Authentication
    /// token check is the same MAC over the same kind of object, with the CA object identifier).
    #[test]
    fn session_keys_and_token_match_icao_9303_appendix_g1() {
        let secret = hex::decode("28768D20701247DAE81804C9E780EDE582A9996DB4A315020B2733197DB84925").unwrap();
        let enc = derive_session_key(&secret, &[], KeyPurpose::Encryption).unwrap();
        let mac = derive_session_key(&secret, &[], KeyPurpose::Mac).unwrap();
        assert_eq!(hex::encode_upper(enc), "F5F0E35C0D7161EE6724EE513A0D9A7F");
        assert_eq!(hex::encode_upper(mac), "FE251C7858B356B24514B3BD5F4297D1");
        let chip_key = hex::decode(concat!(
            "049E880F842905B8B3181F7AF7CAA9F0EFB743847F44A306D2D28C1D9EC65DF6DB",
            "7764B22277A2EDDC3C265A9F018F9CB852E111B768B326904B59A0193776F094"
        ))
        .unwrap();
        let pace_oid = [0x04, 0x00, 0x7F, 0x00, 0x07, 0x02, 0x02, 0x04, 0x02, 0x02];
        let input = crate::tlv::encode_all(
            0x7F49,
            &[&crate::tlv::encode(0x06, &pace_oid), &crate::tlv::encode(0x86, &chip_key)],
        );
        assert_eq!(hex::encode_upper(cmac8(&mac, &input).unwrap()), "C2B0BD78D94BA866");
    }

    #[test]
    fn aes_cbc_round_trips_and_wants_whole_blocks() {
        let key = [1u8; 16];
        let iv = [2u8; 16];
        let data = [3u8; 32];
        let encrypted = aes_cbc(Mode::Encrypt, &key, &iv, &data).unwrap();
        assert_eq!(aes_cbc(Mode::Decrypt, &key, &iv, &encrypted).unwrap(), data);
        assert!(aes_cbc(Mode::Encrypt, &key, &iv, &[0u8; 15]).is_err());
    }
}
