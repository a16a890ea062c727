//! The TC token (BSI TR-03124-1 §2.4): what AusweisApp2 fetches from the tcTokenURL to learn
//! where the eID-Server is, the session, the PSK, and where to send the browser afterwards.

use crate::{eid_server::EidServerSession, xml_escape as escape};

/// Renders the TC token for `session`; AusweisApp2 sends the browser to `refresh_address` (with
/// `ResultMajor` appended) when done, or to `communication_error_address` when it cannot even
/// reach the eID-Server.
pub fn render(session: &EidServerSession, refresh_address: &str, communication_error_address: &str) -> String {
    let psk = session
        .psk
        .as_ref()
        .map(|p| {
            format!(
                "<PathSecurity-Protocol>urn:ietf:rfc:4279</PathSecurity-Protocol><PathSecurity-Parameters><PSK>{}</PSK></PathSecurity-Parameters>",
                escape(&p.key)
            )
        })
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TCTokenType><ServerAddress>{}</ServerAddress><SessionIdentifier>{}</SessionIdentifier><RefreshAddress>{}</RefreshAddress><CommunicationErrorAddress>{}</CommunicationErrorAddress><Binding>urn:liberty:paos:2006-08</Binding>{psk}</TCTokenType>\n",
        escape(&session.server_address),
        escape(&session.session_id),
        escape(refresh_address),
        escape(communication_error_address),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eid_server::Psk;

    #[test]
    fn the_token_names_server_session_psk_and_both_addresses() {
        let session = EidServerSession {
            session_id: "abc".into(),
            server_address: "https://eid.example/paos".into(),
            psk: Some(Psk { id: "abc".into(), key: "00ff".into() }),
        };
        let token = render(&session, "https://sk.example/eid/ergebnis?s=1&b=2", "https://sk.example/eid/fehler");
        let document = roxmltree::Document::parse(&token).unwrap();
        let field = |name: &str| {
            document.descendants().find(|n| n.tag_name().name() == name).and_then(|n| n.text()).unwrap_or_default()
        };
        assert_eq!(field("ServerAddress"), "https://eid.example/paos");
        assert_eq!(field("SessionIdentifier"), "abc");
        assert_eq!(field("RefreshAddress"), "https://sk.example/eid/ergebnis?s=1&b=2");
        assert_eq!(field("CommunicationErrorAddress"), "https://sk.example/eid/fehler");
        assert_eq!(field("Binding"), "urn:liberty:paos:2006-08");
        assert_eq!(field("PathSecurity-Protocol"), "urn:ietf:rfc:4279");
        assert_eq!(field("PSK"), "00ff");
    }
}
