//! The bounce classifier: from a reply (and its codes) to a reason.
//!
//! # How a reply is decided
//!
//! 1. **Phrases.** Every taxonomy phrase is searched for at once in the
//!    folded reply (see [`super::normalize`]) with one Aho-Corasick
//!    automaton (see [`super::dfa`]); ASCII letters compare
//!    case-insensitively (both sides are lower-cased). The folded text is
//!    never written out: the automaton reads the reply as it is, taking
//!    capitals and runs of white space as folding would leave them, and
//!    the scan skips the continuation markers folding drops, in the same
//!    pass that finds the reply code. Phrases that begin with a letter
//!    or digit must begin a token (`a not found` does not match inside
//!    `data not found`); short phrases (six characters or fewer) and phrases
//!    ending in a digit must also end one (`SDN3` does not match `SDN31`).
//! 2. **Overlaps.** When several phrases match, the one with the highest
//!    reason priority wins; among equals the longest phrase (in characters)
//!    wins, because the longer phrase is the more specific statement
//!    (`User unknown in local recipient table` over `Address rejected`,
//!    `554 Service unavailable` over `Service unavailable`); among equals
//!    again, the leftmost. Priorities are for signals that beat any wording:
//!    a CAC spam-channel code, a virus verdict. A phrase of negative
//!    priority is *weak* (generic wording such as `Address rejected`): it
//!    yields to an enhanced status code that names a subject (`5.1.1`,
//!    `x.2.x`), though not to a bare class (`5.x.x`).
//! 3. **Codes.** With no phrase, the codes decide, the more informative
//!    first: the RFC 3463 enhanced code of the record (or else the first one
//!    in the reply) by a pattern naming its subject (`5.1.1`, `x.1.1`,
//!    `5.1.x`, `x.1.x`; subject 0, "undefined", only by an exact pattern);
//!    then the exact reply code (`552`); then the enhanced code's class
//!    (`5.x.x`); then the reply code's class (`5xx`).
//! 4. Otherwise the category is `unclassified`.
//!
//! Severity comes from the reply code class when there is one (5xx hard,
//! 4xx soft), else from the enhanced code class, else from the delivery's
//! outcome when the caller knows it, else from the reason's default.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::codes::{EnhancedCode, EnhancedPattern, ReplyPattern, parse_reply_code};
use super::dfa::{Automaton, PhraseDfa, StateId};
use super::model::{Reason, Severity, Taxonomy, TaxonomyError, UNCLASSIFIED};
#[cfg(test)]
use super::normalize::fold_reply;
use super::normalize::{ReplyCodes, scan_reply};

/// Phrases this short or shorter must stand as whole tokens.
const SHORT_PHRASE_CHARS: usize = 6;

/// Which rule decided a classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Phrase,
    EnhancedCode,
    ReplyCode,
    None,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Phrase => "phrase",
            Rule::EnhancedCode => "enhanced_code",
            Rule::ReplyCode => "reply_code",
            Rule::None => "none",
        }
    }
}

/// What the classifier is given: the reply text and whatever codes the
/// record carries separately.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reply<'a> {
    pub text: &'a str,
    pub reply_code: Option<u16>,
    pub enhanced_code: Option<EnhancedCode>,
    /// The severity implied by the delivery's outcome (a deferral is soft),
    /// used only when no code says otherwise.
    pub outcome_severity: Option<Severity>,
}

impl<'a> Reply<'a> {
    pub fn text(text: &'a str) -> Self {
        Self { text, ..Self::default() }
    }
}

/// What decided: the phrase as written in the taxonomy, or a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched<'t> {
    Phrase(&'t str),
    Enhanced(EnhancedCode),
    Reply(u16),
    Nothing,
}

impl Matched<'_> {
    pub fn to_option_string(self) -> Option<String> {
        match self {
            Matched::Phrase(p) => Some(p.to_string()),
            Matched::Enhanced(c) => Some(c.to_string()),
            Matched::Reply(c) => Some(c.to_string()),
            Matched::Nothing => None,
        }
    }
}

