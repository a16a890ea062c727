//! Citizen accounts: registration, activation, credentials, profile and prefill claims, consent,
//! deletion and export; owns its ports (account store, mailer).
//!
//! Not built yet: it arrives with the citizen-accounts issue. The crate exists so the workspace
//! layering (this crate depends on `oidc-core` only) is checked from the start.
