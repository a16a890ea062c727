//! Access tokens: opaque (256 random bits) by default, or RFC 9068 JWTs for clients whose
//! resource server verifies them itself. Either way the grant is kept in the ephemeral store
//! under a hash of the token for exactly the token's lifetime, so userinfo, introspection and
//! revocation are one store call each; a dump of the store holds no usable token.
//!
//! A live token is held by the million (in the embedded store and in Redis), so the stored
//! grant holds only what cannot be derived: the citizen's pairwise `sub` and the recipient's
//! name follow from the account and the client's tenant, which every reader of a grant has.

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AccountId, ClientId, Environment, EphemeralError, EphemeralStore, TenantId, random_token, token_digest};

/// What an access token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    /// The environment whose issuer issued it.
    pub environment: Environment,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// That client's tenant.
    pub tenant: TenantTag,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// The citizen it speaks for, with the claims they consented to release; `None` for
    /// `client_credentials`.
    pub citizen: Option<CitizenGrant>,
    /// The refresh-token family it was issued with (code and refresh grants): revoking the
    /// family revokes it too.
    pub family: Option<FamilyTag>,
}

/// The citizen side of an access token from the code flow. Their pairwise `sub` and the
/// recipient's name are not kept: both follow from the account and the client's tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitizenGrant {
    /// The account (for a one-time identification, a random id that names nobody).
    pub account_id: AccountId,
    /// Claims the citizen consented to release to this client.
    pub claims: Vec<String>,
    /// The consent the release rests on (for the transfer log).
    #[serde(default)]
    pub consent_ref: String,
    /// The client asked for `verified_claims`.
    #[serde(default)]
    pub verified_claims: bool,
    /// A one-time identification with the ID card has no account to read claims from: the
    /// released claims' values travel with the grant instead (and vanish with it).
    #[serde(default)]
    pub values: Option<serde_json::Map<String, serde_json::Value>>,
    /// The organisation the citizen acts for (scope `organization`), by its id; `None` when
    /// acting for themselves.
    #[serde(default)]
    pub organisation: Option<String>,
}

/// Names a refresh-token family in an access grant: 128 bits of the family id's SHA-256, enough
/// to tell families apart and half the bytes of the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyTag([u8; 16]);

impl FamilyTag {
    /// The tag of the family `family_id`.
    pub fn of(family_id: &str) -> Self {
        let digest = Sha256::digest(family_id.as_bytes());
        let mut tag = [0; 16];
        tag.copy_from_slice(&digest[..16]);
        Self(tag)
    }
}

/// Names the issuing client's tenant in an access grant: 64 bits of the tenant id's SHA-256,
/// 8 bytes where the id took 17 (a `client_credentials` grant: 33 bytes instead of 42). A token is good
/// only while its client belongs to the tenant it names (a client id deleted and registered
/// again by another tenant within the token's life does not inherit its tokens); two tenants'
/// tags meet with a chance of 2⁻⁶⁴.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantTag([u8; 8]);

impl TenantTag {
    /// The tag of `tenant`.
    pub fn of(tenant: TenantId) -> Self {
        let digest = Sha256::digest(tenant.as_uuid().as_bytes());
        let mut tag = [0; 8];
        tag.copy_from_slice(&digest[..8]);
        Self(tag)
    }

    /// Whether this names `tenant`.
    pub fn names(self, tenant: TenantId) -> bool {
        self == Self::of(tenant)
    }
}

/// Issues and resolves opaque access tokens.
#[derive(Clone)]
pub struct AccessTokens {
    store: Arc<dyn EphemeralStore>,
}

/// 128 bits of SHA-256 name a token in the store: nobody can find a token for a given key, and
/// among a billion live tokens two keys meet with a chance of 10⁻²¹.
fn store_key(token: &str) -> String {
    format!("at:{}", URL_SAFE_NO_PAD.encode(&Sha256::digest(token.as_bytes())[..16]))
}

