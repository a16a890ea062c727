//! What the ID card confirms (the eID result in this service's spelling), and how it raises an
//! account's data to "eID-verified" field by field.

use oidc_core::TrustLevel;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    PersonalDataInput,
    model::{Account, Attested, MasterData, Source},
};

/// The data read from the card. The server builds it from the eID-Server's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardData {
    /// Vornamen.
    pub given_names: String,
    /// Familienname.
    pub family_name: String,
    /// Geburtsname.
    pub birth_name: Option<String>,
    /// Geburtsdatum, `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Geburtsort.
    pub place_of_birth: Option<String>,
    /// Straße.
    pub street: String,
    /// Hausnummer.
    pub house_number: String,
    /// Postleitzahl.
    pub postal_code: String,
    /// Wohnort.
    pub city: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// ISO 3166-1 alpha-3, space separated.
    pub nationalities: Option<String>,
}

/// A card as an account knows it: the keyed hash of its pseudonym and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardIdentity {
    /// The keyed hash of the card's RestrictedID: finds the account at the next eID login
    /// without storing the pseudonym itself.
    pub key: String,
    /// What the card says.
    pub data: CardData,
}

impl CardData {
    /// The registration form filled from the card, with what only the citizen can add.
    pub fn as_input(&self, username: &str, email: &str, phone_number: &str) -> PersonalDataInput {
        PersonalDataInput {
            given_names: self.given_names.clone(),
            family_name: self.family_name.clone(),
            birth_name: self.birth_name.clone().unwrap_or_default(),
            date_of_birth: self.date_of_birth.clone(),
            place_of_birth: self.place_of_birth.clone().unwrap_or_default(),
            street_and_number: format!("{} {}", self.street, self.house_number).trim().to_owned(),
            postal_code: self.postal_code.clone(),
            city: self.city.clone(),
            country: self.country.clone(),
            phone_number: phone_number.to_owned(),
            email: email.to_owned(),
            username: username.to_owned(),
        }
    }

    /// Field name, card value, in the order of the forms.
    fn fields(&self) -> [(&'static str, Option<&str>); 11] {
        [
            ("given_names", Some(self.given_names.as_str())),
            ("family_name", Some(self.family_name.as_str())),
            ("birth_name", self.birth_name.as_deref()),
            ("date_of_birth", Some(self.date_of_birth.as_str())),
            ("place_of_birth", self.place_of_birth.as_deref()),
            ("street", Some(self.street.as_str())),
            ("house_number", Some(self.house_number.as_str())),
            ("postal_code", Some(self.postal_code.as_str())),
            ("city", Some(self.city.as_str())),
            ("country", Some(self.country.as_str())),
            ("nationalities", self.nationalities.as_deref()),
        ]
    }
}

impl Account {
    /// The citizen of a one-time identification: the card's data shaped as an account so the
    /// claim functions can read them, never stored. No username, no e-mail address.
    pub fn from_card(environment: oidc_core::Environment, card: &CardIdentity, now: OffsetDateTime) -> Self {
        let empty = |_: ()| Attested::self_asserted("", now);
        let mut master_data = MasterData {
            given_names: empty(()),
            family_name: empty(()),
            birth_name: None,
            date_of_birth: empty(()),
            place_of_birth: None,
            street: empty(()),
            house_number: empty(()),
            postal_code: empty(()),
            city: empty(()),
            country: empty(()),
            phone_number: None,
            nationalities: None,
        };
        master_data.confirm_by_card(&card.data, &[], now);
        let mut account = Account {
            id: oidc_core::AccountId::new_random(),
            environment,
            username: String::new(),
            email: empty(()),
            status: crate::AccountStatus::Active,
            master_data,
            password_hash: String::new(),
            trust_level: TrustLevel::Normal,
            eid_key: Some(card.key.clone()),
            privacy_consent: crate::PrivacyConsent { version: String::new(), accepted_at: now },
            session_epoch: 0,
            login_factors: crate::LoginFactors::default(),
            created_at: now,
            activated_at: Some(now),
            updated_at: now,
        };
        account.trust_level = trust_level_of(&account);
        account
    }
}

/// One field where the account and the card disagree, for the side-by-side page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The field's name.
    pub field: &'static str,
    /// What the account holds (empty when nothing).
    pub own: String,
    /// What the card says.
    pub card: String,
}

