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

use super::codes::{EnhancedCode, enhanced_code_at, is_code_char};

/// Folds `reply` into `out` (cleared first) for matching, and returns the
/// reply code of the text, the one [`super::codes::find_reply_code`] finds
/// (found in the same pass). The output is the UTF-8 of the folded text
/// (never split inside a character).
pub fn fold_reply(reply: &str, out: &mut Vec<u8>) -> Option<u16> {
    let bytes = reply.as_bytes();
    out.clear();
    out.resize(bytes.len(), 0);
    let buf = out.as_mut_slice();
    let mut len = 0;
    let mut markers = Markers::default();
    let mut pending_space = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let kind = KIND[usize::from(c)];
        if kind == SPACE {
            pending_space = true;
            i += 1;
            continue;
        }
        if kind == MAYBE_SPACE {
            let ch = reply[i..].chars().next().expect("i is on a char boundary");
            if ch.is_whitespace() {
                pending_space = true;
                i += ch.len_utf8();
                continue;
            }
        }
        // A new run of plain text starts here.
        if kind == CODE_DIGIT {
            let skip = markers.at_digit(bytes, i, pending_space || len == 0);
            if skip > 0 {
                i += skip;
                pending_space = len > 0;
                continue;
            }
        }
        if pending_space && len > 0 {
            buf[len] = b' ';
            len += 1;
        }
        pending_space = false;
        buf[len] = LOWER[usize::from(c)];
        len += 1;
        i += 1;
        // Copy the rest of the run, lower-cased, up to the next break.
        while i < bytes.len() {
            let c = bytes[i];
            let kind = KIND[usize::from(c)];
            if kind != PLAIN {
                if kind != CODE_DIGIT {
                    break;
                }
                markers.at_digit(bytes, i, false);
            }
            buf[len] = LOWER[usize::from(c)];
            len += 1;
            i += 1;
        }
    }
    out.truncate(len);
    markers.code()
}

/// Reads `reply` as [`fold_reply`] would fold it, without writing the
/// folded text: calls `byte(at, b)` for every byte the folding keeps or
/// turns into a space, in order, and returns the reply code. The caller
/// sees capitals and every byte of a run of ASCII white space (up to
/// 0x20), where folding has small letters and one space; a non-ASCII
/// white space character comes as one space, with `at` its last byte.
/// Only the repeated continuation markers are left out.
///
/// Also returns the first enhanced status code of the text, the one
/// [`super::codes::find_enhanced_code`] finds: it starts with one of the
/// digits a reply code starts with, so it is looked for where those are.
#[inline(always)]
pub fn scan_reply(reply: &str, mut byte: impl FnMut(usize, u8)) -> ReplyCodes {
    let bytes = reply.as_bytes();
    let mut scan = Scan::default();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let kind = KIND[usize::from(c)];
        if kind >= MAYBE_SPACE {
            if kind == CODE_DIGIT {
                let skip = scan.at_code_digit(bytes, i);
                if skip > 0 {
                    i += skip;
                    continue;
                }
            } else if let Some(len) = scan.space_at(reply, i) {
                i += len;
                byte(i - 1, b' ');
                continue;
            }
        }
        byte(i, c);
        i += 1;
    }
    ReplyCodes { reply: scan.markers.code(), enhanced: scan.enhanced }
}

/// What [`scan_reply`] keeps track of besides the bytes; kept apart (and
/// its methods not inlined) so that the scan loop has its registers for
/// the caller's work at each byte.
#[derive(Default)]
struct Scan {
    markers: Markers,
    /// Where reading resumed after a dropped marker, and where the last
    /// non-ASCII white space ended.
    resumed: usize,
    after_space: usize,
    enhanced: Option<EnhancedCode>,
}

impl Scan {
    /// At a digit that may start a code: notes the codes, and returns how
    /// many bytes to drop (see [`Markers::at_digit`]).
    #[inline(never)]
    fn at_code_digit(&mut self, bytes: &[u8], i: usize) -> usize {
        if self.enhanced.is_none() {
            self.enhanced = enhanced_code_at(bytes, i);
        }
        let run_start =
            i == self.resumed || i == self.after_space || bytes[i - 1] <= b' ';
        let skip = self.markers.at_digit(bytes, i, run_start);
        if skip > 0 {
            // In a marker, only the enhanced code after the reply code and
            // its separator can stand as a token.
            if self.enhanced.is_none() && skip > 4 {
                self.enhanced = enhanced_code_at(bytes, i + 4);
            }
            self.resumed = i + skip;
        }
        skip
    }

    /// The length of the non-ASCII white space character at `i`, if one
    /// stands there.
    #[inline(never)]
    fn space_at(&mut self, reply: &str, i: usize) -> Option<usize> {
        let ch = reply[i..].chars().next().expect("i is on a char boundary");
        if !ch.is_whitespace() {
            return None;
        }
        self.after_space = i + ch.len_utf8();
        Some(ch.len_utf8())
    }
}

/// The codes [`scan_reply`] finds in a reply's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyCodes {
    /// The reply code, as [`super::codes::find_reply_code`] finds it.
    pub reply: Option<u16>,
    /// The first enhanced status code, as
    /// [`super::codes::find_enhanced_code`] finds it.
    pub enhanced: Option<EnhancedCode>,
}

