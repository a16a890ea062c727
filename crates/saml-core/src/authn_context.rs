//! `RequestedAuthnContext` (SAML Core §3.3.2.2.1) in terms of our trust levels: which level a
//! request needs (so the server can step up to the ID card, as for OIDC's `acr_values`), and
//! which `AuthnContextClassRef` answers it, in the vocabulary the SP asked in — our level names
//! (`normal`, `substantiell`, `hoch`) or the eIDAS level-of-assurance URIs.

use oidc_core::TrustLevel;

use crate::RequestedAuthnContext;

/// The vocabulary of the class references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    /// `normal`, `substantiell`, `hoch`.
    Servicekonto,
    /// `http://eidas.europa.eu/LoA/low|substantial|high`.
    Eidas,
}

/// What a request's authentication context asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextRequirement {
    /// The lowest level that satisfies the request.
    pub minimum: TrustLevel,
    /// The highest level the answer may state (`maximum` comparison), if bounded.
    pub maximum: Option<TrustLevel>,
    /// For `exact`: the levels listed (the answer must be one of them).
    pub exact: Option<Vec<TrustLevel>>,
    /// The vocabulary of the answer.
    pub vocabulary: Vocabulary,
}

/// The request names no class reference we know, or asks for more than `hoch` (`better` than
/// the highest): answered with the status `NoAuthnContext`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no authentication context we offer satisfies the request")]
pub struct NoAuthnContext;

fn vocabulary_of(class_ref: &str) -> Vocabulary {
    if class_ref.starts_with("http://eidas.europa.eu/") { Vocabulary::Eidas } else { Vocabulary::Servicekonto }
}

/// The requirement of `requested`; with none, any level answered in our vocabulary.
pub fn requirement(requested: Option<&RequestedAuthnContext>) -> Result<ContextRequirement, NoAuthnContext> {
    let Some(requested) = requested else {
        return Ok(ContextRequirement {
            minimum: TrustLevel::Normal,
            maximum: None,
            exact: None,
            vocabulary: Vocabulary::Servicekonto,
        });
    };
    let known: Vec<(TrustLevel, Vocabulary)> = requested
        .class_refs
        .iter()
        .filter_map(|r| r.parse::<TrustLevel>().ok().map(|level| (level, vocabulary_of(r))))
        .collect();
    let (Some(lowest), Some(highest)) = (known.iter().map(|(l, _)| *l).min(), known.iter().map(|(l, _)| *l).max())
    else {
        return Err(NoAuthnContext);
    };
    let vocabulary = known[0].1;
    let requirement = |minimum, maximum, exact| ContextRequirement { minimum, maximum, exact, vocabulary };
    match requested.comparison.as_str() {
        "minimum" => Ok(requirement(lowest, None, None)),
        "maximum" => Ok(requirement(TrustLevel::Normal, Some(highest), None)),
        "better" => match highest {
            TrustLevel::Normal => Ok(requirement(TrustLevel::Substantiell, None, None)),
            TrustLevel::Substantiell => Ok(requirement(TrustLevel::Hoch, None, None)),
            TrustLevel::Hoch => Err(NoAuthnContext),
        },
        // "exact", the default.
        _ => Ok(requirement(lowest, None, Some(known.iter().map(|(l, _)| *l).collect()))),
    }
}

impl ContextRequirement {
    /// The class reference stating `achieved` (the session's level, at least `minimum`): a
    /// higher level includes the lower ones, so the statement is the highest level the
    /// requirement allows that `achieved` reaches.
    pub fn answer(&self, achieved: TrustLevel) -> Result<String, NoAuthnContext> {
        if achieved < self.minimum {
            return Err(NoAuthnContext);
        }
        let stated = match (&self.exact, self.maximum) {
            (Some(listed), _) => listed.iter().copied().filter(|l| *l <= achieved).max().ok_or(NoAuthnContext)?,
            (None, Some(maximum)) => achieved.min(maximum),
            (None, None) => achieved,
        };
        Ok(match self.vocabulary {
            Vocabulary::Eidas => stated.eidas_uri().to_owned(),
            Vocabulary::Servicekonto => stated.as_str().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(comparison: &str, refs: &[&str]) -> RequestedAuthnContext {
        RequestedAuthnContext {
            comparison: comparison.into(),
            class_refs: refs.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    const SUBSTANTIAL: &str = "http://eidas.europa.eu/LoA/substantial";
    const HIGH: &str = "http://eidas.europa.eu/LoA/high";

    #[test]
    fn minimum_steps_up_and_answers_what_was_reached_in_the_sps_words() {
        let need = requirement(Some(&asked("minimum", &[SUBSTANTIAL]))).unwrap();
        assert_eq!(need.minimum, TrustLevel::Substantiell);
        assert_eq!(need.answer(TrustLevel::Normal), Err(NoAuthnContext));
        assert_eq!(need.answer(TrustLevel::Hoch).unwrap(), HIGH);
    }

    #[test]
    fn exact_answers_one_of_the_listed_levels() {
        let need = requirement(Some(&asked("exact", &[SUBSTANTIAL]))).unwrap();
        assert_eq!(need.answer(TrustLevel::Hoch).unwrap(), SUBSTANTIAL, "high includes substantial");
        let ours = requirement(Some(&asked("exact", &["hoch"]))).unwrap();
        assert_eq!((ours.minimum, ours.answer(TrustLevel::Hoch).unwrap().as_str()), (TrustLevel::Hoch, "hoch"));
    }

    #[test]
    fn better_and_maximum_and_the_unknown() {
        let better = requirement(Some(&asked("better", &[SUBSTANTIAL]))).unwrap();
        assert_eq!(better.minimum, TrustLevel::Hoch);
        assert_eq!(requirement(Some(&asked("better", &[HIGH]))), Err(NoAuthnContext), "nothing is better than high");
        let maximum = requirement(Some(&asked("maximum", &["substantiell"]))).unwrap();
        assert_eq!(maximum.answer(TrustLevel::Hoch).unwrap(), "substantiell");
        assert_eq!(maximum.answer(TrustLevel::Normal).unwrap(), "normal");
        let unknown = asked("minimum", &["urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"]);
        assert_eq!(requirement(Some(&unknown)), Err(NoAuthnContext));
        assert_eq!(requirement(None).unwrap().answer(TrustLevel::Normal).unwrap(), "normal");
    }
}
