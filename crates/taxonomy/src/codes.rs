//! SMTP status codes: finding them in a reply, and the fallback patterns of
//! the taxonomy that map them to reasons.
//!
//! Two kinds of code exist. The basic reply code (RFC 5321, `550`) says
//! little more than "permanent" or "temporary"; the enhanced status code
//! (RFC 3463, `5.1.1`, class.subject.detail) says what failed. Both are
//! fallbacks: the reply text decides first, because servers reuse codes
//! loosely (`550` means anything from "no such user" to "you are spam").

use std::fmt;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedCode {
    /// Parses `5.1.1`; the class must be 2, 4 or 5.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let class = parts.next()?.parse::<u8>().ok()?;
        let subject = parse_part(parts.next()?)?;
        let detail = parse_part(parts.next()?)?;
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(Self { class, subject, detail })
    }
}

fn parse_part(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// A basic SMTP reply code such as 550.
pub fn parse_reply_code(text: &str) -> Option<u16> {
    let text = text.trim();
    if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = text.parse().ok()?;
    (200..600).contains(&code).then_some(code)
}

/// A taxonomy pattern over enhanced codes: each part a number or `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedPattern {
    pub class: Option<u8>,
    pub subject: Option<u16>,
    pub detail: Option<u16>,
}

impl EnhancedPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "enhanced code pattern `{text}` is not class.subject.detail with \
                 numbers or `x` (e.g. `5.1.1`, `x.2.2`, `x.4.x`)"
            )
        };
        let parts: Vec<&str> = text.trim().split('.').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let wild = |p: &str| p.eq_ignore_ascii_case("x") || p == "*";
        let class = if wild(parts[0]) {
            None
        } else {
            match parts[0].parse::<u8>() {
                Ok(c @ (2 | 4 | 5)) => Some(c),
                _ => return Err(bad()),
            }
        };
        let subject = if wild(parts[1]) {
            None
        } else {
            Some(parse_part(parts[1]).ok_or_else(bad)?)
        };
        let detail = if wild(parts[2]) {
            None
        } else {
            Some(parse_part(parts[2]).ok_or_else(bad)?)
        };
        if subject.is_none() && detail.is_some() {
            return Err(bad());
        }
        Ok(Self { class, subject, detail })
    }

    /// The patterns that can match `code`, most specific first.
    pub fn candidates(code: EnhancedCode) -> [EnhancedPattern; 5] {
        let p = |class, subject, detail| EnhancedPattern { class, subject, detail };
        let (c, s, d) = (Some(code.class), Some(code.subject), Some(code.detail));
        [p(c, s, d), p(None, s, d), p(c, s, None), p(None, s, None), p(c, None, None)]
    }
}

impl fmt::Display for EnhancedPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |p: Option<u16>| p.map_or_else(|| "x".to_string(), |v| v.to_string());
        write!(
            f,
            "{}.{}.{}",
            part(self.class.map(u16::from)),
            part(self.subject),
            part(self.detail)
        )
    }
}

/// A taxonomy pattern over reply codes: `550`, or a class such as `5xx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyPattern {
    Exact(u16),
    Class(u8),
}

impl ReplyPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        if let Some(code) = parse_reply_code(&t) {
            return Ok(Self::Exact(code));
        }
        match t.as_str() {
            "2xx" => Ok(Self::Class(2)),
            "4xx" => Ok(Self::Class(4)),
            "5xx" => Ok(Self::Class(5)),
            _ => Err(format!(
                "reply code pattern `{text}` is not a code (`550`) or a class (`4xx`, `5xx`)"
            )),
        }
    }
}

impl fmt::Display for ReplyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(code) => write!(f, "{code}"),
            Self::Class(class) => write!(f, "{class}xx"),
        }
    }
}

/// The first reply code that stands as a token of its own in `text`:
/// three digits, 2xx to 5xx, not part of a longer number, an address or a
/// dotted code, and followed by a space, a hyphen (multi-line replies) or
/// the end.
pub fn find_reply_code(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    let mut i = 0;
    while i + 3 <= b.len() {
        let starts_token = i == 0 || !is_code_char(b[i - 1]);
        if starts_token
            && matches!(b[i], b'2' | b'4' | b'5')
            && b[i + 1].is_ascii_digit()
            && b[i + 2].is_ascii_digit()
        {
            let after = b.get(i + 3).copied();
            if matches!(
                after,
                None | Some(b' ' | b'-' | b'\t' | b'\r' | b'\n' | b';' | b',')
            ) {
                let code = u16::from(b[i] - b'0') * 100
                    + u16::from(b[i + 1] - b'0') * 10
                    + u16::from(b[i + 2] - b'0');
                return Some(code);
            }
        }
        i += 1;
    }
    None
}

