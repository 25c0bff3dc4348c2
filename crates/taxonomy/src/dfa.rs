//! The phrase automaton: an Aho-Corasick DFA that reports every occurrence
//! of every phrase (overlapping), with the token-start rule built in.
//!
//! A phrase whose first byte is an ASCII letter or digit may only match at
//! a token start: where the byte before is not a word byte (letter, digit,
//! `_`), or at the start of the text. A general-purpose automaton finds
//! every occurrence and leaves the caller to drop the ones inside a word;
//! while it scans a word it keeps following every phrase that starts with
//! the word's tail, which touches a large part of its transition table.
//! This one only enters such a phrase at a token start, so inside words it
//! sits in one state, and the part of the table a scan uses stays small
//! enough for the CPU cache.
//!
//! # Construction
//!
//! Think of an extra symbol `^` standing before every token start of the
//! text. Each phrase is rewritten the same way (`^` before its first byte
//! when that is a letter or digit, and before each token start inside it),
//! and an ordinary Aho-Corasick automaton is built over the rewritten
//! phrases. A rewritten phrase occurs in the rewritten text exactly where
//! the phrase occurs in the text at a token start, because both put `^` by
//! the same rule and the bytes inside an occurrence are the phrase's own.
//! The DFA never reads `^`: reading a letter or digit after a non-word byte
//! takes the `^` step and the byte's step as one transition. Whether the
//! previous byte was a word byte is known from the state (its last symbol),
//! except at the root, which is therefore split in two.
//!
//! Bytes that no phrase uses share a class (by whether they are letters or
//! digits, and whether they are word bytes), so the table has one column
//! per class rather than 256. It is stored column by column with the
//! states numbered breadth first, so the few states a scan spends most of
//! its time in share a cache line of each column, and with `u16` state
//! numbers while they fit (the built-in taxonomy needs about 8,000), which
//! halves it. The states with matches are numbered last, so the scan loop
//! is one table load and one comparison per byte.

/// A state number as the table stores it: `u16` while the states fit,
/// which halves the table, else `u32`.
pub trait StateId: Copy {
    fn from_u32(id: u32) -> Option<Self>;
    fn get(self) -> u32;
}

impl StateId for u16 {
    fn from_u32(id: u32) -> Option<Self> {
        u16::try_from(id).ok()
    }
    #[inline(always)]
    fn get(self) -> u32 {
        u32::from(self)
    }
}

impl StateId for u32 {
    fn from_u32(id: u32) -> Option<Self> {
        Some(id)
    }
    #[inline(always)]
    fn get(self) -> u32 {
        self
    }
}

/// The automaton of a set of patterns, with the narrowest table that fits.
pub enum Automaton {
    Narrow(PhraseDfa<u16>),
    Wide(PhraseDfa<u32>),
}

impl Automaton {
    /// See [`PhraseDfa::new`].
    pub fn new<P: AsRef<[u8]>>(patterns: &[P]) -> Self {
        let wide = PhraseDfa::new(patterns);
        match wide.narrow() {
            Some(narrow) => Self::Narrow(narrow),
            None => Self::Wide(wide),
        }
    }

    /// See [`PhraseDfa::for_each_match`].
    #[cfg(test)]
    pub fn for_each_match(&self, hay: &[u8], found: impl FnMut(usize, usize)) {
        match self {
            Self::Narrow(dfa) => dfa.for_each_match(hay, found),
            Self::Wide(dfa) => dfa.for_each_match(hay, found),
        }
    }

    /// The length of pattern `pattern` in bytes.
    pub fn len_of(&self, pattern: usize) -> usize {
        match self {
            Self::Narrow(dfa) => dfa.lens[pattern],
            Self::Wide(dfa) => dfa.lens[pattern],
        }
    }
}

/// An automaton over a fixed set of byte-string patterns.
pub struct PhraseDfa<S> {
    /// Byte -> where its class's column starts in `trans`.
    column: [u32; 256],
    /// Number of states.
    states: usize,
    /// Transitions by class, then state: `trans[column[b] + s]` is the
    /// state after `s` reads `b`. Laid out so that the few states a scan
    /// spends most of its time in (the roots, short prefixes) share a few
    /// cache lines of every column.
    trans: Vec<S>,
    /// States from this one on have matches.
    first_match: u32,
    /// For match state `first_match + k`: its patterns are
    /// `out[out_at[k]..out_at[k + 1]]`.
    out_at: Vec<u32>,
    out: Vec<u32>,
    /// Pattern -> its length in bytes.
    lens: Vec<usize>,
}

const NONE: u32 = u32::MAX;

