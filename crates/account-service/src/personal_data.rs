//! Registration step 1, "Persönliche Daten": normalisation and validation of what the citizen
//! entered. Every problem is reported with its field; the form keeps all input.

use time::{Date, macros::format_description};

use crate::normalize;

/// What the form sent, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PersonalDataInput {
    /// Vornamen.
    pub given_names: String,
    /// Familienname.
    pub family_name: String,
    /// Geburtsname (optional).
    pub birth_name: String,
    /// Geburtsdatum: `TT.MM.JJJJ` or `JJJJ-MM-TT`.
    pub date_of_birth: String,
    /// Geburtsort (optional).
    pub place_of_birth: String,
    /// Straße und Hausnummer.
    pub street_and_number: String,
    /// Postleitzahl.
    pub postal_code: String,
    /// Ort.
    pub city: String,
    /// Land (ISO 3166-1 alpha-2; empty means Germany).
    pub country: String,
    /// Telefonnummer (optional).
    pub phone_number: String,
    /// E-Mail-Adresse.
    pub email: String,
    /// Benutzername: needed for every later login.
    pub username: String,
}

/// Validated, normalised personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalData {
    /// Vornamen.
    pub given_names: String,
    /// Familienname.
    pub family_name: String,
    /// Geburtsname.
    pub birth_name: Option<String>,
    /// Geburtsdatum.
    pub date_of_birth: Date,
    /// Geburtsort.
    pub place_of_birth: Option<String>,
    /// Straße.
    pub street: String,
    /// Hausnummer.
    pub house_number: String,
    /// Postleitzahl.
    pub postal_code: String,
    /// Ort.
    pub city: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// Telefonnummer in E.164 form (`+49221…`), as OpenID Connect's `phone_number` wants it.
    pub phone_number: Option<String>,
    /// E-Mail-Adresse, domain in lower case.
    pub email: String,
    /// Benutzername as entered; uniqueness is checked case-insensitively.
    pub username: String,
}

/// A problem with one field, in German for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The form field's name.
    pub field: &'static str,
    /// A stable code for translations (`required`, `date_format`, `postal_code_de`, …).
    pub code: &'static str,
    /// Shown next to the field and in the summary (German).
    pub message: String,
}

/// A change the normalisation made that the citizen should see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// The form field's name.
    pub field: &'static str,
    /// A stable code for translations (`comma_removed`).
    pub code: &'static str,
    /// Shown after step 1 (German).
    pub message: String,
}

fn parse_date(text: &str) -> Option<Date> {
    Date::parse(text, format_description!("[day].[month].[year]"))
        .or_else(|_| Date::parse(text, format_description!("[year]-[month]-[day]")))
        .ok()
}

fn is_email(text: &str) -> bool {
    let mut parts = text.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(local), Some(domain), None)
        if !local.is_empty() && local.len() <= 64 && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.'))
        && text.len() <= 254
        && !text.chars().any(char::is_whitespace)
}

