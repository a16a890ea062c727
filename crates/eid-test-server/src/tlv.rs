//! BER-TLV as the ID card and its certificates use it (ISO 7816-4, TR-03110-3 D.2): tags of one
//! to three bytes kept as the number their bytes spell (`0x7F21`), definite lengths of up to
//! three bytes. Nothing here trusts a length: every read is bounded by what is there.

/// One data object: its tag, its value, and the bytes it took (tag, length, value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag's bytes as a number (`0x7F49`).
    pub tag: u32,
    /// The value.
    pub value: &'a [u8],
    /// Tag, length and value as they were encoded.
    pub raw: &'a [u8],
}

/// Why bytes are not a data object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    /// The input ends inside the tag, the length or the value.
    #[error("the data object is cut short")]
    Truncated,
    /// Tags longer than three bytes, indefinite or longer than three-byte lengths.
    #[error("the data object's tag or length is not supported")]
    Unsupported,
}

impl<'a> Tlv<'a> {
    /// Whether the value holds further data objects.
    pub fn is_constructed(&self) -> bool {
        let first = (self.tag >> (8 * (tag_len(self.tag) - 1))) as u8;
        first & 0x20 != 0
    }

    /// The data objects inside a constructed value.
    pub fn children(&self) -> Result<Vec<Tlv<'a>>, TlvError> {
        parse_all(self.value)
    }

    /// The first child with `tag`.
    pub fn child(&self, tag: u32) -> Result<Option<Tlv<'a>>, TlvError> {
        Ok(self.children()?.into_iter().find(|c| c.tag == tag))
    }
}

fn tag_len(tag: u32) -> usize {
    match tag {
        0..=0xFF => 1,
        0x100..=0xFFFF => 2,
        _ => 3,
    }
}

/// Reads the first data object of `input`; returns it and what follows.
pub fn parse_one(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), TlvError> {
    let first = *input.first().ok_or(TlvError::Truncated)?;
    let mut at = 1;
    let mut tag = u32::from(first);
    if first & 0x1F == 0x1F {
        loop {
            let byte = *input.get(at).ok_or(TlvError::Truncated)?;
            at += 1;
            if at > 3 {
                return Err(TlvError::Unsupported);
            }
            tag = (tag << 8) | u32::from(byte);
            if byte & 0x80 == 0 {
                break;
            }
        }
    }
    let length_byte = *input.get(at).ok_or(TlvError::Truncated)?;
    at += 1;
    let length = match length_byte {
        0..=0x7F => usize::from(length_byte),
        0x81..=0x83 => {
            let count = usize::from(length_byte & 0x7F);
            let bytes = input.get(at..at + count).ok_or(TlvError::Truncated)?;
            at += count;
            bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
        }
        _ => return Err(TlvError::Unsupported),
    };
    let end = at.checked_add(length).ok_or(TlvError::Truncated)?;
    let value = input.get(at..end).ok_or(TlvError::Truncated)?;
    Ok((Tlv { tag, value, raw: &input[..end] }, &input[end..]))
}

/// Reads data objects until the input ends.
pub fn parse_all(mut input: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut objects = Vec::new();
    while !input.is_empty() {
        let (object, rest) = parse_one(input)?;
        objects.push(object);
        input = rest;
    }
    Ok(objects)
}

/// Encodes one data object (DER lengths).
pub fn encode(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    let tag_bytes = tag.to_be_bytes();
    out.extend_from_slice(&tag_bytes[4 - tag_len(tag)..]);
    match value.len() {
        n @ 0..=0x7F => out.push(n as u8),
        n @ 0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        n @ 0x100..=0xFFFF => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
        n => out.extend_from_slice(&[0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
    out
}

/// Encodes a constructed data object from its encoded children.
pub fn encode_all(tag: u32, children: &[&[u8]]) -> Vec<u8> {
    encode(tag, &children.concat())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_certificate_body_tag_and_long_lengths_round_trip() {
        let value = vec![7u8; 300];
        let encoded = encode(0x7F4E, &value);
        assert_eq!(&encoded[..4], &[0x7F, 0x4E, 0x82, 0x01]);
        let (object, rest) = parse_one(&encoded).unwrap();
        assert!(rest.is_empty());
        assert_eq!(object.tag, 0x7F4E);
        assert!(object.is_constructed());
        assert_eq!(object.value, &value[..]);
        assert_eq!(object.raw, &encoded[..]);
    }

    #[test]
    fn cut_short_and_unsupported_input_is_refused() {
        assert_eq!(parse_one(&[]), Err(TlvError::Truncated));
        assert_eq!(parse_one(&[0x7F]), Err(TlvError::Truncated));
        assert_eq!(parse_one(&[0x04, 0x05, 1, 2]), Err(TlvError::Truncated));
        assert_eq!(parse_one(&[0x04, 0x84, 0, 0, 0, 1]), Err(TlvError::Unsupported));
        assert_eq!(parse_one(&[0x04, 0x80]), Err(TlvError::Unsupported));
        assert_eq!(parse_one(&[0x1F, 0x81, 0x81, 0x01, 0x00]), Err(TlvError::Unsupported));
        assert_eq!(parse_one(&[0x04, 0x83, 0xFF, 0xFF, 0xFF]), Err(TlvError::Truncated));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_all(&bytes);
        }

        #[test]
        fn encoded_objects_read_back(tag in prop_oneof![0x01u32..0x1F, 0x5F01u32..0x5F7F, 0x7F01u32..0x7F7F],
                                     value in proptest::collection::vec(any::<u8>(), 0..600)) {
            let encoded = encode(tag, &value);
            let (object, rest) = parse_one(&encoded).unwrap();
            prop_assert!(rest.is_empty());
            prop_assert_eq!(object.tag, tag);
            prop_assert_eq!(object.value, &value[..]);
        }
    }
}
