//! The SDK client: one WebSocket to AusweisApp2's `eID-Kernel`, the workflow state machine in
//! front of it, and a driver that runs a whole authentication with a [`CardHolder`] answering
//! the app's questions.

use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

use super::{
    messages::{AccessRights, AuthResult, Command, Info, Message, Reader, Secret, SimulatorCard},
    workflow::Workflow,
};

/// The API level this client speaks.
pub const API_LEVEL: u32 = 2;

/// How long [`SdkClient::wait_for_readers`] waits on one connection for a reader before it
/// connects again (the app lists its Simulator within about 100 ms of a connection once its
/// reader plugins are registered).
pub const RESCAN_AFTER: Duration = Duration::from_secs(2);

/// The SDK address of a locally installed AusweisApp2.
pub const DEFAULT_SDK_URL: &str = "ws://127.0.0.1:24727/eID-Kernel";

/// Where and how patiently to talk to AusweisApp2.
#[derive(Debug, Clone)]
pub struct SdkConfig {
    /// The `eID-Kernel` WebSocket URL.
    pub url: String,
    /// How long to keep trying to connect (AusweisApp2 may still be starting).
    pub connect_timeout: Duration,
    /// How long to wait for the app's answer to a command, or for its next message while it
    /// works on its own (card access, network).
    pub message_timeout: Duration,
}

impl Default for SdkConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_SDK_URL.into(),
            connect_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(60),
        }
    }
}

/// What went wrong talking to AusweisApp2.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// No AusweisApp2 answered at the address within the connect timeout.
    #[error("AusweisApp2 is not reachable at {url}")]
    Unreachable {
        /// The address tried.
        url: String,
        /// The last connection error.
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// The connection broke or was closed.
    #[error("the connection to AusweisApp2 was lost")]
    Disconnected(#[source] Option<Box<tungstenite::Error>>),
    /// No message within the message timeout.
    #[error("AusweisApp2 did not answer within {0:?}")]
    Timeout(Duration),
    /// The command is not allowed in the workflow's current state (refused before sending).
    #[error("{command} is not allowed in state {state}")]
    NotAllowed {
        /// The command's name.
        command: &'static str,
        /// The state, for the message.
        state: String,
    },
    /// AusweisApp2 answered BAD_STATE.
    #[error("AusweisApp2 refused {0} in its current state")]
    BadState(String),
    /// AusweisApp2 could not parse our JSON (INVALID) or did not know the command.
    #[error("AusweisApp2 rejected the command: {0}")]
    Rejected(String),
    /// AusweisApp2 reported an internal error.
    #[error("AusweisApp2 reported an internal error: {0}")]
    Internal(String),
    /// A message we could not parse.
    #[error("AusweisApp2 sent an unreadable message")]
    Malformed(#[source] serde_json::Error),
    /// The app does not speak our API level.
    #[error("AusweisApp2 does not offer API level {API_LEVEL} (available: {0:?})")]
    UnsupportedApiLevel(Vec<u32>),
    /// RUN_AUTH was refused (e.g. an invalid TC token URL).
    #[error("the authentication could not start: {0}")]
    AuthRefused(String),
    /// The card's PIN is blocked and the PUK can no longer unblock it.
    #[error("the ID card's PIN is blocked for good; the issuing authority can unblock it")]
    CardInoperative,
    /// The online ID function of the card is switched off.
    #[error("the online ID function of this card is switched off")]
    EidDeactivated,
}

/// The end of an authentication: AusweisApp2's result and the URL the browser would be sent
/// to (the TC token's refresh address with the result, or its communication error address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    /// The result codes.
    pub result: AuthResult,
    /// The refresh or communication error address.
    pub url: Option<String>,
}

/// Why a PIN is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRequest {
    /// The reader and the card's retry counter.
    pub reader: Reader,
    /// The previous PIN was wrong.
    pub previous_wrong: bool,
}

/// The citizen (or a test script) answering AusweisApp2's questions. Returning `None` cancels
/// the workflow. Implementations must not keep or log the secrets they hand out.
#[async_trait]
pub trait CardHolder: Send {
    /// Whether to accept the provider's access rights.
    async fn accept(&mut self, rights: &AccessRights) -> bool;
    /// The name of an insertable reader to put a card into (e.g. `Simulator`), or `None` to
    /// wait for the citizen to insert the card.
    async fn insert_card(&mut self) -> Option<String>;
    /// For the Simulator reader: the card to put in; `None`, its built-in test card.
    fn simulator_card(&self) -> Option<SimulatorCard> {
        None
    }
    /// The six-digit PIN.
    async fn pin(&mut self, request: &PinRequest) -> Option<Secret>;
    /// The six-digit CAN (needed before the last PIN try).
    async fn can(&mut self, reader: &Reader) -> Option<Secret>;
    /// The ten-digit PUK (the PIN is blocked).
    async fn puk(&mut self, reader: &Reader) -> Option<Secret>;
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connection to AusweisApp2's SDK.
pub struct SdkClient {
    config: SdkConfig,
    socket: Socket,
    workflow: Workflow,
}

impl SdkClient {
    /// Connects (retrying until the connect timeout, as the app may still be starting) and
    /// selects API level 2.
    pub async fn connect(config: SdkConfig) -> Result<Self, SdkError> {
        let socket = open(&config).await?;
        let mut client = Self { config, socket, workflow: Workflow::new() };
        client.negotiate().await?;
        Ok(client)
    }