/// A phone number in E.164 form: separators and the trunk prefix `(0)` dropped, `00` and a
/// national leading `0` (German numbers) turned into `+` and `+49`. `None` when it cannot be one.
pub(crate) fn e164(text: &str) -> Option<String> {
    let compact: String =
        text.replace("(0)", "").chars().filter(|c| !matches!(c, ' ' | '-' | '/' | '(' | ')' | '.')).collect();
    let international = if let Some(rest) = compact.strip_prefix("00") {
        format!("+{rest}")
    } else if let Some(rest) = compact.strip_prefix('0') {
        format!("+49{rest}")
    } else {
        compact
    };
    let digits = international.strip_prefix('+')?;
    let valid =
        (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0');
    valid.then_some(international)
}

fn is_username(text: &str) -> bool {
    (3..=64).contains(&text.chars().count())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Validates and normalises step 1. `today` decides what "in the past" means.
pub fn validate_personal_data(
    input: &PersonalDataInput,
    today: Date,
) -> Result<(PersonalData, Vec<Hint>), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut hints = Vec::new();
    let mut required = |field: &'static str, value: &str, label: &str| {
        let value = normalize::text(value);
        if value.is_empty() {
            errors.push(FieldError { field, code: "required", message: format!("Bitte geben Sie {label} ein.") });
        } else if value.chars().count() > 200 {
            errors.push(FieldError {
                field,
                code: "too_long",
                message: "Bitte höchstens 200 Zeichen eingeben.".to_owned(),
            });
        }
        value
    };
    let given_names = required("given_names", &input.given_names, "Ihre Vornamen");
    let family_name = required("family_name", &input.family_name, "Ihren Familiennamen");
    let city = required("city", &input.city, "Ihren Wohnort");
    let optional = |value: &str| Some(normalize::text(value)).filter(|v| !v.is_empty());
    let birth_name = optional(&input.birth_name);
    let place_of_birth = optional(&input.place_of_birth);

    let date_of_birth = match parse_date(&normalize::text(&input.date_of_birth)) {
        Some(date) if date >= today => {
            errors.push(FieldError {
                field: "date_of_birth",
                code: "date_not_past",
                message: "Das Geburtsdatum muss in der Vergangenheit liegen.".into(),
            });
            None
        }
        Some(date) if date.year() < today.year() - 130 => {
            errors.push(FieldError {
                field: "date_of_birth",
                code: "date_year",
                message: "Bitte prüfen Sie das Geburtsjahr.".into(),
            });
            None
        }
        Some(date) => Some(date),
        None => {
            errors.push(FieldError {
                field: "date_of_birth",
                code: "date_format",
                message: "Bitte geben Sie ein gültiges Datum im Format TT.MM.JJJJ ein.".into(),
            });
            None
        }
    };

    let country = match normalize::text(&input.country).to_uppercase() {
        c if c.is_empty() => "DE".to_owned(),
        c if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_uppercase()) => c,
        _ => {
            errors.push(FieldError {
                field: "country",
                code: "country",
                message: "Bitte wählen Sie ein Land aus.".into(),
            });
            String::new()
        }
    };
    let postal_code = normalize::text(&input.postal_code).replace(' ', "");
    let postal_ok = if country == "DE" {
        postal_code.len() == 5 && postal_code.chars().all(|c| c.is_ascii_digit())
    } else {
        (2..=10).contains(&postal_code.len()) && postal_code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !postal_ok {
        let (code, message) = if country == "DE" {
            ("postal_code_de", "Eine deutsche Postleitzahl hat fünf Ziffern.")
        } else {
            ("postal_code", "Bitte prüfen Sie die Postleitzahl.")
        };
        errors.push(FieldError { field: "postal_code", code, message: message.into() });
    }

    let (street, house_number) = match normalize::street_and_number(&input.street_and_number) {
        Some((street, number, had_comma)) => {
            if had_comma {
                hints.push(Hint {
                    field: "street_and_number",
                    code: "comma_removed",
                    message: "Das Komma zwischen Straße und Hausnummer wurde entfernt.".into(),
                });
            }
            (street, number)
        }
        None => {
            errors.push(FieldError {
                field: "street_and_number",
                code: "street_and_number",
                message: "Bitte geben Sie Straße und Hausnummer ohne Komma ein, z. B. Am Abdinghof 11.".into(),
            });
            (String::new(), String::new())
        }
    };

    let phone_number = match normalize::text(&input.phone_number) {
        text if text.is_empty() => None,
        text => match e164(&text) {
            Some(number) => Some(number),
            None => {
                errors.push(FieldError {
                    field: "phone_number",
                    code: "phone_number",
                    message: "Bitte geben Sie eine Telefonnummer wie 0221 1234567 oder +49 221 1234567 ein.".into(),
                });
                None
            }
        },
    };

    let email = normalize::text(&input.email);
    let email = match email.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => email,
    };
    if !is_email(&email) {
        errors.push(FieldError {
            field: "email",
            code: "email",
            message: "Bitte geben Sie eine gültige E-Mail-Adresse ein.".into(),
        });
    }
    let username = input.username.trim().to_owned();
    if !is_username(&username) {
        errors.push(FieldError {
            field: "username",
            code: "username",
            message: "Der Benutzername hat 3 bis 64 Zeichen: Buchstaben, Ziffern, Punkt, Unterstrich oder Bindestrich."
                .into(),
        });
    }

    match date_of_birth {
        Some(date_of_birth) if errors.is_empty() => Ok((
            PersonalData {
                given_names,
                family_name,
                birth_name,
                date_of_birth,
                place_of_birth,
                street,
                house_number,
                postal_code,
                city,
                country,
                phone_number,
                email,
                username,
            },
            hints,
        )),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn valid() -> PersonalDataInput {
        PersonalDataInput {
            given_names: " Erika  ".into(),
            family_name: "Mustermann".into(),
            birth_name: "Gabler".into(),
            date_of_birth: "12.08.1964".into(),
            place_of_birth: "Berlin".into(),
            street_and_number: "Heidestr., 17".into(),
            postal_code: "51147".into(),
            city: "Köln".into(),
            country: String::new(),
            phone_number: String::new(),
            email: "Erika.Mustermann@Example.DE".into(),
            username: "erika.m".into(),
        }
    }

    const TODAY: Date = date!(2026 - 11 - 22);

    fn fields(input: &PersonalDataInput) -> Vec<&'static str> {
        validate_personal_data(input, TODAY).err().unwrap_or_default().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn phone_numbers_become_e164() {
        assert_eq!(e164("0221 / 123 45-67").as_deref(), Some("+492211234567"));
        assert_eq!(e164("+49 (0)221 1234567").as_deref(), Some("+492211234567"), "the trunk prefix goes");
        assert_eq!(e164("0043 1 5880").as_deref(), Some("+4315880"));
        assert_eq!(e164("+33 1 23 45 67 89").as_deref(), Some("+33123456789"));
        for bad in ["12345", "+0 123 4567", "0221 abc", "+1234567890123456", ""] {
            assert_eq!(e164(bad), None, "{bad}");
        }
        let mut input = valid();
        input.phone_number = "0221 1234567".into();
        let (data, _) = validate_personal_data(&input, date!(2026 - 11 - 22)).unwrap();
        assert_eq!(data.phone_number.as_deref(), Some("+492211234567"));
        input.phone_number = "keine".into();
        let errors = validate_personal_data(&input, date!(2026 - 11 - 22)).unwrap_err();
        assert_eq!(errors[0].code, "phone_number");
    }

    #[test]
    fn a_valid_form_is_normalised_with_hints() {
        let (data, hints) = validate_personal_data(&valid(), TODAY).unwrap();
        assert_eq!(data.given_names, "Erika");
        assert_eq!((data.street.as_str(), data.house_number.as_str()), ("Heidestraße", "17"));
        assert_eq!(data.email, "Erika.Mustermann@example.de", "domain lower-cased, local part kept");
        assert_eq!(data.country, "DE");
        assert_eq!(data.date_of_birth, date!(1964 - 08 - 12));
        assert_eq!(hints.len(), 1, "the removed comma is pointed out");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let input = PersonalDataInput {
            given_names: "  ".into(),
            date_of_birth: "31.02.1990".into(),
            postal_code: "1234".into(),
            street_and_number: "Am Markt".into(),
            email: "erika@".into(),
            username: "e!".into(),
            ..valid()
        };
        assert_eq!(
            fields(&input),
            ["given_names", "date_of_birth", "postal_code", "street_and_number", "email", "username"]
        );
    }

    #[test]
    fn dates_must_lie_in_the_past_and_be_plausible() {
        for (text, ok) in [
            ("22.11.2026", false),
            ("21.11.2026", true),
            ("1964-08-12", true),
            ("01.01.1890", false),
            ("12/08/1964", false),
        ] {
            let input = PersonalDataInput { date_of_birth: text.into(), ..valid() };
            assert_eq!(fields(&input).is_empty(), ok, "{text}");
        }
    }

    #[test]
    fn postal_codes_depend_on_the_country() {
        let foreign = PersonalDataInput { country: "nl".into(), postal_code: "1012 AB".into(), ..valid() };
        assert_eq!(validate_personal_data(&foreign, TODAY).unwrap().0.postal_code, "1012AB");
        let german = PersonalDataInput { postal_code: "1012AB".into(), ..valid() };
        assert_eq!(fields(&german), ["postal_code"]);
    }
}

#[cfg(test)]
mod untrusted_input {
    use proptest::prelude::*;

    use super::{PersonalDataInput, validate_personal_data};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Step 1's form, filled with anything: normalised data or messages per field, never a
        /// panic.
        #[test]
        fn any_form_input_is_validated_without_panic(fields in proptest::collection::vec(".{0,40}", 12), date in "[0-9.]{0,12}") {
            let input = PersonalDataInput {
                given_names: fields[0].clone(),
                family_name: fields[1].clone(),
                birth_name: fields[2].clone(),
                date_of_birth: date,
                place_of_birth: fields[4].clone(),
                street_and_number: fields[5].clone(),
                postal_code: fields[6].clone(),
                city: fields[7].clone(),
                country: fields[8].clone(),
                phone_number: fields[9].clone(),
                email: fields[10].clone(),
                username: fields[11].clone(),
            };
            let today = time::macros::date!(2026 - 12 - 02);
            let _ = validate_personal_data(&input, today);
            let _ = crate::check_password(&fields[3], &fields[3], &fields[11], &fields[10]);
        }
    }
}
