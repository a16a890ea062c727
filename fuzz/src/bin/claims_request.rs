//! The OIDC `claims` request parameter.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = oidc_core::ClaimsRequest::parse(text);
            let _ = oidc_core::authorize::prompt(Some(text));
            let _ = oidc_core::authorize::max_age(Some(text));
            let _ = oidc_core::authorize::scopes(Some(text));
        }
    });
}
