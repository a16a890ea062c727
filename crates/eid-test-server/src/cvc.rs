//! What the terminal shows the card and the citizen (TR-03110-3 C and D): card-verifiable
//! certificates, the access rights they carry (CHAT), the certificate description AusweisApp2
//! displays, and the authenticated auxiliary data the card checks age and validity against.
//!
//! The chain is ours: a DV certificate naming the Simulator card's trust anchor
//! (`DETESTeID00005`) as its authority and our AT certificate under it, both really signed
//! (ECDSA brainpoolP256r1 SHA-256) — by our own stand-in for the CVCA, since only the BSI holds
//! that key. AusweisApp2 accepts this only with pre-verification switched off, which is what
//! test systems do; a real card would refuse it.

use eid_bridge::Attribute;
use openssl::{ec::EcKey, pkey::Private};
use time::Date;

use crate::{
    crypto::{CryptoError, public_point, sha256, sign},
    tlv::{encode, encode_all},
};

/// `0.4.0.127.0.7` (bsi-de), the prefix of every EAC object identifier.
const BSI: [u8; 5] = [0x04, 0x00, 0x7F, 0x00, 0x07];

fn oid(tail: &[u8]) -> Vec<u8> {
    [&BSI[..], tail].concat()
}

/// id-TA-ECDSA-SHA-256.
pub fn oid_ta_ecdsa_sha256() -> Vec<u8> {
    oid(&[0x02, 0x02, 0x02, 0x02, 0x03])
}
/// id-AT (authentication terminal role and rights).
fn oid_at() -> Vec<u8> {
    oid(&[0x03, 0x01, 0x02, 0x02])
}
/// id-description (certificate extension: hash of the description).
fn oid_description() -> Vec<u8> {
    oid(&[0x03, 0x01, 0x03, 0x01])
}
/// id-sector (certificate extension: hash of the RI sector key).
fn oid_sector() -> Vec<u8> {
    oid(&[0x03, 0x01, 0x03, 0x02])
}
/// id-plainFormat (the description's terms of use as text).
fn oid_plain_format() -> Vec<u8> {
    oid(&[0x03, 0x01, 0x03, 0x01, 0x01])
}
/// id-DateOfBirth (auxiliary data: age verification).
pub fn oid_date_of_birth() -> Vec<u8> {
    oid(&[0x03, 0x01, 0x04, 0x01])
}
/// id-DateOfExpiry (auxiliary data: document validity).
pub fn oid_date_of_expiry() -> Vec<u8> {
    oid(&[0x03, 0x01, 0x04, 0x02])
}

/// Access rights of an authentication terminal (TR-03110-4 C.4.2.2), as bit numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Age verification.
    AgeVerification = 0,
    /// Restricted identification (the sector pseudonym).
    RestrictedIdentification = 2,
    /// Read data group n (bit 7 + n).
    ReadDg1 = 8,
}

/// A data group of the eID application (TR-03127), 1 to 22.
pub type DataGroup = u8;

/// The data group holding an attribute; `None` for the pseudonym, which is no data group.
pub fn data_group(attribute: Attribute) -> Option<DataGroup> {
    Some(match attribute {
        Attribute::DocumentType => 1,
        Attribute::IssuingState => 2,
        Attribute::GivenNames => 4,
        Attribute::FamilyNames => 5,
        Attribute::DateOfBirth => 8,
        Attribute::PlaceOfBirth => 9,
        Attribute::Nationality => 10,
        Attribute::BirthName => 13,
        Attribute::PlaceOfResidence => 17,
        Attribute::RestrictedId => return None,
    })
}

/// The 40-bit rights of a CHAT for authentication terminals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rights(pub u64);

impl Rights {
    /// The rights to read `attributes` (and, for the pseudonym, restricted identification).
    pub fn for_attributes(attributes: &[Attribute]) -> Self {
        let mut bits = 0u64;
        for attribute in attributes {
            bits |= match data_group(*attribute) {
                Some(dg) => 1 << (Right::ReadDg1 as u64 + u64::from(dg) - 1),
                None => 1 << Right::RestrictedIdentification as u64,
            };
        }
        Rights(bits)
    }

    /// Adds a right.
    pub fn with(self, right: Right) -> Self {
        Rights(self.0 | 1 << right as u64)
    }

    /// Whether `dg` may be read.
    pub fn reads(self, dg: DataGroup) -> bool {
        dg >= 1 && self.0 & (1 << (Right::ReadDg1 as u64 + u64::from(dg) - 1)) != 0
    }