    /// Opens a new connection after a lost one. The app ends a workflow whose client went away,
    /// so the state starts from idle.
    pub async fn reconnect(&mut self) -> Result<(), SdkError> {
        self.socket = open(&self.config).await?;
        self.workflow = Workflow::new();
        self.negotiate().await
    }

    async fn negotiate(&mut self) -> Result<(), SdkError> {
        let Message::ApiLevel(levels) = self.request(Command::GetApiLevel).await? else {
            return Err(SdkError::Rejected("no API_LEVEL answer".into()));
        };
        if !levels.available.contains(&API_LEVEL) {
            return Err(SdkError::UnsupportedApiLevel(levels.available));
        }
        match self.request(Command::SetApiLevel { level: API_LEVEL }).await? {
            Message::ApiLevel(set) if set.error.is_none() && set.current == API_LEVEL => Ok(()),
            _ => Err(SdkError::UnsupportedApiLevel(levels.available)),
        }
    }

    /// The workflow as this client sees it.
    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    /// Sends a command the workflow allows now.
    pub async fn send(&mut self, command: Command) -> Result<(), SdkError> {
        if !self.workflow.allows(&command) {
            return Err(SdkError::NotAllowed {
                command: command.name(),
                state: format!("{:?}", self.workflow.state()),
            });
        }
        tracing::debug!(?command, "to AusweisApp2");
        self.socket
            .send(tungstenite::Message::text(command.to_json()))
            .await
            .map_err(|e| SdkError::Disconnected(Some(Box::new(e))))?;
        self.workflow.sent(&command);
        Ok(())
    }

    /// The next message, within the message timeout. BAD_STATE, INVALID, UNKNOWN_COMMAND and
    /// INTERNAL_ERROR become errors.
    pub async fn next_message(&mut self) -> Result<Message, SdkError> {
        let timeout = self.config.message_timeout;
        loop {
            let frame =
                tokio::time::timeout(timeout, self.socket.next()).await.map_err(|_| SdkError::Timeout(timeout))?;
            let text = match frame {
                None => return Err(SdkError::Disconnected(None)),
                Some(Err(e)) => return Err(SdkError::Disconnected(Some(Box::new(e)))),
                Some(Ok(tungstenite::Message::Text(text))) => text,
                Some(Ok(tungstenite::Message::Close(_))) => return Err(SdkError::Disconnected(None)),
                // Pings are answered by tungstenite; nothing else carries SDK messages.
                Some(Ok(_)) => continue,
            };
            let message = Message::parse(text.as_str()).map_err(SdkError::Malformed)?;
            self.workflow.received(&message);
            return match message {
                Message::BadState(e) => Err(SdkError::BadState(e.error)),
                Message::Invalid(e) | Message::UnknownCommand(e) => Err(SdkError::Rejected(e.error)),
                Message::InternalError(e) => Err(SdkError::Internal(e.error.unwrap_or_default())),
                Message::Other => {
                    tracing::debug!("AusweisApp2 sent a message of a newer API level; ignored");
                    continue;
                }
                message => Ok(message),
            };
        }
    }

    /// Sends an information command and returns its answer, skipping notices (READER, STATUS)
    /// that arrive in between.
    pub async fn request(&mut self, command: Command) -> Result<Message, SdkError> {
        let expected: fn(&Message) -> bool = match command {
            Command::GetInfo => |m| matches!(m, Message::Info(_)),
            Command::GetApiLevel | Command::SetApiLevel { .. } => |m| matches!(m, Message::ApiLevel(_)),
            Command::GetStatus => |m| matches!(m, Message::Status(_)),
            Command::GetReader { .. } => |m| matches!(m, Message::Reader(_)),
            Command::GetReaderList => |m| matches!(m, Message::ReaderList(_)),
            Command::GetCertificate => |m| matches!(m, Message::Certificate(_)),
            Command::GetAccessRights | Command::SetAccessRights { .. } => |m| matches!(m, Message::AccessRights(_)),
            _ => |_| true,
        };
        self.send(command).await?;
        loop {
            let message = self.next_message().await?;
            if expected(&message) {
                return Ok(message);
            }
        }
    }

