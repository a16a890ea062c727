//! The PAOS messages between AusweisApp2 and the eID-Server (BSI TR-03112-7, ISO 24727-3): what
//! the app sends is parsed by element name and namespace (bounded, no DTD); what we send is
//! written with every text escaped.

use roxmltree::Node;

const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const ISO: &str = "urn:iso:std:iso-iec:24727:tech:schema";
const DSS: &str = "urn:oasis:names:tc:dss:1.0:core:schema";
/// TR-03112's result major "ok".
pub const MAJOR_OK: &str = "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#ok";
const MAJOR_ERROR: &str = "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#error";
/// A PAOS message is a few KiB; EF.CardSecurity is the largest part.
const MAX_MESSAGE: usize = 256 * 1024;

/// A TR-03112 result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaosResult {
    /// `…/resultmajor#ok` or `#error`.
    pub major: String,
    /// The minor code on error.
    pub minor: Option<String>,
    /// A message on error.
    pub message: Option<String>,
}

impl PaosResult {
    /// Whether the step succeeded.
    pub fn is_ok(&self) -> bool {
        self.major == MAJOR_OK
    }
}

/// What AusweisApp2 sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromClient {
    /// The start of the channel.
    StartPaos {
        /// Its `MessageID`.
        message_id: Option<String>,
        /// The TC token's session.
        session_id: String,
        /// The slot the card application is in, echoed in every request.
        slot_handle: String,
    },
    /// The answer to EAC1.
    Eac1 {
        /// Its `MessageID`.
        message_id: Option<String>,
        /// The CHAT the citizen allowed.
        chat: Vec<u8>,
        /// The card's identifier for Terminal Authentication.
        id_picc: Vec<u8>,
        /// The card's challenge.
        challenge: Vec<u8>,
    },
    /// The answer to EAC2.
    Eac2 {
        /// Its `MessageID`.
        message_id: Option<String>,
        /// The card's security file.
        card_security: Vec<u8>,
        /// Chip Authentication's MAC over our ephemeral key.
        authentication_token: Vec<u8>,
        /// Chip Authentication's nonce.
        nonce: Vec<u8>,
    },
    /// An error answer to any of our requests (cancelled, card removed, wrong PIN, …).
    Failed {
        /// Its `MessageID`.
        message_id: Option<String>,
        /// The step's result.
        result: PaosResult,
    },
    /// The answer to a batch of APDUs.
    Transmit {
        /// Its `MessageID`.
        message_id: Option<String>,
        /// One answer per APDU, in order (fewer if the batch stopped).
        apdus: Vec<Vec<u8>>,
    },
}

/// Why a message is not understood.
#[derive(Debug, thiserror::Error)]
#[error("PAOS message: {0}")]
pub struct PaosError(pub String);

fn err(what: impl std::fmt::Display) -> PaosError {
    PaosError(what.to_string())
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|n| n.is_element() && n.tag_name().name() == name)
}

fn descendant_text(node: Node<'_, '_>, name: &str) -> Option<String> {
    node.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == name)
        .map(|n| n.text().unwrap_or("").trim().to_owned())
}

fn hex_of(node: Node<'_, '_>, name: &str) -> Result<Vec<u8>, PaosError> {
    let text = descendant_text(node, name).ok_or_else(|| err(format!("no {name}")))?;
    hex::decode(&text).map_err(|_| err(format!("{name} is not hex")))
}

fn result_of(node: Node<'_, '_>) -> Result<PaosResult, PaosError> {
    let result = node
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == "Result" && n.tag_name().namespace() == Some(DSS))
        .ok_or_else(|| err("no Result"))?;
    Ok(PaosResult {
        major: descendant_text(result, "ResultMajor").ok_or_else(|| err("no ResultMajor"))?,
        minor: descendant_text(result, "ResultMinor"),
        message: descendant_text(result, "ResultMessage"),
    })
}

