//! Classifier throughput on realistic replies, side by side with a
//! `regex::RegexSet` over the same phrases (the approach many mail
//! servers' bounce parsers take).
//!
//! Replies: the 251 real diagnostics of the Sisimai development set plus
//! every FAQ phrase inside a Postfix-style reply. Run with
//! `cargo bench -p bouncelens-taxonomy`.

use std::hint::black_box;

use bouncelens_taxonomy::{Classifier, Reply, Taxonomy};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use regex::RegexSetBuilder;

const DEV: &str = include_str!("../../../tests/fixtures/sisimai-dev.tsv");
const FAQ: &str = include_str!("../../../tests/fixtures/faq-phrases.tsv");

fn replies() -> Vec<String> {
    let mut out: Vec<String> = DEV
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(4))
        .map(str::to_string)
        .collect();
    for line in FAQ.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, phrase)) = line.split_once('\t') {
            out.push(format!(
                "host mx1.example.net[192.0.2.25] said: 550 5.0.0 <someone@example.org>: {phrase} (in reply to RCPT TO command)"
            ));
        }
    }
    out
}

/// The same phrases as one RegexSet, case-insensitive, whitespace-tolerant;
/// the winner is picked by the same priority-then-length rule.
struct RegexClassifier {
    set: regex::RegexSet,
    meta: Vec<(i32, usize, usize)>,
}

impl RegexClassifier {
    fn new(taxonomy: &Taxonomy) -> Self {
        let mut patterns = Vec::new();
        let mut meta = Vec::new();
        for (i, reason) in taxonomy.reasons.iter().enumerate() {
            for phrase in reason.all_phrases() {
                if phrase.len() == 3 && phrase.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                let words: Vec<String> =
                    phrase.split_whitespace().map(regex::escape).collect();
                let mut p = words.join(r"\s+");
                if phrase.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
                    p = format!(r"\b{p}");
                }
                patterns.push(p);
                meta.push((reason.priority, phrase.chars().count(), i));
            }
        }
        let set = RegexSetBuilder::new(&patterns)
            .case_insensitive(true)
            .size_limit(1 << 28)
            .dfa_size_limit(1 << 28)
            .build()
            .expect("the phrases compile");
        Self { set, meta }
    }

    fn classify(&self, text: &str) -> Option<usize> {
        self.set
            .matches(text)
            .iter()
            .map(|p| self.meta[p])
            .max_by_key(|(priority, len, _)| (*priority, *len))
            .map(|(_, _, reason)| reason)
    }
}

fn bench(c: &mut Criterion) {
    let replies = replies();
    let classifier = Classifier::builtin();
    let regex = RegexClassifier::new(classifier.taxonomy());
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(replies.len() as u64));
    group.bench_function("aho_corasick", |b| {
        b.iter(|| {
            for r in &replies {
                black_box(classifier.classify(&Reply::text(r)));
            }
        })
    });
    group.bench_function("regex_set", |b| {
        b.iter(|| {
            for r in &replies {
                black_box(regex.classify(r));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
