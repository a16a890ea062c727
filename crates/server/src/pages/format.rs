//! How values are shown to citizens, on every page and in every mail: one function per kind of
//! value and page language. Stored values stay in their exchange form (ISO 8601 dates, claims);
//! only here do they become German (`12.08.1964`) or English (`12 August 1964`).

use time::{Date, OffsetDateTime, macros::format_description};

use super::texts::Lang;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A calendar date: `TT.MM.JJJJ` in German, `12 August 1964` in English.
pub(crate) fn date(lang: Lang, date: Date) -> String {
    match lang {
        Lang::De => format!("{:02}.{:02}.{:04}", date.day(), u8::from(date.month()), date.year()),
        Lang::En => format!("{} {} {}", date.day(), MONTHS[usize::from(u8::from(date.month())) - 1], date.year()),
    }
}

/// A point in time, to the minute, in UTC (the time zone said, so that nobody guesses).
pub(crate) fn date_time(lang: Lang, at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{}, {:02}:{:02} UTC", date(lang, at.date()), at.hour(), at.minute())
}

/// A stored ISO date (`1964-08-12`, the `birthdate` claim's form). The ID card may hold only a
/// year and month (`1964-08`) or a year: those are shown in the same order, and anything else
/// as it is rather than guessed at.
pub(crate) fn iso_date(lang: Lang, text: &str) -> String {
    if let Ok(full) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        return date(lang, full);
    }
    match (text.split_once('-'), lang) {
        (Some((year, month)), Lang::De) if is_year_month(year, month) => format!("{month}.{year}"),
        (Some((year, month)), Lang::En) if is_year_month(year, month) => {
            let index = month.parse::<usize>().unwrap_or(1).clamp(1, 12) - 1;
            format!("{} {year}", MONTHS[index])
        }
        _ => text.to_owned(),
    }
}

fn is_year_month(year: &str, month: &str) -> bool {
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && month.len() == 2
        && month.parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
}

/// A German address block (DIN 5008): street and number, postal code and city, and the
/// country on a line of its own when it is not Germany.
pub(crate) fn address_block(
    street: &str,
    house_number: &str,
    postal_code: &str,
    city: &str,
    country: Option<&str>,
) -> Vec<String> {
    let mut lines = Vec::with_capacity(3);
    let street_line = format!("{street} {house_number}").trim().to_owned();
    if !street_line.is_empty() {
        lines.push(street_line);
    }
    let city_line = format!("{postal_code} {city}").trim().to_owned();
    if !city_line.is_empty() {
        lines.push(city_line);
    }
    if let Some(country) = country.filter(|c| !c.is_empty()) {
        lines.push(country.to_uppercase());
    }
    lines
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    fn check(lang: Lang, stored: &str, expect: &str) {
        assert_eq!(iso_date(lang, stored), expect, "{stored} in {lang:?}");
    }

    #[test]
    fn dates_follow_the_page_language() {
        check(Lang::De, "1964-08-12", "12.08.1964");
        check(Lang::En, "1964-08-12", "12 August 1964");
        check(Lang::De, "2001-01-01", "01.01.2001");
        check(Lang::En, "2001-12-01", "1 December 2001");
        // Partial dates from the card, and what is no date at all.
        check(Lang::De, "1964-08", "08.1964");
        check(Lang::En, "1964-08", "August 1964");
        check(Lang::De, "1964", "1964");
        check(Lang::De, "1964-13", "1964-13");
        check(Lang::En, "", "");
        check(Lang::De, "12.08.1964", "12.08.1964");
        assert_eq!(date(Lang::De, date!(2029 - 03 - 05)), "05.03.2029");
        assert_eq!(date_time(Lang::De, datetime!(2026-12-02 21:05 UTC)), "02.12.2026, 21:05 UTC");
        assert_eq!(date_time(Lang::En, datetime!(2026-12-02 23:05 +02:00)), "2 December 2026, 21:05 UTC");
    }

    #[test]
    fn addresses_are_german_address_blocks() {
        assert_eq!(address_block("Heidestraße", "17", "51147", "Köln", None), ["Heidestraße 17", "51147 Köln"]);
        assert_eq!(
            address_block("Rue de la Loi", "16", "1000", "Bruxelles", Some("Belgien")),
            ["Rue de la Loi 16", "1000 Bruxelles", "BELGIEN"]
        );
        assert_eq!(address_block("", "", "33098", "Paderborn", Some("")), ["33098 Paderborn"]);
    }
}
