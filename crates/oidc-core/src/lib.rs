//! Protocol vocabulary of servicekonto, shared by every other crate of ours.
//!
//! Owns: the shared ids ([`Environment`], [`TenantId`], [`ClientId`], [`AccountId`]), trust levels
//! ([`TrustLevel`]), time ([`Clock`]), signing keys and their rotation ([`KeyService`] over the
//! [`SigningKeyStore`] port), the wire types JWK/JWKS and discovery metadata, and the
//! [`EphemeralStore`] port through which all short-lived state (codes, sessions, rate limits) goes.
//!
//! Modules: `authorize` (the rules of an authorization request's parameters), `ids`, `trust`, `claims` (scope and claim vocabulary), `clock`, `dependency` (which outside system failed), `ephemeral`, `error` (OAuth errors), `keys`
//! (algorithms, key material, key-encryption, store port, rotation service), `tokens` (opaque
//! access tokens), `discovery`, `pkce` (S256), `subject` (pairwise `sub`), `id_token` (claims, `at_hash`), `opaque` (random tokens, their stored digest),
//! `refresh` (the refresh-token port).
//!
//! Invariants:
//! - No I/O: ports are traits, implemented in `storage`; time and randomness come from outside
//!   (a [`Clock`], the OS RNG behind `rand`).
//! - Private key material leaves this crate only sealed under the key-encryption key.

pub mod authorize;
mod claims;
mod claims_request;
mod client_assertion;
mod clock;
mod dependency;
mod discovery;
mod ephemeral;
mod error;
mod id_token;
mod ids;
mod keys;
mod opaque;
mod pkce;
mod refresh;
mod subject;
mod tokens;
mod trust;

pub use claims::{ClaimName, KNOWN_CLAIMS, KNOWN_SCOPES, Scope, claims_of_scope};
pub use claims_request::{ClaimsRequest, IndividualClaim};
pub use client_assertion::{
    AssertionError, CLIENT_ASSERTION_ALGORITHMS, ClientJwks, JWT_BEARER_ASSERTION, MAX_ASSERTION_LIFETIME_SECONDS,
    MAX_REQUEST_OBJECT_LIFETIME_SECONDS, VerifiedAssertion, assertion_subject, verify_client_assertion,
    verify_request_object,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use dependency::{Dependency, DependencyError, dependency_failure};
pub use discovery::ProviderMetadata;
pub use ephemeral::{EphemeralError, EphemeralStore};
pub use error::{OAuthError, OAuthErrorCode};
pub use id_token::{IdTokenClaims, at_hash, verify_id_token_hint};
pub use ids::{AccountId, ClientId, Environment, ParseEnvironmentError, TenantId};
pub use keys::{
    Jwk, JwkSet, KeyEncryptionKey, KeyError, KeyInfo, KeyPolicy, KeyRing, KeyService, KeyStatus, KeyStoreError,
    PublishedJwks, SigningAlgorithm, SigningKey, SigningKeyStore, StoredSigningKey,
};
pub use opaque::{constant_time_eq, entity_tag, random_token, token_digest};
pub use pkce::{is_well_formed as is_well_formed_pkce, verify_s256};
pub use refresh::{
    RefreshRecord, RefreshStoreError, RefreshTokenStore, Rotation, RotationRequest, new_refresh_token,
    refresh_token_key,
};
pub use subject::pairwise_subject;
pub use tokens::{
    AccessGrant, AccessTokenError, AccessTokens, CitizenGrant, FamilyTag, TenantTag, jwt_access_token_claims,
};
pub use trust::{ParseTrustLevelError, TrustLevel};
