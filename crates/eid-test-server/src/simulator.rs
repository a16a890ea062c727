//! Test identities for AusweisApp2's Simulator card: the card's whole file system, written by
//! us, for the SDK's `SET_CARD`, so that tests read other people than the built-in ERIKA
//! MUSTERMANN — a second identity, an underage person, an expired card.
//!
//! What the Simulator computes itself stays the Simulator's: it answers Chip Authentication with
//! its fixed key (so EF.CardSecurity must name that key's public half, [`SIMULATOR_CA_KEY`]),
//! and Restricted Identification with fixed keys too, so every Simulator card has the same
//! pseudonym for a sector. EF.CardSecurity is signed by a document signer made up here.

use eid_bridge::sdk::messages::{SimulatorCard, SimulatorFile};
use openssl::{
    ec::{EcGroup, EcKey},
    hash::MessageDigest,
    nid::Nid,
    pkey::PKey,
};
use time::Date;

use crate::{
    crypto::{self, CryptoError},
    tlv::{encode, encode_all},
};

/// The private key the Simulator answers Chip Authentication with (AusweisApp2 1.26.2,
/// `SimulatorFileSystem::getCardAuthenticationKey`): a published test value. Its public half
/// goes into the EF.CardSecurity we write.
pub const SIMULATOR_CA_KEY: &str = "A07EB62E891DAA84643E0AFCC1AF006891B669B8F51E379477DBEAB8C987A610";

/// A person on a test card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCard {
    /// Vornamen.
    pub given_names: String,
    /// Familienname.
    pub family_names: String,
    /// Geburtsname; `None`: the card has no DG13 (reading it answers "file not found").
    pub birth_name: Option<String>,
    /// Geburtsdatum.
    pub date_of_birth: Date,
    /// Geburtsort.
    pub place_of_birth: String,
    /// Straße und Hausnummer.
    pub street: String,
    /// Postleitzahl.
    pub zip_code: String,
    /// Ort.
    pub city: String,
    /// Gültig bis.
    pub expires: Date,
}

fn ymd(date: Date) -> Vec<u8> {
    format!("{:04}{:02}{:02}", date.year(), u8::from(date.month()), date.day()).into_bytes()
}

fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    encode_all(0x30, parts)
}

fn integer(n: u8) -> Vec<u8> {
    encode(0x02, &[n])
}

fn oid(bytes: &[u8]) -> Vec<u8> {
    encode(0x06, bytes)
}

const BSI: [u8; 5] = [0x04, 0x00, 0x7F, 0x00, 0x07];

fn bsi(tail: &[u8]) -> Vec<u8> {
    oid(&[&BSI[..], tail].concat())
}

/// The security infos both EF.CardAccess and EF.CardSecurity carry: PACE (generic mapping,
/// AES-128, brainpoolP256r1), TA version 2, CA (ECDH, AES-128, key 41) with its domain.
fn security_infos() -> Vec<Vec<u8>> {
    let brainpool = sequence(&[&bsi(&[0x01, 0x02, 0x02]), &integer(13)]);
    vec![
        sequence(&[&bsi(&[0x02, 0x02, 0x04, 0x02, 0x02]), &integer(2), &integer(13)]),
        sequence(&[&bsi(&[0x02, 0x02, 0x02]), &integer(2)]),
        sequence(&[&bsi(&[0x02, 0x02, 0x03, 0x02, 0x02]), &integer(2), &integer(41)]),
        sequence(&[&bsi(&[0x02, 0x02, 0x03, 0x02]), &brainpool, &integer(41)]),
    ]
}

/// EF.CardSecurity: the security infos and the CA public key, in CMS SignedData (content type
/// id-SecurityObject) signed by a document signer made up for the purpose.
fn card_security() -> Result<Vec<u8>, CryptoError> {
    let ca_key =
        crypto::key_from_private_bytes(&hex::decode(SIMULATOR_CA_KEY).map_err(|e| CryptoError(e.to_string()))?)?;
    let brainpool = sequence(&[&bsi(&[0x01, 0x02, 0x02]), &integer(13)]);
    let public_key = sequence(&[&brainpool, &encode(0x03, &[&[0u8][..], &crypto::public_point(&ca_key)?].concat())]);
    let mut infos = security_infos();
    infos.push(sequence(&[&bsi(&[0x02, 0x02, 0x01, 0x02]), &public_key, &integer(41)]));
    let content = encode(0x31, &infos.concat());
    signed_data(&bsi(&[0x03, 0x02, 0x01]), &content)
}

/// CMS SignedData (RFC 5652) over `content` of type `content_type`, signed with ECDSA P-256
/// SHA-256 by a self-signed document signer whose certificate is included.
fn signed_data(content_type: &[u8], content: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let signer = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let certificate = crypto::self_signed_certificate(&signer, "servicekonto TEST Document Signer")?;

    let sha256 = sequence(&[&oid(&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01])]);
    let pkcs9 = |n: u8| oid(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, n]);
    let attributes = [
        sequence(&[&pkcs9(3), &encode(0x31, content_type)]),
        sequence(&[&pkcs9(4), &encode(0x31, &encode(0x04, &crypto::sha256(content)?))]),
    ]
    .concat();
    let signature = signer_signature(&signer, &encode(0x31, &attributes))?;
    let signer_info = sequence(&[
        &integer(1),
        &sequence(&[&certificate.issuer_name().to_der()?, &integer(1)]),
        &sha256,
        &encode(0xA0, &attributes),
        &sequence(&[&oid(&[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02])]),
        &encode(0x04, &signature),
    ]);
    let signed = sequence(&[
        &integer(3),
        &encode(0x31, &sha256),
        &sequence(&[content_type, &encode(0xA0, &encode(0x04, content))]),
        &encode(0xA0, &certificate.to_der()?),
        &encode(0x31, &signer_info),
    ]);
    Ok(sequence(&[&oid(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02]), &encode(0xA0, &signed)]))
}