/// The state a scan starts in: the root, at a token start.
const START: u32 = 0;

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl PhraseDfa<u32> {
    /// Builds the automaton. Pattern `i` is reported as `i`.
    ///
    /// The automaton reads folded text (see [`super::normalize`]), and
    /// reads unfolded ASCII text the same way: a capital as its small
    /// letter, any byte up to 0x20 as a space, a run of them as one.
    /// Patterns are not empty, and have single spaces between words only
    /// (no space at either end, no two in a row). A pattern with a byte
    /// folded text never has (a capital, a control character) never
    /// matches.
    pub fn new<P: AsRef<[u8]>>(patterns: &[P]) -> Self {
        for p in patterns {
            let p = p.as_ref();
            assert!(
                !p.is_empty()
                    && p[0] != b' '
                    && p[p.len() - 1] != b' '
                    && !p.windows(2).any(|w| w == b"  "),
                "pattern {:?} is not folded",
                String::from_utf8_lossy(p)
            );
        }
        // Byte classes: one per byte some pattern uses (and the space),
        // then one per kind (letter or digit / other word byte / non-word
        // byte) of the rest. Capitals go with their small letters, and
        // white space with the space.
        let alias = |b: u8| if b <= 0x20 { b' ' } else { b.to_ascii_lowercase() };
        let mut used = [false; 256];
        used[usize::from(b' ')] = true;
        for p in patterns {
            for &b in p.as_ref() {
                used[usize::from(b)] = true;
            }
        }
        let mut classes = [0u8; 256];
        let mut class_alnum = Vec::new();
        let mut class_word = Vec::new();
        let mut rest_class = [None::<u8>; 3];
        for b in 0..=255u8 {
            if alias(b) != b {
                continue;
            }
            let (alnum, word) = (b.is_ascii_alphanumeric(), is_word(b));
            let slot = usize::from(alnum) + usize::from(word);
            let class = if used[usize::from(b)] { None } else { rest_class[slot] };
            classes[usize::from(b)] = class.unwrap_or_else(|| {
                let c = u8::try_from(class_alnum.len()).expect("at most 256 classes");
                class_alnum.push(alnum);
                class_word.push(word);
                if !used[usize::from(b)] {
                    rest_class[slot] = Some(c);
                }
                c
            });
        }
        for b in 0..=255u8 {
            classes[usize::from(b)] = classes[usize::from(alias(b))];
        }
        let space = usize::from(classes[usize::from(b' ')]);
        let stride = class_alnum.len();
        let caret = stride; // the `^` symbol, after the byte classes
        let symbols = stride + 1;

        // The trie over the rewritten patterns.
        let mut children: Vec<u32> = vec![NONE; symbols];
        let mut last_symbol: Vec<usize> = vec![caret]; // root: none; never read
        let mut own: Vec<Vec<u32>> = vec![Vec::new()];
        for (index, p) in patterns.iter().enumerate() {
            let p = p.as_ref();
            if p.iter().any(|&b| b < 0x20 || b.is_ascii_uppercase()) {
                continue;
            }
            let mut node = 0usize;
            for (j, &b) in p.iter().enumerate() {
                let class = usize::from(classes[usize::from(b)]);
                let token_start = class_alnum[class] && (j == 0 || !is_word(p[j - 1]));
                let steps = if token_start { &[caret, class][..] } else { &[class][..] };
                for &symbol in steps {
                    let next = children[node * symbols + symbol];
                    node = if next == NONE {
                        let id = own.len();
                        children[node * symbols + symbol] = id as u32;
                        children.extend(std::iter::repeat_n(NONE, symbols));
                        last_symbol.push(symbol);
                        own.push(Vec::new());
                        id
                    } else {
                        next as usize
                    };
                }
            }
            own[node].push(u32::try_from(index).expect("fewer than 2^32 patterns"));
        }

        // Aho-Corasick: failure links breadth first, then full transitions
        // over every symbol and each node's matches (its own and those of
        // its failure chain).
        let nodes = own.len();
        let mut delta = vec![0u32; nodes * symbols];
        let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); nodes];
        let mut fail = vec![0usize; nodes];
        let mut queue = std::collections::VecDeque::new();
        let mut breadth_first = vec![0usize];
        for symbol in 0..symbols {
            let child = children[symbol];
            if child != NONE {
                delta[symbol] = child;
                queue.push_back(child as usize);
            }
        }
        while let Some(node) = queue.pop_front() {
            breadth_first.push(node);
            let f = fail[node];
            let mut out = own[node].clone();
            out.extend_from_slice(&outputs[f]);
            outputs[node] = out;
            for symbol in 0..symbols {
                let child = children[node * symbols + symbol];
                if child == NONE {
                    delta[node * symbols + symbol] = delta[f * symbols + symbol];
                } else {
                    delta[node * symbols + symbol] = child;
                    fail[child as usize] = delta[f * symbols + symbol] as usize;
                    queue.push_back(child as usize);
                }
            }
        }

        // The DFA's states: every node not entered by `^` (those are only
        // passed through), plus the root after a word byte (`root_word`; the
        // root itself stands for the root after a non-word byte or at the
        // start). Numbered breadth first, those with matches last.
        let root_word = nodes; // a node index of its own
        let mut order: Vec<usize> = breadth_first
            .iter()
            .copied()
            .filter(|&n| n == 0 || last_symbol[n] != caret)
            .collect();
        order.insert(1, root_word);
        order.sort_by_key(|&n| n != root_word && !outputs[n].is_empty());
        let states = order.len();
        let mut number = vec![NONE; nodes + 1];
        for (i, &n) in order.iter().enumerate() {
            number[n] = u32::try_from(i).expect("fewer than 2^32 states");
        }
        debug_assert_eq!(number[0], START);
        let mut trans = vec![0u32; states * stride];
        let mut out_at = vec![0u32];
        let mut out = Vec::new();
        for (i, &n) in order.iter().enumerate() {
            let (node, prev_word) = if n == root_word {
                (0, true)
            } else {
                (n, n != 0 && class_word[last_symbol[n]])
            };
            for class in 0..stride {
                let to = if class == space
                    && n != 0
                    && n != root_word
                    && last_symbol[n] == space
                {
                    // A run of white space reads as one space.
                    n
                } else {
                    let from = if class_alnum[class] && !prev_word {
                        delta[node * symbols + caret] as usize
                    } else {
                        node
                    };
                    match delta[from * symbols + class] as usize {
                        0 if class_word[class] => root_word,
                        to => to,
                    }
                };
                trans[class * states + i] = number[to];
            }
            if n != root_word && !outputs[n].is_empty() {
                out.extend_from_slice(&outputs[n]);
                out_at.push(u32::try_from(out.len()).expect("fewer than 2^32 matches"));
            }
        }
        let first_match =
            u32::try_from(states - (out_at.len() - 1)).expect("fewer than 2^32 states");
        let mut column = [0u32; 256];
        for (b, c) in column.iter_mut().enumerate() {
            *c = u32::try_from(usize::from(classes[b]) * states).expect("the table fits");
        }
        let lens = patterns.iter().map(|p| p.as_ref().len()).collect();
        Self { column, states, trans, first_match, out_at, out, lens }
    }

    /// The same automaton with a `u16` table, if its states fit.
    pub fn narrow(&self) -> Option<PhraseDfa<u16>> {
        let trans =
            self.trans.iter().map(|&s| u16::from_u32(s)).collect::<Option<_>>()?;
        Some(PhraseDfa {
            column: self.column,
            states: self.states,
            trans,
            first_match: self.first_match,
            out_at: self.out_at.clone(),
            out: self.out.clone(),
            lens: self.lens.clone(),
        })
    }
}

