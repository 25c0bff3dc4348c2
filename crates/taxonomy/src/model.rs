//! The taxonomy as data: categories, reasons, phrases and code fallbacks.
//!
//! The built-in taxonomy is `schemas/taxonomy.toml`, compiled into the
//! binary. A user file with the same structure is layered on top of it: a
//! `[[reason]]` whose `id` already exists replaces that reason whole, a new
//! id adds one, and a `[[category]]` with an existing id renames it. The
//! merged result is validated before any matcher is built, so a bad user
//! file is refused with every problem listed, not half-applied.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The built-in taxonomy file, as shipped.
pub const BUILTIN_TAXONOMY: &str = include_str!("../../../schemas/taxonomy.toml");

/// The category ids, in the order of the platform FAQ's bounce table.
///
/// They are a public contract: reports, dashboards and other tools select
/// on them, so a user file may rename a category but never add or drop one.
pub const CATEGORY_IDS: [&str; 14] = [
    "recipient_unknown",
    "mailbox_full",
    "message_too_large",
    "domain_error",
    "network_error",
    "blacklisted",
    "spam_channel",
    "mailbox_expired_or_locked",
    "authentication",
    "relay_denied",
    "rejected_by_recipient",
    "virus",
    "other",
    "unclassified",
];

/// The category given when nothing matched.
pub const UNCLASSIFIED: &str = "unclassified";

/// Whether a failure is permanent (`hard`) or will be retried (`soft`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Hard,
    Soft,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Hard => "hard",
            Severity::Soft => "soft",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the fixed categories, with its display names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub id: String,
    pub name_en: String,
    pub name_zh: String,
    #[serde(default)]
    pub faq_group: String,
}

/// A finer reason inside a category: one piece of advice, and the phrases
/// and status codes that lead to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub id: String,
    pub category: String,
    pub severity: Severity,
    #[serde(default)]
    pub priority: i32,
    pub label_en: String,
    pub label_zh: String,
    pub advice_en: String,
    pub advice_zh: String,
    /// Phrases from the platform FAQ, verbatim.
    #[serde(default)]
    pub faq_phrases: Vec<String>,
    /// Phrases real servers send that the FAQ lacks.
    #[serde(default)]
    pub phrases: Vec<String>,
    /// RFC 3463 patterns such as `5.7.1`, `x.2.2` or `x.4.x`.
    #[serde(default)]
    pub enhanced_codes: Vec<String>,
    /// Reply codes such as `552`, or a class such as `5xx`.
    #[serde(default)]
    pub reply_codes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Reason {
    /// Every phrase of this reason, FAQ ones first.
    pub fn all_phrases(&self) -> impl Iterator<Item = &str> {
        self.faq_phrases.iter().chain(self.phrases.iter()).map(String::as_str)
    }
}

/// A whole taxonomy file, built-in or user-supplied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taxonomy {
    #[serde(default = "default_schema_version")]
    pub schema_version: u32,
    #[serde(default, rename = "category")]
    pub categories: Vec<Category>,
    #[serde(default, rename = "reason")]
    pub reasons: Vec<Reason>,
}

fn default_schema_version() -> u32 {
    1
}

/// Everything wrong with a taxonomy file, each problem on its own line.
#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    #[error("cannot read taxonomy file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("taxonomy file {origin} is not valid TOML for a taxonomy: {message}")]
    Parse { origin: String, message: String },
    #[error(
        "taxonomy is invalid ({} problem{}):\n  - {}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.join("\n  - ")
    )]
    Invalid { problems: Vec<String> },
}

impl Taxonomy {
    /// Parses a taxonomy file without validating it.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TaxonomyError> {
        toml::from_str(text).map_err(|e| TaxonomyError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// The built-in taxonomy.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN_TAXONOMY, "schemas/taxonomy.toml")
            .expect("the built-in taxonomy parses; a test guards it")
    }

    /// The built-in taxonomy with an optional user file layered on top, validated.
    pub fn load(user_file: Option<&Path>) -> Result<Self, TaxonomyError> {
        let mut taxonomy = Self::builtin();
        if let Some(path) = user_file {
            let text = std::fs::read_to_string(path).map_err(|source| {
                TaxonomyError::Read { path: path.display().to_string(), source }
            })?;
            let user = Self::parse(&text, &path.display().to_string())?;
            let mut seen = BTreeSet::new();
            let twice: Vec<String> = user
                .reasons
                .iter()
                .filter(|r| !seen.insert(r.id.as_str()))
                .map(|r| {
                    format!("reason `{}` is defined twice in {}", r.id, path.display())
                })
                .collect();
            if !twice.is_empty() {
                return Err(TaxonomyError::Invalid { problems: twice });
            }
            taxonomy.overlay(user);
        }
        taxonomy.validate()?;
        Ok(taxonomy)
    }

    /// Layers `user` on top: same ids replace, new ids are appended.
    pub fn overlay(&mut self, user: Taxonomy) {
        for category in user.categories {
            match self.categories.iter_mut().find(|c| c.id == category.id) {
                Some(existing) => *existing = category,
                None => self.categories.push(category),
            }
        }
        for reason in user.reasons {
            match self.reasons.iter_mut().find(|r| r.id == reason.id) {
                Some(existing) => *existing = reason,
                None => self.reasons.push(reason),
            }
        }
    }

    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    pub fn reason(&self, id: &str) -> Option<&Reason> {
        self.reasons.iter().find(|r| r.id == id)
    }

