//! Secure messaging (ISO 7816-4, TR-03110-3 F) with AES-128 from the terminal's side: commands
//! wrapped (DO 87 encrypted data, DO 97 expected length, DO 8E MAC) and responses checked and
//! opened (DO 87, DO 99 status, DO 8E). The send sequence counter counts every command and every
//! response, so a batch must be opened in the order it was sent.

use openssl::symm::Mode;
use serde::{Deserialize, Serialize};

use crate::{
    crypto::{CryptoError, aes_cbc, cmac8},
    tlv,
};

/// Why a response does not open.
#[derive(Debug, thiserror::Error)]
pub enum SmError {
    /// The response's MAC is wrong: changed on the way or not from the card.
    #[error("the response's MAC does not verify")]
    BadMac,
    /// The response is not a secure messaging response.
    #[error("the response is not secured: {0}")]
    Malformed(String),
    /// Encryption failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// A command APDU in plain (short length: data below 256 bytes, Le 256 when `expects_data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// CLA, INS, P1, P2.
    pub header: [u8; 4],
    /// The command data.
    pub data: Vec<u8>,
    /// Whether a response with data is expected (Le = 256).
    pub expects_data: bool,
}

/// An opened response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The data.
    pub data: Vec<u8>,
    /// SW1 SW2.
    pub status: u16,
}

/// The channel's keys and counter; kept between PAOS round trips.
#[derive(Clone, Serialize, Deserialize)]
pub struct Channel {
    enc: [u8; 16],
    mac: [u8; 16],
    ssc: u128,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("ssc", &self.ssc).finish_non_exhaustive()
    }
}

fn pad(data: &[u8]) -> Vec<u8> {
    let mut padded = data.to_vec();
    padded.push(0x80);
    while !padded.len().is_multiple_of(16) {
        padded.push(0);
    }
    padded
}

fn unpad(data: &[u8]) -> Option<&[u8]> {
    let end = data.iter().rposition(|b| *b != 0)?;
    (data[end] == 0x80).then(|| &data[..end])
}

impl Channel {
    /// A channel after Chip Authentication, counter at zero.
    pub fn new(enc: [u8; 16], mac: [u8; 16]) -> Self {
        Channel { enc, mac, ssc: 0 }
    }

    fn iv(&self) -> Result<[u8; 16], CryptoError> {
        let block = aes_cbc(Mode::Encrypt, &self.enc, &[0; 16], &self.ssc.to_be_bytes())?;
        block.try_into().map_err(|_| CryptoError("IV".into()))
    }

    /// Wraps `command`; the counter moves on by one.
    pub fn wrap(&mut self, command: &Command) -> Result<Vec<u8>, CryptoError> {
        self.ssc += 1;
        let header = [command.header[0] | 0x0C, command.header[1], command.header[2], command.header[3]];
        let mut body = Vec::new();
        if !command.data.is_empty() {
            let encrypted = aes_cbc(Mode::Encrypt, &self.enc, &self.iv()?, &pad(&command.data))?;
            body.extend(tlv::encode(0x87, &[&[0x01], encrypted.as_slice()].concat()));
        }
        if command.expects_data {
            body.extend(tlv::encode(0x97, &[0x00]));
        }
        let mut mac_input = self.ssc.to_be_bytes().to_vec();
        mac_input.extend(pad(&header));
        if !body.is_empty() {
            mac_input.extend(pad(&body));
        }
        body.extend(tlv::encode(0x8E, &cmac8(&self.mac, &mac_input)?));
        let length = u8::try_from(body.len()).map_err(|_| CryptoError("command too long for a short APDU".into()))?;
        Ok([&header[..], &[length], &body, &[0x00]].concat())
    }

    /// Wraps a batch the card will answer one by one: each command's counter leaves room for
    /// its response's. The channel itself stays where it was, ready for [`Channel::open_batch`].
    pub fn wrap_batch(&self, commands: &[Command]) -> Result<Vec<Vec<u8>>, CryptoError> {
        let mut ahead = self.clone();
        commands
            .iter()
            .map(|command| {
                let apdu = ahead.wrap(command)?;
                ahead.ssc += 1;
                Ok(apdu)
            })
            .collect()
    }

    /// Opens the answers to a batch wrapped by [`Channel::wrap_batch`], in order.
    pub fn open_batch(&mut self, responses: &[Vec<u8>]) -> Vec<Result<Response, SmError>> {
        responses
            .iter()
            .map(|response| {
                self.ssc += 1;
                self.open(response)
            })
            .collect()
    }

