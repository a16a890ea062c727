//! Texts of the pages and mails, from the translation files `locales/*.toml` (German first,
//! English second); none are in code.

use std::collections::BTreeMap;

/// A page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    De,
    En,
}

impl Lang {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }

    pub(crate) fn other(self) -> Lang {
        match self {
            Lang::De => Lang::En,
            Lang::En => Lang::De,
        }
    }

    /// `de`, `de-DE`, `en`, `en-GB`, … (case-insensitive).
    pub(crate) fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "de" => Some(Lang::De),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The first supported tag of a space-separated list (OIDC `ui_locales`).
    pub(crate) fn from_preferences(list: &str) -> Option<Lang> {
        list.split_whitespace().find_map(Lang::parse)
    }

    /// The supported language the `Accept-Language` header prefers most.
    pub(crate) fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let Some(lang) = parts.next().and_then(Lang::parse) else { continue };
            let quality =
                parts.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
                best = Some((quality, lang));
            }
        }
        best.map(|(_, lang)| lang)
    }
}

type Table = BTreeMap<String, String>;

/// All texts, per language.
pub(crate) struct Texts {
    pages: [Table; 2],
    mails: [Table; 2],
}

fn parse(name: &str, source: &str) -> anyhow::Result<Table> {
    toml::from_str(source).map_err(|e| anyhow::anyhow!("locales/{name}: {e}"))
}

fn index(lang: Lang) -> usize {
    match lang {
        Lang::De => 0,
        Lang::En => 1,
    }
}

impl Texts {
    /// Parses the embedded files and checks that every language has every key.
    pub(crate) fn load() -> anyhow::Result<Self> {
        let texts = Self {
            pages: [
                parse("de.toml", include_str!("../../locales/de.toml"))?,
                parse("en.toml", include_str!("../../locales/en.toml"))?,
            ],
            mails: [
                parse("de_mail.toml", include_str!("../../locales/de_mail.toml"))?,
                parse("en_mail.toml", include_str!("../../locales/en_mail.toml"))?,
            ],
        };
        for (what, [de, en]) in [("pages", &texts.pages), ("mails", &texts.mails)] {
            let missing: Vec<&String> =
                de.keys().filter(|k| !en.contains_key(*k)).chain(en.keys().filter(|k| !de.contains_key(*k))).collect();
            anyhow::ensure!(missing.is_empty(), "{what}: keys missing in one language: {missing:?}");
        }
        Ok(texts)
    }

    /// A page text; the key itself when it is missing (and a test fails on that).
    pub(crate) fn get(&self, lang: Lang, key: &str) -> String {
        self.pages[index(lang)].get(key).cloned().unwrap_or_else(|| key.to_owned())
    }

    /// A page text, if the key exists.
    pub(crate) fn find(&self, lang: Lang, key: &str) -> Option<String> {
        self.pages[index(lang)].get(key).cloned()
    }

    /// Whether a page text exists (in every language: `load` checked that).
    #[cfg(test)]
    pub(crate) fn has(&self, key: &str) -> bool {
        self.pages[0].contains_key(key)
    }

    /// All page texts of `lang`, for templates (`{{ t.key }}`).
    pub(crate) fn page(&self, lang: Lang) -> minijinja::Value {
        minijinja::Value::from_serialize(&self.pages[index(lang)])
    }

    /// A mail text.
    pub(crate) fn mail(&self, lang: Lang, key: &str) -> String {
        self.mails[index(lang)].get(key).cloned().unwrap_or_else(|| key.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_chosen_from_tags_lists_and_headers() {
        assert_eq!(Lang::parse("de-DE"), Some(Lang::De));
        assert_eq!(Lang::parse("EN_gb"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
        assert_eq!(Lang::from_preferences("fr-CA en de"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language("fr;q=1, en;q=0.5, de;q=0.8"), Some(Lang::De));
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language("fr, it"), None);
        assert_eq!(Lang::from_accept_language("de;q=0"), None);
    }

    #[test]
    fn every_text_exists_in_both_languages() {
        Texts::load().unwrap();
    }
}