    /// Whether a right is granted.
    pub fn has(self, right: Right) -> bool {
        self.0 & (1 << right as u64) != 0
    }

    /// The CHAT data object (`7F4C`) for a role: 0 terminal, 1 non-official DV.
    pub fn chat(self, role: u8) -> Vec<u8> {
        let mut template = self.0.to_be_bytes()[3..].to_vec();
        template[0] |= role << 6;
        encode_all(0x7F4C, &[&encode(0x06, &oid_at()), &encode(0x53, &template)])
    }

    /// The rights of a CHAT data object (`7F4C`), role bits dropped.
    pub fn from_chat(chat: &[u8]) -> Option<Self> {
        let (object, _) = crate::tlv::parse_one(chat).ok()?;
        let template = object.child(0x53).ok()??;
        let bytes: [u8; 5] = template.value.try_into().ok()?;
        let mut wide = [0u8; 8];
        wide[3..].copy_from_slice(&bytes);
        Some(Rights(u64::from_be_bytes(wide) & 0x3F_FFFF_FFFF))
    }
}

/// A date as certificates carry it: six digits YYMMDD, one per byte.
fn cv_date(date: Date) -> Vec<u8> {
    let text = format!("{:02}{:02}{:02}", date.year() % 100, u8::from(date.month()), date.day());
    text.bytes().map(|b| b - b'0').collect()
}

/// One certificate to issue.
pub struct CertificateBody<'a> {
    /// Certification authority reference: who signs.
    pub car: &'a str,
    /// Certificate holder reference: whose key this is.
    pub chr: &'a str,
    /// The holder's public key.
    pub holder: &'a EcKey<Private>,
    /// The CHAT (`7F4C`).
    pub chat: Vec<u8>,
    /// Valid from.
    pub effective: Date,
    /// Valid until.
    pub expires: Date,
    /// Extensions as `(object identifier, hash)`.
    pub extensions: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Issues a CV certificate (`7F21`) signed by `signer`.
pub fn certificate(body: &CertificateBody<'_>, signer: &EcKey<Private>) -> Result<Vec<u8>, CryptoError> {
    let public_key =
        encode_all(0x7F49, &[&encode(0x06, &oid_ta_ecdsa_sha256()), &encode(0x86, &public_point(body.holder)?)]);
    let mut fields = vec![
        encode(0x5F29, &[0x00]),
        encode(0x42, body.car.as_bytes()),
        public_key,
        encode(0x5F20, body.chr.as_bytes()),
        body.chat.clone(),
        encode(0x5F25, &cv_date(body.effective)),
        encode(0x5F24, &cv_date(body.expires)),
    ];
    if !body.extensions.is_empty() {
        let templates: Vec<Vec<u8>> = body
            .extensions
            .iter()
            .map(|(id, hash)| encode_all(0x73, &[&encode(0x06, id), &encode(0x80, hash)]))
            .collect();
        fields.push(encode(0x65, &templates.concat()));
    }
    let body = encode(0x7F4E, &fields.concat());
    let signature = sign(signer, &body)?;
    Ok(encode_all(0x7F21, &[&body, &encode(0x5F37, &signature)]))
}

/// The certificate description (TR-03110-4 2.2.6), plain format.
pub struct Description<'a> {
    /// Who issued the terminal certificate.
    pub issuer_name: &'a str,
    /// The service provider.
    pub subject_name: &'a str,
    /// Its address; AusweisApp2 compares it with the TC token's origin.
    pub subject_url: &'a str,
    /// The terms of use shown to the citizen.
    pub terms_of_usage: &'a str,
    /// SHA-256 hashes of the TLS certificates the citizen's app may see.
    pub comm_certificates: Vec<Vec<u8>>,
}

impl Description<'_> {
    /// DER.
    pub fn encode(&self) -> Vec<u8> {
        let utf8 = |tag, text: &str| encode(tag, &encode(0x0C, text.as_bytes()));
        let hashes: Vec<Vec<u8>> = self.comm_certificates.iter().map(|h| encode(0x04, h)).collect();
        encode_all(
            0x30,
            &[
                &encode(0x06, &oid_plain_format()),
                &utf8(0xA1, self.issuer_name),
                &utf8(0xA3, self.subject_name),
                &encode(0xA4, &encode(0x13, self.subject_url.as_bytes())),
                &utf8(0xA5, self.terms_of_usage),
                &encode(0xA7, &encode(0x31, &hashes.concat())),
            ],
        )
    }
}

