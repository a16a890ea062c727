//! A writer of XML trees in Exclusive XML Canonicalization form (exc-c14n 1.0, without
//! comments), so that what we sign is byte for byte what a verifier canonicalises:
//!
//! - no XML declaration, no whitespace between elements, every element written as start and end
//!   tag (never `<a/>`);
//! - attributes are unqualified and sorted by name (the namespace URI of each is empty);
//! - text escaped as `&amp; &lt; &gt; &#xD;`, attribute values as
//!   `&amp; &lt; &quot; &#x9; &#xA; &#xD;`;
//! - an element declares the namespace of its own prefix unless an element above it in the
//!   rendered output declared it already — exactly the namespace nodes exclusive
//!   canonicalisation renders, since each element's prefix is the only one it visibly uses.
//!
//! Rendering an element with nothing above it ([`Element::canonical`]) gives its canonical form
//! as the apex of a signed subtree; rendering a whole document gives the same bytes for each
//! subtree a verifier canonicalises in context.

pub(crate) use bounded_xml::{Unreadable, parse};

use std::fmt::Write as _;

/// The prefixes we write and their namespaces.
const NAMESPACES: [(&str, &str); 5] = [
    ("ds", "http://www.w3.org/2000/09/xmldsig#"),
    ("md", "urn:oasis:names:tc:SAML:2.0:metadata"),
    ("saml", "urn:oasis:names:tc:SAML:2.0:assertion"),
    ("samlp", "urn:oasis:names:tc:SAML:2.0:protocol"),
    ("xenc", "http://www.w3.org/2001/04/xmlenc#"),
];

/// Escapes character data (exc-c14n §2.3 of C14N 1.0).
pub(crate) fn text(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// Escapes an attribute value.
pub(crate) fn attribute(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Element(Element),
    Text(String),
}

/// An element: a prefixed name (a prefix of [`NAMESPACES`]), unqualified attributes, children.
#[derive(Debug, Clone)]
pub(crate) struct Element {
    prefix: &'static str,
    name: &'static str,
    attributes: Vec<(&'static str, String)>,
    children: Vec<Node>,
}

impl Element {
    /// `<prefix:name>`; `prefix` must be one of ours.
    pub(crate) fn new(prefix: &'static str, name: &'static str) -> Self {
        debug_assert!(NAMESPACES.iter().any(|(p, _)| *p == prefix), "unknown prefix {prefix}");
        Self { prefix, name, attributes: Vec::new(), children: Vec::new() }
    }

    /// An unqualified attribute.
    pub(crate) fn attr(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.attributes.push((name, value.into()));
        self
    }

    /// The attribute if `value` is `Some`.
    pub(crate) fn attr_opt(self, name: &'static str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(value) => self.attr(name, value),
            None => self,
        }
    }

    /// Text content.
    pub(crate) fn text(mut self, value: impl Into<String>) -> Self {
        self.children.push(Node::Text(value.into()));
        self
    }

    /// A child element.
    pub(crate) fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Inserts `child` as the child at `index` (a signature after the issuer).
    pub(crate) fn insert(&mut self, index: usize, child: Element) {
        let index = index.min(self.children.len());
        self.children.insert(index, Node::Element(child));
    }

    /// The canonical form of this element as the apex of a canonicalised subtree.
    pub(crate) fn canonical(&self) -> String {
        let mut out = String::new();
        self.render(&mut Vec::new(), &mut out);
        out
    }

    fn render(&self, rendered: &mut Vec<&'static str>, out: &mut String) {
        let _ = write!(out, "<{}:{}", self.prefix, self.name);
        let declares = !rendered.contains(&self.prefix);
        if declares {
            let uri = NAMESPACES.iter().find(|(p, _)| *p == self.prefix).map_or("", |(_, uri)| *uri);
            let _ = write!(out, " xmlns:{}=\"", self.prefix);
            attribute(uri, out);
            out.push('"');
            rendered.push(self.prefix);
        }
        let mut attributes: Vec<&(&str, String)> = self.attributes.iter().collect();
        attributes.sort_by_key(|(name, _)| *name);
        for (name, value) in attributes {
            let _ = write!(out, " {name}=\"");
            attribute(value, out);
            out.push('"');
        }
        out.push('>');
        for child in &self.children {
            match child {
                Node::Element(element) => element.render(rendered, out),
                Node::Text(value) => text(value, out),
            }
        }
        let _ = write!(out, "</{}:{}>", self.prefix, self.name);
        if declares {
            rendered.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_written_canonically() {
        let element = Element::new("saml", "Attribute")
            .attr("Name", "a&b\"c")
            .attr("FriendlyName", "x<y\n")
            .child(Element::new("saml", "AttributeValue").text("1 < 2 & 3 > 2\r"))
            .child(Element::new("ds", "Empty"));
        assert_eq!(
            element.canonical(),
            "<saml:Attribute xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" FriendlyName=\"x&lt;y&#xA;\" \
             Name=\"a&amp;b&quot;c\"><saml:AttributeValue>1 &lt; 2 &amp; 3 &gt; 2&#xD;</saml:AttributeValue>\
             <ds:Empty xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"></ds:Empty></saml:Attribute>"
        );
    }

    #[test]
    fn a_sibling_declares_again_what_only_a_sibling_declared() {
        let response = Element::new("samlp", "Response")
            .child(Element::new("saml", "Issuer").text("idp"))
            .child(Element::new("saml", "Assertion").child(Element::new("saml", "Issuer").text("idp")));
        let out = response.canonical();
        assert_eq!(out.matches("xmlns:saml=").count(), 2, "on the Issuer and on the Assertion: {out}");
        assert_eq!(out.matches("xmlns:samlp=").count(), 1);
    }
}
