//! Pairwise subject identifiers (OpenID Connect Core §8.1): one citizen has one `sub` for every
//! client of one authority (its sector) and unlinkable ones across authorities.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};

use crate::{AccountId, Environment};

/// `sub` = BASE64URL(HMAC-SHA256(key, environment ‖ sector ‖ account id)); `key` is a per-deployment
/// secret (derived from the KEK), so nobody without it can link two sectors' subjects.
pub fn pairwise_subject(key: &[u8; 32], environment: Environment, sector: &str, account: AccountId) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    for part in [environment.as_str(), sector, &account.to_string()] {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_per_sector_unlinkable_across_sectors_and_environments() {
        let key = [7u8; 32];
        let account = AccountId::new_random();
        let a = pairwise_subject(&key, Environment::Production, "koeln.de", account);
        assert_eq!(a, pairwise_subject(&key, Environment::Production, "koeln.de", account));
        assert_ne!(a, pairwise_subject(&key, Environment::Production, "bonn.de", account));
        assert_ne!(a, pairwise_subject(&key, Environment::Test, "koeln.de", account));
        assert_ne!(a, pairwise_subject(&[8u8; 32], Environment::Production, "koeln.de", account));
        assert_ne!(a, pairwise_subject(&key, Environment::Production, "koeln.de", AccountId::new_random()));
        assert_eq!(a.len(), 43);
    }
}
