//! The attribute names a client receives, per profile chosen for it: our OIDC claim names as
//! `basic` attributes, or the eIDAS natural-person attributes (eIDAS SAML Attribute Profile 1.2)
//! with `uri` names. The claims themselves — which ones, with whose consent, logged how — are
//! decided once for both protocols by the server; this module only names and encodes them.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::Value;

use crate::response::Attribute;

const URI: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";
const BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";
const EIDAS: &str = "http://eidas.europa.eu/attributes/naturalperson/";

/// The attribute vocabulary of a SAML client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeProfile {
    /// Our claim names (`given_name`, `family_name`, …), NameFormat `basic`.
    Oidc,
    /// eIDAS natural person (`http://eidas.europa.eu/attributes/naturalperson/…`), NameFormat `uri`.
    Eidas,
}

/// The mapping table (documented in the integration guide): claim → (eIDAS name, friendly name).
pub const EIDAS_NAMES: &[(&str, &str, &str)] = &[
    ("given_name", "CurrentGivenName", "FirstName"),
    ("family_name", "CurrentFamilyName", "FamilyName"),
    ("birth_family_name", "BirthName", "BirthName"),
    ("birthdate", "DateOfBirth", "DateOfBirth"),
    ("place_of_birth", "PlaceOfBirth", "PlaceOfBirth"),
    ("address", "CurrentAddress", "CurrentAddress"),
];

/// The eIDAS `PersonIdentifier`: the pairwise subject, prefixed as the profile wants
/// (issuing country / receiving country / identifier).
pub fn eidas_person_identifier(subject: &str) -> Attribute {
    Attribute {
        name: format!("{EIDAS}PersonIdentifier"),
        name_format: URI.to_owned(),
        friendly_name: Some("PersonIdentifier".to_owned()),
        values: vec![format!("DE/DE/{subject}")],
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// eIDAS `CurrentAddress`: base64 of the address elements (eIDAS SAML Attribute Profile 1.2,
/// `CurrentAddressType`), from an OIDC address claim.
fn eidas_address(address: &Value) -> Option<String> {
    let field = |name: &str| address.get(name).and_then(Value::as_str).unwrap_or_default();
    let street = field("street_address");
    let (thoroughfare, number) = match street.rsplit_once(' ') {
        Some((street, number)) if number.chars().next().is_some_and(|c| c.is_ascii_digit()) => (street, number),
        _ => (street, ""),
    };
    let mut xml = String::new();
    let mut element = |name: &str, value: &str| {
        if !value.is_empty() {
            let escaped = value.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            xml.push_str(&format!("<eidas-natural:{name}>{escaped}</eidas-natural:{name}>"));
        }
    };
    element("LocatorDesignator", number);
    element("Thoroughfare", thoroughfare);
    element("PostName", field("locality"));
    element("PostCode", field("postal_code"));
    element("AdminunitFirstline", field("country"));
    (!xml.is_empty()).then(|| STANDARD.encode(xml))
}

/// The attribute for `claim` with `value` (as the OIDC side releases it) in `profile`; `None`
/// for a claim the profile has no name for.
pub fn attribute(profile: AttributeProfile, claim: &str, value: &Value) -> Option<Attribute> {
    match profile {
        AttributeProfile::Oidc => {
            let values = match value {
                Value::Array(items) => items.iter().filter_map(text).collect(),
                Value::Object(_) => vec![value.to_string()],
                other => vec![text(other)?],
            };
            Some(Attribute { name: claim.to_owned(), name_format: BASIC.to_owned(), friendly_name: None, values })
        }
        AttributeProfile::Eidas => {
            let (_, name, friendly) = EIDAS_NAMES.iter().find(|(c, _, _)| *c == claim)?;
            let value = match claim {
                "address" => eidas_address(value)?,
                "place_of_birth" => value.get("locality").and_then(Value::as_str)?.to_owned(),
                _ => text(value)?,
            };
            Some(Attribute {
                name: format!("{EIDAS}{name}"),
                name_format: URI.to_owned(),
                friendly_name: Some((*friendly).to_owned()),
                values: vec![value],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn claims_are_named_in_the_clients_profile() {
        let given = attribute(AttributeProfile::Eidas, "given_name", &json!("Erika")).unwrap();
        assert_eq!(given.name, "http://eidas.europa.eu/attributes/naturalperson/CurrentGivenName");
        assert_eq!((given.name_format.as_str(), given.values[0].as_str()), (URI, "Erika"));
        let basic = attribute(AttributeProfile::Oidc, "nationalities", &json!(["DEU", "FRA"])).unwrap();
        assert_eq!((basic.name.as_str(), basic.values.len()), ("nationalities", 2));
        assert!(attribute(AttributeProfile::Eidas, "email", &json!("a@b.de")).is_none(), "eIDAS has no e-mail");
        let place = attribute(AttributeProfile::Eidas, "place_of_birth", &json!({"locality": "Berlin"})).unwrap();
        assert_eq!(place.values, ["Berlin"]);
        assert_eq!(eidas_person_identifier("abc").values, ["DE/DE/abc"]);
    }

    #[test]
    fn the_eidas_address_is_its_elements_in_base64() {
        let address =
            json!({"street_address": "Heidestraße 17", "postal_code": "51147", "locality": "Köln", "country": "DE"});
        let encoded = attribute(AttributeProfile::Eidas, "address", &address).unwrap().values.remove(0);
        let xml = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(
            xml,
            "<eidas-natural:LocatorDesignator>17</eidas-natural:LocatorDesignator>\
             <eidas-natural:Thoroughfare>Heidestraße</eidas-natural:Thoroughfare>\
             <eidas-natural:PostName>Köln</eidas-natural:PostName><eidas-natural:PostCode>51147</eidas-natural:PostCode>\
             <eidas-natural:AdminunitFirstline>DE</eidas-natural:AdminunitFirstline>"
        );
    }
}
