//! What may be sent when: the SDK's workflow as a state machine, fed by every message received,
//! so a command AusweisApp2 would answer with BAD_STATE is refused here before it is sent.

use super::messages::{Command, Message, Reader};

/// Where the SDK's workflow stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// No workflow runs.
    Idle,
    /// RUN_AUTH or RUN_CHANGE_PIN was sent; the start message has not come yet.
    Starting,
    /// A workflow runs and waits for nothing from us.
    Running,
    /// ACCESS_RIGHTS: waits for ACCEPT or CANCEL.
    AccessRights,
    /// INSERT_CARD: waits for a card (or SET_CARD).
    InsertCard,
    /// ENTER_PIN: waits for SET_PIN.
    EnterPin(Reader),
    /// ENTER_CAN: waits for SET_CAN.
    EnterCan(Reader),
    /// ENTER_PUK: waits for SET_PUK.
    EnterPuk(Reader),
    /// ENTER_NEW_PIN: waits for SET_NEW_PIN.
    EnterNewPin(Reader),
}

/// The workflow as seen from the messages so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    state: State,
    /// Whether ACCESS_RIGHTS came in this workflow (GET_CERTIFICATE and GET_ACCESS_RIGHTS stay
    /// allowed after it).
    access_rights_seen: bool,
}

impl Default for Workflow {
    fn default() -> Self {
        Self::new()
    }
}

