//! (in progress)
pub mod crypto;
pub mod tlv;