    /// GET_INFO.
    pub async fn info(&mut self) -> Result<Info, SdkError> {
        match self.request(Command::GetInfo).await? {
            Message::Info(info) => Ok(info),
            _ => Err(SdkError::Rejected("no INFO answer".into())),
        }
    }

    /// GET_READER_LIST.
    pub async fn readers(&mut self) -> Result<Vec<Reader>, SdkError> {
        match self.request(Command::GetReaderList).await? {
            Message::ReaderList(list) => Ok(list.readers),
            _ => Err(SdkError::Rejected("no READER_LIST answer".into())),
        }
    }

    /// The readers, once there are any. A freshly started AusweisApp2 answers before it has
    /// registered its readers, so the list is asked again every 100 ms until it is not empty or
    /// `patience` has passed (then the empty list). And the app starts its reader scans when a
    /// client connects, only for the reader plugins it has registered by then: a client that
    /// connected in the app's first moments (on a loaded machine, its first seconds) sees no
    /// reader, not even the Simulator, for as long as it stays. So a list still empty
    /// [`RESCAN_AFTER`] after connecting makes the client connect again.
    pub async fn wait_for_readers(&mut self, patience: Duration) -> Result<Vec<Reader>, SdkError> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut connected = tokio::time::Instant::now();
        loop {
            let readers = self.readers().await?;
            let now = tokio::time::Instant::now();
            if !readers.is_empty() || now >= deadline {
                return Ok(readers);
            }
            if now - connected >= RESCAN_AFTER {
                tracing::debug!("AusweisApp2 lists no reader; connecting again to start its scans");
                // The app takes a new client only once it has let the old one go; `open`
                // retries until then.
                let _ = self.socket.close(None).await;
                self.reconnect().await?;
                connected = tokio::time::Instant::now();
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Runs a whole authentication for `tc_token_url`, answering the app's questions through
    /// `holder`, and returns AusweisApp2's result. A `None` from the holder cancels; the app
    /// then still reports its (error) result and the refresh address.
    pub async fn authenticate(
        &mut self,
        tc_token_url: &str,
        developer_mode: bool,
        holder: &mut dyn CardHolder,
    ) -> Result<AuthOutcome, SdkError> {
        self.send(Command::RunAuth { tc_token_url: tc_token_url.into(), developer_mode, status: true }).await?;
        let mut pin_asked = false;
        loop {
            let reply = match self.next_message().await? {
                Message::Auth(auth) => {
                    if let Some(error) = auth.error {
                        return Err(SdkError::AuthRefused(error));
                    }
                    match auth.result {
                        Some(result) => return Ok(AuthOutcome { result, url: auth.url }),
                        None => continue,
                    }
                }
                Message::AccessRights(rights) => {
                    if holder.accept(&rights).await {
                        Command::Accept
                    } else {
                        Command::Cancel
                    }
                }
                Message::InsertCard(_) => match holder.insert_card().await {
                    Some(name) => Command::SetCard { name, simulator: holder.simulator_card() },
                    None => continue,
                },
                Message::EnterPin(enter) => {
                    check_card(&enter.reader)?;
                    // A repeated ENTER_PIN without `error` means the card refused the PIN.
                    let request =
                        PinRequest { previous_wrong: pin_asked && enter.error.is_none(), reader: enter.reader };
                    pin_asked = true;
                    match holder.pin(&request).await {
                        Some(pin) => Command::SetPin { value: (!request.reader.keypad).then_some(pin) },
                        None => Command::Cancel,
                    }
                }
                Message::EnterCan(enter) => {
                    check_card(&enter.reader)?;
                    match holder.can(&enter.reader).await {
                        Some(can) => Command::SetCan { value: (!enter.reader.keypad).then_some(can) },
                        None => Command::Cancel,
                    }
                }
                Message::EnterPuk(enter) => {
                    check_card(&enter.reader)?;
                    match holder.puk(&enter.reader).await {
                        Some(puk) => Command::SetPuk { value: (!enter.reader.keypad).then_some(puk) },
                        None => Command::Cancel,
                    }
                }
                // An authentication never asks for a new PIN; refuse rather than guess.
                Message::EnterNewPin(_) => Command::Cancel,
                _ => continue,
            };
            self.send(reply).await?;
        }
    }
}

/// A card that cannot authenticate ends the workflow with a clear error.
fn check_card(reader: &Reader) -> Result<(), SdkError> {
    match reader.card {
        Some(card) if card.inoperative => Err(SdkError::CardInoperative),
        Some(card) if card.deactivated => Err(SdkError::EidDeactivated),
        _ => Ok(()),
    }
}

async fn open(config: &SdkConfig) -> Result<Socket, SdkError> {
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        match tokio_tungstenite::connect_async(config.url.as_str()).await {
            Ok((socket, _)) => return Ok(socket),
            Err(source) if tokio::time::Instant::now() + pause >= deadline => {
                return Err(SdkError::Unreachable { url: config.url.clone(), source: Box::new(source) });
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}
