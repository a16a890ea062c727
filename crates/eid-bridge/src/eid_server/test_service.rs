//! The built-in test eID service: stands in for AusweisApp2, the card and the eID-Server on test
//! systems, so registration and login with eID can be tried and tested without a card. Its
//! results are test identities, never real ones; the server refuses it in production.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{EidPersonalData, EidServer, EidServerError, EidServerSession, MINOR_CANCELLED, Place, UseIdRequest};

/// A person the test service can "read from a card".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestIdentity {
    /// The card's pseudonym, hex; stable per identity so a second login finds the account.
    pub restricted_id: String,
    /// Vornamen.
    pub given_names: String,
    /// Familienname.
    pub family_names: String,
    /// Geburtsname.
    #[serde(default)]
    pub birth_name: Option<String>,
    /// `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Geburtsort.
    #[serde(default)]
    pub place_of_birth: Option<String>,
    /// Straße and Hausnummer as on the card.
    pub street: String,
    /// Postleitzahl.
    pub zip_code: String,
    /// Wohnort.
    pub city: String,
    /// Staatsangehörigkeit as on the card (`D`).
    #[serde(default = "german")]
    pub nationality: String,
    /// Dokumentenart.
    #[serde(default = "id_card")]
    pub document_type: String,
}

fn german() -> String {
    "D".into()
}

fn id_card() -> String {
    "ID".into()
}

impl TestIdentity {
    /// The data printed on the public specimen of the German ID card ("Erika Mustermann").
    pub fn specimen() -> Self {
        Self {
            restricted_id: "3f5c2a6e9d0b47c1a8e2f4d6b8c0e1f3a5c7e9f1b3d5a7c9e1f3b5d7a9c1e3f5".into(),
            given_names: "ERIKA".into(),
            family_names: "MUSTERMANN".into(),
            birth_name: Some("GABLER".into()),
            date_of_birth: "1964-08-12".into(),
            place_of_birth: Some("BERLIN".into()),
            street: "HEIDESTRASSE 17".into(),
            zip_code: "51147".into(),
            city: "KÖLN".into(),
            nationality: german(),
            document_type: id_card(),
        }
    }

    fn personal_data(&self) -> EidPersonalData {
        EidPersonalData {
            restricted_id: self.restricted_id.clone(),
            given_names: Some(self.given_names.clone()),
            family_names: Some(self.family_names.clone()),
            birth_name: self.birth_name.clone(),
            date_of_birth: Some(self.date_of_birth.clone()),
            place_of_birth: self.place_of_birth.clone().map(|p| Place { freetext: Some(p), ..Place::default() }),
            place_of_residence: Some(Place {
                street: Some(self.street.clone()),
                city: Some(self.city.clone()),
                zip_code: Some(self.zip_code.clone()),
                country: Some("D".into()),
                freetext: None,
            }),
            nationality: Some(self.nationality.clone()),
            document_type: Some(self.document_type.clone()),
            issuing_state: Some("D".into()),
        }
    }
}

/// How the simulated authentication ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestOutcome {
    /// The citizen chose identity number `n` and entered the PIN.
    Identity(usize),
    /// The citizen cancelled.
    Cancelled,
}

struct Pending {
    started: Instant,
    outcome: Option<TestOutcome>,
}

/// The test eID service. Sessions live in this process only: a test system runs it on one node.
pub struct TestEidService {
    identities: Vec<TestIdentity>,
    address: String,
    lifetime: Duration,
    sessions: Mutex<HashMap<String, Pending>>,
}

impl TestEidService {
    /// A service offering `identities`; `address` is what the TC token names as eID-Server
    /// (there is none behind it: AusweisApp2 stops there with a connection error).
    pub fn new(identities: Vec<TestIdentity>, address: impl Into<String>, lifetime: Duration) -> Self {
        Self { identities, address: address.into(), lifetime, sessions: Mutex::new(HashMap::new()) }
    }

    /// The identities to choose from.
    pub fn identities(&self) -> &[TestIdentity] {
        &self.identities
    }

    /// Whether `session_id` is a live session waiting for its outcome.
    pub fn is_pending(&self, session_id: &str) -> bool {
        let mut sessions = self.lock();
        self.expire(&mut sessions);
        sessions.get(session_id).is_some_and(|p| p.outcome.is_none())
    }

