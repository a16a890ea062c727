//! The enveloped signature of a message an SP posts (HTTP-POST binding): verified only in the
//! one shape that leaves no room for signature wrapping — the signature is a child of the
//! document's root, its one `Reference` points at the root's `ID`, the transforms are exactly
//! "enveloped signature" then exclusive canonicalisation, digest SHA-256, signature RSA-SHA256.
//! The caller reads the request from that same root, so what was verified is what is used.
//!
//! Exclusive XML Canonicalization 1.0 (without comments) is implemented here for parsed input:
//! prefixes are taken from the source text (roxmltree keeps the byte ranges), namespace
//! declarations are rendered where visibly used (and for the `InclusiveNamespaces` prefix list),
//! attributes sorted by namespace URI and local name, text and attribute values escaped as the
//! specification says. Processing instructions inside the signed element are refused.

use std::collections::BTreeMap;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use roxmltree::{Node, NodeId};
use sha2::{Digest, Sha256};
use x509_cert::{Certificate, der::Decode as _};

use crate::{SignatureError, xml};

const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const XML_NAMESPACE: &str = "http://www.w3.org/XML/1998/namespace";

fn invalid(_: impl std::fmt::Debug) -> SignatureError {
    SignatureError::Invalid
}

fn ds_children<'a, 'input>(node: Node<'a, 'input>, name: &'static str) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children().filter(move |n| n.has_tag_name((DSIG, name)))
}

fn one<'a, 'input>(node: Node<'a, 'input>, name: &'static str) -> Result<Node<'a, 'input>, SignatureError> {
    let mut found = ds_children(node, name);
    match (found.next(), found.next()) {
        (Some(only), None) => Ok(only),
        _ => Err(SignatureError::Missing(name)),
    }
}

fn algorithm(node: Node<'_, '_>, expected: &str) -> Result<(), SignatureError> {
    match node.attribute("Algorithm") {
        Some(a) if a == expected => Ok(()),
        other => Err(SignatureError::UnsupportedAlgorithm(other.unwrap_or_default().to_owned())),
    }
}

/// The `InclusiveNamespaces` prefix list of an exc-c14n transform or method, if any.
fn inclusive_prefixes(method: Node<'_, '_>) -> Vec<String> {
    method
        .children()
        .find(|n| n.has_tag_name((EXC_C14N, "InclusiveNamespaces")))
        .and_then(|n| n.attribute("PrefixList"))
        .map(|list| {
            list.split_whitespace().map(|p| if p == "#default" { String::new() } else { p.to_owned() }).collect()
        })
        .unwrap_or_default()
}

/// Verifies the enveloped signature on the root of `xml` with any of `certificates` (DER).
/// `Missing("Signature")` when the root carries none.
pub fn verify_enveloped(xml: &str, certificates: &[Vec<u8>]) -> Result<(), SignatureError> {
    let document = xml::parse(xml, crate::request::MAX_SIZE).map_err(invalid)?;
    let root = document.root_element();
    let signature = one(root, "Signature")?;
    let signed_info = one(signature, "SignedInfo")?;
    let c14n = one(signed_info, "CanonicalizationMethod")?;
    algorithm(c14n, EXC_C14N)?;
    algorithm(one(signed_info, "SignatureMethod")?, RSA_SHA256)?;
    let reference = one(signed_info, "Reference")?;
    let id = root.attribute("ID").filter(|id| !id.is_empty()).ok_or(SignatureError::Missing("ID"))?;
    if reference.attribute("URI") != Some(format!("#{id}").as_str()) {
        return Err(SignatureError::Invalid);
    }
    let transforms: Vec<Node> = ds_children(one(reference, "Transforms")?, "Transform").collect();
    let [enveloped, exclusive] = transforms.as_slice() else { return Err(SignatureError::Invalid) };
    algorithm(*enveloped, ENVELOPED)?;
    algorithm(*exclusive, EXC_C14N)?;
    algorithm(one(reference, "DigestMethod")?, SHA256)?;
    let digest_value = one(reference, "DigestValue")?.text().unwrap_or_default();
    let digest_value = STANDARD.decode(strip(digest_value)).map_err(invalid)?;

    let mut root_form = String::new();
    canonicalise(root, Some(signature.id()), &inclusive_prefixes(*exclusive), &mut root_form)?;
    if Sha256::digest(root_form.as_bytes())[..] != digest_value[..] {
        return Err(SignatureError::Invalid);
    }
    let mut signed_form = String::new();
    canonicalise(signed_info, None, &inclusive_prefixes(c14n), &mut signed_form)?;
    let value =
        STANDARD.decode(strip(one(signature, "SignatureValue")?.text().unwrap_or_default())).map_err(invalid)?;
    let mut any_certificate = false;
    for der in certificates {
        let Ok(certificate) = Certificate::from_der(der) else { continue };
        let Some(key) = certificate.tbs_certificate.subject_public_key_info.subject_public_key.as_bytes() else {
            continue;
        };
        any_certificate = true;
        if UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key).verify(signed_form.as_bytes(), &value).is_ok() {
            return Ok(());
        }
    }
    Err(if any_certificate { SignatureError::Invalid } else { SignatureError::BadCertificate })
}