    /// Checks the whole taxonomy and lists every problem found.
    pub fn validate(&self) -> Result<(), TaxonomyError> {
        let mut problems = Vec::new();
        if self.schema_version != 1 {
            problems.push(format!(
                "schema_version {} is not supported (this version reads 1)",
                self.schema_version
            ));
        }
        let known: BTreeSet<&str> = CATEGORY_IDS.iter().copied().collect();
        let mut seen_categories = BTreeSet::new();
        for category in &self.categories {
            if !known.contains(category.id.as_str()) {
                problems.push(format!(
                    "unknown category `{}`: categories are fixed ({})",
                    category.id,
                    CATEGORY_IDS.join(", ")
                ));
            }
            if !seen_categories.insert(category.id.as_str()) {
                problems.push(format!("category `{}` is defined twice", category.id));
            }
        }
        for id in CATEGORY_IDS {
            if !seen_categories.contains(id) {
                problems.push(format!("category `{id}` is missing"));
            }
        }
        let mut reason_ids = BTreeSet::new();
        let mut phrase_owner: HashMap<String, &str> = HashMap::new();
        let mut code_owner: HashMap<String, &str> = HashMap::new();
        for reason in &self.reasons {
            let id = reason.id.as_str();
            if !reason_ids.insert(id) {
                problems.push(format!("reason `{id}` is defined twice"));
            }
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                problems
                    .push(format!("reason id `{id}` must be snake_case (a-z, 0-9, _)"));
            }
            if reason.category == UNCLASSIFIED {
                problems.push(format!(
                    "reason `{id}` is in category `unclassified`, which only means that nothing matched"
                ));
            } else if !known.contains(reason.category.as_str()) {
                problems.push(format!(
                    "reason `{id}` names unknown category `{}` (known: {})",
                    reason.category,
                    CATEGORY_IDS[..13].join(", ")
                ));
            }
            for (field, text) in [
                ("label_en", &reason.label_en),
                ("label_zh", &reason.label_zh),
                ("advice_en", &reason.advice_en),
                ("advice_zh", &reason.advice_zh),
            ] {
                if text.trim().is_empty() {
                    problems.push(format!("reason `{id}` has an empty {field}"));
                }
            }
            for phrase in reason.all_phrases() {
                let key = super::normalize::fold_phrase(phrase);
                if key.chars().count() < 2 {
                    problems.push(format!(
                        "reason `{id}` has the phrase {phrase:?}, too short to mean anything"
                    ));
                    continue;
                }
                if let Some(other) = phrase_owner.insert(key, id) {
                    problems.push(format!(
                        "phrase {phrase:?} is listed twice (reasons `{other}` and `{id}`): \
                         a phrase must lead to one reason"
                    ));
                }
            }
            let enhanced = reason.enhanced_codes.iter().map(|p| {
                (
                    "enhanced code",
                    p,
                    super::codes::EnhancedPattern::parse(p).map(|c| c.to_string()),
                )
            });
            let reply = reason.reply_codes.iter().map(|p| {
                (
                    "reply code",
                    p,
                    super::codes::ReplyPattern::parse(p).map(|c| c.to_string()),
                )
            });
            for (kind, pattern, parsed) in enhanced.chain(reply) {
                match parsed {
                    Ok(key) => {
                        if let Some(other) = code_owner.insert(key, id) {
                            problems.push(format!(
                                "{kind} pattern `{pattern}` is listed twice (reasons `{other}` and `{id}`)"
                            ));
                        }
                    }
                    Err(message) => problems.push(format!("reason `{id}`: {message}")),
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TaxonomyError::Invalid { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER_FILE: &str = r#"
[[reason]]
id = "our_gateway_said_no"
category = "no_such_category"
severity = "hard"
label_en = "x"
label_zh = "x"
advice_en = "x"
advice_zh = "x"
phrases = ["USER   unknown", "a fresh phrase"]
enhanced_codes = ["5.1"]
reply_codes = ["55"]
"#;

    #[test]
    fn a_user_file_with_mistakes_is_refused_with_every_problem_named() {
        let mut t = Taxonomy::builtin();
        t.overlay(Taxonomy::parse(USER_FILE, "user.toml").unwrap());
        let err = t.validate().unwrap_err().to_string();
        for needle in [
            "unknown category `no_such_category`",
            "phrase \"USER   unknown\" is listed twice",
            "enhanced code pattern `5.1`",
            "reply code pattern `55`",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn a_user_reason_with_a_known_id_replaces_it() {
        let mut t = Taxonomy::builtin();
        let mut reason = t.reasons[0].clone();
        reason.advice_en = "Call the recipient.".to_string();
        let user = Taxonomy { reasons: vec![reason.clone()], ..Taxonomy::default() };
        let before = t.reasons.len();
        t.overlay(user);
        assert_eq!(t.reasons.len(), before);
        assert_eq!(t.reason(&reason.id).unwrap().advice_en, "Call the recipient.");
        t.validate().unwrap();
    }

    #[test]
    fn versions_duplicates_and_one_letter_phrases_are_refused() {
        let dir =
            std::env::temp_dir().join(format!("bouncelens-tax-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("twice.toml");
        let reason = USER_FILE.replace("no_such_category", "other");
        std::fs::write(&path, format!("{reason}\n{reason}")).unwrap();
        let err = Taxonomy::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("defined twice"), "{err}");
        let mut t = Taxonomy::builtin();
        t.schema_version = 99;
        t.reasons[0].phrases.push("a".into());
        let err = t.validate().unwrap_err().to_string();
        assert!(err.contains("schema_version 99"), "{err}");
        assert!(err.contains("too short"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_toml_names_the_file() {
        let err = Taxonomy::parse("[[reason]\n", "mine.toml").unwrap_err().to_string();
        assert!(err.contains("mine.toml"), "{err}");
    }
}