impl Workflow {
    /// No workflow running.
    pub fn new() -> Self {
        Self { state: State::Idle, access_rights_seen: false }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether `command` may be sent now.
    pub fn allows(&self, command: &Command) -> bool {
        use Command as C;
        let in_workflow = !matches!(self.state, State::Idle);
        match command {
            // Information is always available.
            C::GetInfo
            | C::GetApiLevel
            | C::SetApiLevel { .. }
            | C::GetStatus
            | C::GetReader { .. }
            | C::GetReaderList => true,
            C::RunAuth { .. } | C::RunChangePin { .. } => !in_workflow,
            C::Cancel => in_workflow && self.state != State::Starting,
            C::Accept => self.state == State::AccessRights,
            C::SetAccessRights { .. } => self.state == State::AccessRights,
            C::GetAccessRights | C::GetCertificate => in_workflow && self.access_rights_seen,
            // A simulated card can be inserted whenever a workflow runs; the app pauses for it.
            C::SetCard { .. } => in_workflow && self.state != State::Starting,
            C::SetPin { .. } => matches!(self.state, State::EnterPin(_)),
            C::SetCan { .. } => matches!(self.state, State::EnterCan(_)),
            C::SetPuk { .. } => matches!(self.state, State::EnterPuk(_)),
            C::SetNewPin { .. } => matches!(self.state, State::EnterNewPin(_)),
            C::Interrupt => matches!(
                self.state,
                State::EnterPin(_) | State::EnterCan(_) | State::EnterPuk(_) | State::EnterNewPin(_)
            ),
        }
    }

    /// Records that `command` was sent.
    pub fn sent(&mut self, command: &Command) {
        match command {
            Command::RunAuth { .. } | Command::RunChangePin { .. } => {
                self.state = State::Starting;
                self.access_rights_seen = false;
            }
            // After these the app works until it sends the next request.
            Command::Accept
            | Command::SetPin { .. }
            | Command::SetCan { .. }
            | Command::SetPuk { .. }
            | Command::SetNewPin { .. } => self.state = State::Running,
            _ => {}
        }
    }

    /// Advances on a message from AusweisApp2.
    pub fn received(&mut self, message: &Message) {
        self.state = match message {
            // RUN_AUTH refused, or the workflow ended.
            Message::Auth(auth) if auth.error.is_some() || auth.result.is_some() => State::Idle,
            Message::ChangePin(change) if change.success.is_some() => State::Idle,
            Message::Auth(_) | Message::ChangePin(_) => State::Running,
            Message::AccessRights(_) => {
                self.access_rights_seen = true;
                State::AccessRights
            }
            Message::InsertCard(_) => State::InsertCard,
            Message::EnterPin(e) => State::EnterPin(e.reader.clone()),
            Message::EnterCan(e) => State::EnterCan(e.reader.clone()),
            Message::EnterPuk(e) => State::EnterPuk(e.reader.clone()),
            Message::EnterNewPin(e) => State::EnterNewPin(e.reader.clone()),
            Message::Status(status) if status.workflow.is_none() => State::Idle,
            // Answers to information commands and notices do not move the workflow.
            _ => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::messages::Secret;

    fn message(json: &str) -> Message {
        Message::parse(json).unwrap()
    }

    const READER: &str = r#""reader": {"name": "Simulator", "attached": true, "insertable": true, "keypad": false,
        "card": {"inoperative": false, "deactivated": false, "retryCounter": 3}}"#;

    fn run_auth() -> Command {
        Command::RunAuth { tc_token_url: "http://127.0.0.1/tc".into(), developer_mode: true, status: true }
    }

    fn pin() -> Command {
        Command::SetPin { value: Some(Secret::new("123456")) }
    }

    #[test]
    fn the_happy_path_allows_each_step_in_turn() {
        let mut w = Workflow::new();
        assert!(w.allows(&run_auth()));
        assert!(!w.allows(&Command::Accept), "nothing to accept yet");
        assert!(!w.allows(&Command::Cancel), "nothing to cancel yet");
        w.sent(&run_auth());
        assert_eq!(w.state(), &State::Starting);
        assert!(!w.allows(&run_auth()), "one workflow at a time");
        w.received(&message(r#"{"msg": "AUTH"}"#));
        assert_eq!(w.state(), &State::Running);
        assert!(w.allows(&Command::Cancel));
        assert!(!w.allows(&Command::GetCertificate), "only after ACCESS_RIGHTS");
        w.received(&message(r#"{"msg": "ACCESS_RIGHTS", "chat": {"effective": [], "optional": [], "required": []}}"#));
        for allowed in [Command::Accept, Command::GetCertificate, Command::SetAccessRights { chat: vec![] }] {
            assert!(w.allows(&allowed), "{allowed:?}");
        }
        assert!(!w.allows(&pin()));
        w.sent(&Command::Accept);
        assert!(!w.allows(&Command::Accept), "accepted once");
        assert!(w.allows(&Command::GetCertificate), "the certificate stays readable");
        w.received(&message(r#"{"msg": "INSERT_CARD"}"#));
        assert!(w.allows(&Command::SetCard { name: "Simulator".into(), simulator: None }));
        w.received(&message(&format!(r#"{{"msg": "ENTER_PIN", {READER}}}"#)));
        assert!(w.allows(&pin()));
        assert!(w.allows(&Command::Interrupt));
        assert!(!w.allows(&Command::SetCan { value: None }));
        w.sent(&pin());
        assert!(!w.allows(&pin()), "a PIN only when asked for");
        w.received(&message(r#"{"msg": "AUTH", "result": {"major": "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#ok"}, "url": "http://x"}"#));
        assert_eq!(w.state(), &State::Idle);
        assert!(w.allows(&run_auth()));
    }

    #[test]
    fn can_puk_and_new_pin_are_each_allowed_only_when_asked_for() {
        for (msg, allowed) in [
            ("ENTER_CAN", Command::SetCan { value: Some(Secret::new("123456")) }),
            ("ENTER_PUK", Command::SetPuk { value: Some(Secret::new("1234567890")) }),
            ("ENTER_NEW_PIN", Command::SetNewPin { value: Some(Secret::new("123456")) }),
        ] {
            let mut w = Workflow::new();
            w.sent(&run_auth());
            w.received(&message(r#"{"msg": "AUTH"}"#));
            assert!(!w.allows(&allowed), "{msg} not yet");
            w.received(&message(&format!(r#"{{"msg": "{msg}", {READER}}}"#)));
            assert!(w.allows(&allowed), "{msg}");
            assert!(!w.allows(&pin()) || msg == "ENTER_PIN", "{msg}");
        }
    }

    #[test]
    fn information_commands_are_always_allowed_and_move_nothing() {
        let mut w = Workflow::new();
        w.sent(&run_auth());
        for command in [Command::GetInfo, Command::GetApiLevel, Command::GetStatus, Command::GetReaderList] {
            assert!(w.allows(&command));
            w.sent(&command);
        }
        w.received(&message(r#"{"msg": "READER", "name": "NFC", "attached": false}"#));
        assert_eq!(w.state(), &State::Starting);
    }

    #[test]
    fn a_refused_run_auth_and_an_idle_status_end_the_workflow() {
        let mut w = Workflow::new();
        w.sent(&run_auth());
        w.received(&message(r#"{"msg": "AUTH", "error": "Validation of tcTokenURL failed"}"#));
        assert_eq!(w.state(), &State::Idle);
        w.sent(&run_auth());
        w.received(&message(r#"{"msg": "STATUS", "workflow": null, "progress": null, "state": null}"#));
        assert_eq!(w.state(), &State::Idle);
    }
}