/// The classifier's answer for one reply.
#[derive(Clone, Copy, Debug)]
pub struct Verdict<'t> {
    pub reason: Option<&'t Reason>,
    pub severity: Severity,
    pub rule: Rule,
    pub matched: Matched<'t>,
}

impl<'t> Verdict<'t> {
    pub fn category(&self) -> &'t str {
        self.reason.map_or(UNCLASSIFIED, |r| r.category.as_str())
    }

    pub fn reason_id(&self) -> Option<&'t str> {
        self.reason.map(|r| r.id.as_str())
    }
}

struct PhraseMeta {
    reason: usize,
    /// The reason's priority, kept here for the hot loop.
    priority: i32,
    phrase: String,
    chars: usize,
    /// Whether the phrase must end a token. (That one starting with a
    /// letter or digit must start a token, the automaton sees to.)
    token_end: bool,
}

/// A compiled taxonomy, ready to classify. Cheap to share across threads.
#[derive(Clone)]
pub struct Classifier {
    inner: Arc<Inner>,
}

struct PhraseSet {
    automaton: Automaton,
    /// Pattern number -> index into `phrases`.
    phrase_of: Vec<usize>,
}

impl PhraseSet {
    fn build(patterns: &[(String, usize)]) -> Self {
        let automaton =
            Automaton::new(&patterns.iter().map(|(p, _)| p).collect::<Vec<_>>());
        Self { automaton, phrase_of: patterns.iter().map(|(_, i)| *i).collect() }
    }
}

struct Inner {
    taxonomy: Taxonomy,
    /// Phrases written in ASCII only, and the rest (Chinese and mixed):
    /// two automata, so the one every reply runs through stays small
    /// enough for the CPU cache, and the other runs only over replies that
    /// have non-ASCII text (in the same pass).
    ascii: PhraseSet,
    other: PhraseSet,
    phrases: Vec<PhraseMeta>,
    enhanced: HashMap<EnhancedPattern, usize>,
    reply: HashMap<ReplyPattern, usize>,
}

impl Classifier {
    /// Compiles a validated taxonomy.
    pub fn new(taxonomy: Taxonomy) -> Result<Self, TaxonomyError> {
        taxonomy.validate()?;
        let mut phrases = Vec::new();
        let mut ascii_patterns = Vec::new();
        let mut other_patterns = Vec::new();
        let mut enhanced = HashMap::new();
        let mut reply = HashMap::new();
        for (index, reason) in taxonomy.reasons.iter().enumerate() {
            for phrase in reason.all_phrases() {
                // A FAQ "phrase" that is only a reply code is a code rule.
                if let Some(code) = parse_reply_code(phrase) {
                    reply.entry(ReplyPattern::Exact(code)).or_insert(index);
                    continue;
                }
                let folded = phrase
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_ascii_lowercase();
                let chars = folded.chars().count();
                let last = folded.chars().last().expect("validated non-empty");
                if folded.is_ascii() {
                    ascii_patterns.push((folded.clone(), phrases.len()));
                } else {
                    other_patterns.push((folded.clone(), phrases.len()));
                }
                phrases.push(PhraseMeta {
                    reason: index,
                    priority: reason.priority,
                    phrase: phrase.to_string(),
                    chars,
                    token_end: last.is_ascii_alphanumeric()
                        && (chars <= SHORT_PHRASE_CHARS || last.is_ascii_digit()),
                });
            }
            for pattern in &reason.enhanced_codes {
                let p = EnhancedPattern::parse(pattern).expect("validated");
                enhanced.insert(p, index);
            }
            for pattern in &reason.reply_codes {
                let p = ReplyPattern::parse(pattern).expect("validated");
                reply.insert(p, index);
            }
        }
        let ascii = PhraseSet::build(&ascii_patterns);
        let other = PhraseSet::build(&other_patterns);
        Ok(Self {
            inner: Arc::new(Inner { taxonomy, ascii, other, phrases, enhanced, reply }),
        })
    }

