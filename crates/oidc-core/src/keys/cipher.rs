use std::fmt;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use rand::RngCore;

/// The key-encryption key (KEK): AES-256-GCM, sealing every private signing key at rest.
///
/// The key id is bound as associated data, so a sealed key cannot be moved to another row.
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; 32]);

const NONCE_LEN: usize = 12;

impl KeyEncryptionKey {
    /// A fresh random KEK.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses the standard base64 encoding of exactly 32 bytes (surrounding white space ignored).
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let bytes = STANDARD.decode(text.trim()).map_err(|e| format!("key-encryption key is not base64: {e}"))?;
        let bytes: [u8; 32] =
            bytes.try_into().map_err(|b: Vec<u8>| format!("key-encryption key must be 32 bytes, got {}", b.len()))?;
        Ok(Self(bytes))
    }

    /// The standard base64 encoding, for writing a generated KEK to its file.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// A 32-byte subkey for `purpose` (HMAC-SHA256 of the label under the KEK), so other secrets
    /// at rest (e.g. client-secret hashes) need no key of their own and stay bound to this
    /// deployment.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A KEK of its own for `purpose` (see [`KeyEncryptionKey::derive`]), e.g. to seal data that
    /// must not be openable with the signing keys' KEK itself.
    pub fn derived(&self, purpose: &str) -> Self {
        Self(self.derive(purpose))
    }

    /// Encrypts `plaintext` with a fresh nonce, bound to `kid` (associated data): what is sealed
    /// for one key id or context cannot be opened for another.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new((&self.0).into());
        let mut sealed = nonce.to_vec();
        // Encryption with a valid key and nonce length cannot fail; an empty result would be
        // caught by `open` as a failed unseal rather than a panic here.
        let ciphertext =
            cipher.encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: kid.as_bytes() }).unwrap_or_default();
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts what [`KeyEncryptionKey::seal`] made for `kid`; `None` when forged, truncated, of
    /// another key or of another `kid`.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        Aes256Gcm::new((&self.0).into())
            .decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: kid.as_bytes() })
            .ok()
    }
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_the_kid() {
        let kek = KeyEncryptionKey::generate();
        let sealed = kek.seal("kid-1", b"secret");
        assert_eq!(kek.open("kid-1", &sealed).as_deref(), Some(&b"secret"[..]));
        assert_eq!(kek.open("kid-2", &sealed), None, "moved to another row");
        assert_eq!(KeyEncryptionKey::generate().open("kid-1", &sealed), None, "another KEK");
        assert_eq!(kek.open("kid-1", &sealed[..5]), None, "truncated");
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_by_kek() {
        let kek = KeyEncryptionKey::generate();
        assert_eq!(kek.derive("a"), kek.derive("a"));
        assert_ne!(kek.derive("a"), kek.derive("b"));
        assert_ne!(kek.derive("a"), KeyEncryptionKey::generate().derive("a"));
    }

    #[test]
    fn parses_base64_of_exactly_32_bytes() {
        let kek = KeyEncryptionKey::generate();
        assert!(KeyEncryptionKey::from_base64(&format!(" {}\n", kek.to_base64())).is_ok());
        assert!(KeyEncryptionKey::from_base64("c2hvcnQ=").unwrap_err().contains("32 bytes"));
        assert!(KeyEncryptionKey::from_base64("not base64!").unwrap_err().contains("base64"));
        assert_eq!(format!("{kek:?}"), "KeyEncryptionKey([redacted])");
    }
}
