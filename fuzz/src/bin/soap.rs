//! SOAP answers of a TR-03130 eID-Server (useID, getResult).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(xml) = std::str::from_utf8(data) {
            let _ = eid_bridge::fuzzing::use_id_response(xml);
            let _ = eid_bridge::fuzzing::get_result_response(xml);
        }
    });
}