    /// The built-in taxonomy, compiled.
    pub fn builtin() -> Self {
        Self::new(Taxonomy::builtin())
            .expect("the built-in taxonomy is valid; a test guards it")
    }

    pub fn taxonomy(&self) -> &Taxonomy {
        &self.inner.taxonomy
    }

    /// Classifies one reply.
    pub fn classify<'t>(&'t self, reply: &Reply<'_>) -> Verdict<'t> {
        let (phrase, codes) = self.match_phrase(reply.text);
        let reply_code = reply.reply_code.or(codes.reply);
        let enhanced = || reply.enhanced_code.or(codes.enhanced);
        let severity_from_codes = match reply_code {
            Some(c) if (500..600).contains(&c) => Some(Severity::Hard),
            Some(c) if (400..500).contains(&c) => Some(Severity::Soft),
            _ => match enhanced() {
                Some(e) if e.class == 5 => Some(Severity::Hard),
                Some(e) if e.class == 4 => Some(Severity::Soft),
                _ => None,
            },
        };
        let severity_hint = severity_from_codes.or(reply.outcome_severity);
        let phrase = phrase.filter(|(r, _)| {
            let weak = self.inner.taxonomy.reasons[*r].priority < 0;
            !(weak && enhanced().and_then(|c| self.lookup_enhanced_specific(c)).is_some())
        });
        let by_enhanced = |specific: bool| {
            let code = enhanced()?;
            let r = if specific {
                self.lookup_enhanced_specific(code)
            } else {
                self.lookup_enhanced(code)
            }?;
            Some((Some(r), Rule::EnhancedCode, Matched::Enhanced(code)))
        };
        let by_reply = |exact: bool| {
            let code = reply_code?;
            let r = self.lookup_reply(code, exact)?;
            Some((Some(r), Rule::ReplyCode, Matched::Reply(code)))
        };
        let (reason, rule, matched) = phrase
            .map(|(r, phrase)| (Some(r), Rule::Phrase, Matched::Phrase(phrase)))
            .or_else(|| by_enhanced(true))
            .or_else(|| by_reply(true))
            .or_else(|| by_enhanced(false))
            .or_else(|| by_reply(false))
            .unwrap_or((None, Rule::None, Matched::Nothing));
        let reason = reason.map(|i| &self.inner.taxonomy.reasons[i]);
        let severity =
            severity_hint.or(reason.map(|r| r.severity)).unwrap_or(Severity::Hard);
        Verdict { reason, severity, rule, matched }
    }

    /// The best phrase in `text` by priority, then length, then position
    /// (its reason and the phrase as written), and the reply code in the
    /// text (see [`fold_reply`]).
    fn match_phrase(&self, text: &str) -> (Option<(usize, &str)>, ReplyCodes) {
        let (best, code) = self.best_unfolded(text);
        let phrase = best.map(|index| {
            let meta = &self.inner.phrases[index];
            (meta.reason, meta.phrase.as_str())
        });
        (phrase, code)
    }

    /// The best phrase of a reply (as its index in `phrases`) and the reply
    /// code, reading the reply as it is: the automata fold case and white
    /// space themselves, and the scan leaves out the repeated continuation
    /// markers (see [`scan_reply`]).
    fn best_unfolded(&self, text: &str) -> (Option<usize>, ReplyCodes) {
        if !text.is_ascii() {
            return self.best_unfolded_any(text);
        }
        match &self.inner.ascii.automaton {
            Automaton::Narrow(dfa) => self.best_unfolded_ascii(dfa, text),
            Automaton::Wide(dfa) => self.best_unfolded_ascii(dfa, text),
        }
    }

