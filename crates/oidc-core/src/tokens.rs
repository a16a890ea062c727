//! Access tokens: opaque (256 random bits) by default, or RFC 9068 JWTs for clients whose
//! resource server verifies them itself. Either way the grant is kept in the ephemeral store
//! under a hash of the token for exactly the token's lifetime, so userinfo, introspection and
//! revocation are one store call each; a dump of the store holds no usable token.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{AccountId, ClientId, Environment, EphemeralError, EphemeralStore, TenantId, random_token, token_digest};

/// What an access token stands for.
///
/// No field is skipped when `None`: the stored encoding has no field names, so every field is
/// always written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGrant {
    /// The environment whose issuer issued it.
    pub environment: Environment,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// That client's tenant.
    pub tenant_id: TenantId,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// The citizen it speaks for, with the claims they consented to release; `None` for
    /// `client_credentials`.
    #[serde(default)]
    pub citizen: Option<CitizenGrant>,
    /// The refresh-token family it was issued with (code and refresh grants): revoking the
    /// family revokes it too.
    #[serde(default)]
    pub family: Option<String>,
}

/// The citizen side of an access token from the code flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitizenGrant {
    /// The account.
    pub account_id: AccountId,
    /// The pairwise `sub` the client knows the citizen by.
    pub sub: String,
    /// Claims the citizen consented to release to this client.
    pub claims: Vec<String>,
    /// The authority and service, as the citizen's transfer log names them.
    #[serde(default)]
    pub recipient: String,
    /// The consent the release rests on (for the transfer log).
    #[serde(default)]
    pub consent_ref: String,
    /// The client asked for `verified_claims`.
    #[serde(default)]
    pub verified_claims: bool,
    /// A one-time identification with the ID card has no account to read claims from: the
    /// released claims' values travel with the grant instead (and vanish with it).
    #[serde(default, with = "values_as_text_when_binary")]
    pub values: Option<serde_json::Map<String, serde_json::Value>>,
    /// The organisation the citizen acts for (scope `organization`), by its id; `None` when
    /// acting for themselves.
    #[serde(default)]
    pub organisation: Option<String>,
}

/// Issues and resolves opaque access tokens.
#[derive(Clone)]
pub struct AccessTokens {
    store: Arc<dyn EphemeralStore>,
}

fn store_key(token: &str) -> String {
    format!("at:{}", token_digest(token))
}

fn family_key(family: &str) -> String {
    format!("atf-revoked:{}", token_digest(family))
}

