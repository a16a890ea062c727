//! The identity provider's metadata (SAML Metadata §2.4.3), signed like a Response.

use crate::{
    response::{PERSISTENT, TRANSIENT},
    signature::{SignError, Signer, key_info, sign_enveloped},
    xml::Element,
};

/// The HTTP-Redirect binding.
pub const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// The HTTP-POST binding.
pub const POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// Where the identity provider of one environment answers.
#[derive(Debug, Clone)]
pub struct IdpEndpoints {
    /// The entity id (the environment's issuer).
    pub entity_id: String,
    /// Single sign-on, both bindings.
    pub sso: String,
    /// Single logout (HTTP-Redirect).
    pub slo: String,
}

/// The signed `md:EntityDescriptor`; `id` is a fresh NCName.
pub fn idp_metadata(endpoints: &IdpEndpoints, id: &str, signer: &dyn Signer) -> Result<String, SignError> {
    let descriptor = Element::new("md", "IDPSSODescriptor")
        .attr("WantAuthnRequestsSigned", "false")
        .attr("protocolSupportEnumeration", "urn:oasis:names:tc:SAML:2.0:protocol")
        .child(Element::new("md", "KeyDescriptor").attr("use", "signing").child(key_info(signer)))
        .child(
            Element::new("md", "SingleLogoutService").attr("Binding", REDIRECT).attr("Location", endpoints.slo.clone()),
        )
        .child(Element::new("md", "NameIDFormat").text(PERSISTENT))
        .child(Element::new("md", "NameIDFormat").text(TRANSIENT))
        .child(
            Element::new("md", "SingleSignOnService").attr("Binding", REDIRECT).attr("Location", endpoints.sso.clone()),
        )
        .child(Element::new("md", "SingleSignOnService").attr("Binding", POST).attr("Location", endpoints.sso.clone()));
    let mut entity = Element::new("md", "EntityDescriptor")
        .attr("ID", id)
        .attr("entityID", endpoints.entity_id.clone())
        .child(descriptor);
    sign_enveloped(&mut entity, id, 0, signer)?;
    Ok(entity.canonical())
}
