//! Random tokens handed to the citizen (links, session cookies) and the keys they are stored under.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// 256 random bits, URL-safe base64.
pub(crate) fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The storage key of `token` under `prefix`: the store only ever sees the token's SHA-256, so a
/// leaked store dump holds no usable link or session.
pub(crate) fn key(prefix: &str, token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut key = String::with_capacity(prefix.len() + 64);
    key.push_str(prefix);
    for byte in digest {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_hashed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "256 bits in base64url");
        let k = key("act:", &a);
        assert!(k.starts_with("act:") && !k.contains(&a) && k.len() == 4 + 64);
        assert_eq!(k, key("act:", &a));
    }
}