impl MasterData {
    fn slot(&mut self, field: &str) -> Option<&mut Option<Attested>> {
        match field {
            "birth_name" => Some(&mut self.birth_name),
            "place_of_birth" => Some(&mut self.place_of_birth),
            "nationalities" => Some(&mut self.nationalities),
            _ => None,
        }
    }

    fn required(&mut self, field: &str) -> Option<&mut Attested> {
        match field {
            "given_names" => Some(&mut self.given_names),
            "family_name" => Some(&mut self.family_name),
            "date_of_birth" => Some(&mut self.date_of_birth),
            "street" => Some(&mut self.street),
            "house_number" => Some(&mut self.house_number),
            "postal_code" => Some(&mut self.postal_code),
            "city" => Some(&mut self.city),
            "country" => Some(&mut self.country),
            _ => None,
        }
    }

    fn value_of(&mut self, field: &str) -> Option<String> {
        match self.required(field) {
            Some(a) => Some(a.value.clone()),
            None => self.slot(field).and_then(|s| s.as_ref().map(|a| a.value.clone())),
        }
    }

    /// Where the account's data differ from the card's.
    pub fn differences(&self, card: &CardData) -> Vec<Difference> {
        let mut data = self.clone();
        card.fields()
            .into_iter()
            .filter_map(|(field, card_value)| {
                let card_value = card_value?;
                let own = data.value_of(field).unwrap_or_default();
                (own != card_value).then(|| Difference { field, own, card: card_value.to_owned() })
            })
            .collect()
    }

    /// Takes the card's data: equal values become eID-verified, differing ones are replaced by
    /// the card's, except the fields in `keep_own`, which stay as the citizen entered them.
    /// Returns the fields whose value changed.
    pub(crate) fn confirm_by_card(
        &mut self,
        card: &CardData,
        keep_own: &[String],
        now: OffsetDateTime,
    ) -> Vec<&'static str> {
        let verified = |value: &str| Attested {
            value: value.to_owned(),
            source: Source::Eid,
            verified_at: Some(now),
            updated_at: now,
        };
        let mut changed = Vec::new();
        for (field, card_value) in card.fields() {
            let Some(card_value) = card_value else { continue };
            let own = self.value_of(field);
            let equal = own.as_deref() == Some(card_value);
            if !equal && keep_own.iter().any(|k| k == field) {
                continue;
            }
            if !equal {
                changed.push(field);
            }
            let mut value = verified(card_value);
            if equal {
                // The value stays; only its provenance rises.
                value.updated_at = self.required(field).map(|a| a.updated_at).unwrap_or(now);
            }
            if let Some(slot) = self.required(field) {
                *slot = value;
            } else if let Some(slot) = self.slot(field) {
                *slot = Some(value);
            }
        }
        changed
    }
}

