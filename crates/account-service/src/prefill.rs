//! Prefill claims: the account's master data as OpenID Connect claims, for the consent preview,
//! the userinfo endpoint and form services.

use serde_json::{Value, json};

use crate::model::{Account, Attested, Source};

/// The master-data values behind a claim; the claim counts as verified only when all are.
fn sources<'a>(account: &'a Account, claim: &str) -> Vec<Option<&'a Attested>> {
    let m = &account.master_data;
    match claim {
        "name" => vec![Some(&m.given_names), Some(&m.family_name)],
        "given_name" => vec![Some(&m.given_names)],
        "family_name" => vec![Some(&m.family_name)],
        "birth_family_name" => vec![m.birth_name.as_ref()],
        "birthdate" => vec![Some(&m.date_of_birth)],
        "place_of_birth" => vec![m.place_of_birth.as_ref()],
        "address" => {
            vec![Some(&m.street), Some(&m.house_number), Some(&m.postal_code), Some(&m.city), Some(&m.country)]
        }
        "nationalities" => vec![m.nationalities.as_ref()],
        // E-mail and phone are confirmed by a link, which proves control, not identity.
        _ => Vec::new(),
    }
}

/// `verified_claims` (OpenID Connect for Identity Assurance 1.0) for those of `released` whose
/// every value was read from the ID card through the eID function: eIDAS level high, with the
/// time of the latest verification. `None` when none is.
pub fn verified_claims(account: &Account, released: &[String]) -> Option<Value> {
    let mut claims = serde_json::Map::new();
    let mut latest = None;
    for claim in released {
        let values = sources(account, claim);
        let verified: Option<Vec<&Attested>> = values.into_iter().collect();
        let Some(verified) = verified.filter(|v| !v.is_empty()) else { continue };
        if !verified.iter().all(|a| a.source == Source::Eid && a.verified_at.is_some()) {
            continue;
        }
        latest = verified.iter().filter_map(|a| a.verified_at).chain(latest).max();
        if let Some(value) = claim_value(account, claim) {
            claims.insert(claim.clone(), value);
        }
    }
    let time = latest?.format(&time::format_description::well_known::Rfc3339).ok()?;
    Some(json!({
        "verification": { "trust_framework": "eidas", "assurance_level": "high", "time": time },
        "claims": claims,
    }))
}

/// The value of `claim` for `account`, or `None` when the account has none.
pub fn claim_value(account: &Account, claim: &str) -> Option<Value> {
    let m = &account.master_data;
    Some(match claim {
        "name" => json!(format!("{} {}", m.given_names.value, m.family_name.value)),
        "given_name" => json!(m.given_names.value),
        "family_name" => json!(m.family_name.value),
        "birth_family_name" => json!(m.birth_name.as_ref()?.value),
        "birthdate" => json!(m.date_of_birth.value),
        "place_of_birth" => json!({ "locality": m.place_of_birth.as_ref()?.value }),
        "address" => json!({
            "street_address": format!("{} {}", m.street.value, m.house_number.value),
            "postal_code": m.postal_code.value,
            "locality": m.city.value,
            "country": m.country.value,
        }),
        "nationalities" => json!(m.nationalities.as_ref()?.value.split_whitespace().collect::<Vec<_>>()),
        "phone_number" => json!(m.phone_number.as_ref()?.value),
        // A number is never confirmed (no SMS check): said plainly rather than left out.
        "phone_number_verified" => json!(m.phone_number.as_ref()?.verified_at.is_some()),
        "email" => json!(account.email.value),
        "email_verified" => json!(account.email.verified_at.is_some()),
        _ => return None,
    })
}

