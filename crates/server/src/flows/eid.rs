//! The eID flow across eid-bridge and the accounts: start an eID session on the environment's
//! eID-Server, hand AusweisApp2 its TC token, and at the refresh address turn the card's result
//! into a [`CardIdentity`] — once, and only for the browser that started it.

use std::{sync::Arc, time::Duration};

use account_service::{CardData, CardIdentity};
use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use eid_bridge::{
    Attribute, EidPersonalData, EidServer, EidServerError, EidServerSession, TestEidService, Tr03130Client,
    Tr03130Config, UseIdRequest,
};
use hmac::{Hmac, Mac};
use oidc_core::{AccountId, Environment, EphemeralStore, KeyEncryptionKey, random_token, token_digest};
use serde::{Deserialize, Serialize};

use crate::{
    config::{EidConfig, EidService},
    state::AppState,
};

/// An eID flow lives this long from the button to the refresh address: PIN entry included.
pub(crate) const FLOW_TTL: Duration = Duration::from_secs(10 * 60);

/// One environment's eID-Server, and the test service behind it when it is one.
pub(crate) struct EidEnvironment {
    pub(crate) server: Arc<dyn EidServer>,
    pub(crate) test_service: Option<Arc<TestEidService>>,
    /// Our own test eID-Server: testers need AusweisApp2's Simulator in developer mode.
    pub(crate) test_server: bool,
}

/// The eID side of both environments.
pub(crate) struct EidServices {
    production: Option<EidEnvironment>,
    test: Option<EidEnvironment>,
    /// Keys the card pseudonym's hash; from the KEK, so every node agrees.
    card_key: [u8; 32],
}

impl EidServices {
    /// Builds each environment's adapter from the config; starts the test eID-Server where
    /// one is configured.
    pub(crate) async fn build(
        config: &EidConfig,
        issuers: [&str; 2],
        kek: &KeyEncryptionKey,
        ephemeral: &Arc<dyn EphemeralStore>,
    ) -> anyhow::Result<Self> {
        let [production_server, test_server] = test_eid_servers(config, issuers, kek, ephemeral).await?;
        let one = |environment: Environment, issuer: &str| -> anyhow::Result<Option<EidEnvironment>> {
            let settings = config.of(environment);
            Ok(match settings.service {
                EidService::None => None,
                EidService::Test => {
                    // No eID-Server stands behind this address: real AusweisApp2 stops there.
                    let service = Arc::new(TestEidService::new(
                        settings.test_identities.clone(),
                        format!("{issuer}/eid/test-dienst/paos"),
                        FLOW_TTL,
                    ));
                    Some(EidEnvironment { server: service.clone(), test_service: Some(service), test_server: false })
                }
                EidService::Tr03130 => {
                    let read = |path: &std::path::Path| {
                        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
                    };
                    let client = Tr03130Client::new(&Tr03130Config {
                        url: settings.server_url.clone().unwrap_or_default(),
                        client_identity_pem: settings.client_identity_file.as_deref().map(read).transpose()?,
                        trust_anchors_pem: settings
                            .trust_anchor_files
                            .iter()
                            .map(|p| read(p))
                            .collect::<Result<_, _>>()?,
                        timeout: Duration::from_secs(10),
                    })
                    .with_context(|| format!("eid.{environment}"))?;
                    Some(EidEnvironment { server: Arc::new(client), test_service: None, test_server: false })
                }
                EidService::TestServer => {
                    let server = match environment {
                        Environment::Production => production_server.clone(),
                        Environment::Test => test_server.clone(),
                    };
                    server.map(|server| EidEnvironment { server, test_service: None, test_server: true })
                }
            })
        };
        Ok(Self {
            production: one(Environment::Production, issuers[0])?,
            test: one(Environment::Test, issuers[1])?,
            card_key: kek.derive("eid-card-pseudonym"),
        })
    }

    /// The environment's eID, if it has one.
    pub(crate) fn of(&self, environment: Environment) -> Option<&EidEnvironment> {
        match environment {
            Environment::Production => self.production.as_ref(),
            Environment::Test => self.test.as_ref(),
        }
    }