    /// An ASCII reply: only ASCII phrases can match, and only one automaton
    /// runs.
    #[inline(always)]
    fn best_unfolded_ascii<S: StateId>(
        &self,
        dfa: &PhraseDfa<S>,
        text: &str,
    ) -> (Option<usize>, ReplyCodes) {
        let hay = text.as_bytes();
        let mut best = Best::new(&self.inner.phrases);
        let set = &self.inner.ascii;
        let mut state = dfa.start();
        let code = scan_reply(text, |at, byte| {
            state = dfa.next(state, byte);
            if dfa.is_match(state) {
                dfa.report(state, at + 1, &mut |p, end| {
                    // Not where the phrase starts if white space runs or a
                    // dropped marker lie inside it, but as all the phrases
                    // here are ASCII, `end` less the length orders
                    // matches of one length as their starts do, which is
                    // all the comparison needs.
                    best.consider(hay, set, p, end, end - set.automaton.len_of(p));
                });
            }
        });
        (best.index(), code)
    }

    /// Any reply: both automata read it in the same pass, and the length of
    /// the folded text read so far gives each match its folded start.
    fn best_unfolded_any(&self, text: &str) -> (Option<usize>, ReplyCodes) {
        use Automaton::{Narrow, Wide};
        match (&self.inner.ascii.automaton, &self.inner.other.automaton) {
            (Narrow(a), Narrow(o)) => self.best_unfolded_both(a, o, text),
            (Narrow(a), Wide(o)) => self.best_unfolded_both(a, o, text),
            (Wide(a), Narrow(o)) => self.best_unfolded_both(a, o, text),
            (Wide(a), Wide(o)) => self.best_unfolded_both(a, o, text),
        }
    }

    #[inline(always)]
    fn best_unfolded_both<A: StateId, O: StateId>(
        &self,
        ascii: &PhraseDfa<A>,
        other: &PhraseDfa<O>,
        text: &str,
    ) -> (Option<usize>, ReplyCodes) {
        let hay = text.as_bytes();
        let mut best = Best::new(&self.inner.phrases);
        let (ascii_set, other_set) = (&self.inner.ascii, &self.inner.other);
        let (mut a, mut o) = (ascii.start(), other.start());
        let mut folded_len = 0;
        let mut after_space = true;
        let code = scan_reply(text, |at, byte| {
            let space = byte <= b' ';
            folded_len += usize::from(!(space && after_space));
            after_space = space;
            a = ascii.next(a, byte);
            o = other.next(o, byte);
            if ascii.is_match(a) {
                ascii.report(a, at + 1, &mut |p, end| {
                    let start = folded_len - ascii_set.automaton.len_of(p);
                    best.consider(hay, ascii_set, p, end, start);
                });
            }
            if other.is_match(o) {
                other.report(o, at + 1, &mut |p, end| {
                    let start = folded_len - other_set.automaton.len_of(p);
                    best.consider(hay, other_set, p, end, start);
                });
            }
        });
        (best.index(), code)
    }

    /// The best phrase of a reply folded into `folded` first, the plain
    /// way [`Self::best_unfolded`] must agree with.
    #[cfg(test)]
    fn best_folded(
        &self,
        text: &str,
        folded: &mut Vec<u8>,
    ) -> (Option<usize>, ReplyCodes) {
        let code = ReplyCodes {
            reply: fold_reply(text, folded),
            enhanced: super::codes::find_enhanced_code(text),
        };
        let hay = folded.as_slice();
        let mut best = Best::new(&self.inner.phrases);
        let sets = [&self.inner.ascii, &self.inner.other];
        for set in &sets[..if hay.is_ascii() { 1 } else { 2 }] {
            set.automaton.for_each_match(hay, |p, end| {
                best.consider(hay, set, p, end, end - set.automaton.len_of(p));
            });
        }
        (best.index(), code)
    }

