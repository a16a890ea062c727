//! Flows that cross domains: the server orchestrates them, so the domain crates never call each
//! other.

pub(crate) mod authorize;
pub(crate) mod backchannel;
pub(crate) mod eid;
pub(crate) mod organisation;
pub(crate) mod registration;
pub(crate) mod release;
pub(crate) mod saml;
pub(crate) mod token;