    /// The stored form of a card pseudonym: HMAC-SHA256 under a key of ours, so a database
    /// leak does not hand out the pseudonyms other providers could match.
    fn card_key(&self, environment: Environment, restricted_id: &str) -> String {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.card_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(environment.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(restricted_id.to_ascii_lowercase().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// Starts the test eID-Server of each environment configured for it (`service = "test_server"`).
#[cfg(feature = "test-eid-server")]
async fn test_eid_servers(
    config: &EidConfig,
    issuers: [&str; 2],
    kek: &KeyEncryptionKey,
    ephemeral: &Arc<dyn EphemeralStore>,
) -> anyhow::Result<[Option<Arc<dyn EidServer>>; 2]> {
    use eid_test_server::{TestEidServer, TestEidServerConfig};
    let mut started: [Option<Arc<dyn EidServer>>; 2] = [None, None];
    for (slot, environment) in Environment::ALL.into_iter().enumerate() {
        let settings = config.of(environment);
        if settings.service != EidService::TestServer {
            continue;
        }
        let issuer = issuers[slot];
        let origin = url::Url::parse(issuer)
            .map(|u| u.origin().ascii_serialization())
            .with_context(|| format!("the issuer {issuer}"))?;
        let server = TestEidServer::start(
            TestEidServerConfig {
                listen: settings.test_server_listen,
                public_address: settings.test_server_address.clone(),
                // The same on every node: any node takes any step of a session.
                secret: kek.derive(&format!("eid-test-server-{environment}")).to_vec(),
                subject_name: format!("Servicekonto ({environment})"),
                subject_url: origin,
                minimum_age: None,
                step_timeout: FLOW_TTL,
            },
            Arc::new(EphemeralSessions(ephemeral.clone())),
        )
        .await
        .with_context(|| format!("eid.{environment}.test_server_listen"))?;
        started[slot] = Some(Arc::new(server));
    }
    Ok(started)
}

/// A build without the test eID-Server: `config check` refuses `service = "test_server"`, so
/// nothing is started.
#[cfg(not(feature = "test-eid-server"))]
async fn test_eid_servers(
    _: &EidConfig,
    _: [&str; 2],
    _: &KeyEncryptionKey,
    _: &Arc<dyn EphemeralStore>,
) -> anyhow::Result<[Option<Arc<dyn EidServer>>; 2]> {
    Ok([None, None])
}

/// The test eID-Server's sessions in the shared ephemeral store, so that any node takes the
/// app's next step.
#[cfg(feature = "test-eid-server")]
struct EphemeralSessions(Arc<dyn EphemeralStore>);

#[cfg(feature = "test-eid-server")]
#[async_trait::async_trait]
impl eid_test_server::SessionStore for EphemeralSessions {
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), String> {
        self.0.put(key, &value, ttl).await.map_err(|e| e.to_string())
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.take(key).await.map_err(|e| e.to_string())
    }
}

/// Why the citizen uses the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Purpose {
    /// Log in to the account linked to the card.
    Login,
    /// Register with the card's data.
    Register,
    /// Link the card to the logged-in account ("Vertrauensniveau hochstufen").
    Upgrade,
    /// Identify once for an authority's request, without an account.
    Identify,
}

/// A started eID flow, in the ephemeral store under its reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EidFlow {
    pub(crate) purpose: Purpose,
    pub(crate) server_session: EidServerSession,
    /// The digest of the browser's eID cookie: the refresh address works only there.
    browser: String,
    /// Where to go afterwards (a path of this environment).
    pub(crate) return_to: String,
    /// For an upgrade: the account to link the card to.
    pub(crate) account: Option<AccountId>,
}

/// What can go wrong in an eID flow.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EidFlowError {
    /// The environment has no eID.
    #[error("no eID in this environment")]
    NotOffered,
    /// Unknown, expired or already finished.
    #[error("unknown eID flow")]
    Unknown,
    /// The refresh address was opened in another browser than the one that started.
    #[error("eID flow of another browser")]
    OtherBrowser,
    /// The citizen cancelled or the card authentication failed.
    #[error("eID authentication failed: {0}")]
    Failed(String),
    /// The card lacks data the service needs (e.g. an incomplete date of birth).
    #[error("the card lacks {0}")]
    Incomplete(&'static str),
    /// The eID-Server or the ephemeral store did not answer (the source says which).
    #[error("eID unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The eID-Server failed: an outage of that dependency, named as such in logs and metrics.
fn eid_server_failed(error: EidServerError) -> EidFlowError {
    EidFlowError::Unavailable(Box::new(oidc_core::DependencyError::new(oidc_core::Dependency::EidServer, error)))
}

fn key(environment: Environment, reference: &str) -> String {
    format!("eid:{}:{}", environment.as_str(), token_digest(reference))
}

/// The attributes every flow reads: the identity is required, the rest the citizen may leave out.
fn use_id_request() -> UseIdRequest {
    UseIdRequest {
        required: vec![Attribute::RestrictedId, Attribute::GivenNames, Attribute::FamilyNames, Attribute::DateOfBirth],
        allowed: vec![
            Attribute::BirthName,
            Attribute::PlaceOfBirth,
            Attribute::PlaceOfResidence,
            Attribute::Nationality,
            Attribute::DocumentType,
        ],
        transaction_info: Some("Servicekonto".into()),
    }
}

/// Starts a flow: an eID session on the eID-Server and its record here. Returns the flow's
/// reference (for the TC token and refresh URLs) and the browser token (for the cookie).
pub(crate) async fn start(
    state: &AppState,
    environment: Environment,
    purpose: Purpose,
    return_to: &str,
    account: Option<AccountId>,
) -> Result<(String, String), EidFlowError> {
    let eid = state.eid.of(environment).ok_or(EidFlowError::NotOffered)?;
    let server_session = eid.server.use_id(&use_id_request()).await.map_err(eid_server_failed)?;
    let (reference, browser) = (random_token(), random_token());
    let flow =
        EidFlow { purpose, server_session, browser: token_digest(&browser), return_to: return_to.to_owned(), account };
    let value = serde_json::to_vec(&flow).map_err(|e| EidFlowError::Unavailable(Box::new(e)))?;
    state
        .ephemeral
        .put(&key(environment, &reference), &value, FLOW_TTL)
        .await
        .map_err(|e| EidFlowError::Unavailable(Box::new(e)))?;
    Ok((reference, browser))
}

/// The flow behind `reference`, left in place (the TC token and the test service read it).
pub(crate) async fn find(state: &AppState, environment: Environment, reference: &str) -> Result<EidFlow, EidFlowError> {
    let value = state
        .ephemeral
        .get(&key(environment, reference))
        .await
        .map_err(|e| EidFlowError::Unavailable(Box::new(e)))?
        .ok_or(EidFlowError::Unknown)?;
    serde_json::from_slice(&value).map_err(|_| EidFlowError::Unknown)
}

/// The flow behind `reference` for its TC token, handed out once: the token carries the PSK of
/// the channel to the eID-Server, and only the citizen's AusweisApp2 should ever hold it.
pub(crate) async fn for_tc_token(
    state: &AppState,
    environment: Environment,
    reference: &str,
) -> Result<EidFlow, EidFlowError> {
    let flow = find(state, environment, reference).await?;
    let first = state
        .ephemeral
        .put_if_absent(&format!("eid-tc:{}:{}", environment.as_str(), token_digest(reference)), b"1", FLOW_TTL)
        .await
        .map_err(|e| EidFlowError::Unavailable(Box::new(e)))?;
    if first { Ok(flow) } else { Err(EidFlowError::Unknown) }
}

/// At the refresh address: takes the flow (once, and only in the browser that started it) and
/// fetches the card's data from the eID-Server.
pub(crate) async fn finish(
    state: &AppState,
    environment: Environment,
    reference: &str,
    browser: Option<&str>,
) -> Result<(EidFlow, CardIdentity), EidFlowError> {
    let eid = state.eid.of(environment).ok_or(EidFlowError::NotOffered)?;
    let flow = find(state, environment, reference).await?;
    // A stolen refresh URL is useless elsewhere; the flow stays for its own browser.
    if browser.map(token_digest).as_deref() != Some(flow.browser.as_str()) {
        return Err(EidFlowError::OtherBrowser);
    }
    let taken =
        state.ephemeral.take(&key(environment, reference)).await.map_err(|e| EidFlowError::Unavailable(Box::new(e)))?;
    if taken.is_none() {
        return Err(EidFlowError::Unknown);
    }
    let data = match eid.server.get_result(&flow.server_session.session_id).await {
        Ok(data) => data,
        Err(EidServerError::Failed { minor, .. }) => return Err(EidFlowError::Failed(minor)),
        Err(EidServerError::NoResult) => return Err(EidFlowError::Failed("no result".into())),
        Err(e) => return Err(eid_server_failed(e)),
    };
    let identity = CardIdentity { key: state.eid.card_key(environment, &data.restricted_id), data: card_data(data)? };
    Ok((flow, identity))
}

/// The card's data in this service's spelling: the card's one-line street split off its number,
/// its country codes as ISO 3166-1 (the card writes Germany as `D`).
fn card_data(data: EidPersonalData) -> Result<CardData, EidFlowError> {
    let home = data.place_of_residence.unwrap_or_default();
    let street_line = home.street.unwrap_or_default();
    // The house number starts at the first word after the street's first that begins with a digit
    // ("HEIDESTRASSE 17 A", "STRASSE DES 17. JUNI 5" keeps its "17." only when nothing follows).
    let words: Vec<&str> = street_line.split_whitespace().collect();
    let number_at = (1..words.len())
        .rev()
        .filter(|&i| words[i].starts_with(|c: char| c.is_ascii_digit()))
        .take_while(|&i| words[i..].iter().skip(1).all(|w| w.len() <= 2 || w.starts_with(|c: char| c.is_ascii_digit())))
        .last()
        .unwrap_or(words.len());
    let (street, house_number) = (words[..number_at].join(" "), words[number_at..].join(" "));
    let date_of_birth = data.date_of_birth.ok_or(EidFlowError::Incomplete("date_of_birth"))?;
    Ok(CardData {
        given_names: data.given_names.ok_or(EidFlowError::Incomplete("given_names"))?,
        family_name: data.family_names.ok_or(EidFlowError::Incomplete("family_name"))?,
        birth_name: data.birth_name,
        date_of_birth,
        place_of_birth: data.place_of_birth.and_then(|p| p.freetext.or(p.city)),
        street,
        house_number,
        postal_code: home.zip_code.unwrap_or_default(),
        city: home.city.unwrap_or_default(),
        country: match home.country.as_deref() {
            None | Some("D") => "DE".to_owned(),
            Some(other) => other.to_owned(),
        },
        nationalities: data.nationality.map(|n| if n == "D" { "DEU".to_owned() } else { n }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use eid_bridge::Place;

    #[test]
    fn the_cards_spelling_becomes_ours() {
        let data = EidPersonalData {
            restricted_id: "ab".into(),
            given_names: Some("ERIKA".into()),
            family_names: Some("MUSTERMANN".into()),
            birth_name: Some("GABLER".into()),
            date_of_birth: Some("1964-08-12".into()),
            place_of_birth: Some(Place { freetext: Some("BERLIN".into()), ..Place::default() }),
            place_of_residence: Some(Place {
                street: Some("HEIDESTRASSE 17 A".into()),
                city: Some("KÖLN".into()),
                zip_code: Some("51147".into()),
                country: Some("D".into()),
                freetext: None,
            }),
            nationality: Some("D".into()),
            document_type: Some("ID".into()),
            issuing_state: Some("D".into()),
        };
        let card = card_data(data.clone()).unwrap();
        assert_eq!((card.street.as_str(), card.house_number.as_str()), ("HEIDESTRASSE", "17 A"));
        for (line, street, number) in [
            ("STRASSE DES 17. JUNI 5", "STRASSE DES 17. JUNI", "5"),
            ("AM MARKT", "AM MARKT", ""),
            ("HAUPTSTR. 1-3", "HAUPTSTR.", "1-3"),
        ] {
            let mut other = data.clone();
            other.place_of_residence.as_mut().unwrap().street = Some(line.into());
            let card = card_data(other).unwrap();
            assert_eq!((card.street.as_str(), card.house_number.as_str()), (street, number), "{line}");
        }
        let mut simple = data.clone();
        simple.place_of_residence.as_mut().unwrap().street = Some("HEIDESTRASSE 17".into());
        let card = card_data(simple).unwrap();
        assert_eq!((card.street.as_str(), card.house_number.as_str()), ("HEIDESTRASSE", "17"));
        assert_eq!((card.country.as_str(), card.nationalities.as_deref()), ("DE", Some("DEU")));
        assert_eq!(card.place_of_birth.as_deref(), Some("BERLIN"));
        let mut no_date = data;
        no_date.date_of_birth = None;
        assert!(matches!(card_data(no_date), Err(EidFlowError::Incomplete("date_of_birth"))));
    }
}