fn strip(text: &str) -> String {
    text.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

/// The qualified name of an element as written in the source.
fn qname<'input>(node: Node<'_, 'input>) -> &'input str {
    let text = node.document().input_text();
    let start = node.range().start + 1;
    let rest = &text[start..];
    let end = rest.find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/').unwrap_or(rest.len());
    &rest[..end]
}

fn prefix_of(qualified: &str) -> &str {
    qualified.split_once(':').map(|(p, _)| p).unwrap_or("")
}

/// Appends the exclusive canonical form of `node`'s subtree, leaving out the subtree `skip`.
fn canonicalise(
    node: Node<'_, '_>,
    skip: Option<NodeId>,
    inclusive: &[String],
    out: &mut String,
) -> Result<(), SignatureError> {
    element(node, skip, inclusive, &BTreeMap::new(), out)
}

fn element(
    node: Node<'_, '_>,
    skip: Option<NodeId>,
    inclusive: &[String],
    rendered: &BTreeMap<String, String>,
    out: &mut String,
) -> Result<(), SignatureError> {
    // Recursion is bounded: `xml::parse` refuses documents nested deeper than `bounded_xml::MAX_DEPTH`.
    let name = qname(node);
    let document = node.document();
    let attributes: Vec<(&str, Option<&str>, &str, &str)> = node
        .attributes()
        .map(|a| (&document.input_text()[a.range_qname()], a.namespace(), a.name(), a.value()))
        .collect();
    // The prefixes this element visibly uses, and those of the inclusive list in scope.
    let mut used: Vec<String> = vec![prefix_of(name).to_owned()];
    for (qualified, namespace, _, _) in &attributes {
        if namespace.is_some_and(|n| n != XML_NAMESPACE) {
            used.push(prefix_of(qualified).to_owned());
        }
    }
    used.extend(inclusive.iter().cloned());
    used.sort();
    used.dedup();
    let mut own = rendered.clone();
    let mut declarations = Vec::new();
    for prefix in used {
        let uri = node.lookup_namespace_uri((!prefix.is_empty()).then_some(prefix.as_str())).unwrap_or("");
        if prefix.is_empty() && uri.is_empty() && rendered.get("").is_none_or(|u| u.is_empty()) {
            continue;
        }
        if !prefix.is_empty() && uri.is_empty() {
            continue;
        }
        if rendered.get(&prefix).map(String::as_str) != Some(uri) {
            declarations.push((prefix.clone(), uri.to_owned()));
            own.insert(prefix, uri.to_owned());
        }
    }
    out.push('<');
    out.push_str(name);
    for (prefix, uri) in &declarations {
        out.push_str(if prefix.is_empty() { " xmlns" } else { " xmlns:" });
        out.push_str(prefix);
        out.push_str("=\"");
        xml::attribute(uri, out);
        out.push('"');
    }
    let mut sorted = attributes;
    sorted.sort_by(|a, b| (a.1.unwrap_or(""), a.2).cmp(&(b.1.unwrap_or(""), b.2)));
    for (qualified, _, _, value) in sorted {
        out.push(' ');
        out.push_str(qualified);
        out.push_str("=\"");
        xml::attribute(value, out);
        out.push('"');
    }
    out.push('>');
    for child in node.children() {
        if Some(child.id()) == skip {
            continue;
        }
        if child.is_element() {
            element(child, skip, inclusive, &own, out)?;
        } else if child.is_text() {
            xml::text(child.text().unwrap_or_default(), out);
        } else if child.is_pi() {
            return Err(SignatureError::Invalid);
        }
        // Comments are not part of the canonical form without comments.
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
    Ok(())
}

#[cfg(test)]
mod tests {
    use roxmltree::Document;

    use super::*;

    #[test]
    fn what_is_missing_or_refused_is_named() {
        let unsigned = r#"<p:AuthnRequest xmlns:p="urn:oasis:names:tc:SAML:2.0:protocol" ID="a"/>"#;
        assert_eq!(verify_enveloped(unsigned, &[]), Err(SignatureError::Missing("Signature")));
        let sha1 = r##"<p:AuthnRequest xmlns:p="urn:oasis:names:tc:SAML:2.0:protocol" ID="a"><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"/></ds:SignedInfo></ds:Signature></p:AuthnRequest>"##;
        assert!(
            matches!(verify_enveloped(sha1, &[]), Err(SignatureError::UnsupportedAlgorithm(a)) if a.ends_with("rsa-sha1"))
        );
    }

    #[test]
    fn the_canonical_form_declares_what_is_used_and_sorts_attributes() {
        let xml = r#"<a:r xmlns:a="urn:a" xmlns:b="urn:b" xmlns="urn:d" z="1" b:y="2" a:x="3"><c>t&amp;&lt;&gt;</c><!-- gone --><b:e/></a:r>"#;
        let document = Document::parse(xml).unwrap();
        let mut out = String::new();
        canonicalise(document.root_element(), None, &[], &mut out).unwrap();
        assert_eq!(
            out,
            r#"<a:r xmlns:a="urn:a" xmlns:b="urn:b" z="1" a:x="3" b:y="2"><c xmlns="urn:d">t&amp;&lt;&gt;</c><b:e></b:e></a:r>"#
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_it_exhausts_the_stack() {
        let signature = r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#a"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>AA==</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>AA==</ds:SignatureValue></ds:Signature>"##;
        let levels = 8000;
        let xml = format!(
            r#"<p:AuthnRequest xmlns:p="urn:oasis:names:tc:SAML:2.0:protocol" ID="a">{signature}{}{}</p:AuthnRequest>"#,
            "<a>".repeat(levels),
            "</a>".repeat(levels)
        );
        // A small stack, as a worker thread's could be: the answer must be an error, not an abort.
        let verdict = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || verify_enveloped(&xml, &[]))
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(verdict, Err(SignatureError::Invalid));
    }

    proptest::proptest! {
        #[test]
        fn nothing_panics_on_input(text in ".{0,400}") {
            let _ = verify_enveloped(&text, &[]);
        }
    }
}