/// The level an account's data carry: "hoch" while a card is linked and the identity itself
/// (names and date of birth) is as the card says; an edit of those drops it to "normal".
pub(crate) fn trust_level_of(account: &Account) -> TrustLevel {
    let data = &account.master_data;
    let identity_from_card =
        [&data.given_names, &data.family_name, &data.date_of_birth].iter().all(|a| a.source == Source::Eid);
    if account.eid_key.is_some() && identity_from_card { TrustLevel::Hoch } else { TrustLevel::Normal }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn card() -> CardData {
        CardData {
            given_names: "ERIKA".into(),
            family_name: "MUSTERMANN".into(),
            birth_name: Some("GABLER".into()),
            date_of_birth: "1964-08-12".into(),
            place_of_birth: Some("BERLIN".into()),
            street: "HEIDESTRASSE".into(),
            house_number: "17".into(),
            postal_code: "51147".into(),
            city: "KÖLN".into(),
            country: "DE".into(),
            nationalities: Some("DEU".into()),
        }
    }

    fn account() -> Account {
        let mut account = crate::prefill::tests::account_for_tests(false);
        let now = datetime!(2026-11-22 10:00 UTC);
        let own = |v: &str| Attested::self_asserted(v, now);
        account.master_data.given_names = own("ERIKA");
        account.master_data.family_name = own("MUSTERMANN");
        account.master_data.city = own("Köln");
        account.master_data.birth_name = None;
        account.master_data.nationalities = None;
        account.trust_level = TrustLevel::Normal;
        account
    }

    #[test]
    fn differences_list_only_what_the_card_says_otherwise() {
        let fields: Vec<&str> = account().master_data.differences(&card()).iter().map(|d| d.field).collect();
        assert_eq!(
            fields,
            ["birth_name", "place_of_birth", "street", "city", "nationalities"],
            "names and date equal; the rest differs in spelling or is missing"
        );
    }

    #[test]
    fn linking_verifies_equal_values_takes_the_cards_and_keeps_what_the_citizen_chose() {
        let mut account = account();
        let now = datetime!(2026-11-23 08:00 UTC);
        let changed = account.master_data.confirm_by_card(&card(), &["city".to_owned()], now);
        assert_eq!(changed, ["birth_name", "place_of_birth", "street", "nationalities"]);
        let data = &account.master_data;
        assert_eq!(data.given_names.source, Source::Eid, "equal value verified");
        assert_eq!(data.given_names.verified_at, Some(now));
        assert_eq!(data.street.value, "HEIDESTRASSE");
        assert_eq!(data.street.source, Source::Eid);
        assert_eq!((data.city.value.as_str(), data.city.source), ("Köln", Source::SelfAsserted), "kept");
        assert_eq!(data.birth_name.as_ref().map(|a| a.source), Some(Source::Eid));
        account.eid_key = Some("k".into());
        assert_eq!(trust_level_of(&account), TrustLevel::Hoch);
    }

    #[test]
    fn a_one_time_identity_is_the_cards_data_verified_at_level_hoch() {
        let now = datetime!(2026-11-23 08:00 UTC);
        let identity = CardIdentity { key: "k".into(), data: card() };
        let account = Account::from_card(oidc_core::Environment::Test, &identity, now);
        assert_eq!(account.trust_level, TrustLevel::Hoch);
        assert_eq!(account.master_data.family_name.value, "MUSTERMANN");
        assert_eq!(account.master_data.street.source, Source::Eid);
        assert_eq!(account.master_data.nationalities.as_ref().map(|a| a.value.as_str()), Some("DEU"));
        assert!(account.email.value.is_empty() && account.username.is_empty(), "nothing the card does not hold");
    }

    #[test]
    fn the_level_is_hoch_only_with_a_card_and_the_identity_from_it() {
        let mut account = account();
        account.master_data.confirm_by_card(&card(), &[], datetime!(2026-11-23 08:00 UTC));
        assert_eq!(trust_level_of(&account), TrustLevel::Normal, "no card linked");
        account.eid_key = Some("k".into());
        assert_eq!(trust_level_of(&account), TrustLevel::Hoch);
        account.master_data.street = Attested::self_asserted("Neue Straße", datetime!(2026-11-24 08:00 UTC));
        assert_eq!(trust_level_of(&account), TrustLevel::Hoch, "moving keeps the identity");
        account.master_data.family_name = Attested::self_asserted("Muster", datetime!(2026-11-24 08:00 UTC));
        assert_eq!(trust_level_of(&account), TrustLevel::Normal, "an edited name is no longer the card's");
    }
}