/// The extension binding a description to the certificate.
pub fn description_extension(description: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    Ok((oid_description(), sha256(description)?))
}

/// The extension naming the RI sector (hash of the sector's public key).
pub fn sector_extension(sector_public_key: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    Ok((oid_sector(), sha256(sector_public_key)?))
}

/// Authenticated auxiliary data (`67`): the cut-off birth date for age verification and the
/// day the document must still be valid on.
pub fn auxiliary_data(born_on_or_before: Option<Date>, valid_on: Date) -> Vec<u8> {
    let ymd = |d: Date| format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day()).into_bytes();
    let mut templates = Vec::new();
    if let Some(date) = born_on_or_before {
        templates.push(encode_all(0x73, &[&encode(0x06, &oid_date_of_birth()), &encode(0x53, &ymd(date))]));
    }
    templates.push(encode_all(0x73, &[&encode(0x06, &oid_date_of_expiry()), &encode(0x53, &ymd(valid_on))]));
    encode(0x67, &templates.concat())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::{crypto, tlv::parse_one};
    use time::macros::date;

    /// The CHAT of AusweisApp2's fixture `DIDAuthenticateEAC1.xml` (required rights): age
    /// verification, RI, DG3–DG7, DG9, DG10, DG13, DG17 — the bit order, checked against a
    /// CHAT someone else encoded.
    #[test]
    fn chat_bits_match_a_foreign_chat() {
        let chat = hex::decode("7F4C12060904007F00070301020253050001137C05").unwrap();
        let rights = Rights::from_chat(&chat).unwrap();
        assert!(rights.has(Right::AgeVerification) && rights.has(Right::RestrictedIdentification));
        let read: Vec<u8> = (1..=22).filter(|dg| rights.reads(*dg)).collect();
        assert_eq!(read, [3, 4, 5, 6, 7, 9, 10, 13, 17]);
        let ours = Rights::for_attributes(&[
            Attribute::GivenNames,
            Attribute::FamilyNames,
            Attribute::PlaceOfBirth,
            Attribute::Nationality,
            Attribute::BirthName,
            Attribute::PlaceOfResidence,
            Attribute::RestrictedId,
        ])
        .with(Right::AgeVerification)
        .with(Right::ReadDg1 /* DG1 */);
        assert!(ours.reads(1) && ours.reads(4) && !ours.reads(8));
        assert_eq!(Rights::from_chat(&ours.chat(0)), Some(ours));
    }

    #[test]
    fn a_certificate_carries_its_fields_and_a_signature_that_verifies() {
        let dv = crypto::derived_key(b"s", "dv").unwrap();
        let at = crypto::derived_key(b"s", "at").unwrap();
        let cert = certificate(
            &CertificateBody {
                car: "DESKTDV00001",
                chr: "DESKTAT00001",
                holder: &at,
                chat: Rights::for_attributes(&[Attribute::GivenNames]).chat(0),
                effective: date!(2026 - 12 - 01),
                expires: date!(2027 - 01 - 31),
                extensions: vec![description_extension(b"d").unwrap()],
            },
            &dv,
        )
        .unwrap();
        let (outer, rest) = parse_one(&cert).unwrap();
        assert!(rest.is_empty() && outer.tag == 0x7F21);
        let body = outer.child(0x7F4E).unwrap().unwrap();
        assert_eq!(body.child(0x42).unwrap().unwrap().value, b"DESKTDV00001");
        assert_eq!(body.child(0x5F20).unwrap().unwrap().value, b"DESKTAT00001");
        assert_eq!(body.child(0x5F25).unwrap().unwrap().value, [2, 6, 1, 2, 0, 1]);
        let key = body.child(0x7F49).unwrap().unwrap().child(0x86).unwrap().unwrap();
        assert_eq!(key.value, crypto::public_point(&at).unwrap());
        let signature = outer.child(0x5F37).unwrap().unwrap();
        let dv_public = crypto::public_key(&crypto::public_point(&dv).unwrap()).unwrap();
        assert!(crypto::verify(&dv_public, body.raw, signature.value).unwrap());
    }

    #[test]
    fn auxiliary_data_names_age_and_validity() {
        let aux = auxiliary_data(Some(date!(2008 - 12 - 03)), date!(2026 - 12 - 03));
        let hex = hex::encode(&aux);
        assert!(hex.starts_with("67"));
        assert!(hex.contains(&hex::encode(b"20081203")) && hex.contains(&hex::encode(b"20261203")));
    }
}
