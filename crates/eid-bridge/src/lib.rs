//! The German online ID function (eID) as this service uses it. Knows no OIDC and nothing else
//! of ours.
//!
//! - [`sdk`]: the AusweisApp2 SDK, API level 2: typed [`sdk::messages`], the
//!   [`sdk::workflow`] state machine (what may be sent when), and [`sdk::client::SdkClient`]
//!   over a WebSocket with timeouts, reconnect and a driver for a whole authentication.
//! - [`eid_server`]: the eID-Server port ([`EidServer`]: `useID`, `getResult`) with the
//!   TR-03130 SOAP adapter and the built-in test service.
//! - [`tc_token`]: the TC token AusweisApp2 fetches to start.
//!
//! Invariants: PINs, CANs and PUKs pass through [`sdk::messages::Secret`] and are never logged
//! or kept; a session's result is fetched once.

pub mod eid_server;
pub mod sdk;
pub mod tc_token;

pub use eid_server::{
    Attribute, EidPersonalData, EidServer, EidServerError, EidServerSession, Place, TestEidService, TestIdentity,
    TestOutcome, Tr03130Client, Tr03130Config, UseIdRequest,
};

/// Text for an XML element or attribute value (the TC token, the SOAP requests).
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The eID-Server answer parsers, public only for the fuzz targets (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a useID answer; any result but a panic is fine.
    pub fn use_id_response(xml: &str) -> bool {
        crate::eid_server::parse_use_id_response(xml).is_ok()
    }

    /// Parses a getResult answer; any result but a panic is fine.
    pub fn get_result_response(xml: &str) -> bool {
        crate::eid_server::parse_get_result_response(xml).is_ok()
    }
}