/// The first enhanced status code (`5.1.1`) standing as a token in `text`.
pub fn find_enhanced_code(text: &str) -> Option<EnhancedCode> {
    (0..text.len()).find_map(|i| enhanced_code_at(text.as_bytes(), i))
}

/// The enhanced status code standing as a token at `i` of `b`, if one
/// does: what [`find_enhanced_code`] looks for at each position.
pub(crate) fn enhanced_code_at(b: &[u8], i: usize) -> Option<EnhancedCode> {
    if !matches!(b.get(i), Some(b'2' | b'4' | b'5')) || (i > 0 && is_code_char(b[i - 1]))
    {
        return None;
    }
    if b.get(i + 1) != Some(&b'.') {
        return None;
    }
    let mut j = i + 2;
    let subject_len = digits_at(b, j);
    if subject_len == 0 || subject_len > 3 || b.get(j + subject_len) != Some(&b'.') {
        return None;
    }
    j += subject_len + 1;
    let detail_len = digits_at(b, j);
    if detail_len == 0 || detail_len > 3 {
        return None;
    }
    let end = j + detail_len;
    if b.get(end).is_some_and(|&c| {
        c.is_ascii_digit()
            || (c == b'.' && b.get(end + 1).is_some_and(u8::is_ascii_digit))
    }) {
        return None;
    }
    let number =
        |digits: &[u8]| digits.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    Some(EnhancedCode {
        class: b[i] - b'0',
        subject: number(&b[i + 2..i + 2 + subject_len]),
        detail: number(&b[j..end]),
    })
}

fn digits_at(b: &[u8], start: usize) -> usize {
    b[start.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count()
}

pub(crate) fn is_code_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'@' || c == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_are_found_as_tokens_only() {
        let cases: &[(&str, Option<u16>)] = &[
            ("550 5.1.1 user unknown", Some(550)),
            ("host mx[1.2.3.4] said: 552-5.2.2 over quota", Some(552)),
            ("smtp; 554 Service unavailable", Some(554)),
            ("Delivery failed 20 attempts", None),
            ("after 432000 seconds", None),
            ("TCP port 25 of 192.0.2.240", None),
            ("queued as 5501234", None),
            ("connect to 203.0.113.225:25: timed out", None),
            ("#550", Some(550)),
        ];
        for (text, want) in cases {
            assert_eq!(find_reply_code(text), *want, "{text}");
        }
    }

    #[test]
    fn enhanced_codes_are_found_and_ip_addresses_are_not() {
        let cases: &[(&str, Option<&str>)] = &[
            ("550 5.1.1 user unknown", Some("5.1.1")),
            ("552-5.2.2 The email account", Some("5.2.2")),
            ("rejected (#4.4.3)", Some("4.4.3")),
            ("blocked 192.0.2.127 today", None),
            ("from 5.6.7.8 rejected", None),
            ("550 5.7.26 DMARC", Some("5.7.26")),
            ("version 2.10.1-x", Some("2.10.1")),
        ];
        for (text, want) in cases {
            let got = find_enhanced_code(text).map(|c| c.to_string());
            assert_eq!(got.as_deref(), *want, "{text}");
        }
    }

    #[test]
    fn patterns_parse_and_print() {
        for (text, printed) in
            [("5.1.1", "5.1.1"), ("x.2.2", "x.2.2"), ("X.4.x", "x.4.x")]
        {
            assert_eq!(EnhancedPattern::parse(text).unwrap().to_string(), printed);
        }
        for bad in ["5.1", "6.1.1", "x.x.1", "a.b.c", "5.1.1.1"] {
            assert!(EnhancedPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ReplyPattern::parse("5XX").unwrap(), ReplyPattern::Class(5));
        assert_eq!(ReplyPattern::parse("552").unwrap(), ReplyPattern::Exact(552));
        assert!(ReplyPattern::parse("55").is_err());
    }
}
