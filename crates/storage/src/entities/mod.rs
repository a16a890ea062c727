//! sea-orm models, one module per table. Private to this crate.

pub(crate) mod account;
pub(crate) mod account_deletion;
pub(crate) mod account_event;
pub(crate) mod audit_event;
pub(crate) mod client;
pub(crate) mod consent;
pub(crate) mod data_transfer;
pub(crate) mod mail_link;
pub(crate) mod mail_queue;
pub(crate) mod one_time_transfer;
pub(crate) mod organisation;
pub(crate) mod organisation_link;
pub(crate) mod organisation_member;
pub(crate) mod passkey;
pub(crate) mod refresh_token;
pub(crate) mod sealed_secret;
pub(crate) mod signing_key;
pub(crate) mod tenant;