    /// Checks and opens a response (data and status bytes); the counter moves on by one.
    pub fn open(&mut self, apdu: &[u8]) -> Result<Response, SmError> {
        self.ssc += 1;
        if apdu.len() < 2 {
            return Err(SmError::Malformed("shorter than a status word".into()));
        }
        let (body, outer_status) = apdu.split_at(apdu.len() - 2);
        let objects = tlv::parse_all(body).map_err(|e| SmError::Malformed(e.to_string()))?;
        let find = |tag| objects.iter().find(|o| o.tag == tag);
        let mac =
            find(0x8E).ok_or_else(|| SmError::Malformed(format!("no MAC (status {})", hex::encode(outer_status))))?;
        let status = find(0x99).ok_or_else(|| SmError::Malformed("no protected status".into()))?;
        let mut covered = Vec::new();
        if let Some(data) = find(0x87) {
            covered.extend_from_slice(data.raw);
        }
        covered.extend_from_slice(status.raw);
        let mut mac_input = self.ssc.to_be_bytes().to_vec();
        mac_input.extend(pad(&covered));
        let expected = cmac8(&self.mac, &mac_input)?;
        if mac.value.len() != expected.len() || !openssl::memcmp::eq(&expected, mac.value) {
            return Err(SmError::BadMac);
        }
        let status = match status.value {
            [a, b] => u16::from_be_bytes([*a, *b]),
            _ => return Err(SmError::Malformed("status is not two bytes".into())),
        };
        let data = match find(0x87) {
            Some(encrypted) => {
                let ciphertext = encrypted
                    .value
                    .strip_prefix(&[0x01])
                    .ok_or_else(|| SmError::Malformed("padding indicator".into()))?;
                let plain = aes_cbc(Mode::Decrypt, &self.enc, &self.iv()?, ciphertext)?;
                unpad(&plain).ok_or_else(|| SmError::Malformed("padding".into()))?.to_vec()
            }
            None => Vec::new(),
        };
        Ok(Response { data, status })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    /// The card's side of the channel, as a test double: opens commands, wraps responses.
    struct Card(Channel);

    impl Card {
        fn answer(&mut self, command: &[u8], data: &[u8], status: u16) -> (Vec<u8>, Vec<u8>) {
            self.0.ssc += 1;
            let header = &command[..4];
            let objects = tlv::parse_all(&command[5..command.len() - 1]).unwrap();
            let mut mac_input = self.0.ssc.to_be_bytes().to_vec();
            mac_input.extend(pad(header));
            let covered: Vec<u8> = objects.iter().filter(|o| o.tag != 0x8E).flat_map(|o| o.raw.to_vec()).collect();
            if !covered.is_empty() {
                mac_input.extend(pad(&covered));
            }
            let mac = objects.iter().find(|o| o.tag == 0x8E).unwrap();
            assert_eq!(cmac8(&self.0.mac, &mac_input).unwrap().as_slice(), mac.value);
            let plain = objects.iter().find(|o| o.tag == 0x87).map(|o| {
                let p = aes_cbc(Mode::Decrypt, &self.0.enc, &self.0.iv().unwrap(), &o.value[1..]).unwrap();
                unpad(&p).unwrap().to_vec()
            });
            self.0.ssc += 1;
            let mut body = Vec::new();
            if !data.is_empty() {
                let encrypted = aes_cbc(Mode::Encrypt, &self.0.enc, &self.0.iv().unwrap(), &pad(data)).unwrap();
                body.extend(tlv::encode(0x87, &[&[1u8][..], &encrypted].concat()));
            }
            body.extend(tlv::encode(0x99, &status.to_be_bytes()));
            let mut mac_input = self.0.ssc.to_be_bytes().to_vec();
            mac_input.extend(pad(&body));
            body.extend(tlv::encode(0x8E, &cmac8(&self.0.mac, &mac_input).unwrap()));
            body.extend(status.to_be_bytes());
            (plain.unwrap_or_default(), body)
        }
    }

    #[test]
    fn commands_and_responses_pass_the_channel_in_order() {
        let mut terminal = Channel::new([1; 16], [2; 16]);
        let mut card = Card(Channel::new([1; 16], [2; 16]));
        for (data, answer) in [(vec![], b"DG4".to_vec()), (vec![0x06, 0x01, 0x02], vec![]), (vec![9; 40], vec![7; 200])]
        {
            let command = Command { header: [0x00, 0xB0, 0x84, 0x00], data: data.clone(), expects_data: true };
            let wrapped = terminal.wrap(&command).unwrap();
            assert_eq!(wrapped[0], 0x0C);
            let (seen, response) = card.answer(&wrapped, &answer, 0x9000);
            assert_eq!(seen, data);
            let opened = terminal.open(&response).unwrap();
            assert_eq!((opened.data, opened.status), (answer, 0x9000));
        }
    }

    #[test]
    fn a_batch_counts_each_command_and_each_response() {
        let terminal = Channel::new([1; 16], [2; 16]);
        let mut card = Card(Channel::new([1; 16], [2; 16]));
        let commands: Vec<Command> = (0..3)
            .map(|i| Command { header: [0x00, 0xB0, 0x81 + i, 0x00], data: vec![i], expects_data: true })
            .collect();
        let batch = terminal.wrap_batch(&commands).unwrap();
        let answers: Vec<Vec<u8>> = batch.iter().map(|apdu| card.answer(apdu, &[apdu[2]], 0x9000).1).collect();
        let mut opener = terminal.clone();
        let opened: Vec<Vec<u8>> = opener.open_batch(&answers).into_iter().map(|r| r.unwrap().data).collect();
        assert_eq!(opened, [vec![0x81], vec![0x82], vec![0x83]]);
    }

    #[test]
    fn a_changed_response_or_a_skipped_one_is_refused() {
        let mut terminal = Channel::new([1; 16], [2; 16]);
        let mut card = Card(Channel::new([1; 16], [2; 16]));
        let command = Command { header: [0x00, 0xB0, 0x84, 0x00], data: vec![], expects_data: true };
        let (_, mut response) = card.answer(&terminal.wrap(&command).unwrap(), b"ERIKA", 0x9000);
        response[3] ^= 1;
        assert!(matches!(terminal.open(&response), Err(SmError::BadMac)));
        // A replayed response: the counter has moved on, so its MAC no longer fits.
        let mut terminal = Channel::new([1; 16], [2; 16]);
        let mut card = Card(Channel::new([1; 16], [2; 16]));
        let (_, first) = card.answer(&terminal.wrap(&command).unwrap(), b"x", 0x9000);
        terminal.open(&first).unwrap();
        let _ = terminal.wrap(&command).unwrap();
        assert!(matches!(terminal.open(&first), Err(SmError::BadMac)));
        assert!(matches!(terminal.open(&[0x90]), Err(SmError::Malformed(_))));
        assert!(matches!(terminal.open(&[0x90, 0x00]), Err(SmError::Malformed(_))));
    }
}
