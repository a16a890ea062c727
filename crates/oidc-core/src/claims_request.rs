//! The `claims` request parameter (OpenID Connect Core §5.5): individual claims for the ID token
//! and for userinfo, and an essential `acr` with the values the client accepts.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::{OAuthError, OAuthErrorCode};

/// One requested claim: `null` or `{"essential": …, "value": …, "values": […]}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct IndividualClaim {
    /// The client needs it to work (§5.5.1).
    pub essential: bool,
    /// The one value asked for.
    pub value: Option<Value>,
    /// Acceptable values, most preferred first.
    pub values: Option<Vec<Value>>,
}

/// A parsed `claims` parameter. Claims the provider does not know are kept and later ignored,
/// as §5.5 demands.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClaimsRequest {
    /// Claims for the userinfo endpoint.
    pub userinfo: BTreeMap<String, Option<IndividualClaim>>,
    /// Claims for the ID token.
    pub id_token: BTreeMap<String, Option<IndividualClaim>>,
}

/// Claims about the authentication, not the citizen: never personal data, never consented to.
const PROTOCOL_CLAIMS: &[&str] = &["sub", "acr", "amr", "auth_time", "sid", "iss", "aud", "nonce", "verified_claims"];

impl ClaimsRequest {
    /// Parses the parameter; anything but a JSON object with object members is `invalid_request`.
    pub fn parse(text: &str) -> Result<Self, OAuthError> {
        let invalid = || OAuthError::new(OAuthErrorCode::InvalidRequest, "claims ist kein gültiges JSON-Objekt");
        // Through `Value` first: serde would also read a struct from a JSON array.
        match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => serde_json::from_value(value).map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }

    /// The personal claims asked for in either member, each once.
    pub fn personal_claims(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .userinfo
            .keys()
            .chain(self.id_token.keys())
            .map(String::as_str)
            .filter(|name| !PROTOCOL_CLAIMS.contains(name))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Whether the client asks for `verified_claims` (OpenID Connect for Identity Assurance):
    /// then the released claims that were read from the ID card come with their evidence.
    pub fn wants_verified_claims(&self) -> bool {
        self.userinfo.contains_key("verified_claims") || self.id_token.contains_key("verified_claims")
    }

    /// Whether `claim` is to be in the ID token itself.
    pub fn in_id_token(&self, claim: &str) -> bool {
        self.id_token.contains_key(claim)
    }

    /// The `acr` values of an essential `acr` request (ID token first), as the client wrote them;
    /// `None` when `acr` is not essential (then it is only informational, §5.5.1.1).
    pub fn essential_acr(&self) -> Option<Vec<String>> {
        let acr = self.id_token.get("acr").or_else(|| self.userinfo.get("acr"))?.as_ref()?;
        if !acr.essential {
            return None;
        }
        let values = acr.values.clone().unwrap_or_default().into_iter().chain(acr.value.clone());
        Some(values.filter_map(|v| v.as_str().map(str::to_owned)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_of_the_specification_parses() {
        // OpenID Connect Core §5.5, the example request (shortened).
        let request = ClaimsRequest::parse(
            r#"{"userinfo":{"given_name":{"essential":true},"nickname":null,"email":{"essential":true},
                "email_verified":{"essential":true},"picture":null},
               "id_token":{"auth_time":{"essential":true},
                "acr":{"values":["urn:mace:incommon:iap:silver"]}}}"#,
        )
        .unwrap();
        assert_eq!(request.personal_claims(), ["email", "email_verified", "given_name", "nickname", "picture"]);
        assert!(request.in_id_token("auth_time") && !request.in_id_token("email"));
        assert_eq!(request.essential_acr(), None, "acr without essential is voluntary");
    }

    #[test]
    fn an_essential_acr_gives_its_values() {
        let request = ClaimsRequest::parse(
            r#"{"id_token":{"acr":{"essential":true,"values":["substantiell","http://eidas.europa.eu/LoA/high"]}}}"#,
        )
        .unwrap();
        assert_eq!(request.essential_acr().unwrap(), ["substantiell", "http://eidas.europa.eu/LoA/high"]);
        let single = ClaimsRequest::parse(r#"{"userinfo":{"acr":{"essential":true,"value":"hoch"}}}"#).unwrap();
        assert_eq!(single.essential_acr().unwrap(), ["hoch"]);
        assert!(single.personal_claims().is_empty(), "acr is no personal claim");
    }

    #[test]
    fn anything_but_an_object_of_objects_is_invalid_request() {
        for bad in ["", "[]", "{\"userinfo\":[]}", "{\"id_token\":{\"email\":5}}", "not json"] {
            let error = ClaimsRequest::parse(bad).unwrap_err();
            assert_eq!(error.code, OAuthErrorCode::InvalidRequest, "{bad}");
        }
        assert_eq!(ClaimsRequest::parse("{}").unwrap(), ClaimsRequest::default());
    }
}
