//! One eID session, step by step: StartPAOS → EAC1 → EAC2 → Transmit → StartPAOSResponse. Each
//! HTTP request of the app moves the session one step; between steps it lives in the
//! [`SessionStore`], so any node holding the same secret can take the next step.

use std::time::Duration;

use async_trait::async_trait;
use eid_bridge::{Attribute, EidPersonalData, UseIdRequest};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::{
    card::{self, Step},
    crypto::{self, KeyPurpose},
    cvc::{self, CertificateBody, Description, Right, Rights},
    paos::{self, FromClient},
    sm::Channel,
};

/// Where sessions wait between the app's requests (the ephemeral store in the server).
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores `value` under `key` for `ttl`.
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), String>;
    /// Reads and removes the value under `key`: one step at a time, never twice.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
}

/// An in-memory [`SessionStore`] for one node.
#[derive(Default)]
pub struct MemorySessions(std::sync::Mutex<std::collections::HashMap<String, (Vec<u8>, std::time::Instant)>>);

#[async_trait]
impl SessionStore for MemorySessions {
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), String> {
        let mut map = self.0.lock().map_err(|_| "poisoned".to_owned())?;
        let now = std::time::Instant::now();
        map.retain(|_, (_, until)| *until > now);
        map.insert(key.to_owned(), (value, now + ttl));
        Ok(())
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let mut map = self.0.lock().map_err(|_| "poisoned".to_owned())?;
        Ok(map.remove(key).filter(|(_, until)| *until > std::time::Instant::now()).map(|(v, _)| v))
    }
}

/// How an authentication ended without data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// TR-03112 result minor.
    pub minor: String,
    /// What happened.
    pub message: String,
}

/// Where a session stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Stage {
    /// Created by `useID`; the app has not come yet.
    Created,
    /// EAC1 sent.
    Eac1Sent { slot_handle: String, auxiliary_data: Vec<u8> },
    /// EAC2 sent with this ephemeral key (private scalar).
    Eac2Sent { slot_handle: String, rights: u64, ephemeral: Vec<u8> },
    /// The card's answers to these steps are awaited.
    Reading { slot_handle: String, channel: Channel, steps: Vec<Step> },
    /// Finished.
    Done(Box<Result<EidPersonalData, Failure>>),
}

/// A session as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// What the service asked for.
    pub required: Vec<Attribute>,
    /// What the citizen may add.
    pub allowed: Vec<Attribute>,
    /// The purpose shown.
    pub transaction_info: Option<String>,
    /// Where it stands.
    pub stage: Stage,
}

impl Session {
    /// A new session for a `useID` request.
    pub fn new(request: &UseIdRequest) -> Self {
        let mut required = request.required.clone();
        // The pseudonym is how the server recognises a card: always read.
        if !required.contains(&Attribute::RestrictedId) {
            required.push(Attribute::RestrictedId);
        }
        Session {
            required,
            allowed: request.allowed.clone(),
            transaction_info: request.transaction_info.clone(),
            stage: Stage::Created,
        }
    }
}

/// The terminal's fixed parts: keys from the secret, what the description says.
pub struct Terminal {
    cvca: openssl::ec::EcKey<openssl::pkey::Private>,
    dv: openssl::ec::EcKey<openssl::pkey::Private>,
    at: openssl::ec::EcKey<openssl::pkey::Private>,
    sector_public_key: Vec<u8>,
    description: Vec<u8>,
    /// Cut-off for age verification, in years; `None`: no age check.
    pub minimum_age: Option<u8>,
}

/// The Simulator card's trust anchor, named as our DV's authority.
const SIMULATOR_CVCA: &str = "DETESTeID00005";
const DV_CHR: &str = "DESKTDV00001";
const AT_CHR: &str = "DESKTAT00001";
/// TR-03112 minor codes we answer with.
const MINOR_PARAMETER: &str = "http://www.bsi.bund.de/ecard/api/1.1/resultminor/al/common#incorrectParameter";
const MINOR_INTERNAL: &str = "http://www.bsi.bund.de/ecard/api/1.1/resultminor/al/common#internalError";

