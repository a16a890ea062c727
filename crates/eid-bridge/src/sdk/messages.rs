//! The SDK's wire format, API level 2: commands we send (`{"cmd": …}`) and messages AusweisApp2
//! sends (`{"msg": …}`). Fields AusweisApp2 adds in later versions are ignored, so a newer app
//! does not break us; a message we do not know at all becomes [`Message::Other`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// A command to AusweisApp2.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cmd", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Command {
    /// Asks for [`Message::Info`].
    GetInfo,
    /// Asks for [`Message::ApiLevel`].
    GetApiLevel,
    /// Selects the API level this client speaks.
    SetApiLevel {
        /// The level.
        level: u32,
    },
    /// Asks for [`Message::Status`].
    GetStatus,
    /// Asks for one [`Message::Reader`].
    GetReader {
        /// The reader's name.
        name: String,
    },
    /// Asks for [`Message::ReaderList`].
    GetReaderList,
    /// Starts an authentication for a TC token URL.
    RunAuth {
        /// Where AusweisApp2 fetches the TC token.
        #[serde(rename = "tcTokenURL")]
        tc_token_url: String,
        /// Accept an `http` TC token URL and test certificates (test systems only).
        #[serde(rename = "developerMode")]
        developer_mode: bool,
        /// Send [`Message::Status`] while the workflow runs.
        status: bool,
    },
    /// Starts the PIN change workflow.
    RunChangePin {
        /// Send [`Message::Status`] while the workflow runs.
        status: bool,
    },
    /// Asks for [`Message::AccessRights`] again.
    GetAccessRights,
    /// Enables exactly these optional access rights.
    SetAccessRights {
        /// The optional rights to keep.
        chat: Vec<String>,
    },
    /// Asks for [`Message::Certificate`].
    GetCertificate,
    /// The citizen accepts the requested access rights.
    Accept,
    /// Aborts the running workflow.
    Cancel,
    /// Interrupts the system's NFC dialog (iOS).
    Interrupt,
    /// The card's PIN; `None` when the reader has its own keypad.
    SetPin {
        /// The six digits.
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<Secret>,
    },
    /// The card access number.
    SetCan {
        /// The six digits.
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<Secret>,
    },
    /// The PIN unblocking key.
    SetPuk {
        /// The ten digits.
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<Secret>,
    },
    /// The new PIN in the PIN change workflow.
    SetNewPin {
        /// The six digits.
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<Secret>,
    },
    /// Inserts a card into an insertable reader, e.g. the built-in "Simulator".
    SetCard {
        /// The reader's name.
        name: String,
        /// For the Simulator: the card's files instead of its built-in test card.
        #[serde(skip_serializing_if = "Option::is_none")]
        simulator: Option<SimulatorCard>,
    },
}

/// The file system of a card for AusweisApp2's Simulator reader (`SET_CARD`'s `simulator`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulatorCard {
    /// Every file of the card; the Simulator knows no other.
    pub files: Vec<SimulatorFile>,
}

/// One elementary file: identifiers and content, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulatorFile {
    /// The file identifier (`0101` for DG1).
    pub file_id: String,
    /// The short file identifier (`01`).
    pub short_file_id: String,
    /// The content.
    pub content: String,
}

impl Command {
    /// The command's name on the wire, as `BAD_STATE` reports it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::GetInfo => "GET_INFO",
            Command::GetApiLevel => "GET_API_LEVEL",
            Command::SetApiLevel { .. } => "SET_API_LEVEL",
            Command::GetStatus => "GET_STATUS",
            Command::GetReader { .. } => "GET_READER",
            Command::GetReaderList => "GET_READER_LIST",
            Command::RunAuth { .. } => "RUN_AUTH",
            Command::RunChangePin { .. } => "RUN_CHANGE_PIN",
            Command::GetAccessRights => "GET_ACCESS_RIGHTS",
            Command::SetAccessRights { .. } => "SET_ACCESS_RIGHTS",
            Command::GetCertificate => "GET_CERTIFICATE",
            Command::Accept => "ACCEPT",
            Command::Cancel => "CANCEL",
            Command::Interrupt => "INTERRUPT",
            Command::SetPin { .. } => "SET_PIN",
            Command::SetCan { .. } => "SET_CAN",
            Command::SetPuk { .. } => "SET_PUK",
            Command::SetNewPin { .. } => "SET_NEW_PIN",
            Command::SetCard { .. } => "SET_CARD",
        }
    }

    /// The JSON text to send.
    pub fn to_json(&self) -> String {
        // Serializing plain strings, numbers and booleans cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Commands print without their secrets, so a command in a log line never carries a PIN.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::RunAuth { tc_token_url, developer_mode, .. } => f
                .debug_struct("RunAuth")
                .field("tc_token_url", tc_token_url)
                .field("developer_mode", developer_mode)
                .finish(),
            other => f.write_str(other.name()),
        }
    }
}

