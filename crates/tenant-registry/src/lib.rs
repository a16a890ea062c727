//! Tenants (the authorities) with their test and production environments, their clients, and
//! the redirect and grant rules that govern them; owns its store ports.
//!
//! Not built yet: it arrives with the tenant-registry issue. The crate exists so the workspace
//! layering (this crate depends on `oidc-core` only) is checked from the start.
