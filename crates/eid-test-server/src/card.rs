//! What the terminal asks of the card once the channel is secure, and what it makes of the
//! answers: the APDUs that read data groups, verify age and validity and compute the sector
//! pseudonym (TR-03110-3 B, TR-03127), the decoding of the data groups into the port's
//! [`EidPersonalData`], and the Chip Authentication key in EF.CardSecurity.

use eid_bridge::{EidPersonalData, Place};
use openssl::cms::{CMSOptions, CmsContentInfo};

use crate::{
    cvc::{DataGroup, oid_date_of_birth, oid_date_of_expiry},
    sm::Command,
    tlv::{Tlv, encode, encode_all, parse_one},
};

/// id-RI-ECDH-SHA-256.
fn oid_ri_ecdh_sha256() -> Vec<u8> {
    vec![0x04, 0x00, 0x7F, 0x00, 0x07, 0x02, 0x02, 0x05, 0x02, 0x03]
}
/// id-PK-ECDH (a Chip Authentication public key).
const OID_PK_ECDH: [u8; 9] = [0x04, 0x00, 0x7F, 0x00, 0x07, 0x02, 0x02, 0x01, 0x02];
/// The eID application (TR-03110-4 A.1).
const EID_APPLICATION: [u8; 9] = [0xE8, 0x07, 0x04, 0x00, 0x7F, 0x00, 0x07, 0x03, 0x02];

/// What an APDU of the batch is for, so that its answer can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Step {
    /// Select the eID application.
    SelectApplication,
    /// Read a data group.
    Read(DataGroup),
    /// Verify the age against the auxiliary data.
    VerifyAge,
    /// Verify the document is valid on the auxiliary data's date.
    VerifyValidity,
    /// Choose the RI key.
    SetRiKey,
    /// Compute the pseudonym for the sector key.
    RestrictedId,
}

/// The APDU of a step.
pub fn command(step: Step, sector_public_key: &[u8]) -> Command {
    let verify =
        |oid: Vec<u8>| Command { header: [0x80, 0x20, 0x80, 0x00], data: encode(0x06, &oid), expects_data: false };
    match step {
        Step::SelectApplication => {
            Command { header: [0x00, 0xA4, 0x04, 0x0C], data: EID_APPLICATION.to_vec(), expects_data: false }
        }
        Step::Read(dg) => Command { header: [0x00, 0xB0, 0x80 | dg, 0x00], data: vec![], expects_data: true },
        Step::VerifyAge => verify(oid_date_of_birth()),
        Step::VerifyValidity => verify(oid_date_of_expiry()),
        Step::SetRiKey => Command {
            header: [0x00, 0x22, 0x41, 0xA4],
            data: [encode(0x80, &oid_ri_ecdh_sha256()), encode(0x84, &[0x01])].concat(),
            expects_data: false,
        },
        Step::RestrictedId => Command {
            header: [0x00, 0x86, 0x00, 0x00],
            data: encode(
                0x7C,
                &encode_all(0xA0, &[&encode(0x06, &oid_ri_ecdh_sha256()), &encode(0x86, sector_public_key)]),
            ),
            expects_data: true,
        },
    }
}

/// Why an answer cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CardDataError {
    /// Not the structure TR-03127 / TR-03110 describe.
    #[error("{0}")]
    Malformed(String),
}

fn malformed(what: impl std::fmt::Display) -> CardDataError {
    CardDataError::Malformed(what.to_string())
}

fn string_in(object: &Tlv<'_>) -> Result<String, CardDataError> {
    let inner = object.children().map_err(malformed)?;
    let text = inner.first().ok_or_else(|| malformed("empty data group"))?;
    String::from_utf8(text.value.to_vec()).map_err(|_| malformed("text is not UTF-8"))
}

fn place(object: &Tlv<'_>) -> Result<Place, CardDataError> {
    let choice = object.children().map_err(malformed)?.into_iter().next().ok_or_else(|| malformed("empty place"))?;
    match choice.tag {
        0x30 => {
            let mut place = Place::default();
            for field in choice.children().map_err(malformed)? {
                let text = Some(string_in(&field)?);
                match field.tag {
                    0xAA => place.street = text,
                    0xAB => place.city = text,
                    0xAD => place.country = text,
                    0xAE => place.zip_code = text,
                    _ => {}
                }
            }
            Ok(place)
        }
        0xA1 | 0xA2 => Ok(Place { freetext: Some(string_in(&choice)?), ..Place::default() }),
        other => Err(malformed(format!("place of tag {other:X}"))),
    }
}

