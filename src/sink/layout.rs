//! Where things live under the data root, and how an organisation id
//! becomes a directory name.
//!
//! ```text
//! <root>/deliveries/date=YYYY-MM-DD/org=<org>/<source>-<first>-<next>.parquet
//! <root>/rejected/date=YYYY-MM-DD/<source>-<first>-<next>.parquet
//! <root>/summaries/date=YYYY-MM-DD/org=<org>/summary.{json,md}
//! <root>/_bouncelens/staging/   files written but not yet committed
//! <root>/_bouncelens/txn/       committed transactions not yet applied
//! <root>/_bouncelens/checkpoints/  per source: next offset and join state
//! ```
//!
//! The internal `_bouncelens` directory starts with `_`, which DataFusion,
//! DuckDB and Spark skip when they list a table; the `org=` prefix keeps any
//! organisation directory from doing so.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The longest encoded organisation kept whole; longer ones are cut and
/// given a hash suffix.
const MAX_ORG_DIR_BYTES: usize = 96;

/// Turns an organisation id into a directory-name value, so that no input
/// can escape the root or land in another organisation's directory.
///
/// - Organisation ids are case-insensitive (they are domains or tenant
///   names): the id is lower-cased first, so `Acme` and `acme` are one
///   organisation, on every file system.
/// - `a-z`, `0-9`, `-`, `_` and `.` stand for themselves; every other byte
///   (of the UTF-8 form) is written `%XX`. So `/`, `\`, NUL and `=` cannot
///   appear raw, and the encoding is reversible: two different ids never
///   give the same name. (`..` stays `..`, harmless inside `org=..`.)
/// - `~` is never written raw by the rule above, so it marks the two
///   special forms: the empty id is `~empty`, and a name longer than 96
///   bytes keeps 80 bytes of its encoding, then `~` and 16 hex digits of a
///   hash of the whole id.
pub fn encode_org(org_id: &str) -> String {
    let lower = org_id.to_lowercase();
    if lower.is_empty() {
        return "~empty".to_string();
    }
    let mut out = String::with_capacity(lower.len());
    // Where the encoding of each character ends, to cut between characters.
    let mut char_ends = Vec::new();
    for ch in lower.chars() {
        let mut buf = [0u8; 4];
        for &b in ch.encode_utf8(&mut buf).as_bytes() {
            let plain = b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'-' | b'.' | b'_');
            if plain {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        char_ends.push(out.len());
    }
    if out.len() > MAX_ORG_DIR_BYTES {
        let cut =
            char_ends.iter().copied().take_while(|&end| end <= 80).last().unwrap_or(0);
        let digest = Sha256::digest(lower.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        out = format!("{}~{hex}", &out[..cut]);
    }
    out
}

/// The value SQL sees in the `org` partition column for an organisation.
///
/// Readers of hive-partitioned data (DataFusion, DuckDB, Spark) decode
/// `%XX` in directory values, so the column holds the decoded
/// [`encode_org`]: the lower-cased id itself for ids of normal length.
pub fn org_partition_value(org_id: &str) -> String {
    percent_decode(&encode_org(org_id))
}

/// Decodes `%XX` escapes (as hive readers do); other text is kept.
pub fn percent_decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The paths under one data root.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn deliveries(&self) -> PathBuf {
        self.root.join("deliveries")
    }

    pub fn rejected(&self) -> PathBuf {
        self.root.join("rejected")
    }

    pub fn summaries(&self) -> PathBuf {
        self.root.join("summaries")
    }

    pub fn delivery_dir(&self, date: &str, org_dir: &str) -> PathBuf {
        self.deliveries().join(format!("date={date}")).join(format!("org={org_dir}"))
    }

    pub fn rejected_dir(&self, date: &str) -> PathBuf {
        self.rejected().join(format!("date={date}"))
    }

    pub fn summary_dir(&self, date: &str, org_dir: &str) -> PathBuf {
        self.summaries().join(format!("date={date}")).join(format!("org={org_dir}"))
    }

    fn internal(&self) -> PathBuf {
        self.root.join("_bouncelens")
    }

    pub fn staging(&self) -> PathBuf {
        self.internal().join("staging")
    }

    pub fn transactions(&self) -> PathBuf {
        self.internal().join("txn")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.internal().join("checkpoints")
    }

    pub fn state(&self) -> PathBuf {
        self.internal().join("state")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn hostile_organisation_ids_stay_inside_and_apart() {
        let long = "x".repeat(10_000);
        let long2 = format!("{}y", "x".repeat(9_999));
        let ids = [
            "acme",
            "../x",
            "..",
            ".",
            "a/b",
            "a%2Fb",
            "",
            "\0",
            "a\0b",
            "_x",
            "x_",
            "/",
            "\\",
            "org=1",
            "Ünïcode",
            "空",
            &long,
            &long2,
            "a b",
            "%00empty",
            "~empty",
            "\0empty",
        ];
        let mut seen = HashSet::new();
        for id in ids {
            let dir = encode_org(id);
            assert!(!dir.is_empty(), "{id:?}");
            assert!(dir.len() <= MAX_ORG_DIR_BYTES + 17, "{id:?} -> {dir}");
            assert!(
                !dir.contains('/') && !dir.contains('\\') && !dir.contains('\0'),
                "{dir}"
            );
            assert!(seen.insert(dir.clone()), "{id:?} collides as {dir}");
            let path = Layout::new("/data").delivery_dir("2026-01-01", &dir);
            assert!(path.starts_with("/data/deliveries/date=2026-01-01"), "{path:?}");
            assert_eq!(path.components().count(), 5, "{path:?}");
        }
    }

    #[test]
    fn the_sql_value_is_the_decoded_directory_value() {
        assert_eq!(org_partition_value("Weird Org/1"), "weird org/1");
        assert_eq!(org_partition_value(""), "~empty");
        let long = "空".repeat(50);
        let value = org_partition_value(&long);
        assert!(value.starts_with("空空空") && value.contains('~'), "{value}");
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }

    #[test]
    fn organisation_ids_are_case_insensitive_and_readable() {
        assert_eq!(encode_org("Acme.COM"), "acme.com");
        assert_eq!(encode_org("acme.com"), "acme.com");
        assert_eq!(encode_org("a/b"), "a%2Fb");
    }
}