impl Terminal {
    /// The terminal of a deployment: every node with the same `secret` is the same terminal.
    pub fn new(
        secret: &[u8],
        subject_name: &str,
        subject_url: &str,
        tls_certificate_hashes: Vec<Vec<u8>>,
        minimum_age: Option<u8>,
    ) -> Result<Self, crypto::CryptoError> {
        let sector = crypto::derived_key(secret, "sector")?;
        let description = Description {
            issuer_name: "servicekonto Test-DV",
            subject_name,
            subject_url,
            terms_of_usage: "Test-eID-Server von servicekonto – nur für Testsysteme. Ausgelesen werden nur die Daten, denen Sie zustimmen.",
            comm_certificates: tls_certificate_hashes,
        }
        .encode();
        Ok(Terminal {
            cvca: crypto::derived_key(secret, "cvca")?,
            dv: crypto::derived_key(secret, "dv")?,
            at: crypto::derived_key(secret, "at")?,
            sector_public_key: crypto::public_point(&sector)?,
            description,
            minimum_age,
        })
    }

    /// The DV and AT certificates, valid from yesterday for 30 days.
    fn chain(&self, today: Date, rights: Rights) -> Result<Vec<Vec<u8>>, crypto::CryptoError> {
        let effective = today.previous_day().unwrap_or(today);
        let expires = today.checked_add(time::Duration::days(30)).unwrap_or(today);
        let everything = Rights(0x1F_FFFF_FF07);
        let dv = cvc::certificate(
            &CertificateBody {
                car: SIMULATOR_CVCA,
                chr: DV_CHR,
                holder: &self.dv,
                chat: everything.chat(1),
                effective,
                expires,
                extensions: vec![],
            },
            &self.cvca,
        )?;
        let at = cvc::certificate(
            &CertificateBody {
                car: DV_CHR,
                chr: AT_CHR,
                holder: &self.at,
                chat: rights.chat(0),
                effective,
                expires,
                extensions: vec![
                    cvc::description_extension(&self.description)?,
                    cvc::sector_extension(&self.sector_public_key)?,
                ],
            },
            &self.dv,
        )?;
        Ok(vec![dv, at])
    }
}

/// What to send back, and whether the session goes on.
pub struct Reply {
    /// The PAOS message.
    pub body: String,
    /// The session after the step.
    pub session: Session,
}

