//! Folding a reply into the form phrases are matched against.
//!
//! Servers wrap, indent and repeat themselves: a Gmail rejection arrives as
//! `550-5.1.1 The email account that you tried to\n550-5.1.1 reach does
//! not exist ... 550 5.1.1 ...`, and log shippers fold it onto one line.
//! Folding turns every run of white space into one space and drops the
//! repeated continuation markers (`550-5.1.1`, and the final `550 5.1.1`)
//! after the first, so a phrase split across continuation lines still
//! matches. ASCII letters are lower-cased in the same pass (phrases are
//! lower-cased when the matcher is built); other scripts are left as they
//! are, Chinese having no case.

use super::codes::find_reply_code;

/// Folds `reply` into `out` (cleared first) for matching. The output is
/// the UTF-8 of the folded text (never split inside a character).
pub fn fold_reply(reply: &str, out: &mut Vec<u8>) {
    fold_reply_with_code(reply, find_reply_code(reply), out);
}

/// Bytes that end a run of plain text: ASCII white space and control
/// characters, and the lead bytes of the non-ASCII white space characters
/// (U+00A0, U+1680, U+2000-U+205F, U+3000).
static BREAKS: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b <= 0x20 {
        t[b] = true;
        b += 1;
    }
    t[0xC2] = true;
    t[0xE1] = true;
    t[0xE2] = true;
    t[0xE3] = true;
    t
};

/// [`fold_reply`] when the reply code in the text is already known.
pub fn fold_reply_with_code(reply: &str, code: Option<u16>, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(reply.len());
    let code = code.map(|c| {
        [(c / 100) as u8 + b'0', (c / 10 % 10) as u8 + b'0', (c % 10) as u8 + b'0']
    });
    let bytes = reply.as_bytes();
    let mut seen_code = false;
    let mut i = 0;
    let mut pending_space = false;
    while i < bytes.len() {
        let c = bytes[i];
        if BREAKS[c as usize] {
            if c <= 0x20 {
                pending_space = true;
                i += 1;
                continue;
            }
            let ch = reply[i..].chars().next().expect("i is on a char boundary");
            if ch.is_whitespace() {
                pending_space = true;
                i += ch.len_utf8();
                continue;
            }
        }
        if (pending_space || out.is_empty())
            && let Some(code) = &code
            && c == code[0]
            && let Some(skip) = continuation_len(&bytes[i..], code)
        {
            if seen_code {
                i += skip;
                pending_space = !out.is_empty();
                continue;
            }
            seen_code = true;
        }
        if pending_space && !out.is_empty() {
            out.push(b' ');
        }
        pending_space = false;
        // Copy the run of plain bytes up to the next break, lower-cased.
        let start = i;
        i += 1;
        while i < bytes.len() && !BREAKS[bytes[i] as usize] {
            i += 1;
        }
        let from = out.len();
        out.extend_from_slice(&bytes[start..i]);
        out[from..].make_ascii_lowercase();
    }
}

/// The length of a continuation marker at the start of `rest`: the reply
/// code followed by `-` (and an optional enhanced code), or by a space and
/// an enhanced code. `None` when `rest` does not start with one.
fn continuation_len(rest: &[u8], code: &[u8; 3]) -> Option<usize> {
    if rest.len() < 4 || &rest[..3] != code {
        return None;
    }
    let sep = rest[3];
    let enhanced = enhanced_len(&rest[4..]);
    match (sep, enhanced) {
        (b'-', Some(n)) | (b' ', Some(n)) => Some(4 + n),
        (b'-', None) => Some(4),
        _ => None,
    }
}

/// The length of `d.ddd.ddd` at the start of `rest`, if one stands there
/// followed by white space or the end.
fn enhanced_len(rest: &[u8]) -> Option<usize> {
    if rest.len() < 5 || !matches!(rest[0], b'2' | b'4' | b'5') || rest[1] != b'.' {
        return None;
    }
    let mut i = 2;
    let subject = rest[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=3).contains(&subject) || rest.get(i + subject) != Some(&b'.') {
        return None;
    }
    i += subject + 1;
    let detail = rest[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=3).contains(&detail) {
        return None;
    }
    i += detail;
    match rest.get(i) {
        None => Some(i),
        Some(c) if c.is_ascii_whitespace() => Some(i),
        _ => None,
    }
}

/// Folds a taxonomy phrase: trimmed, white space folded to single spaces.
/// Lower-cased too, which makes it the key for duplicate detection.
pub fn fold_phrase(phrase: &str) -> String {
    phrase.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(s: &str) -> String {
        let mut out = Vec::new();
        fold_reply(s, &mut out);
        String::from_utf8(out).expect("folding keeps UTF-8 whole")
    }

    #[test]
    fn folding_cases() {
        let cases = [
            ("  550   user\tunknown \r\n", "550 user unknown"),
            (
                "550-5.1.1 The email account that you tried to\n550-5.1.1 reach does not exist.\n550 5.1.1 https://support.google.com",
                "550-5.1.1 the email account that you tried to reach does not exist. https://support.google.com",
            ),
            (
                "552-5.2.2 The email account that you tried to reach is over quota. 552 5.2.2 Please",
                "552-5.2.2 the email account that you tried to reach is over quota. please",
            ),
            (
                "SMTP error, RCPT TO: 550 Mail from x refused",
                "smtp error, rcpt to: 550 mail from x refused",
            ),
            ("554 Service unavailable", "554 service unavailable"),
            ("用户不存在\u{3000}请检查", "用户不存在 请检查"),
            ("a\u{a0}b\u{2003}c é", "a b c é"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(fold(input), want, "{input:?}");
        }
    }

    #[test]
    fn phrases_fold_to_lowercase_keys() {
        assert_eq!(fold_phrase("  User   Unknown "), "user unknown");
    }
}
