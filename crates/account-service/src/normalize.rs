//! Standard spellings: what citizens type is turned into what authorities' clerks expect, so
//! that they need not re-check it.

use unicode_normalization::UnicodeNormalization;

/// Unicode NFC, white space trimmed and collapsed to single spaces.
pub(crate) fn text(input: &str) -> String {
    input.nfc().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// "Hauptstr." → "Hauptstraße", "Haupt Str." → "Haupt Straße", "Hauptstrasse" → "Hauptstraße".
pub(crate) fn street_name(street: &str) -> String {
    let words: Vec<String> = text(street)
        .split(' ')
        .map(|word| {
            let lower = word.to_lowercase();
            if lower == "str." || lower == "str" {
                "Straße".to_owned()
            } else if let Some(stem) = word.strip_suffix("str.").or_else(|| word.strip_suffix("Str.")) {
                format!("{stem}straße")
            } else if let Some(stem) = word.strip_suffix("strasse") {
                format!("{stem}straße")
            } else if word == "Strasse" {
                "Straße".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect();
    words.join(" ")
}

/// Splits "Am Abdinghof 11", "Am Abdinghof, 11", "Lange Str. 11 a" or "Hauptstr.11a" into street
/// and house number; the third value says whether a comma was removed (the citizen gets a hint).
pub(crate) fn street_and_number(input: &str) -> Option<(String, String, bool)> {
    let cleaned = text(input);
    let had_comma = cleaned.contains(',');
    let mut tokens: Vec<String> = cleaned.replace(',', " ").split_whitespace().map(str::to_owned).collect();
    // "11 a" → "11a".
    if tokens.len() >= 2 {
        let last = &tokens[tokens.len() - 1];
        let before = &tokens[tokens.len() - 2];
        if last.len() == 1
            && last.chars().all(|c| c.is_alphabetic())
            && before.starts_with(|c: char| c.is_ascii_digit())
        {
            let letter = tokens.pop().unwrap_or_default();
            if let Some(number) = tokens.last_mut() {
                number.push_str(&letter);
            }
        }
    }
    let last = tokens.pop()?;
    let (street_tail, number) = if last.starts_with(|c: char| c.is_ascii_digit()) {
        (String::new(), last)
    } else {
        // A number glued to the street name: "Hauptstr.11".
        let at = last.find(|c: char| c.is_ascii_digit())?;
        (last[..at].to_owned(), last[at..].to_owned())
    };
    tokens.push(street_tail);
    let street = street_name(tokens.join(" ").trim());
    let number_ok = number.len() <= 10 && number.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '/'));
    if street.is_empty() || !number_ok {
        return None;
    }
    Some((street, number, had_comma))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Option<(&str, &str, bool)>) {
        let got = street_and_number(input);
        assert_eq!(got.as_ref().map(|(s, n, c)| (s.as_str(), n.as_str(), *c)), expect, "input {input:?}");
    }

    #[test]
    fn streets_and_house_numbers() {
        check("Am Abdinghof 11", Some(("Am Abdinghof", "11", false)));
        check("Am Abdinghof, 11", Some(("Am Abdinghof", "11", true)));
        check("  Hauptstr.   5a ", Some(("Hauptstraße", "5a", false)));
        check("Hauptstr.11", Some(("Hauptstraße", "11", false)));
        check("Lange Str. 11 a", Some(("Lange Straße", "11a", false)));
        check("Bahnhofstrasse 3-5", Some(("Bahnhofstraße", "3-5", false)));
        check("Straße des 17. Juni 135", Some(("Straße des 17. Juni", "135", false)));
        check("Am Markt", None);
        check("12", None);
    }

    #[test]
    fn text_is_nfc_and_single_spaced() {
        // "e" + combining acute accent becomes one "é".
        assert_eq!(text("  Ren\u{65}\u{301}e   Müller "), "Ren\u{e9}e Müller");
    }
}
