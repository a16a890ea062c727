//! `servicekonto eid`: drives the AusweisApp2 on this machine through its SDK for one TC token
//! URL, e.g. at a service-desk terminal where staff help a citizen register. The citizen types
//! PIN, CAN or PUK at the prompt, without echo; nothing of it is logged or kept.

use std::io::{BufRead, Write};

use async_trait::async_trait;
use eid_bridge::sdk::{
    client::{CardHolder, PinRequest, SdkClient, SdkConfig},
    messages::{AccessRights, Reader, Secret},
};

/// What to run.
pub(crate) struct EidRun {
    pub(crate) sdk_url: String,
    pub(crate) tc_token_url: String,
    pub(crate) developer_mode: bool,
    pub(crate) simulator: bool,
}

/// Answers AusweisApp2's questions at the terminal.
struct Terminal {
    simulator: bool,
}

fn ask(question: &str) -> Option<String> {
    eprint!("{question} ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    let line = line.trim().to_owned();
    (!line.is_empty()).then_some(line)
}

/// A PIN, CAN or PUK, typed without echo (a service desk's screen may be seen by others).
fn ask_secret(question: &str) -> Option<Secret> {
    let digits = rpassword::prompt_password(format!("{question} ")).ok()?;
    let digits = digits.trim();
    (!digits.is_empty()).then(|| Secret::new(digits))
}

fn retries(reader: &Reader) -> String {
    reader.card.and_then(|c| c.retry_counter).map(|n| format!(" ({n} Versuche)")).unwrap_or_default()
}

#[async_trait]
impl CardHolder for Terminal {
    async fn accept(&mut self, rights: &AccessRights) -> bool {
        eprintln!("Angefragte Daten: {}", rights.chat.effective.join(", "));
        tokio::task::block_in_place(|| ask("Zustimmen? [j/N]")).is_some_and(|a| a.eq_ignore_ascii_case("j"))
    }
    async fn insert_card(&mut self) -> Option<String> {
        if self.simulator {
            return Some("Simulator".into());
        }
        eprintln!("Bitte legen Sie den Ausweis auf das Lesegerät.");
        None
    }
    async fn pin(&mut self, request: &PinRequest) -> Option<Secret> {
        if request.previous_wrong {
            eprintln!("Die PIN war falsch.");
        }
        if request.reader.keypad {
            // A reader with a PIN pad, or a smartphone paired as card reader: the PIN is typed
            // there and never passes through this command.
            eprintln!("Bitte geben Sie die PIN{} am Gerät „{}“ ein.", retries(&request.reader), request.reader.name);
            return Some(Secret::new(""));
        }
        tokio::task::block_in_place(|| ask_secret(&format!("PIN{}:", retries(&request.reader))))
    }
    async fn can(&mut self, reader: &Reader) -> Option<Secret> {
        tokio::task::block_in_place(|| {
            ask_secret(&format!("Zugangsnummer (CAN) vor dem letzten PIN-Versuch{}:", retries(reader)))
        })
    }
    async fn puk(&mut self, _reader: &Reader) -> Option<Secret> {
        tokio::task::block_in_place(|| ask_secret("Die PIN ist gesperrt. PUK:"))
    }
}

/// What the command says about a reader besides its name: a card in it, and whether the PIN is
/// entered on the reader itself (a reader with a keypad, or a smartphone paired as card reader,
/// which AusweisApp lists under the phone's name) rather than here.
fn reader_notes(reader: &Reader) -> String {
    let mut notes = Vec::new();
    if reader.card.is_some() {
        notes.push("Karte erkannt");
    }
    if reader.keypad {
        notes.push("PIN-Eingabe am Gerät");
    }
    if !reader.attached {
        notes.push("nicht verbunden");
    }
    if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) }
}

/// Runs one authentication; prints what AusweisApp2 reported and where the browser would go.
#[allow(clippy::print_stdout, reason = "the command's output")]
pub(crate) async fn run(run: EidRun) -> anyhow::Result<bool> {
    let mut client = SdkClient::connect(SdkConfig { url: run.sdk_url, ..SdkConfig::default() }).await?;
    let info = client.info().await?;
    println!("{} {}", info.version_info.name, info.version_info.implementation_version);
    let readers = client.wait_for_readers(std::time::Duration::from_secs(20)).await?;
    for reader in &readers {
        println!("Lesegerät: {}{}", reader.name, reader_notes(reader));
    }
    if readers.iter().all(|r| r.insertable) {
        // Only the built-in Simulator: nothing that can read a real card.
        println!(
            "Hinweis: Kein Kartenleser angeschlossen. Ein Smartphone mit AusweisApp kann als Kartenleser dienen \
             (AusweisApp: Einstellungen → Smartphone als Kartenleser → koppeln)."
        );
    }
    let mut terminal = Terminal { simulator: run.simulator };
    let outcome = client.authenticate(&run.tc_token_url, run.developer_mode, &mut terminal).await?;
    let ok = outcome.result.is_ok();
    println!(
        "Ergebnis: {}",
        if ok { "ok".to_owned() } else { outcome.result.reason.or(outcome.result.minor).unwrap_or_default() }
    );
    if let Some(message) = outcome.result.message {
        println!("Meldung: {message}");
    }
    if let Some(url) = outcome.url {
        println!("Weiter im Browser: {url}");
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use eid_bridge::sdk::messages::{Card, Reader};

    use super::reader_notes;

    #[test]
    fn a_reader_that_takes_the_pin_itself_is_named_so() {
        let reader = |keypad, card: Option<Card>| Reader {
            name: "Pixel 9".into(),
            insertable: false,
            attached: true,
            keypad,
            card,
        };
        assert_eq!(reader_notes(&reader(false, None)), "");
        assert_eq!(reader_notes(&reader(true, None)), " (PIN-Eingabe am Gerät)");
        assert_eq!(reader_notes(&reader(true, Some(Card::default()))), " (Karte erkannt, PIN-Eingabe am Gerät)");
    }
}
