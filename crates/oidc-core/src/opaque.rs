//! Opaque secrets handed to clients and citizens (tokens, codes, link and session values): how
//! they are made, how they are stored, how they are compared. One place, so every kind of token
//! has the same strength and storage form.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The length of a [`random_token`]: 256 bits in URL-safe base64 without padding.
pub(crate) const RANDOM_TOKEN_CHARS: usize = 43;

/// 256 random bits from the OS, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a token: SHA-256, URL-safe base64. A dump of the store holds no usable
/// token; the token's own entropy makes a salt pointless.
pub fn token_digest(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// A strong HTTP entity tag (RFC 9110 §8.8.3), quotes included, for a document served as
/// `body`: 128 bits of its SHA-256, so the tag changes whenever the document does.
pub fn entity_tag(body: &[u8]) -> String {
    format!("\"{}\"", &URL_SAFE_NO_PAD.encode(Sha256::digest(body))[..22])
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entity_tag_is_quoted_stable_and_follows_the_body() {
        let tag = entity_tag(b"{\"keys\":[]}");
        assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 24, "{tag}");
        assert_eq!(tag, entity_tag(b"{\"keys\":[]}"));
        assert_ne!(tag, entity_tag(b"{\"keys\":[1]}"));
    }

    #[test]
    fn tokens_are_long_random_and_stored_hashed() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "256 bits in base64url");
        let digest = token_digest(&a);
        assert_eq!(digest, token_digest(&a));
        assert!(!digest.contains(&a) && digest.len() == 43);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
