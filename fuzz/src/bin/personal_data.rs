//! The registration form's step 1 and the password rules: the fields are the input's lines.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        let mut lines = text.split('\n').map(str::to_owned);
        let mut next = || lines.next().unwrap_or_default();
        let input = account_service::PersonalDataInput {
            given_names: next(),
            family_name: next(),
            birth_name: next(),
            date_of_birth: next(),
            place_of_birth: next(),
            street_and_number: next(),
            postal_code: next(),
            city: next(),
            country: next(),
            phone_number: next(),
            email: next(),
            username: next(),
        };
        let today = time::Date::from_calendar_date(2026, time::Month::December, 2).unwrap_or(time::Date::MIN);
        let _ = account_service::validate_personal_data(&input, today);
        let password = next();
        let _ = account_service::check_password(&password, &password, &input.username, &input.email);
    });
}