impl<S: StateId> PhraseDfa<S> {
    /// The state to start a scan in.
    pub fn start(&self) -> u32 {
        START
    }

    /// The state after `state` reads `byte`.
    #[inline(always)]
    pub fn next(&self, state: u32, byte: u8) -> u32 {
        let at = self.column[usize::from(byte)] as usize;
        let column = &self.trans[at..at + self.states];
        column[state as usize].get()
    }

    /// Whether patterns end where `state` is entered.
    #[inline(always)]
    pub fn is_match(&self, state: u32) -> bool {
        state >= self.first_match
    }

    /// Calls `found(pattern, end)` for each pattern that ends at `end` if
    /// match state `state` was entered by reading the byte before `end`.
    #[cold]
    #[inline(never)]
    pub fn report(&self, state: u32, end: usize, found: &mut impl FnMut(usize, usize)) {
        let k = (state - self.first_match) as usize;
        let from = self.out_at[k] as usize;
        let to = self.out_at[k + 1] as usize;
        for &p in &self.out[from..to] {
            found(p as usize, end);
        }
    }

    /// Calls `found(pattern, end)` for every occurrence of every pattern in
    /// `hay` (one starting with a letter or digit only at a token start),
    /// in order of `end`. (The classifier reads replies with
    /// [`super::normalize::scan_reply`] and [`Self::next`] instead.)
    #[cfg(test)]
    pub fn for_each_match(&self, hay: &[u8], mut found: impl FnMut(usize, usize)) {
        let mut state = self.start();
        for (i, &b) in hay.iter().enumerate() {
            state = self.next(state, b);
            if self.is_match(state) {
                self.report(state, i + 1, &mut found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every occurrence in folded text the slow way, each pattern at each
    /// position with the token-start rule, as (pattern, end).
    fn naive(patterns: &[&str], hay: &[u8]) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for end in 1..=hay.len() {
            for (i, p) in patterns.iter().enumerate() {
                let p = p.as_bytes();
                if p.len() > end || &hay[end - p.len()..end] != p {
                    continue;
                }
                let start = end - p.len();
                if p[0].is_ascii_alphanumeric() && start > 0 && is_word(hay[start - 1]) {
                    continue;
                }
                found.push((i, end));
            }
        }
        found.sort();
        found
    }

    /// The matches of the automaton, with each width of table.
    fn dfa(patterns: &[&str], hay: &[u8]) -> Vec<(usize, usize)> {
        let wide = PhraseDfa::new(patterns);
        let mut found = Vec::new();
        wide.for_each_match(hay, |p, end| found.push((p, end)));
        found.sort();
        let mut narrow = Vec::new();
        let table = wide.narrow().expect("a small automaton fits u16");
        table.for_each_match(hay, |p, end| narrow.push((p, end)));
        narrow.sort();
        assert_eq!(found, narrow);
        found
    }

    /// ASCII text folded (lower-cased, runs of bytes up to 0x20 as one
    /// space, none at the ends), and for each byte of the text the length
    /// of the folded text up to and including it.
    fn fold_ascii(text: &[u8]) -> (Vec<u8>, Vec<usize>) {
        let mut folded = Vec::new();
        let mut upto = Vec::new();
        let mut pending = false;
        for &b in text {
            if b <= 0x20 {
                pending = !folded.is_empty();
            } else {
                if pending {
                    folded.push(b' ');
                    pending = false;
                }
                folded.push(b.to_ascii_lowercase());
            }
            upto.push(folded.len());
        }
        (folded, upto)
    }

    #[test]
    fn phrases_are_found_at_token_starts_only() {
        let patterns =
            ["a not found", "not found", "user unknown", "spam", "-5.1.1", "_x"];
        let hay =
            b"data not found; user unknown. spamhaus spam a-5.1.1 a_x user unknownx";
        let mut found = dfa(&patterns, hay);
        assert_eq!(found, naive(&patterns, hay));
        found.sort_by_key(|&(_, end)| end);
        let texts: Vec<&str> = found
            .iter()
            .map(|&(p, end)| {
                std::str::from_utf8(&hay[end - patterns[p].len()..end]).expect("ascii")
            })
            .collect();
        assert_eq!(
            texts,
            ["not found", "user unknown", "spam", "spam", "-5.1.1", "_x", "user unknown"]
        );
    }

    #[test]
    fn overlapping_and_nested_phrases_are_all_reported() {
        let patterns =
            ["he", "she", "his", "hers", "s h", "h e", "e r", "r s", "用户", "户不"];
        for hay in ["ushers", "she he hers", "s h e r s", "h_e hhe", "用户不存在 she"]
        {
            assert_eq!(dfa(&patterns, hay.as_bytes()), naive(&patterns, hay.as_bytes()));
        }
    }

    #[test]
    fn unfolded_ascii_reads_as_folded() {
        let patterns = ["user unknown", "no such user", "a b", "b"];
        let hay = b"  No\t SUCH\r\n  user\x01UNKNOWN A  B ";
        let (folded, upto) = fold_ascii(hay);
        assert_eq!(folded, b"no such user unknown a b");
        let raw: Vec<(usize, usize)> =
            dfa(&patterns, hay).into_iter().map(|(p, end)| (p, upto[end - 1])).collect();
        assert_eq!(raw, naive(&patterns, &folded));
        assert_eq!(raw.len(), 4);
    }

    /// Random texts over a small alphabet, where patterns overlap, nest and
    /// straddle token starts all the time; read folded and unfolded.
    #[test]
    fn agrees_with_the_naive_search_on_random_text() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let letters = b"ab1_-.B";
        let text = b"aAbB1_-.  \t\n";
        for _ in 0..500 {
            let mut owned = Vec::new();
            for _ in 0..1 + next(12) {
                let words: Vec<String> = (0..1 + next(3))
                    .map(|_| {
                        (0..1 + next(3))
                            .map(|_| letters[next(letters.len())] as char)
                            .collect()
                    })
                    .collect();
                owned.push(words.join(" "));
            }
            let patterns: Vec<&str> = owned.iter().map(String::as_str).collect();
            let hay: Vec<u8> = (0..next(80)).map(|_| text[next(text.len())]).collect();
            let (folded, upto) = fold_ascii(&hay);
            let want = naive(&patterns, &folded);
            assert_eq!(dfa(&patterns, &folded), want, "{patterns:?} {folded:?}");
            let raw: Vec<(usize, usize)> = dfa(&patterns, &hay)
                .into_iter()
                .map(|(p, end)| (p, upto[end - 1]))
                .collect();
            assert_eq!(raw, want, "{patterns:?} {hay:?}");
        }
    }
}