/// `YYYYMMDD` (spaces for unknown parts) as `YYYY-MM-DD` with zeros for unknown parts.
fn date(text: &str) -> Result<String, CardDataError> {
    let digits: String = text.chars().map(|c| if c == ' ' { '0' } else { c }).collect();
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!("not a date: {text:?}")));
    }
    Ok(format!("{}-{}-{}", &digits[..4], &digits[4..6], &digits[6..]))
}

/// Writes a data group's content into `data`.
pub fn read_data_group(dg: DataGroup, content: &[u8], data: &mut EidPersonalData) -> Result<(), CardDataError> {
    let (object, _) = parse_one(content).map_err(malformed)?;
    if object.tag != 0x60 + u32::from(dg) {
        return Err(malformed(format!("DG{dg} has tag {:X}", object.tag)));
    }
    match dg {
        1 => data.document_type = Some(string_in(&object)?),
        2 => data.issuing_state = Some(string_in(&object)?),
        4 => data.given_names = Some(string_in(&object)?),
        5 => data.family_names = Some(string_in(&object)?),
        8 => data.date_of_birth = Some(date(&string_in(&object)?)?),
        9 => data.place_of_birth = Some(place(&object)?),
        10 => data.nationality = Some(string_in(&object)?),
        13 => data.birth_name = Some(string_in(&object)?),
        17 => data.place_of_residence = Some(place(&object)?),
        _ => {}
    }
    Ok(())
}

/// The pseudonym in a Restricted Identification answer (`7C { 81 id }`), hex.
pub fn restricted_id(answer: &[u8]) -> Result<String, CardDataError> {
    let (object, _) = parse_one(answer).map_err(malformed)?;
    let id = object.child(0x81).map_err(malformed)?.ok_or_else(|| malformed("no pseudonym in the answer"))?;
    Ok(hex::encode(id.value))
}

/// The Chip Authentication public key (uncompressed point) from EF.CardSecurity, after checking
/// the document signer's signature over it. The signer's certificate is taken from the file:
/// the test CSCA is not known here, so this proves integrity, not the card's origin.
pub fn chip_authentication_key(card_security: &[u8]) -> Result<Vec<u8>, CardDataError> {
    let mut cms = CmsContentInfo::from_der(card_security).map_err(|e| malformed(format!("EF.CardSecurity: {e}")))?;
    let mut content = Vec::new();
    cms.verify(None, None, None, Some(&mut content), CMSOptions::NO_SIGNER_CERT_VERIFY)
        .map_err(|e| malformed(format!("EF.CardSecurity's signature: {e}")))?;
    let (infos, _) = parse_one(&content).map_err(malformed)?;
    for info in infos.children().map_err(malformed)? {
        let fields = info.children().map_err(malformed)?;
        if fields.first().is_some_and(|f| f.tag == 0x06 && f.value == OID_PK_ECDH) {
            let key_info = fields.get(1).ok_or_else(|| malformed("ChipAuthenticationPublicKeyInfo without a key"))?;
            let bits = key_info
                .children()
                .map_err(malformed)?
                .into_iter()
                .find(|f| f.tag == 0x03)
                .ok_or_else(|| malformed("no public key bits"))?;
            return bits.value.strip_prefix(&[0x00]).map(<[u8]>::to_vec).ok_or_else(|| malformed("bit string"));
        }
    }
    Err(malformed("EF.CardSecurity names no Chip Authentication key"))
}

