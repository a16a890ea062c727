//! The scope and claim vocabulary this provider speaks: OpenID Connect Core §5.1 and §5.4, plus
//! the prefill claims German authorities' forms need.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Scopes an authority's client may be allowed.
pub const KNOWN_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "address",
    "phone",
    "offline_access",
    // Acting for an organisation (company account): the `organization` claim.
    "organization",
    // Admin API: the operator, or the admins of one tenant.
    "admin",
    "tenant-admin",
];

/// Claims about a citizen a tenant may be allowed to receive.
pub const KNOWN_CLAIMS: &[&str] = &[
    "name",
    "given_name",
    "family_name",
    "birth_family_name",
    "birthdate",
    "place_of_birth",
    "nationalities",
    "address",
    "email",
    "email_verified",
    "phone_number",
    "phone_number_verified",
    // The organisation the citizen acts for (an object; see the integration guide).
    "organization",
];

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident, $known:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Accepts only names from the vocabulary.
            pub fn parse(text: &str) -> Option<Self> {
                $known.contains(&text).then(|| Self(text.to_owned()))
            }

            /// The name on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(text: String) -> Result<Self, String> {
                Self::parse(&text).ok_or_else(|| format!(concat!("unknown ", $what, " {:?}"), text))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

vocabulary!(
    /// A scope from [`KNOWN_SCOPES`].
    Scope,
    KNOWN_SCOPES,
    "scope"
);
vocabulary!(
    /// A claim name from [`KNOWN_CLAIMS`].
    ClaimName,
    KNOWN_CLAIMS,
    "claim"
);

/// The claims a scope stands for (OpenID Connect Core §5.4, plus the German prefill claims in
/// `profile`).
pub fn claims_of_scope(scope: &str) -> &'static [&'static str] {
    match scope {
        "profile" => {
            &["name", "given_name", "family_name", "birth_family_name", "birthdate", "place_of_birth", "nationalities"]
        }
        "email" => &["email", "email_verified"],
        "address" => &["address"],
        "phone" => &["phone_number", "phone_number_verified"],
        "organization" => &["organization"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_names_parse() {
        assert!(Scope::parse("openid").is_some());
        assert!(Scope::parse("OpenID").is_none());
        assert!(ClaimName::parse("birth_family_name").is_some());
        assert!(ClaimName::parse("password").is_none());
        let err = serde_json::from_str::<ClaimName>("\"password\"").unwrap_err();
        assert!(err.to_string().contains("unknown claim"));
    }
}