    fn lookup_enhanced(&self, code: EnhancedCode) -> Option<usize> {
        EnhancedPattern::candidates(code)
            .iter()
            .find_map(|p| self.inner.enhanced.get(p).copied())
    }

    /// Like [`Self::lookup_enhanced`], without the patterns that say no
    /// more than the class: `5.x.x`, and `x.0.x` (subject 0 is "other or
    /// undefined") unless the table names that exact code.
    fn lookup_enhanced_specific(&self, code: EnhancedCode) -> Option<usize> {
        let candidates = EnhancedPattern::candidates(code);
        let usable = if code.subject == 0 { &candidates[..1] } else { &candidates[..4] };
        usable.iter().find_map(|p| self.inner.enhanced.get(p).copied())
    }

    /// The reason for an exact reply code, or (`exact` false) for its class.
    fn lookup_reply(&self, code: u16, exact: bool) -> Option<usize> {
        let pattern = if exact {
            ReplyPattern::Exact(code)
        } else {
            ReplyPattern::Class(u8::try_from(code / 100).ok()?)
        };
        self.inner.reply.get(&pattern).copied()
    }
}

/// The best phrase so far, as its key: priority, length in characters,
/// leftmost start; and its index in `phrases`.
struct Best<'a> {
    phrases: &'a [PhraseMeta],
    key: Option<(i32, usize, std::cmp::Reverse<usize>, usize)>,
}

impl<'a> Best<'a> {
    fn new(phrases: &'a [PhraseMeta]) -> Self {
        Self { phrases, key: None }
    }

    /// A match of `pattern` of `set` ending at `end` of `hay`, the text the
    /// automaton read, and starting at `start` of the folded text.
    #[inline]
    fn consider(
        &mut self,
        hay: &[u8],
        set: &PhraseSet,
        pattern: usize,
        end: usize,
        start: usize,
    ) {
        let index = set.phrase_of[pattern];
        let meta = &self.phrases[index];
        if meta.token_end && hay.get(end).is_some_and(|&b| is_word_byte(b)) {
            return;
        }
        let key = (meta.priority, meta.chars, std::cmp::Reverse(start), index);
        if self.key.is_none_or(|b| (key.0, key.1, key.2) > (b.0, b.1, b.2)) {
            self.key = Some(key);
        }
    }

    fn index(&self) -> Option<usize> {
        self.key.map(|(_, _, _, index)| index)
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = include_str!("../../../tests/fixtures/sisimai-dev.tsv");

    /// Real replies, and each again in capitals, with its white space as
    /// runs of tabs and line breaks, and wrapped as a multi-line reply.
    fn replies() -> Vec<String> {
        let mut out = Vec::new();
        for text in DEV.lines().skip(1).filter_map(|l| l.split('\t').nth(4)) {
            out.push(text.to_string());
            out.push(text.to_ascii_uppercase());
            out.push(text.replace(' ', " \t\r\n "));
            let words: Vec<&str> = text.split(' ').collect();
            let lines: Vec<String> = words.chunks(3).map(|c| c.join(" ")).collect();
            out.push(format!("550-5.1.1 {}", lines.join("\n550-5.1.1 ")));
            out.push(format!("451 {}", lines.join("\r\n451-")));
            out.push(format!("550-5.1.1 {}", lines.join("\u{3000}\n550-5.1.1\u{a0}")));
            out.push(format!("用户 {}", lines.join("\u{2003}")));
        }
        out
    }

    #[test]
    fn replies_read_unfolded_decide_as_folded() {
        let classifier = Classifier::builtin();
        let mut folded = Vec::new();
        let mut decided = 0;
        for text in &replies() {
            let unfolded = classifier.best_unfolded(text);
            assert_eq!(unfolded, classifier.best_folded(text, &mut folded), "{text:?}");
            decided += usize::from(unfolded.0.is_some());
        }
        assert!(decided > 1000, "only {decided} replies had a phrase");
    }
}
