use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One of the two worlds a deployment serves. Each has its own issuer, signing keys, accounts and
/// clients; nothing crosses between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Live services of the authorities.
    Production,
    /// Where authorities try their integration; relaxed redirect rules, test eID identities.
    Test,
}

impl Environment {
    /// Both environments, production first.
    pub const ALL: [Environment; 2] = [Environment::Production, Environment::Test];

    /// The lower-case name used in config, storage and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Test => "test",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was neither `production` nor `test`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment {0:?}: expected \"production\" or \"test\"")]
pub struct ParseEnvironmentError(String);

impl FromStr for Environment {
    type Err = ParseEnvironmentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "production" => Ok(Environment::Production),
            "test" => Ok(Environment::Test),
            other => Err(ParseEnvironmentError(other.to_owned())),
        }
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// An authority (municipality, state agency) registered with the operator.
    TenantId
);
uuid_id!(
    /// A citizen account within one environment.
    AccountId
);

/// The OAuth `client_id` of an authority's service. Opaque text, at most 255 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    /// A fresh random id: 128 bits, base64url, so ids can be neither guessed nor enumerated.
    pub fn generate() -> Self {
        use base64::Engine as _;
        use rand::RngCore as _;
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts 1 to 255 visible ASCII characters (RFC 6749 Appendix A.1 allows any VSCHAR).
    pub fn parse(text: &str) -> Option<Self> {
        let valid = !text.is_empty() && text.len() <= 255 && text.bytes().all(|b| (0x20..=0x7e).contains(&b));
        valid.then(|| Self(text.to_owned()))
    }

    /// The id as it appears on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_random_and_parsed_by_the_rfc_character_set() {
        assert_ne!(ClientId::generate(), ClientId::generate());
        assert_eq!(ClientId::generate().as_str().len(), 22);
        assert!(ClientId::parse("s6BhdRkqt3").is_some());
        assert!(ClientId::parse("").is_none());
        assert!(ClientId::parse("tab\there").is_none());
        assert!(ClientId::parse("ä").is_none());
        assert!(ClientId::parse(&"x".repeat(256)).is_none());
    }

    #[test]
    fn environment_round_trips_through_text() {
        for env in Environment::ALL {
            assert_eq!(env.as_str().parse::<Environment>(), Ok(env));
        }
        assert!("Production".parse::<Environment>().is_err());
        assert!("".parse::<Environment>().is_err());
    }
}
