//! XML from the network, parsed with bounds: a size limit, no DTD (so no entity expansion and no
//! external entities), and a nesting limit checked before roxmltree sees the text, because
//! roxmltree parses nesting by recursion and a deep document would overflow the stack.
//! Used by every crate that reads XML from outside (SAML, the eID-Server's SOAP, PAOS).

/// Why a document cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Larger than the limit.
    TooLarge,
    /// Carries a document type declaration (refused: no entities of any kind).
    Dtd,
    /// Not well-formed.
    NotXml(String),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::TooLarge => f.write_str("the document is too large"),
            Unreadable::Dtd => f.write_str("the document has a document type declaration"),
            Unreadable::NotXml(why) => write!(f, "the document is not well-formed XML: {why}"),
            Unreadable::TooDeep => write!(f, "the document nests deeper than {MAX_DEPTH} levels"),
        }
    }
}

impl std::error::Error for Unreadable {}

/// How deep elements may nest. The documents we read (SAML messages and metadata, PAOS and SOAP
/// messages) are a few levels deep; roxmltree
/// parses nesting by recursion (about 0.7 KiB of stack a level), so 64 KiB of `<a>` — some 9,000
/// levels — would overflow a 2 MiB worker stack and abort the whole process.
pub const MAX_DEPTH: usize = 64;

/// The deepest element nesting of `xml`, counted before any parser sees it: start tags (quoted
/// attribute values skipped) open a level, end tags and `/>` close one; comments, CDATA,
/// processing instructions and declarations are skipped. `None` as soon as it passes `limit`.
fn nesting_within(xml: &str, limit: usize) -> Option<usize> {
    let bytes = xml.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    let skip_to = |from: usize, end: &str| xml[from..].find(end).map_or(bytes.len(), |at| from + at + end.len());
    while i < bytes.len() {
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &xml[i..];
        if rest.starts_with("<!--") {
            i = skip_to(i, "-->");
        } else if rest.starts_with("<![CDATA[") {
            i = skip_to(i, "]]>");
        } else if rest.starts_with("<?") {
            i = skip_to(i, "?>");
        } else if rest.starts_with("</") {
            depth = depth.saturating_sub(1);
            i = skip_to(i, ">");
        } else if rest.starts_with("<!") {
            i = skip_to(i, ">");
        } else {
            // A start tag: to its `>` outside quotes; `/>` closes it at once.
            let mut j = i + 1;
            let mut quote = None;
            while j < bytes.len() {
                match (quote, bytes[j]) {
                    (None, b'"' | b'\'') => quote = Some(bytes[j]),
                    (Some(q), c) if c == q => quote = None,
                    (None, b'>') => break,
                    _ => {}
                }
                j += 1;
            }
            let empty = j > i + 1 && bytes.get(j - 1) == Some(&b'/');
            if !empty {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    return None;
                }
            }
            i = j + 1;
        }
    }
    Some(deepest)
}

/// Parses `xml` of at most `max` bytes and at most [`MAX_DEPTH`] levels with roxmltree, which
/// refuses DTDs (so no entity expansion and no external entities) and resolves namespaces.
pub fn parse(xml: &str, max: usize) -> Result<roxmltree::Document<'_>, Unreadable> {
    if xml.len() > max {
        return Err(Unreadable::TooLarge);
    }
    if nesting_within(xml, MAX_DEPTH).is_none() {
        return Err(Unreadable::TooDeep);
    }
    roxmltree::Document::parse(xml).map_err(|e| match e {
        roxmltree::Error::DtdDetected => Unreadable::Dtd,
        other => Unreadable::NotXml(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    #[test]
    fn nesting_is_counted_as_a_parser_would_nest() {
        assert_eq!(nesting_within("<a><b/><c>t</c></a>", 10), Some(2));
        assert_eq!(nesting_within("<a><!-- <b><b><b> --><![CDATA[<c><c>]]><?pi <d>?></a>", 10), Some(1));
        // `/>` inside a quoted value does not close the element: no way to hide levels.
        assert_eq!(nesting_within(r#"<a x="/>"><b y='/>'><c/></b></a>"#, 10), Some(2));
        assert_eq!(nesting_within(&format!("{}{}", "<a>".repeat(65), "</a>".repeat(65)), MAX_DEPTH), None);
    }

    #[test]
    fn a_deep_document_is_refused_on_a_small_stack_instead_of_aborting() {
        // 64 KiB of nesting: roxmltree alone would recurse some 9,000 levels deep.
        let levels = 9000;
        let xml = format!("<a>{}{}</a>", "<a>".repeat(levels), "</a>".repeat(levels));
        let verdict = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || parse(&xml, 128 * 1024).map(|_| ()))
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(verdict, Err(Unreadable::TooDeep));
    }
}
