//! (in progress)
pub mod card;
pub mod crypto;
pub mod cvc;
pub mod sm;
pub mod tlv;
