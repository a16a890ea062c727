use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Vertrauensniveau: how sure we are that the citizen is who the account says.
///
/// Ordered: `Normal < Substantiell < Hoch`. Registration with username and password gives
/// `Normal`; the online ID card (eID) gives `Hoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustLevel {
    /// Self-asserted data, e-mail confirmed (eIDAS "low").
    Normal,
    /// eIDAS "substantial".
    Substantiell,
    /// Identity proven with the online ID card (eIDAS "high").
    Hoch,
}

impl TrustLevel {
    /// The German name, used as our own `acr` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Normal => "normal",
            TrustLevel::Substantiell => "substantiell",
            TrustLevel::Hoch => "hoch",
        }
    }

    /// The eIDAS level-of-assurance URI for the same level.
    pub fn eidas_uri(self) -> &'static str {
        match self {
            TrustLevel::Normal => "http://eidas.europa.eu/LoA/low",
            TrustLevel::Substantiell => "http://eidas.europa.eu/LoA/substantial",
            TrustLevel::Hoch => "http://eidas.europa.eu/LoA/high",
        }
    }
}

impl fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text names no trust level we know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trust level {0:?}")]
pub struct ParseTrustLevelError(String);

impl FromStr for TrustLevel {
    type Err = ParseTrustLevelError;

    /// Accepts our German names and the eIDAS URIs.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [TrustLevel::Normal, TrustLevel::Substantiell, TrustLevel::Hoch]
            .into_iter()
            .find(|level| s == level.as_str() || s == level.eidas_uri())
            .ok_or_else(|| ParseTrustLevelError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Option<TrustLevel>) {
        assert_eq!(input.parse::<TrustLevel>().ok(), expect, "input {input:?}");
    }

    #[test]
    fn parses_german_names_and_eidas_uris() {
        check("normal", Some(TrustLevel::Normal));
        check("substantiell", Some(TrustLevel::Substantiell));
        check("hoch", Some(TrustLevel::Hoch));
        check("http://eidas.europa.eu/LoA/low", Some(TrustLevel::Normal));
        check("http://eidas.europa.eu/LoA/substantial", Some(TrustLevel::Substantiell));
        check("http://eidas.europa.eu/LoA/high", Some(TrustLevel::Hoch));
        check("Hoch", None);
        check("high", None);
        check("", None);
    }

    #[test]
    fn levels_are_ordered() {
        assert!(TrustLevel::Normal < TrustLevel::Substantiell);
        assert!(TrustLevel::Substantiell < TrustLevel::Hoch);
    }
}
