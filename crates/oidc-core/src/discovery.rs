use serde::Serialize;

/// OpenID Connect Discovery 1.0 §3 provider metadata: the wire form of
/// `/.well-known/openid-configuration`.
///
/// Lists only what this provider implements; optional fields are left out while empty.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderMetadata {
    /// Exactly the configured issuer URL (Discovery §4.3: must match the `iss` of tokens).
    pub issuer: String,
    /// Required by Discovery §3 for every OpenID provider.
    pub authorization_endpoint: String,
    /// Where clients get tokens.
    pub token_endpoint: String,
    /// RFC 7591 dynamic client registration (needs an initial access token).
    pub registration_endpoint: String,
    /// Where the public signing keys are.
    pub jwks_uri: String,
    /// `code` only: the authorization code flow.
    pub response_types_supported: Vec<String>,
    /// `pairwise`: subjects are unlinkable across authorities.
    pub subject_types_supported: Vec<String>,
    /// Signing algorithms of ID tokens, the default (RS256) first.
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Grants the token endpoint accepts.
    pub grant_types_supported: Vec<String>,
    /// How clients authenticate at the token endpoint.
    pub token_endpoint_auth_methods_supported: Vec<String>,
}

impl ProviderMetadata {
    /// Metadata for `issuer` with the endpoint paths of this provider.
    ///
    /// `issuer` must not end with a slash; endpoint URLs are formed by appending paths.
    pub fn new(issuer: &str, id_token_algorithms: Vec<String>) -> Self {
        Self {
            issuer: issuer.to_owned(),
            authorization_endpoint: format!("{issuer}/authorize"),
            token_endpoint: format!("{issuer}/token"),
            registration_endpoint: format!("{issuer}/register"),
            jwks_uri: format!("{issuer}/jwks"),
            response_types_supported: vec!["code".to_owned()],
            subject_types_supported: vec!["pairwise".to_owned()],
            id_token_signing_alg_values_supported: id_token_algorithms,
            grant_types_supported: vec!["client_credentials".to_owned()],
            token_endpoint_auth_methods_supported: vec![
                "client_secret_basic".to_owned(),
                "client_secret_post".to_owned(),
            ],
        }
    }
}
