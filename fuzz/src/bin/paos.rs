//! What AusweisApp2 and the card send the test eID-Server: PAOS messages, and the card's
//! answers (data groups, the pseudonym, EF.CardSecurity).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(xml) = std::str::from_utf8(data) {
            let _ = eid_test_server::paos::parse(xml);
        }
        let mut personal = eid_bridge::EidPersonalData::default();
        for dg in [1, 4, 8, 9, 17] {
            let _ = eid_test_server::card::read_data_group(dg, data, &mut personal);
        }
        let _ = eid_test_server::card::restricted_id(data);
        let _ = eid_test_server::card::chip_authentication_key(data);
    });
}
