//! sea-orm models, one module per table. Private to this crate.

pub(crate) mod signing_key;