/// A PIN, CAN or PUK: serialized as the digits, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps the digits.
    pub fn new(digits: impl Into<String>) -> Self {
        Self(digits.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A message from AusweisApp2.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "msg", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Message {
    /// The provider's requested access rights; the workflow waits for ACCEPT or CANCEL.
    AccessRights(AccessRights),
    /// The available and the selected API level.
    ApiLevel(ApiLevel),
    /// An authentication started (no result), ended (result and url), or could not start (error).
    Auth(AuthMessage),
    /// The last command was not allowed in this state; `error` names it.
    BadState(ErrorText),
    /// The provider's terms-of-usage certificate.
    Certificate(Certificate),
    /// The PIN change workflow started or ended.
    ChangePin(ChangePin),
    /// The CAN is needed (one PIN try left, or a CAN-allowed provider).
    EnterCan(EnterSecret),
    /// The new PIN is needed.
    EnterNewPin(EnterSecret),
    /// The PIN is needed; a repeated ENTER_PIN without `error` means the PIN was wrong.
    EnterPin(EnterSecret),
    /// The PUK is needed (no PIN try left).
    EnterPuk(EnterSecret),
    /// No usable card is present.
    InsertCard(OptionalError),
    /// The app's version.
    Info(Info),
    /// A bug in AusweisApp2.
    InternalError(OptionalError),
    /// Our JSON was broken.
    Invalid(ErrorText),
    /// A reader (or the card in it) changed.
    Reader(Reader),
    /// All readers.
    ReaderList(ReaderList),
    /// The running workflow's progress.
    Status(Status),
    /// The command's name was unknown.
    UnknownCommand(ErrorText),
    /// A message of a newer API this client does not know; kept so it can be logged.
    #[serde(other)]
    Other,
}

impl Message {
    /// Parses one message; a message that is not JSON or lacks `msg` is an error.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// A message whose `error` is always set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorText {
    /// The error, or for BAD_STATE the refused command's name.
    #[serde(default)]
    pub error: String,
}

/// A message with an optional `error`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct OptionalError {
    /// What went wrong, if anything.
    #[serde(default)]
    pub error: Option<String>,
}

/// `ACCESS_RIGHTS`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccessRights {
    /// Set when SET_ACCESS_RIGHTS carried invalid data.
    #[serde(default)]
    pub error: Option<String>,
    /// The rights.
    pub chat: Chat,
    /// What the provider says the transaction is.
    #[serde(default, rename = "transactionInfo")]
    pub transaction_info: Option<String>,
    /// Age, validity and community checks asked for.
    #[serde(default)]
    pub aux: Option<Aux>,
}

/// The certificate holder authorization template, by right name (`FamilyName`, `Address`, …).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Chat {
    /// What will be read: required plus the enabled optional rights.
    #[serde(default)]
    pub effective: Vec<String>,
    /// What the citizen may switch off.
    #[serde(default)]
    pub optional: Vec<String>,
    /// What the provider needs.
    #[serde(default)]
    pub required: Vec<String>,
}

/// Auxiliary data of `ACCESS_RIGHTS`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Aux {
    /// Date of birth on or before which the age check passes.
    #[serde(default, rename = "ageVerificationDate")]
    pub age_verification_date: Option<String>,
    /// The age checked.
    #[serde(default, rename = "requiredAge")]
    pub required_age: Option<String>,
    /// Date the document must be valid on.
    #[serde(default, rename = "validityDate")]
    pub validity_date: Option<String>,
    /// The community id for the place check.
    #[serde(default, rename = "communityId")]
    pub community_id: Option<String>,
}

