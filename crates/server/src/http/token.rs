//! `POST {issuer}/token`

use base64::{Engine, engine::general_purpose::STANDARD};
use oidc_core::{JWT_BEARER_ASSERTION, OAuthError, OAuthErrorCode, assertion_subject};
use poem::{
    IntoResponse, Request, Response, handler,
    http::header,
    web::{Data, Json},
};
use tenant_registry::{AuthMethod, GrantType};

use crate::{
    error::OAuthResponse,
    flows::{
        authorize::{redeem, refresh},
        token::{ClientCredentials, TokenResponse, authenticate, client_credentials},
    },
    routes::Site,
    state::AppState,
};

fn invalid_request(description: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidRequest, description)
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(client_id) ":" urlencode(secret))`.
fn basic_credentials(value: &str) -> Result<(String, String), OAuthError> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidClient, "Nur HTTP Basic wird unterstützt"))?;
    let decoded =
        STANDARD.decode(encoded.trim()).ok().and_then(|bytes| String::from_utf8(bytes).ok()).ok_or_else(|| {
            OAuthError::new(OAuthErrorCode::InvalidClient, "Authorization-Header ist kein gültiges Basic")
        })?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidClient, "Authorization-Header ohne Doppelpunkt"))?;
    let unescape =
        |text: &str| url::form_urlencoded::parse(format!("v={text}").as_bytes()).map(|(_, v)| v.into_owned()).next();
    Ok((unescape(id).unwrap_or_default(), unescape(secret).unwrap_or_default()))
}

/// The form parameters, each at most once (RFC 6749 §3.2).
pub(crate) fn parameters(body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    for (i, (name, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
            return Err(invalid_request(&format!("Parameter {name:?} ist mehrfach angegeben")));
        }
    }
    Ok(pairs)
}

/// The client's credentials from the `Authorization` header or the form (RFC 6749 §2.3): never
/// both. Without a secret, a public client names itself by `client_id` (code grant only).
pub(crate) fn credentials(req: &Request, params: &[(String, String)]) -> Result<ClientCredentials, OAuthError> {
    let param = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    if let Some(assertion) = param("client_assertion") {
        return assertion_credentials(req, assertion, param("client_assertion_type"), param("client_id"));
    }
    let credentials = match (req.header(header::AUTHORIZATION), param("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(invalid_request("Nur eine Client-Authentifizierung je Anfrage (RFC 6749 §2.3)"));
        }
        (Some(value), None) => {
            let (client_id, secret) = basic_credentials(value)?;
            if param("client_id").is_some_and(|id| id != client_id) {
                return Err(invalid_request("client_id widerspricht dem Authorization-Header"));
            }
            ClientCredentials { client_id, secret, method: AuthMethod::ClientSecretBasic }
        }
        (None, Some(secret)) => ClientCredentials {
            client_id: param("client_id").ok_or_else(|| invalid_request("client_id fehlt"))?.to_owned(),
            secret: secret.to_owned(),
            method: AuthMethod::ClientSecretPost,
        },
        // A public client identifies itself only (RFC 6749 §2.3, §4.1.3); PKCE proves the rest.
        (None, None) => match param("client_id") {
            Some(client_id) if matches!(param("grant_type"), Some("authorization_code" | "refresh_token")) => {
                ClientCredentials { client_id: client_id.to_owned(), secret: String::new(), method: AuthMethod::None }
            }
            _ => return Err(OAuthError::new(OAuthErrorCode::InvalidClient, "Client-Authentifizierung fehlt")),
        },
    };
    Ok(credentials)
}

/// `private_key_jwt` (RFC 7523 §2.2): the assertion is the credential; the client is named by
/// `client_id` or, without it, by the assertion's `sub` (verified later).
fn assertion_credentials(
    req: &Request,
    assertion: &str,
    assertion_type: Option<&str>,
    client_id: Option<&str>,
) -> Result<ClientCredentials, OAuthError> {
    if req.header(header::AUTHORIZATION).is_some() {
        return Err(invalid_request("Nur eine Client-Authentifizierung je Anfrage (RFC 6749 §2.3)"));
    }
    if assertion_type != Some(JWT_BEARER_ASSERTION) {
        return Err(invalid_request("client_assertion_type muss jwt-bearer sein (RFC 7523)"));
    }
    let named = assertion_subject(assertion);
    let client_id = match (client_id, named) {
        (Some(id), Some(sub)) if id != sub => {
            return Err(OAuthError::new(OAuthErrorCode::InvalidClient, "client_id widerspricht der Assertion"));
        }
        (Some(id), _) => id.to_owned(),
        (None, Some(sub)) => sub,
        (None, None) => return Err(OAuthError::new(OAuthErrorCode::InvalidClient, "Assertion ohne sub")),
    };
    Ok(ClientCredentials { client_id, secret: assertion.to_owned(), method: AuthMethod::PrivateKeyJwt })
}

/// Reads a form body of at most 64 KiB, each parameter at most once.
pub(crate) async fn form(req: &Request, body: poem::Body) -> Result<Vec<(String, String)>, OAuthError> {
    let is_form = req.content_type().is_some_and(|ct| {
        ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !is_form {
        return Err(invalid_request("Content-Type muss application/x-www-form-urlencoded sein"));
    }
    let body = body.into_bytes_limit(64 * 1024).await.map_err(|_| invalid_request("Anfrage zu groß oder unlesbar"))?;
    parameters(&body)
}

/// `POST {issuer}/token`
#[handler]
pub(crate) async fn token(req: &Request, body: poem::Body, state: Data<&AppState>, site: Data<&Site>) -> Response {
    match exchange(req, body, &state, &site).await {
        Ok(response) => Json(response)
            .with_header(header::CACHE_CONTROL, "no-store")
            .with_header(header::PRAGMA, "no-cache")
            .into_response(),
        Err(error) => {
            let basic = req.header(header::AUTHORIZATION).is_some();
            OAuthResponse { error, basic_auth_used: basic }.into_response()
        }
    }
}

async fn exchange(req: &Request, body: poem::Body, state: &AppState, site: &Site) -> Result<TokenResponse, OAuthError> {
    let params = form(req, body).await?;
    let param = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());

    let credentials = credentials(req, &params)?;
    match param("grant_type") {
        Some("client_credentials") => client_credentials(state, site.environment, credentials, param("scope")).await,
        Some("authorization_code") => {
            let code = param("code").ok_or_else(|| invalid_request("code fehlt"))?;
            let (client, _) = authenticate(state, site.environment, &credentials).await?;
            if !client.settings.grant_types.contains(&GrantType::AuthorizationCode) {
                return Err(OAuthError::new(
                    OAuthErrorCode::UnauthorizedClient,
                    "authorization_code ist nicht freigegeben",
                ));
            }
            let tokens = redeem(
                state,
                site.environment,
                &site.issuer,
                &client,
                code,
                param("redirect_uri"),
                param("code_verifier"),
            )
            .await?;
            tracing::debug!(client = %client.client_id, "authorization code redeemed");
            Ok(tokens)
        }
        Some("refresh_token") => {
            let presented = param("refresh_token").ok_or_else(|| invalid_request("refresh_token fehlt"))?;
            let (client, tenant) = authenticate(state, site.environment, &credentials).await?;
            let tokens = refresh(state, site.environment, &client, &tenant, presented).await?;
            tracing::debug!(client = %client.client_id, "refresh token renewed");
            Ok(tokens)
        }
        Some(other) => Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            format!("grant_type {other:?} wird nicht unterstützt"),
        )),
        None => Err(invalid_request("grant_type fehlt")),
    }
}

#[cfg(test)]
mod untrusted_input {
    use base64::{Engine, engine::general_purpose::STANDARD};
    use proptest::prelude::*;

    use super::{basic_credentials, parameters};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Form bodies of the token, PAR, introspection and revocation endpoints: any bytes give
        /// parameters or `invalid_request`, never a panic; a parameter given twice is refused.
        #[test]
        fn form_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(pairs) = parameters(&body) {
                let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
                let all = names.len();
                names.sort_unstable();
                names.dedup();
                prop_assert_eq!(names.len(), all, "no parameter twice");
            }
        }

        /// `Authorization: Basic …` of any content is credentials or `invalid_client`; what a
        /// client encodes by RFC 6749 §2.3.1 comes back as it was.
        #[test]
        fn basic_credentials_never_panic_and_round_trip(header in ".{0,200}", id in ".{0,40}", secret in ".{0,60}") {
            let _ = basic_credentials(&header);
            let _ = basic_credentials(&format!("Basic {header}"));
            let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
            let value = format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(&id), encode(&secret))));
            let decoded = basic_credentials(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(decoded, (id, secret));
        }
    }
}
