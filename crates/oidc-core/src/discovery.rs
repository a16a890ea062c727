use serde::Serialize;

use crate::TrustLevel;

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
    /// The claims of the citizen.
    pub userinfo_endpoint: String,
    /// RP-initiated logout.
    pub end_session_endpoint: String,
    /// RFC 7662.
    pub introspection_endpoint: String,
    /// RFC 7009.
    pub revocation_endpoint: String,
    /// `query` and `form_post`.
    pub response_modes_supported: Vec<String>,
    /// `S256` only.
    pub code_challenge_methods_supported: Vec<String>,
    /// Scopes clients may ask for.
    pub scopes_supported: Vec<String>,
    /// Claims the provider can release.
    pub claims_supported: Vec<String>,
    /// Trust levels, in our names and as eIDAS URIs.
    pub acr_values_supported: Vec<String>,
    /// RFC 9207: responses carry `iss`.
    pub authorization_response_iss_parameter_supported: bool,
    /// `claims` request parameter (OIDC Core §5.5).
    pub claims_parameter_supported: bool,
    /// Signed request objects (RFC 9101) by value, at the authorization and the PAR endpoint.
    pub request_parameter_supported: bool,
    /// `false`: request objects are never fetched from a client's URL; `request_uri` is only
    /// the reference our own PAR endpoint hands out.
    pub request_uri_parameter_supported: bool,
    /// Algorithms of request objects.
    pub request_object_signing_alg_values_supported: Vec<String>,
    /// RFC 9126.
    pub pushed_authorization_request_endpoint: String,
    /// Whether every client must use PAR (no: it is a per-client setting).
    pub require_pushed_authorization_requests: bool,
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
    /// Algorithms of `private_key_jwt` assertions.
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// OpenID Connect for Identity Assurance 1.0: claims read from the ID card.
    pub verified_claims_supported: bool,
    /// The trust framework of those claims.
    pub trust_frameworks_supported: Vec<String>,
    /// Claims that can be verified.
    pub claims_in_verified_claims_supported: Vec<String>,
    /// OpenID Connect Back-Channel Logout 1.0.
    pub backchannel_logout_supported: bool,
    /// Logout tokens carry `sid`.
    pub backchannel_logout_session_supported: bool,
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
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
            userinfo_endpoint: format!("{issuer}/userinfo"),
            end_session_endpoint: format!("{issuer}/logout"),
            introspection_endpoint: format!("{issuer}/introspect"),
            revocation_endpoint: format!("{issuer}/revoke"),
            response_modes_supported: vec!["query".to_owned(), "form_post".to_owned()],
            code_challenge_methods_supported: vec!["S256".to_owned()],
            scopes_supported: ["openid", "profile", "email", "address"].map(str::to_owned).to_vec(),
            claims_supported: [
                "sub",
                "name",
                "given_name",
                "family_name",
                "birth_family_name",
                "birthdate",
                "place_of_birth",
                "address",
                "email",
                "email_verified",
            ]
            .map(str::to_owned)
            .to_vec(),
            acr_values_supported: [TrustLevel::Normal, TrustLevel::Substantiell, TrustLevel::Hoch]
                .iter()
                .flat_map(|l| [l.as_str().to_owned(), l.eidas_uri().to_owned()])
                .collect(),
            authorization_response_iss_parameter_supported: true,
            claims_parameter_supported: true,
            request_parameter_supported: true,
            request_uri_parameter_supported: false,
            request_object_signing_alg_values_supported: owned(crate::CLIENT_ASSERTION_ALGORITHMS),
            pushed_authorization_request_endpoint: format!("{issuer}/par"),
            verified_claims_supported: true,
            trust_frameworks_supported: vec!["eidas".to_owned()],
            claims_in_verified_claims_supported: owned(&[
                "name",
                "given_name",
                "family_name",
                "birth_family_name",
                "birthdate",
                "place_of_birth",
                "address",
                "nationalities",
            ]),
            backchannel_logout_supported: true,
            backchannel_logout_session_supported: true,
            require_pushed_authorization_requests: false,
            response_types_supported: vec!["code".to_owned()],
            subject_types_supported: vec!["pairwise".to_owned()],
            id_token_signing_alg_values_supported: id_token_algorithms,
            grant_types_supported: vec![
                "authorization_code".to_owned(),
                "refresh_token".to_owned(),
                "client_credentials".to_owned(),
            ],
            token_endpoint_auth_methods_supported: vec![
                "client_secret_basic".to_owned(),
                "client_secret_post".to_owned(),
                "private_key_jwt".to_owned(),
                "none".to_owned(),
            ],
            token_endpoint_auth_signing_alg_values_supported: owned(crate::CLIENT_ASSERTION_ALGORITHMS),
        }
    }
}
