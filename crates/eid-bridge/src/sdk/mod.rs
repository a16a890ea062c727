//! The AusweisApp2 SDK: JSON commands and messages over `ws://127.0.0.1:24727/eID-Kernel`.

pub mod client;
pub mod messages;
pub mod workflow;