/// The reply code and its continuation markers, as a reply is read.
#[derive(Default)]
struct Markers {
    /// The reply code, as its digits, once found.
    code: Option<[u8; 3]>,
    /// Whether the first continuation marker has been passed.
    seen: bool,
}

impl Markers {
    /// Called at each `2`, `4` or `5` (the digits a reply code starts
    /// with) at `i`; `run_start` says whether a run of text starts there
    /// (the text starts there, or white space or a dropped marker comes
    /// before). Returns how many bytes to drop: the length of a continuation
    /// marker after the first, else 0.
    #[inline]
    fn at_digit(&mut self, bytes: &[u8], i: usize, run_start: bool) -> usize {
        if self.code.is_none() {
            self.code = reply_code_at(bytes, i);
        }
        if run_start
            && let Some(code) = &self.code
            && bytes[i] == code[0]
            && let Some(skip) = continuation_len(&bytes[i..], code)
        {
            if self.seen {
                return skip;
            }
            self.seen = true;
        }
        0
    }

    fn code(&self) -> Option<u16> {
        self.code.map(|c| {
            u16::from(c[0] - b'0') * 100
                + u16::from(c[1] - b'0') * 10
                + u16::from(c[2] - b'0')
        })
    }
}

/// The reply code standing at `i`, by the rule of
/// [`super::codes::find_reply_code`], as its three digits.
fn reply_code_at(bytes: &[u8], i: usize) -> Option<[u8; 3]> {
    if i > 0 && is_code_char(bytes[i - 1]) {
        return None;
    }
    let code = bytes.get(i..i + 3)?;
    if !(matches!(code[0], b'2' | b'4' | b'5')
        && code[1].is_ascii_digit()
        && code[2].is_ascii_digit()
        && matches!(
            bytes.get(i + 3),
            None | Some(b' ' | b'-' | b'\t' | b'\r' | b'\n' | b';' | b',')
        ))
    {
        return None;
    }
    Some([code[0], code[1], code[2]])
}

/// What a byte is to [`fold_reply`] and [`scan_reply`].
const PLAIN: u8 = 0;
/// ASCII white space and control characters.
const SPACE: u8 = 1;
/// The lead bytes of the non-ASCII white space characters (U+0085, U+00A0,
/// U+1680, U+2000-U+205F, U+3000), which also lead other characters.
const MAYBE_SPACE: u8 = 2;
/// The digits a reply code can start with.
const CODE_DIGIT: u8 = 3;

static KIND: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut b = 0;
    while b <= 0x20 {
        t[b] = SPACE;
        b += 1;
    }
    t[0xC2] = MAYBE_SPACE;
    t[0xE1] = MAYBE_SPACE;
    t[0xE2] = MAYBE_SPACE;
    t[0xE3] = MAYBE_SPACE;
    t[b'2' as usize] = CODE_DIGIT;
    t[b'4' as usize] = CODE_DIGIT;
    t[b'5' as usize] = CODE_DIGIT;
    t
};

/// ASCII lower-casing as a table; other bytes map to themselves.
static LOWER: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).to_ascii_lowercase();
        b += 1;
    }
    t
};

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
    use crate::codes::{find_enhanced_code, find_reply_code};

    fn fold(s: &str) -> String {
        let mut out = Vec::new();
        let code = fold_reply(s, &mut out);
        assert_eq!(code, find_reply_code(s), "{s:?}");
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

    /// Reading a reply unfolded leaves out what folding drops, and nothing
    /// else: folding what it reads gives the folded reply.
    #[test]
    fn scanning_unfolded_keeps_what_folding_keeps() {
        let cases = [
            "550-5.1.1 The email account that you tried to\n550-5.1.1 reach does not exist.\n550 5.1.1 https://support.google.com",
            "  552-5.2.2 Over\t\tquota. 552 5.2.2 Please 552-retry 552-552-x",
            "smtp; 550 5.1.1 <a@b.example>: User unknown 550 5.1.1 again\r\n550-",
            "host [192.0.2.25] said: 451-4.7.1 Greylisted\n451-4.7.1 try later 451 4.7.1",
            "#550 x 550-y 5.5.0 550",
            "550-Mailbox full\n550-5.2.2 Quota 550 5.2.2 x",
            "host 192.0.2.5 said: 550-x 4.4.1 y",
            "550-5.1.1 用户不存在\u{3000}550-5.1.1 请检查\u{a0}550-5.1.1\u{2003}é 550 5.1.1",
            "",
        ];
        for text in cases {
            let mut kept = Vec::new();
            let codes = scan_reply(text, |_, b| kept.push(b));
            let kept = String::from_utf8(kept).expect("whole characters");
            let mut want = Vec::new();
            assert_eq!(codes.reply, fold_reply(text, &mut want), "{text:?}");
            assert_eq!(codes.enhanced, find_enhanced_code(text), "{text:?}");
            let mut got = Vec::new();
            fold_reply(&kept, &mut got);
            assert_eq!(String::from_utf8(got), String::from_utf8(want), "{text:?}");
        }
    }

    #[test]
    fn phrases_fold_to_lowercase_keys() {
        assert_eq!(fold_phrase("  User   Unknown "), "user unknown");
    }
}
