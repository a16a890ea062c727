//! Prefill claims: the account's master data as OpenID Connect claims, for the consent preview,
//! the userinfo endpoint and form services.

use serde_json::{Value, json};

use crate::model::Account;

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
        "email_verified" => return None,
        other => match claim_value(account, other)? {
            Value::String(text) => text,
            value => value.to_string(),
        },
    })
}