/// Where the release before this one kept a token (the whole digest). Read and deleted for one
/// access-token lifetime after the upgrade; delete with the next release.
fn legacy_store_key(token: &str) -> String {
    format!("at:{}", token_digest(token))
}

fn family_key(family: FamilyTag) -> String {
    format!("atf:{}", URL_SAFE_NO_PAD.encode(family.0))
}

/// Where the release before this one marked a revoked family; still written, so that its nodes
/// see revocations during a rolling upgrade. Delete with the next release.
fn legacy_family_key(family_id: &str) -> String {
    format!("atf-revoked:{}", token_digest(family_id))
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

/// The first byte of a stored grant. Version 3 (the tenant id in full) and version 2 (also
/// `sub`, the recipient and the whole family id), written by the releases before this one, are
/// still read; delete them with the next release.
const COMPACT_V4: u8 = 4;
const COMPACT_V3: u8 = 3;
const COMPACT_V2: u8 = 2;

/// A grant as stored: one version byte and postcard (varints, UUIDs as 16 bytes, no field
/// names), scopes and claims as a bitset over [`STORED_NAMES`], the lifetime instead of the
/// expiry, the consent reference in parts.
#[derive(Serialize, Deserialize)]
struct StoredGrant {
    environment: Environment,
    client_id: ClientId,
    tenant: TenantTag,
    scopes: Names,
    issued_at: i64,
    lifetime: u64,
    citizen: Option<StoredCitizen>,
    family: Option<FamilyTag>,
}

/// A grant as version 3 laid it out: the tenant id in full. Delete with the next release.
#[derive(Deserialize)]
struct StoredGrantV3 {
    environment: Environment,
    client_id: ClientId,
    tenant_id: TenantId,
    scopes: Names,
    issued_at: i64,
    lifetime: u64,
    citizen: Option<StoredCitizen>,
    family: Option<FamilyTag>,
}

impl From<StoredGrantV3> for StoredGrant {
    fn from(v3: StoredGrantV3) -> Self {
        Self {
            environment: v3.environment,
            client_id: v3.client_id,
            tenant: TenantTag::of(v3.tenant_id),
            scopes: v3.scopes,
            issued_at: v3.issued_at,
            lifetime: v3.lifetime,
            citizen: v3.citizen,
            family: v3.family,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredCitizen {
    account_id: AccountId,
    claims: Names,
    consent_ref: ConsentRef,
    verified_claims: bool,
    /// The values' JSON text: postcard cannot describe arbitrary JSON values.
    values: Option<String>,
    organisation: Option<String>,
}

/// Scope and claim names a grant can hold, by their bit. Append only: a grant written by one
/// release is read by the next (and by other nodes during an upgrade). Not built from
/// `KNOWN_SCOPES` and `KNOWN_CLAIMS`, which may be reordered; a test checks it holds them all.
const STORED_NAMES: [&str; 19] = [
    "openid",
    "profile",
    "email",
    "address",
    "phone",
    "offline_access",
    "organization",
    "admin",
    "tenant-admin",
    "name",
    "given_name",
    "family_name",
    "birth_family_name",
    "birthdate",
    "place_of_birth",
    "nationalities",
    "email_verified",
    "phone_number",
    "phone_number_verified",
];

/// A list of names: the known ones as bits, any other in full. Read back in the order of
/// [`STORED_NAMES`], then the others.
#[derive(Serialize, Deserialize)]
struct Names {
    known: u64,
    other: Vec<String>,
}

impl Names {
    fn of(names: &[String]) -> Self {
        let mut stored = Self { known: 0, other: Vec::new() };
        for name in names {
            match STORED_NAMES.iter().position(|known| known == name) {
                Some(bit) => stored.known |= 1 << bit,
                None => stored.other.push(name.clone()),
            }
        }
        stored
    }

    fn into_names(self) -> Vec<String> {
        let known = STORED_NAMES.iter().enumerate().filter(|(bit, _)| self.known & (1 << bit) != 0);
        known.map(|(_, name)| (*name).to_owned()).chain(self.other).collect()
    }
}

/// The server names a consent `consent:{unix seconds}:{text version}`; kept as its parts. Any
/// other reference (a one-time identification's) is kept as it is.
#[derive(Serialize, Deserialize)]
enum ConsentRef {
    Given { at: i64, version: String },
    Verbatim(String),
}

impl ConsentRef {
    fn of(reference: &str) -> Self {
        let parts = reference.strip_prefix("consent:").and_then(|rest| rest.split_once(':'));
        match parts.and_then(|(at, version)| Some((at.parse::<i64>().ok()?, version))) {
            // Only when writing the parts back gives the same text (no leading zeros, no `+`).
            Some((at, version)) if format!("consent:{at}:{version}") == reference => {
                Self::Given { at, version: version.to_owned() }
            }
            _ => Self::Verbatim(reference.to_owned()),
        }
    }

    fn into_text(self) -> String {
        match self {
            Self::Given { at, version } => format!("consent:{at}:{version}"),
            Self::Verbatim(text) => text,
        }
    }
}

fn encoding(error: impl std::fmt::Display) -> AccessTokenError {
    AccessTokenError::Encoding(error.to_string())
}

fn encode(grant: &AccessGrant) -> Result<Vec<u8>, AccessTokenError> {
    let citizen = match &grant.citizen {
        Some(citizen) => Some(StoredCitizen {
            account_id: citizen.account_id,
            claims: Names::of(&citizen.claims),
            consent_ref: ConsentRef::of(&citizen.consent_ref),
            verified_claims: citizen.verified_claims,
            values: citizen.values.as_ref().map(serde_json::to_string).transpose().map_err(encoding)?,
            organisation: citizen.organisation.clone(),
        }),
        None => None,
    };
    let stored = StoredGrant {
        environment: grant.environment,
        client_id: grant.client_id.clone(),
        tenant: grant.tenant,
        scopes: Names::of(&grant.scopes),
        issued_at: grant.issued_at,
        lifetime: u64::try_from(grant.expires_at.saturating_sub(grant.issued_at)).unwrap_or(0),
        citizen,
        family: grant.family,
    };
    postcard::to_extend(&stored, vec![COMPACT_V4]).map_err(encoding)
}

/// A one-time identification's values from the JSON text they are stored as.
fn values_from_text(
    text: Option<String>,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, AccessTokenError> {
    text.map(|text| serde_json::from_str(&text)).transpose().map_err(encoding)
}

/// A stored grant; with version 2 also the family id it named in full (see [`legacy_family_key`]).
fn decode(bytes: &[u8]) -> Result<(AccessGrant, Option<String>), AccessTokenError> {
    match bytes.split_first() {
        Some((&version @ (COMPACT_V4 | COMPACT_V3), rest)) => {
            let stored: StoredGrant = match version {
                COMPACT_V4 => postcard::from_bytes(rest).map_err(encoding)?,
                _ => postcard::from_bytes::<StoredGrantV3>(rest).map_err(encoding)?.into(),
            };
            let citizen = match stored.citizen {
                Some(citizen) => Some(CitizenGrant {
                    account_id: citizen.account_id,
                    claims: citizen.claims.into_names(),
                    consent_ref: citizen.consent_ref.into_text(),
                    verified_claims: citizen.verified_claims,
                    values: values_from_text(citizen.values)?,
                    organisation: citizen.organisation,
                }),
                None => None,
            };
            let grant = AccessGrant {
                environment: stored.environment,
                client_id: stored.client_id,
                tenant: stored.tenant,
                scopes: stored.scopes.into_names(),
                issued_at: stored.issued_at,
                expires_at: stored.issued_at.saturating_add(i64::try_from(stored.lifetime).unwrap_or(i64::MAX)),
                citizen,
                family: stored.family,
            };
            Ok((grant, None))
        }
        Some((&COMPACT_V2, rest)) => postcard::from_bytes::<AccessGrantV2>(rest).map_err(encoding)?.into_grant(),
        _ => Err(AccessTokenError::Encoding("unknown grant encoding".to_owned())),
    }
}

/// A grant as version 2 laid it out. Delete with the next release.
#[derive(Deserialize)]
struct AccessGrantV2 {
    environment: Environment,
    client_id: ClientId,
    tenant_id: TenantId,
    scopes: Vec<String>,
    issued_at: i64,
    expires_at: i64,
    citizen: Option<CitizenGrantV2>,
    family: Option<String>,
}

#[derive(Deserialize)]
#[allow(dead_code, reason = "sub and recipient are read past; they are derived now")]
struct CitizenGrantV2 {
    account_id: AccountId,
    sub: String,
    claims: Vec<String>,
    recipient: String,
    consent_ref: String,
    verified_claims: bool,
    values: Option<String>,
    organisation: Option<String>,
}

impl AccessGrantV2 {
    fn into_grant(self) -> Result<(AccessGrant, Option<String>), AccessTokenError> {
        let citizen = match self.citizen {
            Some(c) => Some(CitizenGrant {
                account_id: c.account_id,
                claims: c.claims,
                consent_ref: c.consent_ref,
                verified_claims: c.verified_claims,
                values: values_from_text(c.values)?,
                organisation: c.organisation,
            }),
            None => None,
        };
        let grant = AccessGrant {
            environment: self.environment,
            client_id: self.client_id,
            tenant: TenantTag::of(self.tenant_id),
            scopes: self.scopes,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            citizen,
            family: self.family.as_deref().map(FamilyTag::of),
        };
        Ok((grant, self.family))
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
        let bytes = match self.store.get(&store_key(token)).await? {
            Some(bytes) => bytes,
            None => match self.store.get(&legacy_store_key(token)).await? {
                Some(bytes) => bytes,
                None => return Ok(None),
            },
        };
        let (grant, legacy_family) = decode(&bytes)?;
        if let Some(family) = grant.family
            && self.store.get(&family_key(family)).await?.is_some()
        {
            return Ok(None);
        }
        if let Some(family_id) = legacy_family
            && self.store.get(&legacy_family_key(&family_id)).await?.is_some()
        {
            return Ok(None);
        }
        Ok(Some(grant))
    }

    /// Ends every access token issued with the refresh-token family `family_id` (a replay, a
    /// revocation); remembered for `ttl`, the longest such token's remaining life.
    pub async fn revoke_family(&self, family_id: &str, ttl: Duration) -> Result<(), AccessTokenError> {
        self.store.put(&family_key(FamilyTag::of(family_id)), b"1", ttl).await?;
        Ok(self.store.put(&legacy_family_key(family_id), b"1", ttl).await?)
    }

    /// Ends a token at once; `true` when it was live.
    pub async fn revoke(&self, token: &str) -> Result<bool, AccessTokenError> {
        let revoked = self.store.delete(&store_key(token)).await?;
        Ok(self.store.delete(&legacy_store_key(token)).await? || revoked)
    }
}

/// The claims of an RFC 9068 JWT access token for `grant`, issued by `issuer` for the resource
/// server `audience`, with the unique `jti`. `sub` is the citizen's pairwise subject, or the
/// client's id for a `client_credentials` token (RFC 9068 §2.2).
pub fn jwt_access_token_claims(
    grant: &AccessGrant,
    citizen_sub: Option<&str>,
    issuer: &str,
    audience: &str,
    jti: &str,
) -> serde_json::Value {
    let sub = citizen_sub.unwrap_or(grant.client_id.as_str());
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
    use std::{collections::HashMap, sync::Mutex};

    use async_trait::async_trait;

    use super::*;

    fn grant(citizen: Option<CitizenGrant>) -> AccessGrant {
        AccessGrant {
            family: None,
            environment: Environment::Test,
            client_id: ClientId::parse("fachverfahren").unwrap(),
            tenant: TenantTag::of(TenantId::new_random()),
            scopes: vec!["openid".into(), "profile".into()],
            issued_at: 1_900_000_000,
            expires_at: 1_900_000_300,
            citizen,
        }
    }

    fn citizen(values: Option<serde_json::Map<String, serde_json::Value>>) -> CitizenGrant {
        CitizenGrant {
            account_id: AccountId::new_random(),
            // In the vocabulary's order, which is how they are read back.
            claims: vec!["address".into(), "given_name".into()],
            consent_ref: "consent:1764000000:2026-11".into(),
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
            AccessGrant { family: Some(FamilyTag::of("family")), ..grant(Some(citizen(None))) },
            grant(Some(citizen(values.as_object().cloned()))),
            // Names outside the vocabulary and consent references of another shape.
            AccessGrant {
                scopes: vec!["openid".into(), "urn:example:scope".into()],
                citizen: Some(CitizenGrant {
                    claims: vec!["email".into(), "x-custom".into()],
                    consent_ref: "one-time-identification".into(),
                    ..citizen(None)
                }),
                ..grant(None)
            },
            grant(Some(CitizenGrant { consent_ref: "consent:0017:v".into(), ..citizen(None) })),
            grant(Some(CitizenGrant { consent_ref: "consent:-5:".into(), organisation: None, ..citizen(None) })),
        ];
        for original in grants {
            let bytes = encode(&original).unwrap();
            assert_eq!(bytes[0], COMPACT_V4);
            assert_eq!(decode(&bytes).unwrap(), (original, None));
        }
    }

    #[test]
    fn a_citizens_grant_takes_fewer_than_a_hundred_bytes() {
        // The code flow's grant as the memory bench issues it: with a family, five claims.
        let grant = AccessGrant {
            client_id: ClientId::parse("demo-client").unwrap(),
            scopes: ["openid", "profile", "email", "address"].map(str::to_owned).to_vec(),
            family: Some(FamilyTag::of(&random_token())),
            issued_at: 1_764_000_000,
            expires_at: 1_764_000_300,
            citizen: Some(CitizenGrant {
                claims: ["given_name", "family_name", "email", "email_verified", "address"].map(str::to_owned).to_vec(),
                organisation: None,
                verified_claims: false,
                ..citizen(None)
            }),
            ..grant(None)
        };
        let bytes = encode(&grant).unwrap();
        assert!(bytes.len() < 100, "{} bytes", bytes.len());
        assert!(store_key(&random_token()).len() <= 25);
    }

    #[test]
    fn a_services_grant_takes_fewer_than_forty_bytes() {
        // A `client_credentials` token's grant: with the memory store's key and expiry, an
        // entry in mimalloc's 56-byte class (it took 80 with the tenant id in full).
        let grant = AccessGrant {
            client_id: ClientId::parse("demo-client").unwrap(),
            scopes: Vec::new(),
            issued_at: 1_764_000_000,
            expires_at: 1_764_000_300,
            ..grant(None)
        };
        let bytes = encode(&grant).unwrap();
        assert!(bytes.len() < 40, "{} bytes", bytes.len());
    }

    #[test]
    fn every_known_scope_and_claim_is_stored_as_a_bit() {
        for name in crate::KNOWN_SCOPES.iter().chain(crate::KNOWN_CLAIMS) {
            assert!(STORED_NAMES.contains(name), "{name} would be stored in full");
        }
        let names: Vec<String> = STORED_NAMES.iter().map(|n| (*n).to_owned()).collect();
        assert_eq!(Names::of(&names).into_names(), names);
        assert!(Names::of(&names).other.is_empty());
    }

    /// Version 2 as the release before wrote it: `sub`, the recipient and the family in full.
    fn version_2(family: Option<&str>) -> (Vec<u8>, AccessGrant) {
        #[derive(Serialize)]
        struct CitizenV2<'a> {
            account_id: AccountId,
            sub: &'a str,
            claims: Vec<&'a str>,
            recipient: &'a str,
            consent_ref: &'a str,
            verified_claims: bool,
            values: Option<&'a str>,
            organisation: Option<&'a str>,
        }
        let account = AccountId::new_random();
        let tenant_id = TenantId::new_random();
        let original = AccessGrant { tenant: TenantTag::of(tenant_id), ..grant(None) };
        let citizen = CitizenV2 {
            account_id: account,
            sub: "pairwise-sub",
            claims: vec!["given_name"],
            recipient: "Stadt",
            consent_ref: "consent:1:v",
            verified_claims: false,
            values: Some(r#"{"given_name":"Erika"}"#),
            organisation: None,
        };
        let fields = (
            &original.environment,
            &original.client_id,
            &tenant_id,
            &original.scopes,
            original.issued_at,
            original.expires_at,
            Some(citizen),
            family,
        );
        let bytes = postcard::to_extend(&fields, vec![COMPACT_V2]).unwrap();
        let expected = AccessGrant {
            family: family.map(FamilyTag::of),
            citizen: Some(CitizenGrant {
                account_id: account,
                claims: vec!["given_name".into()],
                consent_ref: "consent:1:v".into(),
                verified_claims: false,
                values: serde_json::json!({"given_name": "Erika"}).as_object().cloned(),
                organisation: None,
            }),
            ..original
        };
        (bytes, expected)
    }

    #[test]
    fn a_grant_in_version_2_is_still_read_and_unknown_encodings_are_refused() {
        let (bytes, expected) = version_2(Some("family"));
        assert_eq!(decode(&bytes).unwrap(), (expected, Some("family".to_owned())));
        for junk in [&b"\x07junk"[..], &[COMPACT_V3, 0xff], &[COMPACT_V2, 0xff], b"", br#"{"environment":"test"}"#] {
            assert!(matches!(decode(junk), Err(AccessTokenError::Encoding(_))), "{junk:?}");
        }
    }

    #[test]
    fn a_grant_in_version_3_is_still_read_with_its_tenant() {
        let tenant_id = TenantId::new_random();
        let original = AccessGrant {
            tenant: TenantTag::of(tenant_id),
            family: Some(FamilyTag::of("family")),
            ..grant(Some(citizen(None)))
        };
        let mut bytes = encode(&original).unwrap();
        // Version 3 held the tenant id (its length, 16, and its bytes) where version 4 holds
        // the tag's 8 bytes.
        let tag_at = 1 + 1 + 1 + original.client_id.as_str().len();
        assert_eq!(&bytes[tag_at..tag_at + 8], &TenantTag::of(tenant_id).0);
        let v3_tenant = std::iter::once(16).chain(*tenant_id.as_uuid().as_bytes());
        bytes.splice(tag_at..tag_at + 8, v3_tenant);
        bytes[0] = COMPACT_V3;
        assert_eq!(decode(&bytes).unwrap(), (original, None));
        assert!(TenantTag::of(tenant_id).names(tenant_id));
        assert!(!TenantTag::of(tenant_id).names(TenantId::new_random()));
    }

    /// A store that keeps everything (lifetimes play no part here).
    #[derive(Default)]
    struct Kept(Mutex<HashMap<String, Vec<u8>>>);

    #[async_trait]
    impl EphemeralStore for Kept {
        async fn put(&self, key: &str, value: &[u8], _: Duration) -> Result<(), EphemeralError> {
            self.0.lock().unwrap().insert(key.to_owned(), value.to_vec());
            Ok(())
        }
        async fn put_if_absent(&self, key: &str, value: &[u8], _: Duration) -> Result<bool, EphemeralError> {
            let mut kept = self.0.lock().unwrap();
            let absent = !kept.contains_key(key);
            kept.entry(key.to_owned()).or_insert_with(|| value.to_vec());
            Ok(absent)
        }
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
            Ok(self.0.lock().unwrap().remove(key))
        }
        async fn delete(&self, key: &str) -> Result<bool, EphemeralError> {
            Ok(self.0.lock().unwrap().remove(key).is_some())
        }
        async fn increment(&self, _: &str, _: i64, _: Duration) -> Result<i64, EphemeralError> {
            unimplemented!("not used by access tokens")
        }
        async fn ping(&self) -> Result<(), EphemeralError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn tokens_end_with_their_family_and_on_revocation() {
        let tokens = AccessTokens::new(Arc::new(Kept::default()));
        let family = random_token();
        let in_family = AccessGrant { family: Some(FamilyTag::of(&family)), ..grant(Some(citizen(None))) };
        let first = tokens.issue(&in_family, Duration::from_secs(300)).await.unwrap();
        let alone = tokens.issue(&grant(None), Duration::from_secs(300)).await.unwrap();
        assert_eq!(tokens.find(&first).await.unwrap(), Some(in_family));
        tokens.revoke_family(&family, Duration::from_secs(300)).await.unwrap();
        assert_eq!(tokens.find(&first).await.unwrap(), None);
        assert!(tokens.find(&alone).await.unwrap().is_some(), "another family's token lives on");
        assert!(tokens.revoke(&alone).await.unwrap());
        assert_eq!(tokens.find(&alone).await.unwrap(), None);
        assert!(!tokens.revoke(&alone).await.unwrap());
    }

    #[tokio::test]
    async fn tokens_of_the_release_before_are_found_revoked_and_end_with_their_family() {
        let store = Arc::new(Kept::default());
        let tokens = AccessTokens::new(store.clone());
        // As the release before kept them: under the whole digest, version 2.
        let (bytes, expected) = version_2(Some("old-family"));
        let (token, other) = (random_token(), random_token());
        store.put(&legacy_store_key(&token), &bytes, Duration::from_secs(300)).await.unwrap();
        store.put(&legacy_store_key(&other), &bytes, Duration::from_secs(300)).await.unwrap();
        assert_eq!(tokens.find(&token).await.unwrap(), Some(expected));
        assert!(tokens.revoke(&token).await.unwrap());
        assert_eq!(tokens.find(&token).await.unwrap(), None);
        // A node of the release before revokes the family: only its own key is written.
        store.put(&legacy_family_key("old-family"), b"1", Duration::from_secs(300)).await.unwrap();
        assert_eq!(tokens.find(&other).await.unwrap(), None);
        // And it sees what this release revokes.
        tokens.revoke_family("new-family", Duration::from_secs(300)).await.unwrap();
        assert!(store.get(&legacy_family_key("new-family")).await.unwrap().is_some());
    }

    #[test]
    fn a_jwt_access_token_names_the_citizen_by_the_pairwise_sub_and_the_resource_server() {
        let citizen_grant = grant(Some(citizen(None)));
        let claims = jwt_access_token_claims(
            &citizen_grant,
            Some("pairwise-sub"),
            "https://konto.example/test",
            "https://api.example",
            "j1",
        );
        assert_eq!(claims["sub"], "pairwise-sub", "never the account id");
        assert_eq!(claims["aud"], "https://api.example");
        assert_eq!(claims["client_id"], "fachverfahren");
        assert_eq!(claims["scope"], "openid profile");
        assert_eq!((claims["iat"].as_i64(), claims["exp"].as_i64()), (Some(1_900_000_000), Some(1_900_000_300)));
        assert!(claims.get("given_name").is_none(), "no personal claims in an access token");
        let machine =
            jwt_access_token_claims(&grant(None), None, "https://konto.example/test", "https://api.example", "j2");
        assert_eq!(machine["sub"], "fachverfahren", "client_credentials: the client itself (RFC 9068 §2.2)");
    }
}