fn signer_signature(key: &PKey<openssl::pkey::Private>, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), key)?;
    signer.update(data)?;
    Ok(signer.sign_to_vec()?)
}

fn file(short_file_id: u8, content: &[u8]) -> SimulatorFile {
    SimulatorFile {
        file_id: format!("01{short_file_id:02X}"),
        short_file_id: format!("{short_file_id:02X}"),
        content: hex::encode_upper(content),
    }
}

impl TestCard {
    /// A card for `SET_CARD`: EF.DIR, EF.CardAccess, EF.CardSecurity and the data groups.
    pub fn simulator_card(&self) -> Result<SimulatorCard, CryptoError> {
        let utf8 = |tag: u32, text: &str| encode(tag, &encode(0x0C, text.as_bytes()));
        let printable = |tag: u32, text: &str| encode(tag, &encode(0x13, text.as_bytes()));
        let numeric = |tag: u32, digits: Vec<u8>| encode(tag, &encode(0x12, &digits));
        let residence = encode(
            0x71,
            &sequence(&[
                &encode(0xAA, &encode(0x0C, self.street.as_bytes())),
                &encode(0xAB, &encode(0x0C, self.city.as_bytes())),
                &encode(0xAD, &encode(0x13, b"D")),
                &encode(0xAE, &encode(0x13, self.zip_code.as_bytes())),
            ]),
        );
        let ef_dir = encode(0x61, &encode(0x4F, &[0xE8, 0x07, 0x04, 0x00, 0x7F, 0x00, 0x07, 0x03, 0x02]));
        let mut files = vec![
            SimulatorFile { file_id: "2F00".into(), short_file_id: "1E".into(), content: hex::encode_upper(ef_dir) },
            file(0x1C, &encode(0x31, &security_infos().concat())),
            file(0x1D, &card_security()?),
            file(0x01, &printable(0x61, "ID")),
            file(0x02, &printable(0x62, "D")),
            file(0x03, &numeric(0x63, ymd(self.expires))),
            file(0x04, &utf8(0x64, &self.given_names)),
            file(0x05, &utf8(0x65, &self.family_names)),
            file(0x06, &utf8(0x66, "")),
            file(0x07, &utf8(0x67, "")),
            file(0x08, &numeric(0x68, ymd(self.date_of_birth))),
            file(0x09, &encode(0x69, &encode(0xA1, &encode(0x0C, self.place_of_birth.as_bytes())))),
            file(0x0A, &printable(0x6A, "D")),
            file(0x11, &residence),
            file(0x12, &encode(0x72, &encode(0x04, &[0x02, 0x76, 0x05, 0x03, 0x15, 0x00, 0x00]))),
        ];
        if let Some(birth_name) = &self.birth_name {
            files.push(file(0x0D, &utf8(0x6D, birth_name)));
        }
        Ok(SimulatorCard { files })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use time::macros::date;

    fn anna() -> TestCard {
        TestCard {
            given_names: "ANNA".into(),
            family_names: "BEISPIEL".into(),
            birth_name: Some("BEISPIEL".into()),
            date_of_birth: date!(1990 - 03 - 15),
            place_of_birth: "WIEN".into(),
            street: "AM ABDINGHOF 11".into(),
            zip_code: "33098".into(),
            city: "PADERBORN".into(),
            expires: date!(2031 - 01 - 31),
        }
    }

    #[test]
    fn the_card_security_we_write_verifies_and_names_the_simulators_ca_key() {
        let card = anna().simulator_card().unwrap();
        let security = card.files.iter().find(|f| f.short_file_id == "1D").unwrap();
        let key = crate::card::chip_authentication_key(&hex::decode(&security.content).unwrap()).unwrap();
        let expected = crypto::key_from_private_bytes(&hex::decode(SIMULATOR_CA_KEY).unwrap()).unwrap();
        assert_eq!(key, crypto::public_point(&expected).unwrap());
    }

    #[test]
    fn the_data_groups_read_back_as_the_person() {
        let card = anna().simulator_card().unwrap();
        let mut data = eid_bridge::EidPersonalData::default();
        for f in &card.files {
            let sfi = u8::from_str_radix(&f.short_file_id, 16).unwrap();
            if sfi <= 0x16 {
                crate::card::read_data_group(sfi, &hex::decode(&f.content).unwrap(), &mut data).unwrap();
            }
        }
        assert_eq!(data.given_names.as_deref(), Some("ANNA"));
        assert_eq!(data.date_of_birth.as_deref(), Some("1990-03-15"));
        assert_eq!(data.place_of_residence.unwrap().city.as_deref(), Some("PADERBORN"));
    }
}
