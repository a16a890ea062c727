//! Messages from AusweisApp2's SDK WebSocket.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = eid_bridge::sdk::messages::Message::parse(text);
        }
    });
}
