//! The rules of an authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1, RFC 7636) that
//! need no client, tenant or session: each parameter parsed into what the flow uses, or the
//! `OAuthError` the client gets. The server applies them after the client and its redirect URI
//! are known, in the order written here.

use serde::{Deserialize, Serialize};

use crate::{OAuthError, OAuthErrorCode, TrustLevel, is_well_formed_pkce};

fn invalid(text: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidRequest, text)
}

/// How the response reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseMode {
    /// Parameters in the redirect URI's query (the default for `code`).
    Query,
    /// An HTML form posted to the redirect URI.
    FormPost,
}

/// `response_mode`: `query` (default) or `form_post`.
pub fn response_mode(value: Option<&str>) -> Result<ResponseMode, OAuthError> {
    match value {
        None | Some("query") => Ok(ResponseMode::Query),
        Some("form_post") => Ok(ResponseMode::FormPost),
        Some(_) => Err(invalid("response_mode muss query oder form_post sein")),
    }
}

/// `response_type`: only `code` is offered.
pub fn response_type(value: Option<&str>) -> Result<(), OAuthError> {
    match value {
        Some("code") => Ok(()),
        Some(_) => Err(OAuthError::new(OAuthErrorCode::UnsupportedResponseType, "nur response_type=code")),
        None => Err(invalid("response_type fehlt")),
    }
}

/// `scope`: space separated, order and repetition do not matter (sorted, deduplicated), and
/// `openid` must be among them.
pub fn scopes(value: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> =
        value.unwrap_or_default().split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    scopes.sort();
    scopes.dedup();
    if scopes.iter().any(|s| s == "openid") {
        Ok(scopes)
    } else {
        Err(OAuthError::new(OAuthErrorCode::InvalidScope, "scope muss openid enthalten"))
    }
}

/// PKCE (RFC 7636): a well-formed S256 challenge, never `plain`; required when `needed`.
pub fn code_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
    needed: bool,
) -> Result<Option<String>, OAuthError> {
    match (challenge, method) {
        (Some(challenge), Some("S256")) if is_well_formed_pkce(challenge) => Ok(Some(challenge.to_owned())),
        (Some(_), Some("S256")) => Err(invalid("code_challenge ist ungültig")),
        (Some(_), _) => Err(invalid("nur code_challenge_method=S256")),
        (None, _) if needed => Err(invalid("PKCE (S256) ist erforderlich")),
        (None, _) => Ok(None),
    }
}

/// `prompt`: `none`, `login`, `consent`, `select_account`; `none` stands alone.
pub fn prompt(value: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let prompt: Vec<String> =
        value.unwrap_or_default().split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if prompt.iter().any(|p| !matches!(p.as_str(), "none" | "login" | "consent" | "select_account")) {
        return Err(invalid("unbekannter prompt-Wert"));
    }
    if prompt.iter().any(|p| p == "none") && prompt.len() > 1 {
        return Err(invalid("prompt=none lässt sich nicht kombinieren"));
    }
    Ok(prompt)
}

/// `display`: any of the four values (every display gets the same responsive pages).
pub fn display(value: Option<&str>) -> Result<(), OAuthError> {
    match value {
        None | Some("page" | "popup" | "touch" | "wap") => Ok(()),
        Some(_) => Err(invalid("display muss page, popup, touch oder wap sein")),
    }
}

/// `max_age`: a non-negative number of seconds.
pub fn max_age(value: Option<&str>) -> Result<Option<i64>, OAuthError> {
    match value.map(str::parse::<i64>) {
        None => Ok(None),
        Some(Ok(seconds)) if seconds >= 0 => Ok(Some(seconds)),
        Some(_) => Err(invalid("max_age muss eine nicht-negative Zahl sein")),
    }
}

/// The level a request needs, and whether `acr` answers in eIDAS URIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequiredLevel {
    /// At least this.
    pub level: TrustLevel,
    /// The client asked in eIDAS URIs (its first value), so `acr` answers in them.
    pub eidas_vocabulary: bool,
}

