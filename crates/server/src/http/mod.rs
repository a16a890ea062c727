//! Thin HTTP handlers: extract, call one service, map to a response.

pub(crate) mod authorize;
pub(crate) mod discovery;
pub(crate) mod introspection;
pub(crate) mod logout;
pub(crate) mod ops;
pub(crate) mod par;
pub(crate) mod registration;
pub(crate) mod saml;
pub(crate) mod token;
pub(crate) mod userinfo;