/// `API_LEVEL`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiLevel {
    /// Set when SET_API_LEVEL failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The levels this app supports.
    #[serde(default)]
    pub available: Vec<u32>,
    /// The level in use.
    pub current: u32,
}

/// `AUTH`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct AuthMessage {
    /// RUN_AUTH was refused and no workflow started.
    #[serde(default)]
    pub error: Option<String>,
    /// Present when the workflow ended.
    #[serde(default)]
    pub result: Option<AuthResult>,
    /// The refresh address (with the result appended) or the communication error address.
    #[serde(default)]
    pub url: Option<String>,
}

/// The result of an authentication (BSI TR-03112 result codes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuthResult {
    /// `…/resultmajor#ok` or `…/resultmajor#error`.
    pub major: String,
    /// The error's minor code.
    #[serde(default)]
    pub minor: Option<String>,
    /// Language of `description` and `message`.
    #[serde(default)]
    pub language: Option<String>,
    /// The minor code's description.
    #[serde(default)]
    pub description: Option<String>,
    /// What happened, for people.
    #[serde(default)]
    pub message: Option<String>,
    /// A stable failure code (`User_Cancelled`, `Card_Removed`, …).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The major result code that means success.
pub const RESULT_MAJOR_OK: &str = "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#ok";

impl AuthResult {
    /// Whether the authentication succeeded.
    pub fn is_ok(&self) -> bool {
        self.major == RESULT_MAJOR_OK
    }
}

/// `CERTIFICATE`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Certificate {
    /// Who asks and why.
    pub description: CertificateDescription,
    /// Validity period.
    pub validity: Validity,
}

/// The certificate description.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDescription {
    /// The issuing CA.
    pub issuer_name: String,
    /// Its URL.
    #[serde(default)]
    pub issuer_url: Option<String>,
    /// The service provider.
    pub subject_name: String,
    /// Its URL.
    #[serde(default)]
    pub subject_url: Option<String>,
    /// Terms of usage as issued.
    #[serde(default)]
    pub terms_of_usage: Option<String>,
    /// The purpose parsed from the terms.
    #[serde(default)]
    pub purpose: Option<String>,
}

/// Validity dates, ISO 8601.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Validity {
    /// Valid from.
    pub effective_date: String,
    /// Valid until.
    pub expiration_date: String,
}

/// `CHANGE_PIN`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct ChangePin {
    /// Present when the workflow ended.
    #[serde(default)]
    pub success: Option<bool>,
    /// Failure code.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `ENTER_PIN`, `ENTER_CAN`, `ENTER_PUK`, `ENTER_NEW_PIN`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EnterSecret {
    /// Set when our SET_… command was malformed (the card's counter is unchanged).
    #[serde(default)]
    pub error: Option<String>,
    /// The reader and card.
    pub reader: Reader,
}

/// `INFO`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Info {
    /// The version block.
    #[serde(rename = "VersionInfo")]
    pub version_info: VersionInfo,
}

/// The version block of `INFO`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionInfo {
    /// Application name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Implementation title.
    #[serde(default, rename = "Implementation-Title")]
    pub implementation_title: Option<String>,
    /// Vendor.
    #[serde(default, rename = "Implementation-Vendor")]
    pub implementation_vendor: Option<String>,
    /// Version, e.g. `1.26.2`.
    #[serde(rename = "Implementation-Version")]
    pub implementation_version: String,
    /// The specification implemented (TR-03124-1).
    #[serde(default, rename = "Specification-Title")]
    pub specification_title: Option<String>,
    /// Its publisher.
    #[serde(default, rename = "Specification-Vendor")]
    pub specification_vendor: Option<String>,
    /// Its version.
    #[serde(default, rename = "Specification-Version")]
    pub specification_version: Option<String>,
}

/// `READER`, and each entry of `READER_LIST`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reader {
    /// The reader's name (`Simulator` for the built-in one).
    pub name: String,
    /// Whether SET_CARD can insert a card.
    #[serde(default)]
    pub insertable: bool,
    /// Whether the reader is connected.
    #[serde(default)]
    pub attached: bool,
    /// Whether it has a PIN pad (then SET_PIN carries no value).
    #[serde(default)]
    pub keypad: bool,
    /// The card in it; `None` when there is none.
    #[serde(default)]
    pub card: Option<Card>,
}