/// Parses what AusweisApp2 POSTed.
pub fn parse(xml: &str) -> Result<FromClient, PaosError> {
    let document = bounded_xml::parse(xml, MAX_MESSAGE).map_err(err)?;
    let envelope = document.root_element();
    if envelope.tag_name().name() != "Envelope" || envelope.tag_name().namespace() != Some(SOAP) {
        return Err(err("not a SOAP envelope"));
    }
    let message_id = child(envelope, "Header").and_then(|h| descendant_text(h, "MessageID"));
    let body = child(envelope, "Body").ok_or_else(|| err("no Body"))?;
    let message = body.children().find(Node::is_element).ok_or_else(|| err("empty Body"))?;
    if message.tag_name().namespace() != Some(ISO) {
        return Err(err(format!("{} is not an ISO 24727 message", message.tag_name().name())));
    }
    match message.tag_name().name() {
        "StartPAOS" => Ok(FromClient::StartPaos {
            message_id,
            session_id: descendant_text(message, "SessionIdentifier").ok_or_else(|| err("no SessionIdentifier"))?,
            slot_handle: child(message, "ConnectionHandle")
                .and_then(|h| descendant_text(h, "SlotHandle"))
                .ok_or_else(|| err("no SlotHandle"))?,
        }),
        "DIDAuthenticateResponse" => {
            let result = result_of(message)?;
            let data = child(message, "AuthenticationProtocolData");
            let kind = data
                .and_then(|d| d.attributes().find(|a| a.name() == "type").map(|a| a.value().to_owned()))
                .unwrap_or_default();
            if !result.is_ok() {
                // An error answer may come without its data.
                return Ok(FromClient::Failed { message_id, result });
            }
            let data = data.ok_or_else(|| err("no AuthenticationProtocolData"))?;
            if kind.ends_with("EAC1OutputType") {
                Ok(FromClient::Eac1 {
                    message_id,
                    chat: hex_of(data, "CertificateHolderAuthorizationTemplate")?,
                    id_picc: hex_of(data, "IDPICC")?,
                    challenge: hex_of(data, "Challenge")?,
                })
            } else if kind.ends_with("EAC2OutputType") {
                Ok(FromClient::Eac2 {
                    message_id,
                    card_security: hex_of(data, "EFCardSecurity")?,
                    authentication_token: hex_of(data, "AuthenticationToken")?,
                    nonce: hex_of(data, "Nonce")?,
                })
            } else {
                Err(err(format!("DIDAuthenticateResponse of type {kind:?}")))
            }
        }
        "TransmitResponse" => {
            let result = result_of(message)?;
            if !result.is_ok() {
                return Ok(FromClient::Failed { message_id, result });
            }
            let apdus = message
                .children()
                .filter(|n| n.is_element() && n.tag_name().name() == "OutputAPDU")
                .map(|n| hex::decode(n.text().unwrap_or("").trim()).map_err(|_| err("OutputAPDU is not hex")))
                .collect::<Result<_, _>>()?;
            Ok(FromClient::Transmit { message_id, apdus })
        }
        other => Err(err(format!("unexpected {other}"))),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Wraps a body element in a SOAP envelope with PAOS addressing.
fn envelope(relates_to: Option<&str>, body: &str) -> String {
    let message_id = format!("urn:uuid:{}", hex::encode(rand::random::<[u8; 16]>()));
    let relates = relates_to.map(|id| format!("<wsa:RelatesTo>{}</wsa:RelatesTo>", escape(id))).unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP}" xmlns:paos="urn:liberty:paos:2006-08" xmlns:wsa="http://www.w3.org/2005/03/addressing"><soap:Header><paos:PAOS soap:mustUnderstand="1" soap:actor="http://schemas.xmlsoap.org/soap/actor/next"><paos:Version>urn:liberty:paos:2006-08</paos:Version><paos:EndpointReference><paos:Address>http://www.projectliberty.org/2006/01/role/paos</paos:Address><paos:MetaData><paos:ServiceType>http://www.bsi.bund.de/ecard/api/1.1/PAOS/GetNextCommand</paos:ServiceType></paos:MetaData></paos:EndpointReference></paos:PAOS><wsa:ReplyTo><wsa:Address>http://www.projectliberty.org/2006/02/role/paos</wsa:Address></wsa:ReplyTo>{relates}<wsa:MessageID>{message_id}</wsa:MessageID></soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

fn did_authenticate(slot_handle: &str, kind: &str, content: &str) -> String {
    format!(
        r#"<DIDAuthenticate xmlns="{ISO}"><ConnectionHandle xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="ConnectionHandleType"><SlotHandle>{}</SlotHandle></ConnectionHandle><DIDName>PIN</DIDName><AuthenticationProtocolData Protocol="urn:oid:1.3.162.15480.3.0.14.2" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:iso="{ISO}" xsi:type="{kind}">{content}</AuthenticationProtocolData></DIDAuthenticate>"#,
        escape(slot_handle)
    )
}

/// EAC1: the terminal's certificates and description, the rights asked for, the auxiliary data.
pub struct Eac1<'a> {
    /// DV and AT certificates.
    pub certificates: &'a [Vec<u8>],
    /// The certificate description.
    pub description: &'a [u8],
    /// The rights the service needs.
    pub required_chat: &'a [u8],
    /// The rights the citizen may grant.
    pub optional_chat: &'a [u8],
    /// Age and validity dates.
    pub auxiliary_data: &'a [u8],
    /// Shown as the transaction's purpose.
    pub transaction_info: Option<&'a str>,
}

/// `DIDAuthenticate` with `EAC1InputType`.
pub fn eac1(relates_to: Option<&str>, slot_handle: &str, eac1: &Eac1<'_>) -> String {
    let mut content: String =
        eac1.certificates.iter().map(|c| format!("<Certificate>{}</Certificate>", hex::encode_upper(c))).collect();
    content += &format!(
        "<CertificateDescription>{}</CertificateDescription><RequiredCHAT>{}</RequiredCHAT><OptionalCHAT>{}</OptionalCHAT><AuthenticatedAuxiliaryData>{}</AuthenticatedAuxiliaryData>",
        hex::encode_upper(eac1.description),
        hex::encode_upper(eac1.required_chat),
        hex::encode_upper(eac1.optional_chat),
        hex::encode_upper(eac1.auxiliary_data)
    );
    if let Some(info) = eac1.transaction_info {
        content += &format!("<TransactionInfo>{}</TransactionInfo>", escape(info));
    }
    envelope(relates_to, &did_authenticate(slot_handle, "iso:EAC1InputType", &content))
}

/// `DIDAuthenticate` with `EAC2InputType`: our ephemeral key and the Terminal Authentication
/// signature.
pub fn eac2(relates_to: Option<&str>, slot_handle: &str, ephemeral_key: &[u8], signature: &[u8]) -> String {
    let content = format!(
        "<EphemeralPublicKey>{}</EphemeralPublicKey><Signature>{}</Signature>",
        hex::encode_upper(ephemeral_key),
        hex::encode_upper(signature)
    );
    envelope(relates_to, &did_authenticate(slot_handle, "iso:EAC2InputType", &content))
}

/// `Transmit`: a batch of APDUs.
pub fn transmit(relates_to: Option<&str>, slot_handle: &str, apdus: &[Vec<u8>]) -> String {
    let inputs: String = apdus
        .iter()
        .map(|a| format!("<InputAPDUInfo><InputAPDU>{}</InputAPDU></InputAPDUInfo>", hex::encode_upper(a)))
        .collect();
    envelope(
        relates_to,
        &format!(r#"<Transmit xmlns="{ISO}"><SlotHandle>{}</SlotHandle>{inputs}</Transmit>"#, escape(slot_handle)),
    )
}

/// `StartPAOSResponse`: the end, ok or with an error.
pub fn start_paos_response(relates_to: Option<&str>, error: Option<(&str, &str)>) -> String {
    let result = match error {
        None => format!("<ResultMajor>{MAJOR_OK}</ResultMajor>"),
        Some((minor, message)) => format!(
            r#"<ResultMajor>{MAJOR_ERROR}</ResultMajor><ResultMinor>{}</ResultMinor><ResultMessage xml:lang="en">{}</ResultMessage>"#,
            escape(minor),
            escape(message)
        ),
    };
    envelope(
        relates_to,
        &format!(
            r#"<StartPAOSResponse xmlns="{ISO}" Profile="http://www.bsi.bund.de/ecard/api/1.1"><Result xmlns="{DSS}">{result}</Result></StartPAOSResponse>"#
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    const HEAD: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsa="http://www.w3.org/2005/03/addressing"><soap:Header><wsa:MessageID>urn:uuid:1</wsa:MessageID></soap:Header><soap:Body>"#;
    const TAIL: &str = "</soap:Body></soap:Envelope>";

    /// The shape of AusweisApp2's StartPAOS (its fixture `StartPAOS.xml`, written down anew).
    #[test]
    fn start_paos_gives_session_and_slot() {
        let xml = format!(
            r#"{HEAD}<StartPAOS xmlns="urn:iso:std:iso-iec:24727:tech:schema"><SessionIdentifier>abcd</SessionIdentifier><ConnectionHandle xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="ConnectionHandleType"><CardApplication>e80704007f00070302</CardApplication><SlotHandle>00</SlotHandle></ConnectionHandle></StartPAOS>{TAIL}"#
        );
        assert_eq!(
            parse(&xml).unwrap(),
            FromClient::StartPaos {
                message_id: Some("urn:uuid:1".into()),
                session_id: "abcd".into(),
                slot_handle: "00".into()
            }
        );
    }

    #[test]
    fn eac_answers_and_transmit_answers_are_read() {
        let ok = format!(r#"<Result xmlns="{DSS}"><ResultMajor>{MAJOR_OK}</ResultMajor></Result>"#);
        let eac1 = format!(
            r#"{HEAD}<DIDAuthenticateResponse xmlns="{ISO}">{ok}<AuthenticationProtocolData xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="iso:EAC1OutputType" xmlns:iso="{ISO}"><CertificateHolderAuthorizationTemplate>7F4C</CertificateHolderAuthorizationTemplate><CertificationAuthorityReference>DETESTeID00005</CertificationAuthorityReference><EFCardAccess>31</EFCardAccess><IDPICC>0102</IDPICC><Challenge>0102030405060708</Challenge></AuthenticationProtocolData></DIDAuthenticateResponse>{TAIL}"#
        );
        let FromClient::Eac1 { chat, id_picc, challenge, .. } = parse(&eac1).unwrap() else { panic!() };
        assert_eq!((chat, id_picc, challenge), (vec![0x7F, 0x4C], vec![1, 2], vec![1, 2, 3, 4, 5, 6, 7, 8]));
        let transmit = format!(
            r#"{HEAD}<TransmitResponse xmlns="{ISO}">{ok}<OutputAPDU>9000</OutputAPDU><OutputAPDU>6A82</OutputAPDU></TransmitResponse>{TAIL}"#
        );
        let FromClient::Transmit { apdus, .. } = parse(&transmit).unwrap() else { panic!() };
        assert_eq!(apdus, [vec![0x90, 0x00], vec![0x6A, 0x82]]);
        let cancelled = format!(
            r#"{HEAD}<DIDAuthenticateResponse xmlns="{ISO}"><Result xmlns="{DSS}"><ResultMajor>{MAJOR_ERROR}</ResultMajor><ResultMinor>http://www.bsi.bund.de/ecard/api/1.1/resultminor/sal#cancellationByUser</ResultMinor></Result></DIDAuthenticateResponse>{TAIL}"#
        );
        let FromClient::Failed { result, .. } = parse(&cancelled).unwrap() else { panic!() };
        assert!(!result.is_ok() && result.minor.unwrap().ends_with("cancellationByUser"));
    }

    #[test]
    fn what_we_write_is_well_formed_and_escaped() {
        let eac1 = eac1(
            Some("urn:uuid:<1>"),
            "00",
            &Eac1 {
                certificates: &[vec![0x7F, 0x21]],
                description: &[0x30],
                required_chat: &[1],
                optional_chat: &[2],
                auxiliary_data: &[0x67],
                transaction_info: Some("Anmeldung & <Test>"),
            },
        );
        let document = roxmltree::Document::parse(&eac1).unwrap();
        assert_eq!(descendant_text(document.root(), "TransactionInfo").as_deref(), Some("Anmeldung & <Test>"));
        assert_eq!(descendant_text(document.root(), "RelatesTo").as_deref(), Some("urn:uuid:<1>"));
        let data = document.descendants().find(|n| n.tag_name().name() == "AuthenticationProtocolData").unwrap();
        assert!(data.attributes().any(|a| a.name() == "type" && a.value() == "iso:EAC1InputType"));
        for xml in [
            eac2(None, "00", &[4, 1], &[2]),
            transmit(None, "00", &[vec![0, 0xA4]]),
            start_paos_response(None, Some(("minor", "a < b"))),
        ] {
            roxmltree::Document::parse(&xml).unwrap();
        }
    }

    #[test]
    fn foreign_and_broken_messages_are_refused() {
        assert!(parse("<a/>").is_err());
        assert!(parse(&format!("{HEAD}<Other xmlns=\"urn:x\"/>{TAIL}")).is_err());
        assert!(parse(&format!("{HEAD}<StartPAOS xmlns=\"{ISO}\"/>{TAIL}")).is_err());
        assert!(parse(&format!("{}{}", "<a>".repeat(5000), "</a>".repeat(5000))).is_err());
        assert!(parse("<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>").is_err());
    }

    proptest! {
        #[test]
        fn any_text_parses_or_fails_without_panic(text in ".{0,200}") {
            let _ = parse(&text);
            let _ = parse(&format!("{HEAD}{text}{TAIL}"));
        }
    }
}