fn failed(session: Session, relates_to: Option<&str>, minor: &str, message: String) -> Reply {
    tracing::info!(target: "eid_test_server", minor, %message, "eID session failed");
    let body = paos::start_paos_response(relates_to, Some((minor, &message)));
    Reply {
        body,
        session: Session { stage: Stage::Done(Box::new(Err(Failure { minor: minor.to_owned(), message }))), ..session },
    }
}

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// Takes one step: the app's message `message` for `session`.
pub fn step(terminal: &Terminal, session: Session, message: FromClient) -> Reply {
    let stage = session.stage.clone();
    match (stage, message) {
        (Stage::Created, FromClient::StartPaos { message_id, slot_handle, .. }) => {
            let today = today();
            let born_before =
                terminal.minimum_age.and_then(|age| today.replace_year(today.year() - i32::from(age)).ok());
            let auxiliary_data = cvc::auxiliary_data(born_before, today);
            let mut required = Rights::for_attributes(&session.required);
            if born_before.is_some() {
                required = required.with(Right::AgeVerification);
            }
            let optional = Rights::for_attributes(&session.allowed);
            let chain = match terminal.chain(today, Rights(required.0 | optional.0)) {
                Ok(chain) => chain,
                Err(e) => return failed(session, message_id.as_deref(), MINOR_INTERNAL, e.to_string()),
            };
            let body = paos::eac1(
                message_id.as_deref(),
                &slot_handle,
                &paos::Eac1 {
                    certificates: &chain,
                    description: &terminal.description,
                    required_chat: &required.chat(0),
                    optional_chat: &optional.chat(0),
                    auxiliary_data: &auxiliary_data,
                    transaction_info: session.transaction_info.as_deref(),
                },
            );
            Reply { body, session: Session { stage: Stage::Eac1Sent { slot_handle, auxiliary_data }, ..session } }
        }
        (
            Stage::Eac1Sent { slot_handle, auxiliary_data },
            FromClient::Eac1 { message_id, chat, id_picc, challenge },
        ) => {
            let relates_to = message_id.as_deref();
            let Some(rights) = Rights::from_chat(&chat) else {
                return failed(session, relates_to, MINOR_PARAMETER, "the effective CHAT is unreadable".into());
            };
            // What was required cannot be taken away by the client: without it, no run.
            if terminal.minimum_age.is_some() && !rights.has(Right::AgeVerification) {
                return failed(
                    session,
                    relates_to,
                    MINOR_PARAMETER,
                    "the effective CHAT lacks the age verification".into(),
                );
            }
            if !rights.has(Right::RestrictedIdentification) {
                return failed(session, relates_to, MINOR_PARAMETER, "the effective CHAT lacks the pseudonym".into());
            }
            let signed = (|| {
                let ephemeral = crypto::ephemeral_key()?;
                let point = crypto::public_point(&ephemeral)?;
                let input = [&id_picc[..], &challenge, &crypto::x_coordinate(&point)?, &auxiliary_data].concat();
                Ok::<_, crypto::CryptoError>((
                    crypto::private_bytes(&ephemeral)?,
                    point,
                    crypto::sign(&terminal.at, &input)?,
                ))
            })();
            match signed {
                Ok((ephemeral, point, signature)) => Reply {
                    body: paos::eac2(relates_to, &slot_handle, &point, &signature),
                    session: Session { stage: Stage::Eac2Sent { slot_handle, rights: rights.0, ephemeral }, ..session },
                },
                Err(e) => failed(session, relates_to, MINOR_INTERNAL, e.to_string()),
            }
        }
        (
            Stage::Eac2Sent { slot_handle, rights, ephemeral },
            FromClient::Eac2 { message_id, card_security, authentication_token, nonce },
        ) => {
            let relates_to = message_id.as_deref();
            let channel = (|| {
                let card_key = card::chip_authentication_key(&card_security).map_err(|e| e.to_string())?;
                let ephemeral = crypto::key_from_private_bytes(&ephemeral).map_err(|e| e.to_string())?;
                let secret = crypto::ecdh(&ephemeral, &card_key).map_err(|e| e.to_string())?;
                let enc =
                    crypto::derive_session_key(&secret, &nonce, KeyPurpose::Encryption).map_err(|e| e.to_string())?;
                let mac = crypto::derive_session_key(&secret, &nonce, KeyPurpose::Mac).map_err(|e| e.to_string())?;
                let point = crypto::public_point(&ephemeral).map_err(|e| e.to_string())?;
                let expected = crypto::cmac8(&mac, &card::ca_token_input(&point)).map_err(|e| e.to_string())?;
                if authentication_token.len() != expected.len()
                    || !openssl::memcmp::eq(&expected, &authentication_token)
                {
                    return Err(
                        "Chip Authentication failed: the card's authentication token does not verify".to_owned()
                    );
                }
                Ok(Channel::new(enc, mac))
            })();
            let channel = match channel {
                Ok(channel) => channel,
                Err(why) => return failed(session, relates_to, MINOR_PARAMETER, why),
            };
            let rights = Rights(rights);
            // The effective CHAT was held to the required rights at EAC1: the age check when one
            // is configured, the pseudonym always.
            let mut steps = vec![Step::SelectApplication, Step::VerifyValidity];
            if terminal.minimum_age.is_some() {
                steps.push(Step::VerifyAge);
            }
            let mut groups: Vec<u8> =
                session.required.iter().chain(&session.allowed).filter_map(|a| cvc::data_group(*a)).collect();
            groups.sort_unstable();
            groups.dedup();
            steps.extend(groups.into_iter().filter(|dg| rights.reads(*dg)).map(Step::Read));
            steps.extend([Step::SetRiKey, Step::RestrictedId]);
            let commands: Vec<_> = steps.iter().map(|s| card::command(*s, &terminal.sector_public_key)).collect();
            match channel.wrap_batch(&commands) {
                Ok(apdus) => Reply {
                    body: paos::transmit(relates_to, &slot_handle, &apdus),
                    session: Session { stage: Stage::Reading { slot_handle, channel, steps }, ..session },
                },
                Err(e) => failed(session, relates_to, MINOR_INTERNAL, e.to_string()),
            }
        }
        (Stage::Reading { channel, steps, .. }, FromClient::Transmit { message_id, apdus }) => {
            let relates_to = message_id.as_deref();
            match read_answers(channel, &steps, &apdus) {
                Ok(data) => Reply {
                    body: paos::start_paos_response(relates_to, None),
                    session: Session { stage: Stage::Done(Box::new(Ok(data))), ..session },
                },
                Err((minor, why)) => failed(session, relates_to, minor, why),
            }
        }
        // The app ends the run (cancelled, card removed, wrong PIN, …): its reason is ours.
        (
            Stage::Created | Stage::Eac1Sent { .. } | Stage::Eac2Sent { .. } | Stage::Reading { .. },
            FromClient::Failed { message_id, result },
        ) => {
            let minor = result.minor.unwrap_or_else(|| MINOR_INTERNAL.to_owned());
            let message = result.message.unwrap_or_else(|| "AusweisApp2 ended the authentication".to_owned());
            failed(session, message_id.as_deref(), &minor, message)
        }
        // A finished session keeps its result; whatever comes after it is refused.
        (Stage::Done(_), message) => {
            let body = paos::start_paos_response(
                message_id(&message).as_deref(),
                Some((MINOR_PARAMETER, "the session is already finished")),
            );
            Reply { body, session }
        }
        (_, message) => {
            failed(session, message_id(&message).as_deref(), MINOR_PARAMETER, "a message out of order".into())
        }
    }
}

