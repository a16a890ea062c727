//! The AusweisApp2 SDK WebSocket protocol (typed messages, workflow state machine, client) and
//! the eID-Server port. Knows no OIDC.
//!
//! Not built yet: it arrives with the eID issue. The crate exists so the workspace layering
//! (this crate depends on nothing of ours) is checked from the start.
