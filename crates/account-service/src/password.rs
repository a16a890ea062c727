//! Registration step 2, "Vergabe des Passwortes": the conditions shown before typing, enforced
//! here.

/// Why a password is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordProblem {
    /// Shorter than the minimum.
    TooShort {
        /// The minimum length in characters.
        minimum: usize,
    },
    /// It is, or contains, the username or the e-mail address.
    ContainsPersonalData,
    /// A strength estimator (zxcvbn) finds it guessable: common, a keyboard walk, a pattern.
    TooWeak,
    /// The confirmation differs.
    ConfirmationDiffers,
}

impl PasswordProblem {
    /// A stable code for translations.
    pub fn code(&self) -> &'static str {
        match self {
            PasswordProblem::TooShort { .. } => "password_too_short",
            PasswordProblem::ContainsPersonalData => "password_personal",
            PasswordProblem::TooWeak => "password_weak",
            PasswordProblem::ConfirmationDiffers => "password_confirmation",
        }
    }

    /// The message on the page (German).
    pub fn message(&self) -> String {
        match self {
            PasswordProblem::TooShort { minimum } => {
                format!("Das Passwort muss mindestens {minimum} Zeichen lang sein.")
            }
            PasswordProblem::ContainsPersonalData => {
                "Das Passwort darf weder Ihren Benutzernamen noch Ihre E-Mail-Adresse enthalten.".to_owned()
            }
            PasswordProblem::TooWeak => {
                "Dieses Passwort ist zu leicht zu erraten. Wählen Sie eine längere Folge von Wörtern oder Zeichen."
                    .to_owned()
            }
            PasswordProblem::ConfirmationDiffers => "Die beiden Passwörter stimmen nicht überein.".to_owned(),
        }
    }
}

/// The minimum length.
pub const MINIMUM_LENGTH: usize = 10;
/// The minimum zxcvbn score (0–4).
const MINIMUM_SCORE: u8 = 3;

/// Every rule the password breaks; empty when it is acceptable.
pub fn check_password(password: &str, confirmation: &str, username: &str, email: &str) -> Vec<PasswordProblem> {
    let mut problems = Vec::new();
    if password.chars().count() < MINIMUM_LENGTH {
        problems.push(PasswordProblem::TooShort { minimum: MINIMUM_LENGTH });
    }
    let lower = password.to_lowercase();
    let local_part = email.split('@').next().unwrap_or_default();
    let personal = [username, email, local_part];
    if personal.iter().any(|p| p.chars().count() >= 3 && lower.contains(&p.to_lowercase())) {
        problems.push(PasswordProblem::ContainsPersonalData);
    }
    if !password.is_empty() && u8::from(zxcvbn::zxcvbn(password, &personal).score()) < MINIMUM_SCORE {
        problems.push(PasswordProblem::TooWeak);
    }
    if password != confirmation {
        problems.push(PasswordProblem::ConfirmationDiffers);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(password: &str, expect: &[PasswordProblem]) {
        assert_eq!(check_password(password, password, "erika.m", "erika@example.de"), expect, "{password:?}");
    }

    #[test]
    fn policy() {
        check("Kartoffel-Regen-Leuchtturm-42", &[]);
        check("kurz", &[PasswordProblem::TooShort { minimum: 10 }, PasswordProblem::TooWeak]);
        check("password123", &[PasswordProblem::TooWeak]);
        check("qwertzuiop", &[PasswordProblem::TooWeak]);
        check("erika.m-Leuchtturm-Regen", &[PasswordProblem::ContainsPersonalData]);
        assert_eq!(
            check_password("Kartoffel-Regen-Leuchtturm-42", "Kartoffel-Regen-Leuchtturm-43", "erika.m", "e@x.de"),
            [PasswordProblem::ConfirmationDiffers]
        );
        assert!(PasswordProblem::TooWeak.message().contains("leicht zu erraten"));
    }
}