/// A human-readable preview of a claim's value for the consent page.
pub fn claim_preview(account: &Account, claim: &str) -> Option<String> {
    let m = &account.master_data;
    Some(match claim {
        "address" => format!("{} {}, {} {}", m.street.value, m.house_number.value, m.postal_code.value, m.city.value),
        "place_of_birth" => m.place_of_birth.as_ref()?.value.clone(),
        "email_verified" | "phone_number_verified" => return None,
        other => match claim_value(account, other)? {
            Value::String(text) => text,
            value => value.to_string(),
        },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use oidc_core::{AccountId, Environment, TrustLevel};
    use time::macros::datetime;

    use super::*;
    use crate::model::{AccountStatus, MasterData, PrivacyConsent};

    pub(crate) fn account_for_tests(from_card: bool) -> Account {
        account(from_card)
    }

    fn account(from_card: bool) -> Account {
        let now = datetime!(2026-11-22 10:00 UTC);
        let value = |text: &str| {
            let mut attested = Attested::self_asserted(text, now);
            if from_card {
                attested.source = Source::Eid;
                attested.verified_at = Some(datetime!(2026-11-20 09:30 UTC));
            }
            attested
        };
        let own = |text: &str| Attested::self_asserted(text, now);
        Account {
            id: AccountId::new_random(),
            environment: Environment::Test,
            username: "erika".into(),
            email: own("erika@example.de"),
            status: AccountStatus::Active,
            master_data: MasterData {
                given_names: value("Erika"),
                family_name: value("Mustermann"),
                birth_name: Some(value("Gabler")),
                date_of_birth: value("1964-08-12"),
                place_of_birth: Some(value("Berlin")),
                street: value("Heidestraße"),
                house_number: value("17"),
                // The citizen moved and typed the new postal code in: the address is no longer
                // all from the card.
                postal_code: own("51147"),
                city: value("Köln"),
                country: value("DE"),
                phone_number: None,
                nationalities: Some(value("DEU")),
            },
            password_hash: String::new(),
            trust_level: TrustLevel::Hoch,
            eid_key: from_card.then(|| "card-key".to_owned()),
            privacy_consent: PrivacyConsent { version: "2026-11".into(), accepted_at: now },
            session_epoch: 0,
            login_factors: Default::default(),
            created_at: now,
            activated_at: Some(now),
            updated_at: now,
        }
    }

    #[test]
    fn only_claims_read_from_the_card_are_verified_claims() {
        let released: Vec<String> =
            ["given_name", "birthdate", "address", "email", "nationalities"].iter().map(|c| (*c).to_owned()).collect();
        let verified = verified_claims(&account(true), &released).unwrap();
        assert_eq!(verified["verification"]["trust_framework"], "eidas");
        assert_eq!(verified["verification"]["assurance_level"], "high");
        assert_eq!(verified["verification"]["time"], "2026-11-20T09:30:00Z");
        let claims = verified["claims"].as_object().unwrap();
        assert_eq!(claims["given_name"], "Erika");
        assert_eq!(claims["birthdate"], "1964-08-12");
        assert_eq!(claims["nationalities"], json!(["DEU"]));
        assert!(!claims.contains_key("address"), "one self-asserted part makes the address unverified");
        assert!(!claims.contains_key("email"), "a confirmed mailbox is no identity evidence");
        assert!(!claims.contains_key("family_name"), "only what was released");
        assert_eq!(verified_claims(&account(false), &released), None, "typed-in data is never verified");
    }
}

#[cfg(test)]
mod phone_tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_typed_in_phone_number_is_released_as_unverified() {
        let now = datetime!(2026-11-22 10:00 UTC);
        let mut account = super::tests::account_for_tests(false);
        assert_eq!(claim_value(&account, "phone_number"), None, "no number, no claim");
        assert_eq!(claim_value(&account, "phone_number_verified"), None);
        account.master_data.phone_number = Some(Attested::self_asserted("+492211234567", now));
        assert_eq!(claim_value(&account, "phone_number"), Some(json!("+492211234567")));
        assert_eq!(claim_value(&account, "phone_number_verified"), Some(json!(false)));
        assert_eq!(claim_preview(&account, "phone_number").as_deref(), Some("+492211234567"));
    }
}