/// The object Chip Authentication's token is a MAC over: the terminal's ephemeral key
/// (`7F49 { 06 id-CA-ECDH-AES-CBC-CMAC-128, 86 point }`).
pub fn ca_token_input(ephemeral_point: &[u8]) -> Vec<u8> {
    let oid = [0x04, 0x00, 0x7F, 0x00, 0x07, 0x02, 0x02, 0x03, 0x02, 0x02];
    encode_all(0x7F49, &[&encode(0x06, &oid), &encode(0x86, ephemeral_point)])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    /// An EF.CardSecurity of our own making: SecurityInfos with one Chip Authentication key,
    /// signed by a self-made document signer (CMS SignedData, the signer's certificate inside).
    fn card_security(point: &[u8]) -> Vec<u8> {
        use openssl::{asn1::Asn1Time, ec::EcKey, hash::MessageDigest, nid::Nid, pkey::PKey, x509::X509};
        let parameters =
            encode_all(0x30, &[&encode(0x06, &[0x04, 0x00, 0x7F, 0x00, 0x07, 0x01, 0x02, 0x02]), &encode(0x02, &[13])]);
        let key = encode_all(0x30, &[&parameters, &encode(0x03, &[&[0u8][..], point].concat())]);
        let info = encode_all(0x30, &[&encode(0x06, &OID_PK_ECDH), &key, &encode(0x02, &[41])]);
        let infos = encode(0x31, &info);
        let group = openssl::ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let signer = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "TEST Document Signer").unwrap();
        let name = name.build();
        let mut cert = X509::builder().unwrap();
        cert.set_subject_name(&name).unwrap();
        cert.set_issuer_name(&name).unwrap();
        cert.set_pubkey(&signer).unwrap();
        cert.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        cert.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
        cert.sign(&signer, MessageDigest::sha256()).unwrap();
        let cert = cert.build();
        CmsContentInfo::sign(Some(&cert), Some(&signer), None, Some(&infos), CMSOptions::BINARY)
            .unwrap()
            .to_der()
            .unwrap()
    }

    #[test]
    fn card_security_verifies_and_names_its_ca_key() {
        let point = crate::crypto::public_point(&crate::crypto::ephemeral_key().unwrap()).unwrap();
        let file = card_security(&point);
        assert_eq!(chip_authentication_key(&file).unwrap(), point);
        // One changed byte in the signed content: the signature no longer holds.
        let mut changed = file.clone();
        let at = file.windows(8).position(|w| w == &point[1..9]).unwrap();
        changed[at] ^= 1;
        assert!(chip_authentication_key(&changed).is_err());
    }

    #[test]
    fn data_groups_decode_like_the_simulators() {
        let mut data = EidPersonalData::default();
        read_data_group(4, &encode(0x64, &encode(0x0C, b"ERIKA")), &mut data).unwrap();
        read_data_group(8, &encode(0x68, &encode(0x12, b"1964  12")), &mut data).unwrap();
        read_data_group(9, &encode(0x69, &encode(0xA1, &encode(0x0C, b"BERLIN"))), &mut data).unwrap();
        let street = encode(0xAA, &encode(0x0C, "HEIDESTRAẞE 17".as_bytes()));
        let city = encode(0xAB, &encode(0x0C, "KÖLN".as_bytes()));
        let zip = encode(0xAE, &encode(0x13, b"51147"));
        let home = encode(0x71, &encode_all(0x30, &[&street, &city, &encode(0xAD, &encode(0x13, b"D")), &zip]));
        read_data_group(17, &home, &mut data).unwrap();
        assert_eq!(data.given_names.as_deref(), Some("ERIKA"));
        assert_eq!(data.date_of_birth.as_deref(), Some("1964-00-12"));
        assert_eq!(data.place_of_birth.clone().unwrap().freetext.as_deref(), Some("BERLIN"));
        let home = data.place_of_residence.clone().unwrap();
        assert_eq!(
            (home.street.as_deref(), home.city.as_deref(), home.zip_code.as_deref(), home.country.as_deref()),
            (Some("HEIDESTRAẞE 17"), Some("KÖLN"), Some("51147"), Some("D"))
        );
        // A data group under another's tag is refused.
        assert!(read_data_group(5, &encode(0x64, &encode(0x0C, b"X")), &mut data).is_err());
        assert_eq!(restricted_id(&encode(0x7C, &encode(0x81, &[0xAB, 0xCD]))).unwrap(), "abcd");
    }

    proptest! {
        #[test]
        fn answers_from_the_card_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96), dg in 1u8..23) {
            let mut data = EidPersonalData::default();
            let _ = read_data_group(dg, &bytes, &mut data);
            let _ = restricted_id(&bytes);
            let _ = chip_authentication_key(&bytes);
        }
    }
}