/// What can go wrong with access tokens.
#[derive(Debug, thiserror::Error)]
pub enum AccessTokenError {
    /// The ephemeral store failed. (Not transparent: the `EphemeralError` itself stays in the
    /// chain of sources, where the server recognises an outage.)
    #[error("access-token store: {0}")]
    Store(#[from] EphemeralError),
    /// A stored grant could not be read or written.
    #[error("access-token grant encoding: {0}")]
    Encoding(String),
}

/// The first byte of a grant in the compact encoding. The earlier encodings, JSON (which begins
/// with `{`) and version 1 (without `CitizenGrant::organisation`), are still read.
const COMPACT_V2: u8 = 2;
const COMPACT_V1: u8 = 1;

/// A grant as version 1 laid it out: the citizen without `organisation`. Read only while
/// nodes of the release before organisations may still have written grants (one access-token
/// lifetime after the upgrade); delete with the next release.
#[derive(Deserialize)]
struct AccessGrantV1 {
    environment: Environment,
    client_id: ClientId,
    tenant_id: TenantId,
    scopes: Vec<String>,
    issued_at: i64,
    expires_at: i64,
    citizen: Option<CitizenGrantV1>,
    family: Option<String>,
}

#[derive(Deserialize)]
struct CitizenGrantV1 {
    account_id: AccountId,
    sub: String,
    claims: Vec<String>,
    recipient: String,
    consent_ref: String,
    verified_claims: bool,
    #[serde(with = "values_as_text_when_binary")]
    values: Option<serde_json::Map<String, serde_json::Value>>,
}

impl From<AccessGrantV1> for AccessGrant {
    fn from(v1: AccessGrantV1) -> Self {
        AccessGrant {
            environment: v1.environment,
            client_id: v1.client_id,
            tenant_id: v1.tenant_id,
            scopes: v1.scopes,
            issued_at: v1.issued_at,
            expires_at: v1.expires_at,
            citizen: v1.citizen.map(|c| CitizenGrant {
                account_id: c.account_id,
                sub: c.sub,
                claims: c.claims,
                recipient: c.recipient,
                consent_ref: c.consent_ref,
                verified_claims: c.verified_claims,
                values: c.values,
                organisation: None,
            }),
            family: v1.family,
        }
    }
}

/// A grant as stored: one version byte and postcard (varints, UUIDs as 16 bytes, no field
/// names). A live token is held by the million in the embedded store and in Redis; JSON spent
/// about twice the bytes on the same grant.
fn encode(grant: &AccessGrant) -> Result<Vec<u8>, AccessTokenError> {
    postcard::to_extend(grant, vec![COMPACT_V2]).map_err(|e| AccessTokenError::Encoding(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<AccessGrant, AccessTokenError> {
    match bytes.split_first() {
        Some((&COMPACT_V2, rest)) => postcard::from_bytes(rest).map_err(|e| AccessTokenError::Encoding(e.to_string())),
        Some((&COMPACT_V1, rest)) => postcard::from_bytes::<AccessGrantV1>(rest)
            .map(AccessGrant::from)
            .map_err(|e| AccessTokenError::Encoding(e.to_string())),
        // Written by a release before the compact encoding (still live during an upgrade).
        Some((b'{', _)) => serde_json::from_slice(bytes).map_err(|e| AccessTokenError::Encoding(e.to_string())),
        _ => Err(AccessTokenError::Encoding("unknown grant encoding".to_owned())),
    }
}

/// `CitizenGrant::values` in JSON as the object it is; in a binary encoding (which cannot
/// describe arbitrary JSON values) as the object's JSON text.
mod values_as_text_when_binary {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::Error as _};

    type Values = Option<serde_json::Map<String, serde_json::Value>>;

    pub(super) fn serialize<S: Serializer>(values: &Values, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return values.serialize(serializer);
        }
        let text = values.as_ref().map(serde_json::to_string).transpose().map_err(S::Error::custom)?;
        text.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Values, D::Error> {
        if deserializer.is_human_readable() {
            return Values::deserialize(deserializer);
        }
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|text| serde_json::from_str(&text)).transpose().map_err(D::Error::custom)
    }
}

impl AccessTokens {
    /// Tokens kept in `store`.
    pub fn new(store: Arc<dyn EphemeralStore>) -> Self {
        Self { store }
    }

    /// A new token for `grant`, valid until `grant.expires_at` (`ttl` from now).
    pub async fn issue(&self, grant: &AccessGrant, ttl: Duration) -> Result<String, AccessTokenError> {
        let token = random_token();
        self.register(&token, grant, ttl).await?;
        Ok(token)
    }

    /// Keeps `grant` for a token made elsewhere (a JWT access token) for `ttl`.
    pub async fn register(&self, token: &str, grant: &AccessGrant, ttl: Duration) -> Result<(), AccessTokenError> {
        Ok(self.store.put(&store_key(token), &encode(grant)?, ttl).await?)
    }

    /// The grant of a live token; `None` for unknown, expired or revoked ones, and for tokens
    /// of a revoked refresh-token family.
    pub async fn find(&self, token: &str) -> Result<Option<AccessGrant>, AccessTokenError> {
        let Some(bytes) = self.store.get(&store_key(token)).await? else { return Ok(None) };
        let grant = decode(&bytes)?;
        if let Some(family) = &grant.family
            && self.store.get(&family_key(family)).await?.is_some()
        {
            return Ok(None);
        }
        Ok(Some(grant))
    }

    /// Ends every access token issued with the refresh-token `family` (a replay, a revocation);
    /// remembered for `ttl`, the longest such token's remaining life.
    pub async fn revoke_family(&self, family: &str, ttl: Duration) -> Result<(), AccessTokenError> {
        Ok(self.store.put(&family_key(family), b"1", ttl).await?)
    }

    /// Ends a token at once; `true` when it was live.
    pub async fn revoke(&self, token: &str) -> Result<bool, AccessTokenError> {
        Ok(self.store.delete(&store_key(token)).await?)
    }
}
/// The claims of an RFC 9068 JWT access token for `grant`, issued by `issuer` for the resource
/// server `audience`, with the unique `jti`. `sub` is the citizen's pairwise subject, or the
/// client's id for a `client_credentials` token (RFC 9068 §2.2).
pub fn jwt_access_token_claims(grant: &AccessGrant, issuer: &str, audience: &str, jti: &str) -> serde_json::Value {
    let sub = grant.citizen.as_ref().map_or_else(|| grant.client_id.to_string(), |citizen| citizen.sub.clone());
    serde_json::json!({
        "iss": issuer,
        "sub": sub,
        "aud": audience,
        "client_id": grant.client_id.as_str(),
        "iat": grant.issued_at,
        "exp": grant.expires_at,
        "jti": jti,
        "scope": grant.scopes.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(citizen: Option<CitizenGrant>) -> AccessGrant {
        AccessGrant {
            family: None,
            environment: Environment::Test,
            client_id: ClientId::parse("fachverfahren").unwrap(),
            tenant_id: TenantId::new_random(),
            scopes: vec!["openid".into(), "profile".into()],
            issued_at: 1_900_000_000,
            expires_at: 1_900_000_300,
            citizen,
        }
    }

    fn citizen(values: Option<serde_json::Map<String, serde_json::Value>>) -> CitizenGrant {
        CitizenGrant {
            account_id: AccountId::new_random(),
            sub: "pairwise-sub".into(),
            claims: vec!["given_name".into(), "address".into()],
            recipient: "Stadt Musterstadt – Wohngeld".into(),
            consent_ref: "consent:1".into(),
            verified_claims: true,
            values,
            organisation: Some("4f1c2c8e-6d0a-4d5e-9a57-3f0c1d2b7e11".into()),
        }
    }

    #[test]
    fn grants_are_stored_compact_and_read_back_whole() {
        let values = serde_json::json!({"given_name": "Erika", "address": {"locality": "Köln"}});
        let grants = [
            grant(None),
            AccessGrant { family: Some("family".into()), ..grant(Some(citizen(None))) },
            grant(Some(citizen(values.as_object().cloned()))),
        ];
        for original in grants {
            let bytes = encode(&original).unwrap();
            assert_eq!(bytes[0], COMPACT_V2);
            assert!(bytes.len() < serde_json::to_vec(&original).unwrap().len() * 2 / 3, "{} bytes", bytes.len());
            assert_eq!(decode(&bytes).unwrap(), original);
        }
    }

    #[test]
    fn a_grant_in_version_1_is_still_read() {
        #[derive(Serialize)]
        struct CitizenV1<'a> {
            account_id: AccountId,
            sub: &'a str,
            claims: Vec<&'a str>,
            recipient: &'a str,
            consent_ref: &'a str,
            verified_claims: bool,
            values: Option<String>,
        }
        let account = AccountId::new_random();
        let original = grant(None);
        let citizen = CitizenV1 {
            account_id: account,
            sub: "pairwise-sub",
            claims: vec!["given_name"],
            recipient: "Stadt",
            consent_ref: "consent:1",
            verified_claims: false,
            values: None,
        };
        let mut bytes = vec![COMPACT_V1];
        let fields = (
            &original.environment,
            &original.client_id,
            &original.tenant_id,
            &original.scopes,
            original.issued_at,
            original.expires_at,
            Some(citizen),
            Some("family"),
        );
        bytes = postcard::to_extend(&fields, bytes).unwrap();
        let read = decode(&bytes).unwrap();
        let citizen = read.citizen.expect("the citizen");
        assert_eq!((citizen.account_id, citizen.organisation), (account, None));
        assert_eq!(read.family.as_deref(), Some("family"));
    }

    #[test]
    fn a_grant_written_as_json_by_an_earlier_release_is_still_read() {
        // As the release before the compact encoding wrote it: no `values`, `family` or
        // `citizen` fields when they were empty.
        let tenant = TenantId::new_random();
        let json = format!(
            r#"{{"environment":"test","client_id":"fachverfahren","tenant_id":"{tenant}","scopes":["openid"],"issued_at":1900000000,"expires_at":1900000300}}"#
        );
        let read = decode(json.as_bytes()).unwrap();
        assert_eq!(read, AccessGrant { tenant_id: tenant, scopes: vec!["openid".into()], ..grant(None) });
        assert!(matches!(decode(b"\x07junk"), Err(AccessTokenError::Encoding(_))));
        assert!(matches!(decode(&[COMPACT_V2, 0xff]), Err(AccessTokenError::Encoding(_))));
        assert!(matches!(decode(b""), Err(AccessTokenError::Encoding(_))));
    }

    #[test]
    fn a_jwt_access_token_names_the_citizen_by_the_pairwise_sub_and_the_resource_server() {
        let citizen = CitizenGrant {
            account_id: AccountId::new_random(),
            sub: "pairwise-sub".into(),
            claims: vec!["given_name".into()],
            recipient: String::new(),
            consent_ref: String::new(),
            verified_claims: false,
            values: None,
            organisation: None,
        };
        let claims =
            jwt_access_token_claims(&grant(Some(citizen)), "https://konto.example/test", "https://api.example", "j1");
        assert_eq!(claims["sub"], "pairwise-sub", "never the account id");
        assert_eq!(claims["aud"], "https://api.example");
        assert_eq!(claims["client_id"], "fachverfahren");
        assert_eq!(claims["scope"], "openid profile");
        assert_eq!((claims["iat"].as_i64(), claims["exp"].as_i64()), (Some(1_900_000_000), Some(1_900_000_300)));
        assert!(claims.get("given_name").is_none(), "no personal claims in an access token");
        let machine = jwt_access_token_claims(&grant(None), "https://konto.example/test", "https://api.example", "j2");
        assert_eq!(machine["sub"], "fachverfahren", "client_credentials: the client itself (RFC 9068 §2.2)");
    }
}