fn message_id(message: &FromClient) -> Option<String> {
    match message {
        FromClient::StartPaos { message_id, .. }
        | FromClient::Eac1 { message_id, .. }
        | FromClient::Eac2 { message_id, .. }
        | FromClient::Failed { message_id, .. }
        | FromClient::Transmit { message_id, .. } => message_id.clone(),
    }
}

/// TR-03112 minor code for data the card refused to confirm (age, validity).
const MINOR_NOT_VERIFIED: &str = "http://www.bsi.bund.de/ecard/api/1.1/resultminor/il/signature#verificationFailed";

fn read_answers(
    mut channel: Channel,
    steps: &[Step],
    apdus: &[Vec<u8>],
) -> Result<EidPersonalData, (&'static str, String)> {
    if apdus.len() != steps.len() {
        return Err((MINOR_PARAMETER, format!("{} answers to {} commands", apdus.len(), steps.len())));
    }
    let mut data = EidPersonalData::default();
    for (step, answer) in steps.iter().zip(channel.open_batch(apdus)) {
        let answer = answer.map_err(|e| (MINOR_PARAMETER, format!("{step:?}: {e}")))?;
        match (step, answer.status) {
            (Step::VerifyValidity, 0x9000) | (Step::VerifyAge, 0x9000) => {}
            (Step::VerifyValidity, _) => return Err((MINOR_NOT_VERIFIED, "the ID card has expired".into())),
            (Step::VerifyAge, _) => {
                return Err((MINOR_NOT_VERIFIED, "the card holder is below the minimum age".into()));
            }
            // A data group the card does not have: the attribute is absent (6A82 file not
            // found; AusweisApp2's Simulator answers 6A80 for it).
            (Step::Read(_), 0x6A82 | 0x6A80) => {}
            // 6282: the file ended before the expected length; its data are all there.
            (_, 0x9000) | (Step::Read(_), 0x6282) => match step {
                Step::Read(dg) => {
                    card::read_data_group(*dg, &answer.data, &mut data).map_err(|e| (MINOR_PARAMETER, e.to_string()))?
                }
                Step::RestrictedId => {
                    data.restricted_id =
                        card::restricted_id(&answer.data).map_err(|e| (MINOR_PARAMETER, e.to_string()))?
                }
                _ => {}
            },
            (_, status) => return Err((MINOR_PARAMETER, format!("{step:?}: the card answered {status:04X}"))),
        }
    }
    if data.restricted_id.is_empty() {
        return Err((MINOR_PARAMETER, "the card gave no pseudonym".into()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
    use super::*;
    use crate::{paos::PaosResult, simulator::SIMULATOR_CA_KEY};

    /// The app's error answer, as it sends it when the citizen cancels or the card is gone.
    fn cancelled() -> PaosResult {
        PaosResult {
            major: "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#error".into(),
            minor: Some(eid_bridge::eid_server::MINOR_CANCELLED.into()),
            message: Some("The process has been cancelled.".into()),
        }
    }

    fn terminal() -> Terminal {
        Terminal::new(b"secret", "Test", "http://127.0.0.1", vec![vec![0; 32]], None).unwrap()
    }

    /// A session up to the EAC2 answer, with the card's side computed as the Simulator does:
    /// ECDH with its CA key, the session keys, the token over our ephemeral key.
    fn at_eac2(terminal: &Terminal) -> (Session, Vec<u8>, Vec<u8>, Vec<u8>) {
        let session = Session::new(&UseIdRequest {
            required: vec![Attribute::GivenNames],
            allowed: vec![],
            transaction_info: None,
        });
        let start = FromClient::StartPaos { message_id: None, session_id: "s".into(), slot_handle: "00".into() };
        let reply = step(terminal, session, start);
        assert!(reply.body.contains("EAC1InputType"));
        let Stage::Eac1Sent { auxiliary_data, .. } = reply.session.stage.clone() else { panic!() };
        let chat = Rights::for_attributes(&[Attribute::GivenNames, Attribute::RestrictedId]).chat(0);
        let eac1 = FromClient::Eac1 { message_id: None, chat, id_picc: vec![1; 20], challenge: vec![2; 8] };
        let reply = step(terminal, reply.session, eac1);
        let document = roxmltree::Document::parse(&reply.body).unwrap();
        let text = |name: &str| {
            hex::decode(document.descendants().find(|n| n.tag_name().name() == name).unwrap().text().unwrap()).unwrap()
        };
        let ephemeral = text("EphemeralPublicKey");
        // The signature over ID_PICC ‖ challenge ‖ x(ephemeral) ‖ auxiliary data verifies with
        // the AT certificate's key.
        let Stage::Eac2Sent { .. } = &reply.session.stage else { panic!("{:?}", reply.session.stage) };
        let at = crypto::derived_key(b"secret", "at").unwrap();
        let at = crypto::public_key(&crypto::public_point(&at).unwrap()).unwrap();
        let signed = [&[1u8; 20][..], &[2; 8], &crypto::x_coordinate(&ephemeral).unwrap(), &auxiliary_data].concat();
        assert!(crypto::verify(&at, &signed, &text("Signature")).unwrap(), "Terminal Authentication's signature");
        let card_key = crypto::key_from_private_bytes(&hex::decode(SIMULATOR_CA_KEY).unwrap()).unwrap();
        let secret = crypto::ecdh(&card_key, &ephemeral).unwrap();
        let nonce = vec![7u8; 8];
        let mac = crypto::derive_session_key(&secret, &nonce, KeyPurpose::Mac).unwrap();
        let token = crypto::cmac8(&mac, &card::ca_token_input(&ephemeral)).unwrap().to_vec();
        let test_card = crate::simulator::TestCard {
            given_names: "ERIKA".into(),
            family_names: "MUSTERMANN".into(),
            birth_name: Some("GABLER".into()),
            date_of_birth: time::macros::date!(1964 - 08 - 12),
            place_of_birth: "BERLIN".into(),
            street: "HEIDESTRASSE 17".into(),
            zip_code: "51147".into(),
            city: "KÖLN".into(),
            expires: time::macros::date!(2031 - 10 - 31),
        };
        let files = test_card.simulator_card().unwrap().files;
        let security = hex::decode(&files.iter().find(|f| f.short_file_id == "1D").unwrap().content).unwrap();
        (reply.session, security, token, nonce)
    }

    #[test]
    fn an_effective_chat_without_what_was_required_ends_the_session() {
        let terminal = Terminal::new(b"secret", "Test", "http://127.0.0.1", vec![vec![0; 32]], Some(18)).unwrap();
        for chat in [
            // No age verification, though the service requires it.
            Rights::for_attributes(&[Attribute::GivenNames, Attribute::RestrictedId]).chat(0),
            // No pseudonym.
            Rights::for_attributes(&[Attribute::GivenNames]).with(Right::AgeVerification).chat(0),
        ] {
            let session = Session::new(&UseIdRequest {
                required: vec![Attribute::GivenNames],
                allowed: vec![],
                transaction_info: None,
            });
            let start = FromClient::StartPaos { message_id: None, session_id: "s".into(), slot_handle: "00".into() };
            let reply = step(&terminal, session, start);
            let eac1 = FromClient::Eac1 { message_id: None, chat, id_picc: vec![1; 20], challenge: vec![2; 8] };
            let reply = step(&terminal, reply.session, eac1);
            assert!(matches!(reply.session.stage, Stage::Done(ref r) if r.is_err()), "{:?}", reply.session.stage);
        }
    }

    #[test]
    fn the_apps_error_ends_the_session_with_the_apps_reason() {
        let terminal = terminal();
        let (session, ..) = at_eac2(&terminal);
        let reply = step(&terminal, session, FromClient::Failed { message_id: None, result: cancelled() });
        let Stage::Done(result) = reply.session.stage else { panic!() };
        assert_eq!((*result).unwrap_err().minor, eid_bridge::eid_server::MINOR_CANCELLED);
    }

    #[test]
    fn a_tampered_authentication_token_ends_the_session_before_any_data() {
        let terminal = terminal();
        let (session, card_security, mut token, nonce) = at_eac2(&terminal);
        token[0] ^= 1;
        let eac2 = FromClient::Eac2 { message_id: None, card_security, authentication_token: token, nonce };
        let reply = step(&terminal, session, eac2);
        assert!(reply.body.contains("StartPAOSResponse") && reply.body.contains("resultmajor#error"), "{}", reply.body);
        let Stage::Done(result) = reply.session.stage else { panic!() };
        let failure = (*result).unwrap_err();
        assert!(failure.message.contains("authentication token does not verify"), "{failure:?}");
    }

    #[test]
    fn the_right_token_opens_the_channel_and_a_message_out_of_order_ends_it() {
        let terminal = terminal();
        let (session, card_security, token, nonce) = at_eac2(&terminal);
        let eac2 = FromClient::Eac2 { message_id: None, card_security, authentication_token: token, nonce };
        let reply = step(&terminal, session, eac2);
        assert!(reply.body.contains("<Transmit"), "{}", reply.body);
        let Stage::Reading { steps, .. } = &reply.session.stage else { panic!() };
        assert!(steps.contains(&Step::Read(4)) && steps.contains(&Step::RestrictedId), "{steps:?}");
        assert!(!steps.contains(&Step::Read(5)), "only what was asked: {steps:?}");
        // StartPAOS again in the middle: refused, the session is over.
        let again = FromClient::StartPaos { message_id: None, session_id: "s".into(), slot_handle: "00".into() };
        let reply = step(&terminal, reply.session, again);
        assert!(matches!(reply.session.stage, Stage::Done(ref r) if r.is_err()));
        // Once finished, it stays as it finished.
        let late = FromClient::StartPaos { message_id: None, session_id: "s".into(), slot_handle: "00".into() };
        let after = step(&terminal, reply.session.clone(), late);
        assert!(after.body.contains("already finished"));
        assert!(
            matches!(after.session.stage, Stage::Done(ref r) if r.as_ref().as_ref().unwrap_err().message.contains("out of order"))
        );
    }
}
