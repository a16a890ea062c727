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

/// The key-encryption keys a node holds: the current one seals, and during a KEK rotation the
/// previous one still opens what it sealed until `servicekonto keys rotate-kek` has re-sealed it.
#[derive(Clone, Debug)]
pub struct KeyRing {
    current: KeyEncryptionKey,
    previous: Option<KeyEncryptionKey>,
}

impl KeyRing {
    /// A ring of `current` and, during a rotation, `previous`.
    pub fn new(current: KeyEncryptionKey, previous: Option<KeyEncryptionKey>) -> Self {
        Self { current, previous }
    }

    /// Seals under the current KEK (see [`KeyEncryptionKey::seal`]).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        self.current.seal(context, plaintext)
    }

    /// Opens with the current KEK, else the previous; `None` when neither opens it.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        self.current.open(context, sealed).or_else(|| self.previous.as_ref()?.open(context, sealed))
    }

    /// What was sealed under the previous KEK, sealed again under the current one; `None` when
    /// it is sealed under the current one already (or under neither: then `open` says so).
    pub fn reseal(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if self.current.open(context, sealed).is_some() {
            return None;
        }
        let plaintext = self.previous.as_ref()?.open(context, sealed)?;
        Some(self.current.seal(context, &plaintext))
    }

    /// Seals `key` itself (e.g. the deployment's derivation root).
    pub fn seal_key(&self, context: &str, key: &KeyEncryptionKey) -> Vec<u8> {
        self.seal(context, &key.0)
    }

    /// Opens what [`KeyRing::seal_key`] sealed.
    pub fn open_key(&self, context: &str, sealed: &[u8]) -> Option<KeyEncryptionKey> {
        let bytes: [u8; 32] = self.open(context, sealed)?.try_into().ok()?;
        Some(KeyEncryptionKey(bytes))
    }

    /// The current KEK.
    pub fn current(&self) -> &KeyEncryptionKey {
        &self.current
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
    fn a_ring_opens_with_the_previous_kek_and_reseals_under_the_current() {
        let (old, new) = (KeyEncryptionKey::generate(), KeyEncryptionKey::generate());
        let sealed_old = old.seal("kid", b"secret");
        let ring = KeyRing::new(new.clone(), Some(old.clone()));
        assert_eq!(ring.open("kid", &sealed_old).as_deref(), Some(&b"secret"[..]));
        let resealed = ring.reseal("kid", &sealed_old).expect("sealed under the previous KEK");
        assert_eq!(new.open("kid", &resealed).as_deref(), Some(&b"secret"[..]));
        assert_eq!(ring.reseal("kid", &resealed), None, "already under the current KEK");
        assert_eq!(KeyRing::new(new.clone(), None).open("kid", &sealed_old), None, "the old KEK is gone");
        let root = KeyEncryptionKey::generate();
        let sealed_root = ring.seal_key("root", &root);
        assert_eq!(ring.open_key("root", &sealed_root).unwrap().derive("x"), root.derive("x"));
        assert!(ring.open_key("other", &sealed_root).is_none());
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