/// `acr_values` and the values of an essential `acr` in the `claims` parameter each list
/// acceptable levels, so the lowest listed is what the request needs; the client's and the
/// tenant's minimum raise it. An unknown value is an error, never ignored.
pub fn required_level(
    acr_values: Option<&str>,
    essential_acr: &[String],
    client_minimum: TrustLevel,
    tenant_minimum: TrustLevel,
) -> Result<RequiredLevel, OAuthError> {
    let requested: Vec<&str> = acr_values
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .chain(essential_acr.iter().map(String::as_str))
        .collect();
    let mut lowest: Option<TrustLevel> = None;
    for value in &requested {
        let level =
            value.parse::<TrustLevel>().map_err(|_| invalid(&format!("acr_values: {value:?} ist unbekannt")))?;
        lowest = Some(lowest.map_or(level, |l| l.min(level)));
    }
    Ok(RequiredLevel {
        level: lowest.unwrap_or(TrustLevel::Normal).max(client_minimum).max(tenant_minimum),
        eidas_vocabulary: requested.first().is_some_and(|v| v.starts_with("http")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok(value)` or the error code's wire name.
    fn check<T: PartialEq + std::fmt::Debug>(got: Result<T, OAuthError>, expect: Result<T, &str>) {
        assert_eq!(got.map_err(|e| e.code.as_str()), expect);
    }

    #[test]
    fn response_mode_and_type() {
        check(response_mode(None), Ok(ResponseMode::Query));
        check(response_mode(Some("query")), Ok(ResponseMode::Query));
        check(response_mode(Some("form_post")), Ok(ResponseMode::FormPost));
        check(response_mode(Some("fragment")), Err("invalid_request"));
        check(response_type(Some("code")), Ok(()));
        check(response_type(Some("token")), Err("unsupported_response_type"));
        check(response_type(Some("code id_token")), Err("unsupported_response_type"));
        check(response_type(None), Err("invalid_request"));
    }

    #[test]
    fn scope_order_and_repetition_do_not_matter_and_openid_is_required() {
        let expected: Vec<String> = ["email", "openid", "profile"].map(String::from).into();
        check(scopes(Some("profile openid email")), Ok(expected.clone()));
        check(scopes(Some("email  openid profile openid")), Ok(expected));
        check(scopes(Some("profile email")), Err("invalid_scope"));
        check(scopes(None), Err("invalid_scope"));
    }

    #[test]
    fn pkce_is_s256_only_and_required_when_needed() {
        let good = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        check(code_challenge(Some(good), Some("S256"), true), Ok(Some(good.to_owned())));
        check(code_challenge(Some(good), Some("plain"), false), Err("invalid_request"));
        check(code_challenge(Some(good), None, false), Err("invalid_request"));
        check(code_challenge(Some("short"), Some("S256"), false), Err("invalid_request"));
        check(code_challenge(None, None, true), Err("invalid_request"));
        check(code_challenge(None, None, false), Ok(None));
    }

    #[test]
    fn prompt_display_and_max_age() {
        check(prompt(Some("login consent")), Ok(vec!["login".to_owned(), "consent".to_owned()]));
        check(prompt(Some("select_account")), Ok(vec!["select_account".to_owned()]));
        check(prompt(None), Ok(vec![]));
        check(prompt(Some("none login")), Err("invalid_request"));
        check(prompt(Some("bitte")), Err("invalid_request"));
        for value in ["page", "popup", "touch", "wap"] {
            check(display(Some(value)), Ok(()));
        }
        check(display(Some("tv")), Err("invalid_request"));
        check(max_age(Some("0")), Ok(Some(0)));
        check(max_age(Some("3600")), Ok(Some(3600)));
        check(max_age(Some("-1")), Err("invalid_request"));
        check(max_age(Some("eine Stunde")), Err("invalid_request"));
        check(max_age(None), Ok(None));
    }

    #[test]
    fn the_lowest_listed_level_raised_by_the_minimums_in_the_vocabulary_asked() {
        use TrustLevel::{Hoch, Normal, Substantiell};
        let level = |level, eidas_vocabulary| Ok(RequiredLevel { level, eidas_vocabulary });
        check(required_level(None, &[], Normal, Normal), level(Normal, false));
        check(required_level(Some("hoch"), &[], Normal, Normal), level(Hoch, false));
        check(required_level(Some("hoch substantiell"), &[], Normal, Normal), level(Substantiell, false));
        check(required_level(Some("http://eidas.europa.eu/LoA/high"), &[], Normal, Normal), level(Hoch, true));
        check(required_level(None, &["substantiell".to_owned()], Normal, Normal), level(Substantiell, false));
        check(required_level(Some("normal"), &[], Substantiell, Normal), level(Substantiell, false));
        check(required_level(Some("normal"), &[], Normal, Hoch), level(Hoch, false));
        check(required_level(Some("high"), &[], Normal, Normal), Err("invalid_request"));
    }
}