/// The card in a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct Card {
    /// The PUK can no longer unblock the PIN.
    #[serde(default)]
    pub inoperative: bool,
    /// The eID function is switched off.
    #[serde(default)]
    pub deactivated: bool,
    /// PIN tries left (3, 2, 1 needs the CAN, 0 needs the PUK).
    #[serde(default, rename = "retryCounter")]
    pub retry_counter: Option<u8>,
}

/// `READER_LIST`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReaderList {
    /// Every reader.
    #[serde(default)]
    pub readers: Vec<Reader>,
}

/// `STATUS`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// `AUTH`, `CHANGE_PIN`, or `None` when idle.
    #[serde(default)]
    pub workflow: Option<String>,
    /// Percent done.
    #[serde(default)]
    pub progress: Option<u8>,
    /// The state the workflow waits in.
    #[serde(default)]
    pub state: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Commands serialize to exactly the SDK documentation's JSON.
    fn check_command(command: Command, expect: Value) {
        let sent: Value = serde_json::from_str(&command.to_json()).unwrap();
        assert_eq!(sent, expect, "{command:?}");
    }

    #[test]
    fn commands_are_the_documented_json() {
        check_command(Command::GetInfo, json!({"cmd": "GET_INFO"}));
        check_command(Command::GetApiLevel, json!({"cmd": "GET_API_LEVEL"}));
        check_command(Command::SetApiLevel { level: 2 }, json!({"cmd": "SET_API_LEVEL", "level": 2}));
        check_command(Command::GetStatus, json!({"cmd": "GET_STATUS"}));
        check_command(
            Command::GetReader { name: "NAME OF THE READER".into() },
            json!({"cmd": "GET_READER", "name": "NAME OF THE READER"}),
        );
        check_command(Command::GetReaderList, json!({"cmd": "GET_READER_LIST"}));
        check_command(
            Command::RunAuth {
                tc_token_url: "https://test.governikus-eid.de/Autent-DemoApplication/RequestServlet?provider=demo_epa_20&redirect=true".into(),
                developer_mode: false,
                status: true,
            },
            json!({"cmd": "RUN_AUTH", "tcTokenURL": "https://test.governikus-eid.de/Autent-DemoApplication/RequestServlet?provider=demo_epa_20&redirect=true", "developerMode": false, "status": true}),
        );
        check_command(Command::RunChangePin { status: true }, json!({"cmd": "RUN_CHANGE_PIN", "status": true}));
        check_command(Command::GetAccessRights, json!({"cmd": "GET_ACCESS_RIGHTS"}));
        check_command(Command::SetAccessRights { chat: vec![] }, json!({"cmd": "SET_ACCESS_RIGHTS", "chat": []}));
        check_command(
            Command::SetAccessRights { chat: vec!["FamilyName".into()] },
            json!({"cmd": "SET_ACCESS_RIGHTS", "chat": ["FamilyName"]}),
        );
        check_command(Command::GetCertificate, json!({"cmd": "GET_CERTIFICATE"}));
        check_command(Command::Accept, json!({"cmd": "ACCEPT"}));
        check_command(Command::Cancel, json!({"cmd": "CANCEL"}));
        check_command(Command::Interrupt, json!({"cmd": "INTERRUPT"}));
        check_command(
            Command::SetPin { value: Some(Secret::new("123456")) },
            json!({"cmd": "SET_PIN", "value": "123456"}),
        );
        check_command(Command::SetPin { value: None }, json!({"cmd": "SET_PIN"}));
        check_command(
            Command::SetCan { value: Some(Secret::new("123456")) },
            json!({"cmd": "SET_CAN", "value": "123456"}),
        );
        check_command(
            Command::SetPuk { value: Some(Secret::new("1234567890")) },
            json!({"cmd": "SET_PUK", "value": "1234567890"}),
        );
        check_command(
            Command::SetNewPin { value: Some(Secret::new("123456")) },
            json!({"cmd": "SET_NEW_PIN", "value": "123456"}),
        );
        check_command(
            Command::SetCard { name: "Simulator".into(), simulator: None },
            json!({"cmd": "SET_CARD", "name": "Simulator"}),
        );
        let file = SimulatorFile { file_id: "0101".into(), short_file_id: "01".into(), content: "610413024944".into() };
        check_command(
            Command::SetCard { name: "Simulator".into(), simulator: Some(SimulatorCard { files: vec![file] }) },
            json!({"cmd": "SET_CARD", "name": "Simulator", "simulator": {"files": [
                {"fileId": "0101", "shortFileId": "01", "content": "610413024944"}
            ]}}),
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let command = Command::SetPin { value: Some(Secret::new("123456")) };
        assert!(!format!("{command:?}").contains("123456"));
        assert!(!format!("{:?}", Secret::new("123456")).contains("123456"));
    }

    fn check_message(text: &str, expect: Message) {
        assert_eq!(Message::parse(text).unwrap(), expect, "{text}");
    }

    fn nfc(retry_counter: u8) -> Reader {
        Reader {
            name: "NFC".into(),
            insertable: false,
            attached: true,
            keypad: false,
            card: Some(Card { inoperative: false, deactivated: false, retry_counter: Some(retry_counter) }),
        }
    }

    const NFC_READER: &str = r#""reader": {"name": "NFC", "insertable": false, "attached": true, "keypad": false,
        "card": {"inoperative": false, "deactivated": false, "retryCounter": RC}}"#;

    #[test]
    fn messages_parse_from_the_documented_json() {
        check_message(
            r#"{"msg": "ACCESS_RIGHTS", "error": "some optional error message",
                "chat": {"effective": ["Address", "FamilyName", "GivenNames", "AgeVerification", "CanAllowed"],
                         "optional": ["GivenNames", "AgeVerification", "CanAllowed"], "required": ["Address", "FamilyName"]},
                "transactionInfo": "this is an example",
                "aux": {"ageVerificationDate": "1999-07-20", "requiredAge": "18", "validityDate": "2017-07-20", "communityId": "02760400110000"}}"#,
            Message::AccessRights(AccessRights {
                error: Some("some optional error message".into()),
                chat: Chat {
                    effective: ["Address", "FamilyName", "GivenNames", "AgeVerification", "CanAllowed"]
                        .map(String::from)
                        .into(),
                    optional: ["GivenNames", "AgeVerification", "CanAllowed"].map(String::from).into(),
                    required: ["Address", "FamilyName"].map(String::from).into(),
                },
                transaction_info: Some("this is an example".into()),
                aux: Some(Aux {
                    age_verification_date: Some("1999-07-20".into()),
                    required_age: Some("18".into()),
                    validity_date: Some("2017-07-20".into()),
                    community_id: Some("02760400110000".into()),
                }),
            }),
        );
        check_message(
            r#"{"msg": "API_LEVEL", "error": "optional error message like an invalid level", "available": [1,2,3], "current": 3}"#,
            Message::ApiLevel(ApiLevel {
                error: Some("optional error message like an invalid level".into()),
                available: vec![1, 2, 3],
                current: 3,
            }),
        );
        check_message(
            r#"{"msg": "AUTH", "error": "error message if RUN_AUTH failed"}"#,
            Message::Auth(AuthMessage { error: Some("error message if RUN_AUTH failed".into()), ..Default::default() }),
        );
        check_message(r#"{"msg": "AUTH"}"#, Message::Auth(AuthMessage::default()));
        check_message(
            r#"{"msg": "AUTH", "result": {"major": "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#ok"},
                "url": "https://test.governikus-eid.de/gov_autent/async?refID=_123456789"}"#,
            Message::Auth(AuthMessage {
                error: None,
                result: Some(AuthResult {
                    major: RESULT_MAJOR_OK.into(),
                    minor: None,
                    language: None,
                    description: None,
                    message: None,
                    reason: None,
                }),
                url: Some("https://test.governikus-eid.de/gov_autent/async?refID=_123456789".into()),
            }),
        );
        check_message(
            r#"{"msg": "AUTH", "result": {"major": "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#error",
                "minor": "http://www.bsi.bund.de/ecard/api/1.1/resultminor/al/common#internalError", "language": "en",
                "description": "An internal error has occurred during processing.",
                "message": "The connection to the ID card has been lost. The process was aborted.", "reason": "Card_Removed"},
                "url": "https://test.governikus-eid.de/gov_autent/async?refID=_abcdefgh"}"#,
            Message::Auth(AuthMessage {
                error: None,
                result: Some(AuthResult {
                    major: "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#error".into(),
                    minor: Some("http://www.bsi.bund.de/ecard/api/1.1/resultminor/al/common#internalError".into()),
                    language: Some("en".into()),
                    description: Some("An internal error has occurred during processing.".into()),
                    message: Some("The connection to the ID card has been lost. The process was aborted.".into()),
                    reason: Some("Card_Removed".into()),
                }),
                url: Some("https://test.governikus-eid.de/gov_autent/async?refID=_abcdefgh".into()),
            }),
        );
        check_message(
            r#"{"msg": "BAD_STATE", "error": "NAME_OF_YOUR_COMMAND"}"#,
            Message::BadState(ErrorText { error: "NAME_OF_YOUR_COMMAND".into() }),
        );
        check_message(
            r#"{"msg": "CERTIFICATE", "description": {"issuerName": "Governikus Test DVCA", "issuerUrl": "http://www.governikus.de",
                "subjectName": "Governikus GmbH & Co. KG", "subjectUrl": "https://test.governikus-eid.de",
                "termsOfUsage": "Anschrift:\t\r\nGovernikus GmbH & Co. KG", "purpose": "Demonstration des eID-Service"},
                "validity": {"effectiveDate": "2016-07-31", "expirationDate": "2016-08-30"}}"#,
            Message::Certificate(Certificate {
                description: CertificateDescription {
                    issuer_name: "Governikus Test DVCA".into(),
                    issuer_url: Some("http://www.governikus.de".into()),
                    subject_name: "Governikus GmbH & Co. KG".into(),
                    subject_url: Some("https://test.governikus-eid.de".into()),
                    terms_of_usage: Some("Anschrift:\t\r\nGovernikus GmbH & Co. KG".into()),
                    purpose: Some("Demonstration des eID-Service".into()),
                },
                validity: Validity { effective_date: "2016-07-31".into(), expiration_date: "2016-08-30".into() },
            }),
        );
        check_message(
            r#"{"msg": "CHANGE_PIN", "success": false, "reason": "Card_Removed"}"#,
            Message::ChangePin(ChangePin { success: Some(false), reason: Some("Card_Removed".into()) }),
        );
        for (name, retry, make) in [
            ("ENTER_CAN", 1, Message::EnterCan as fn(EnterSecret) -> Message),
            ("ENTER_PIN", 3, Message::EnterPin),
            ("ENTER_NEW_PIN", 3, Message::EnterNewPin),
            ("ENTER_PUK", 0, Message::EnterPuk),
        ] {
            let reader = NFC_READER.replace("RC", &retry.to_string());
            check_message(
                &format!(r#"{{"msg": "{name}", "error": "You must provide 6 digits", {reader}}}"#),
                make(EnterSecret { error: Some("You must provide 6 digits".into()), reader: nfc(retry) }),
            );
        }
        check_message(
            r#"{"msg": "INFO", "VersionInfo": {"Name": "AusweisApp2", "Implementation-Title": "AusweisApp2",
                "Implementation-Vendor": "Governikus GmbH & Co. KG", "Implementation-Version": "2.0.0",
                "Specification-Title": "TR-03124-1", "Specification-Vendor": "Federal Office for Information Security",
                "Specification-Version": "1.4"}, "AusweisApp": "CONNECTED"}"#,
            Message::Info(Info {
                version_info: VersionInfo {
                    name: "AusweisApp2".into(),
                    implementation_title: Some("AusweisApp2".into()),
                    implementation_vendor: Some("Governikus GmbH & Co. KG".into()),
                    implementation_version: "2.0.0".into(),
                    specification_title: Some("TR-03124-1".into()),
                    specification_vendor: Some("Federal Office for Information Security".into()),
                    specification_version: Some("1.4".into()),
                },
            }),
        );
        check_message(
            r#"{"msg": "INSERT_CARD", "error": "Name cannot be undefined"}"#,
            Message::InsertCard(OptionalError { error: Some("Name cannot be undefined".into()) }),
        );
        check_message(r#"{"msg": "INSERT_CARD"}"#, Message::InsertCard(OptionalError::default()));
        check_message(
            r#"{"msg": "INTERNAL_ERROR", "error": "Unexpected condition"}"#,
            Message::InternalError(OptionalError { error: Some("Unexpected condition".into()) }),
        );
        check_message(
            r#"{"msg": "INVALID", "error": "unterminated string (offset: 12)"}"#,
            Message::Invalid(ErrorText { error: "unterminated string (offset: 12)".into() }),
        );
        check_message(
            r#"{"msg": "READER", "name": "NFC", "insertable": false, "attached": true, "keypad": false,
                "card": {"inoperative": false, "deactivated": false, "retryCounter": 3}}"#,
            Message::Reader(nfc(3)),
        );
        check_message(
            r#"{"msg": "READER", "name": "NFC", "insertable": false, "attached": true, "keypad": false, "card": null}"#,
            Message::Reader(Reader { card: None, ..nfc(3) }),
        );
        check_message(
            r#"{"msg": "READER_LIST", "readers": [{"name": "Example reader 1 [SmartCard] (1234567) 01 00",
                "insertable": false, "attached": true, "keypad": true, "card": null},
                {"name": "NFC", "insertable": false, "attached": true, "keypad": false,
                 "card": {"inoperative": false, "deactivated": false, "retryCounter": 3}}]}"#,
            Message::ReaderList(ReaderList {
                readers: vec![
                    Reader {
                        name: "Example reader 1 [SmartCard] (1234567) 01 00".into(),
                        insertable: false,
                        attached: true,
                        keypad: true,
                        card: None,
                    },
                    nfc(3),
                ],
            }),
        );
        check_message(
            r#"{"msg": "STATUS", "workflow": "AUTH", "progress": 25, "state": "ACCESS_RIGHTS"}"#,
            Message::Status(Status {
                workflow: Some("AUTH".into()),
                progress: Some(25),
                state: Some("ACCESS_RIGHTS".into()),
            }),
        );
        check_message(
            r#"{"msg": "STATUS", "workflow": null, "progress": null, "state": null}"#,
            Message::Status(Status { workflow: None, progress: None, state: None }),
        );
        check_message(
            r#"{"msg": "UNKNOWN_COMMAND", "error": "get_INFo"}"#,
            Message::UnknownCommand(ErrorText { error: "get_INFo".into() }),
        );
        check_message(r#"{"msg": "PAUSE", "cause": "BadCardPosition"}"#, Message::Other);
    }

    #[test]
    fn broken_messages_are_errors_not_panics() {
        for text in ["", "{", "[]", r#"{"cmd": "GET_INFO"}"#, r#"{"msg": "API_LEVEL"}"#, r#"{"msg": 3}"#] {
            assert!(Message::parse(text).is_err(), "{text}");
        }
    }
}

