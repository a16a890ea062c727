//! The eID-Server port: start an eID session for a set of attributes (`useID`), then fetch what
//! the card released (`getResult`). Two adapters: [`Tr03130Client`] for real eID-Servers
//! (BSI TR-03130 eID-Interface over SOAP) and [`TestEidService`] for test systems.

mod test_service;
mod tr03130;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use test_service::{TestEidService, TestIdentity, TestOutcome};
pub use tr03130::{Tr03130Client, Tr03130Config};
#[cfg(feature = "fuzzing")]
pub(crate) use tr03130::{parse_get_result_response, parse_use_id_response};

/// The card attributes this service reads. `RestrictedId` is the card's pseudonym for our
/// sector: the same card always gives the same value, another provider gets another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Attribute {
    /// Vornamen.
    GivenNames,
    /// Familienname.
    FamilyNames,
    /// Geburtsname.
    BirthName,
    /// Geburtsdatum.
    DateOfBirth,
    /// Geburtsort.
    PlaceOfBirth,
    /// Anschrift.
    PlaceOfResidence,
    /// Staatsangehörigkeit.
    Nationality,
    /// Dokumentenart (ID, AS, …).
    DocumentType,
    /// Ausstellender Staat.
    IssuingState,
    /// Sperrmerkmal/Pseudonym for the sector.
    RestrictedId,
}

impl Attribute {
    /// The element name in TR-03130's `UseOperations`, in the schema's order.
    pub(crate) fn element(self) -> &'static str {
        match self {
            Attribute::DocumentType => "DocumentType",
            Attribute::IssuingState => "IssuingState",
            Attribute::GivenNames => "GivenNames",
            Attribute::FamilyNames => "FamilyNames",
            Attribute::DateOfBirth => "DateOfBirth",
            Attribute::PlaceOfBirth => "PlaceOfBirth",
            Attribute::Nationality => "Nationality",
            Attribute::BirthName => "BirthName",
            Attribute::PlaceOfResidence => "PlaceOfResidence",
            Attribute::RestrictedId => "RestrictedID",
        }
    }

    /// Every attribute, in TR-03130's `UseOperations` order.
    pub const ALL: [Attribute; 10] = [
        Attribute::DocumentType,
        Attribute::IssuingState,
        Attribute::GivenNames,
        Attribute::FamilyNames,
        Attribute::DateOfBirth,
        Attribute::PlaceOfBirth,
        Attribute::Nationality,
        Attribute::BirthName,
        Attribute::PlaceOfResidence,
        Attribute::RestrictedId,
    ];
}

/// What an eID session asks of the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseIdRequest {
    /// Read these or fail.
    pub required: Vec<Attribute>,
    /// Read these if the citizen allows; the rest is PROHIBITED.
    pub allowed: Vec<Attribute>,
    /// Shown by AusweisApp2 as the transaction's purpose.
    pub transaction_info: Option<String>,
}

/// The pre-shared key AusweisApp2 uses for its TLS channel to the eID-Server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Psk {
    /// PSK identity (usually the session id).
    pub id: String,
    /// The key, hex.
    pub key: String,
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Psk").field("id", &self.id).field("key", &"…").finish()
    }
}

/// An eID session on the eID-Server: what goes into the TC token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EidServerSession {
    /// The session id (`SessionIdentifier` in the TC token, `Session/ID` at `getResult`).
    pub session_id: String,
    /// Where AusweisApp2 connects (`ServerAddress`).
    pub server_address: String,
    /// The channel's PSK.
    pub psk: Option<Psk>,
}

/// A postal address as the card holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Place {
    /// Street and house number as one line (the card does not separate them).
    pub street: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Postal code.
    pub zip_code: Option<String>,
    /// Country, ISO 3166-1 alpha-1 letter(s) as on the card (`D`).
    pub country: Option<String>,
    /// A place given as free text (foreign places of birth).
    pub freetext: Option<String>,
}

/// What the card released.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EidPersonalData {
    /// The card's pseudonym for our sector, hex.
    pub restricted_id: String,
    /// Vornamen.
    pub given_names: Option<String>,
    /// Familienname.
    pub family_names: Option<String>,
    /// Geburtsname.
    pub birth_name: Option<String>,
    /// Geburtsdatum `YYYY-MM-DD`; a date with unknown day or month keeps zeros (`1964-08-00`).
    pub date_of_birth: Option<String>,
    /// Geburtsort.
    pub place_of_birth: Option<Place>,
    /// Anschrift.
    pub place_of_residence: Option<Place>,
    /// Staatsangehörigkeit, as on the card (`D`).
    pub nationality: Option<String>,
    /// Dokumentenart (`ID` Personalausweis, `AS`/`AF`… Aufenthaltstitel, `UB` eID-Karte).
    pub document_type: Option<String>,
    /// Ausstellender Staat.
    pub issuing_state: Option<String>,
}

/// What went wrong with the eID-Server.
#[derive(Debug, thiserror::Error)]
pub enum EidServerError {
    /// The eID-Server could not be reached or answered with an HTTP or SOAP fault.
    #[error("the eID-Server is unavailable: {0}")]
    Unavailable(String),
    /// The eID-Server's answer did not follow TR-03130.
    #[error("the eID-Server's answer was malformed: {0}")]
    Malformed(String),
    /// The session is unknown, expired, or its result was already fetched.
    #[error("no result for this eID session")]
    NoResult,
    /// The authentication did not succeed (cancelled, wrong PIN, card removed, …).
    #[error("the eID authentication failed: {minor}")]
    Failed {
        /// The TR-03112 result minor code.
        minor: String,
        /// The eID-Server's message, if any.
        message: Option<String>,
    },
}

/// An eID-Server.
#[async_trait]
pub trait EidServer: Send + Sync {
    /// Whether this is the built-in test service (never in production).
    fn is_test_service(&self) -> bool;
    /// Starts a session (`useIDRequest`).
    async fn use_id(&self, request: &UseIdRequest) -> Result<EidServerSession, EidServerError>;
    /// Fetches the session's result (`getResultRequest`); a session's result is fetched once.
    async fn get_result(&self, session_id: &str) -> Result<EidPersonalData, EidServerError>;
}

/// TR-03112 result minor code for a user cancellation.
pub const MINOR_CANCELLED: &str = "http://www.bsi.bund.de/ecard/api/1.1/resultminor/sal#cancellationByUser";
