//! Form helpers shared by the pages: field errors in form order, labels, the country list.

use account_service::{FieldError, PasswordProblem};
use minijinja::Value;

use super::PageCtx;

/// Field errors in the order they were found (the form's order), for the fields and the summary.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<(String, String)>);

impl Errors {
    /// The domain's field errors in the page's language.
    pub(crate) fn from_fields(ctx: &PageCtx, problems: &[FieldError]) -> Self {
        let mut errors = Self::default();
        for problem in problems {
            errors.add(problem.field, field_message(ctx, problem.field, problem.code, &problem.message));
        }
        errors
    }

    /// Password problems at their fields, in the page's language.
    pub(crate) fn from_password(ctx: &PageCtx, problems: &[PasswordProblem]) -> Self {
        let mut errors = Self::default();
        for problem in problems {
            let field = match problem {
                PasswordProblem::ConfirmationDiffers => "password_confirmation",
                _ => "password",
            };
            errors.add(field, field_message(ctx, field, problem.code(), &problem.message()));
        }
        errors
    }

    /// Adds a message; a second one for the same field is appended to the first.
    pub(crate) fn add(&mut self, field: &str, message: String) {
        match self.0.iter_mut().find(|(f, _)| f == field) {
            Some((_, existing)) => {
                existing.push(' ');
                existing.push_str(&message);
            }
            None => self.0.push((field.to_owned(), message)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In the order of the form's fields, so the summary reads like the form.
    pub(crate) fn value(&self) -> Value {
        let mut sorted = self.0.clone();
        sorted.sort_by_key(|(field, _)| FIELDS.iter().position(|f| f == field).unwrap_or(FIELDS.len()));
        Value::from_iter(sorted)
    }
}

/// The text for a domain message `code` (per field for `required`); the domain's German message
/// when the texts have none.
pub(crate) fn field_message(ctx: &PageCtx, field: &str, code: &str, german: &str) -> String {
    let key = if code == "required" { format!("err_required_{field}") } else { format!("err_{code}") };
    ctx.state.pages.texts().find(ctx.lang, &key).unwrap_or_else(|| german.to_owned())
}

const FIELDS: [&str; 23] = [
    "given_names",
    "family_name",
    "birth_name",
    "date_of_birth",
    "place_of_birth",
    "street_and_number",
    "street",
    "house_number",
    "postal_code",
    "city",
    "country",
    "phone_number",
    "nationalities",
    "email",
    "username",
    "password",
    "password_confirmation",
    "privacy",
    "current_password",
    "new_password",
    "login",
    "token",
    "address",
];

/// Labels of every form field in the page's language (`label_<field>` in the texts).
pub(crate) fn labels(ctx: &PageCtx) -> Value {
    Value::from_iter(FIELDS.iter().map(|f| {
        let key = match *f {
            "login" => "username_or_email".to_owned(),
            "token" => "link_invalid_title".to_owned(),
            "address" => "address".to_owned(),
            f => format!("label_{f}"),
        };
        (*f, ctx.t(&key))
    }))
}

/// Codes offered in the country list; Germany first.
pub(crate) const COUNTRIES: [&str; 12] = ["DE", "AT", "BE", "CH", "CZ", "DK", "ES", "FR", "IT", "LU", "NL", "PL"];

/// `(code, name)` pairs in the page's language.
pub(crate) fn countries(ctx: &PageCtx) -> Vec<(&'static str, String)> {
    COUNTRIES.iter().map(|c| (*c, ctx.t(&format!("country_{c}")))).collect()
}