    /// Ends the simulated card authentication of `session_id`. False when the session is
    /// unknown, expired or already ended, or the identity does not exist.
    pub fn complete(&self, session_id: &str, outcome: TestOutcome) -> bool {
        if let TestOutcome::Identity(n) = outcome
            && n >= self.identities.len()
        {
            return false;
        }
        let mut sessions = self.lock();
        self.expire(&mut sessions);
        match sessions.get_mut(session_id) {
            Some(pending) if pending.outcome.is_none() => {
                pending.outcome = Some(outcome);
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        // A poisoned lock only means another request panicked mid-insert; the map is still valid.
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn expire(&self, sessions: &mut HashMap<String, Pending>) {
        sessions.retain(|_, p| p.started.elapsed() < self.lifetime);
    }
}

#[async_trait]
impl EidServer for TestEidService {
    fn is_test_service(&self) -> bool {
        true
    }

    async fn use_id(&self, _request: &UseIdRequest) -> Result<EidServerSession, EidServerError> {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let session_id = hex(&bytes);
        rand::thread_rng().fill_bytes(&mut bytes);
        let psk = super::Psk { id: session_id.clone(), key: hex(&bytes) };
        let mut sessions = self.lock();
        self.expire(&mut sessions);
        sessions.insert(session_id.clone(), Pending { started: Instant::now(), outcome: None });
        Ok(EidServerSession { session_id, server_address: self.address.clone(), psk: Some(psk) })
    }

    async fn get_result(&self, session_id: &str) -> Result<EidPersonalData, EidServerError> {
        let pending = {
            let mut sessions = self.lock();
            self.expire(&mut sessions);
            match sessions.get(session_id) {
                Some(p) if p.outcome.is_some() => sessions.remove(session_id),
                _ => None,
            }
        };
        match pending.and_then(|p| p.outcome) {
            Some(TestOutcome::Identity(n)) => {
                self.identities.get(n).map(TestIdentity::personal_data).ok_or(EidServerError::NoResult)
            }
            Some(TestOutcome::Cancelled) => {
                Err(EidServerError::Failed { minor: MINOR_CANCELLED.into(), message: None })
            }
            None => Err(EidServerError::NoResult),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(lifetime: Duration) -> TestEidService {
        TestEidService::new(vec![TestIdentity::specimen()], "https://127.0.0.1:1/eid-test", lifetime)
    }

    fn request() -> UseIdRequest {
        UseIdRequest { required: vec![super::super::Attribute::RestrictedId], allowed: vec![], transaction_info: None }
    }

    #[tokio::test]
    async fn a_completed_session_gives_its_identity_once() {
        let service = service(Duration::from_secs(60));
        let session = service.use_id(&request()).await.unwrap();
        assert_eq!(session.session_id.len(), 64);
        assert!(matches!(service.get_result(&session.session_id).await, Err(EidServerError::NoResult)), "not yet");
        assert!(service.complete(&session.session_id, TestOutcome::Identity(0)));
        assert!(!service.complete(&session.session_id, TestOutcome::Cancelled), "ends once");
        let data = service.get_result(&session.session_id).await.unwrap();
        assert_eq!(data.family_names.as_deref(), Some("MUSTERMANN"));
        assert_eq!(data.restricted_id, TestIdentity::specimen().restricted_id);
        assert!(matches!(service.get_result(&session.session_id).await, Err(EidServerError::NoResult)), "once");
    }

    #[tokio::test]
    async fn cancelled_unknown_and_expired_sessions_give_errors() {
        let service = service(Duration::from_secs(60));
        let session = service.use_id(&request()).await.unwrap();
        assert!(!service.complete(&session.session_id, TestOutcome::Identity(7)), "no such identity");
        assert!(service.complete(&session.session_id, TestOutcome::Cancelled));
        assert!(matches!(service.get_result(&session.session_id).await, Err(EidServerError::Failed { .. })));
        assert!(!service.complete("unknown", TestOutcome::Identity(0)));
        let short = self::service(Duration::ZERO);
        let session = short.use_id(&request()).await.unwrap();
        assert!(!short.is_pending(&session.session_id));
        assert!(!short.complete(&session.session_id, TestOutcome::Identity(0)), "expired");
    }
}