#[cfg(test)]
mod untrusted_input {
    use proptest::prelude::*;

    use super::Message;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever AusweisApp2 (or something on its port) sends is a message or an error, never
        /// a panic — also for the messages we know with fields of any type.
        #[test]
        fn sdk_messages_never_panic(
            text in ".{0,300}",
            msg in prop_oneof![Just("AUTH".to_owned()), Just("ACCESS_RIGHTS".to_owned()), Just("INSERT_CARD".to_owned()), Just("ENTER_PIN".to_owned()), Just("ENTER_CAN".to_owned()), Just("ENTER_PUK".to_owned()), Just("READER".to_owned()), Just("READER_LIST".to_owned()), Just("INFO".to_owned()), Just("API_LEVEL".to_owned()), Just("STATUS".to_owned()), Just("BAD_STATE".to_owned()), Just("INVALID".to_owned()), Just("UNKNOWN_COMMAND".to_owned()), Just("CERTIFICATE".to_owned()), ".{0,12}"],
            field in prop_oneof![Just("result".to_owned()), Just("reader".to_owned()), Just("card".to_owned()), Just("error".to_owned()), Just("url".to_owned()), Just("chat".to_owned()), Just("retryCounter".to_owned()), Just("available".to_owned()), Just("current".to_owned()), ".{0,8}"],
            value in prop_oneof![Just(serde_json::Value::Null), any::<i64>().prop_map(serde_json::Value::from), ".{0,20}".prop_map(serde_json::Value::from), any::<bool>().prop_map(serde_json::Value::from), Just(serde_json::json!({"major": "x", "minor": 1})), Just(serde_json::json!([1, "a", null]))],
        ) {
            let _ = Message::parse(&text);
            let shaped = serde_json::json!({ "msg": msg, field: value }).to_string();
            let _ = Message::parse(&shaped);
        }
    }
}
