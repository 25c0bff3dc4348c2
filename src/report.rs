//! Reports: named SQL files with parameters, run over the dataset.
//!
//! A report is a `.sql` file whose leading `--` comment says what it
//! answers (its first line is the title). Parameters are written
//! `{{name}}` and replaced by SQL literals, never spliced as text:
//!
//! | parameter | value |
//! |---|---|
//! | `{{org}}` | the organisation's `org` partition value (`--org`, lower-cased; see [`org_partition_value`]) |
//! | `{{from}}`, `{{to}}` | `'YYYY-MM-DD'`, inclusive |
//! | `{{previous_from}}` | the first day of the period of the same length just before `from` |
//! | `{{limit}}` | an integer (`--limit`; default 100 on screen, no limit in an export) |
//! | `{{lang}}` | `'en'` or `'zh'`, for advice and labels |
//!
//! The built-in reports live in `queries/` and are compiled in; a user
//! folder (`reports.dir`) adds more, and a user file with a built-in's name
//! replaces it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::query::{self, QueryError};
use crate::sink::org_partition_value;
use crate::taxonomy::Taxonomy;

/// The built-in reports, by name.
const BUILTIN: &[(&str, &str)] = &[
    ("overview", include_str!("../queries/overview.sql")),
    ("categories", include_str!("../queries/categories.sql")),
    ("reasons", include_str!("../queries/reasons.sql")),
    ("domains", include_str!("../queries/domains.sql")),
    ("senders", include_str!("../queries/senders.sql")),
    ("spam_channel", include_str!("../queries/spam_channel.sql")),
    ("blacklist", include_str!("../queries/blacklist.sql")),
    ("virus", include_str!("../queries/virus.sql")),
    ("suppression", include_str!("../queries/suppression.sql")),
    ("limits", include_str!("../queries/limits.sql")),
    ("trend", include_str!("../queries/trend.sql")),
];

/// One report.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub name: String,
    /// The header comment, without the `--` markers.
    pub description: String,
    pub sql: String,
    pub builtin: bool,
}

impl Report {
    fn parse(name: &str, sql: &str, builtin: bool) -> Self {
        let description = sql
            .lines()
            .take_while(|l| l.trim_start().starts_with("--"))
            .map(|l| l.trim_start().trim_start_matches("--").trim())
            .collect::<Vec<_>>()
            .join("\n");
        Self { name: name.to_string(), description, sql: sql.to_string(), builtin }
    }

    /// The first line of the description.
    pub fn title(&self) -> &str {
        self.description.lines().next().unwrap_or("")
    }

    /// Whether the report's rows are cut at `{{limit}}`.
    pub fn uses_limit(&self) -> bool {
        self.sql.split("{{").skip(1).any(|rest| {
            rest.split("}}").next().is_some_and(|param| param.trim() == "limit")
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no report named {name:?}; `bouncelens report --list` shows them: {known}")]
    Unknown { name: String, known: String },
    #[error("cannot read reports folder {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(
        "report {report}: unknown parameter {{{{{param}}}}} (known: org, from, to, previous_from, limit, lang)"
    )]
    UnknownParam { report: String, param: String },
    #[error("--from {from} is after --to {to}")]
    BadRange { from: NaiveDate, to: NaiveDate },
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// The reports available: built-in, then the user folder's.
pub fn load_reports(user_dir: Option<&Path>) -> Result<Vec<Report>, ReportError> {
    let mut by_name: BTreeMap<String, Report> = BUILTIN
        .iter()
        .map(|(name, sql)| (name.to_string(), Report::parse(name, sql, true)))
        .collect();
    if let Some(dir) = user_dir {
        let read = |source| ReportError::Read { path: dir.display().to_string(), source };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(read)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        paths.sort();
        for path in paths {
            let name =
                path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            let sql = std::fs::read_to_string(&path).map_err(read)?;
            by_name.insert(name.clone(), Report::parse(&name, &sql, false));
        }
    }
    // Built-ins first in their listed order, then user reports by name.
    let mut out = Vec::new();
    for (name, _) in BUILTIN {
        if let Some(r) = by_name.remove(*name) {
            out.push(r);
        }
    }
    out.extend(by_name.into_values());
    Ok(out)
}

pub fn find<'a>(reports: &'a [Report], name: &str) -> Result<&'a Report, ReportError> {
    reports.iter().find(|r| r.name == name).ok_or_else(|| ReportError::Unknown {
        name: name.to_string(),
        known: reports.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
    })
}

/// Language of advice and labels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

/// The values of a report's parameters.
#[derive(Clone, Debug)]
pub struct Params {
    /// The organisation id as the user knows it; encoded for the partition.
    pub org: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub limit: u64,
    pub lang: Lang,
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The report's SQL with its parameters replaced by literals.
pub fn render(report: &Report, params: &Params) -> Result<String, ReportError> {
    if params.from > params.to {
        return Err(ReportError::BadRange { from: params.from, to: params.to });
    }
    let mut out = String::with_capacity(report.sql.len());
    let mut rest = report.sql.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| ReportError::UnknownParam {
            report: report.name.clone(),
            param: after.chars().take(20).collect(),
        })?;
        let name = after[..end].trim();
        let value = match name {
            "org" => literal(&org_partition_value(&params.org)),
            "from" => literal(&params.from.to_string()),
            "to" => literal(&params.to.to_string()),
            "previous_from" => {
                let span = params.to - params.from + chrono::Duration::days(1);
                literal(&(params.from - span).to_string())
            }
            "limit" => params.limit.to_string(),
            "lang" => literal(match params.lang {
                Lang::En => "en",
                Lang::Zh => "zh",
            }),
            other => {
                return Err(ReportError::UnknownParam {
                    report: report.name.clone(),
                    param: other.to_string(),
                });
            }
        };
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Registers `taxonomy_reasons` (reason, category, severity, labels,
/// advice) so reports can join advice to their rows.
pub fn register_taxonomy(
    ctx: &SessionContext,
    taxonomy: &Taxonomy,
) -> Result<(), QueryError> {
    let names = [
        "reason",
        "category",
        "severity",
        "label_en",
        "label_zh",
        "advice_en",
        "advice_zh",
    ];
    let schema = Arc::new(Schema::new(
        names.iter().map(|n| Field::new(*n, DataType::Utf8, false)).collect::<Vec<_>>(),
    ));
    let r = &taxonomy.reasons;
    let column = |f: &dyn Fn(&crate::taxonomy::Reason) -> &str| {
        Arc::new(StringArray::from_iter_values(r.iter().map(f))) as arrow::array::ArrayRef
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            column(&|x| &x.id),
            column(&|x| &x.category),
            column(&|x| x.severity.as_str()),
            column(&|x| &x.label_en),
            column(&|x| &x.label_zh),
            column(&|x| &x.advice_en),
            column(&|x| &x.advice_zh),
        ],
    )
    .map_err(|e| QueryError::DataFusion(e.into()))?;
    let table = MemTable::try_new(schema, vec![vec![batch]])?;
    ctx.register_table("taxonomy_reasons", Arc::new(table))?;
    Ok(())
}

/// Runs one report.
pub async fn run(
    ctx: &SessionContext,
    report: &Report,
    params: &Params,
) -> Result<Vec<RecordBatch>, ReportError> {
    let sql = render(report, params)?;
    Ok(query::collect(ctx, &sql).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            org: "O'Brien & Co".to_string(),
            from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
            limit: 5,
            lang: Lang::Zh,
        }
    }

    #[test]
    fn parameters_become_literals() {
        let r = Report::parse(
            "t",
            "SELECT {{org}}, {{ from }}, {{to}}, {{previous_from}}, {{limit}}, {{lang}}",
            false,
        );
        assert_eq!(
            render(&r, &params()).unwrap(),
            "SELECT 'o''brien & co', '2026-01-01', '2026-01-02', '2025-12-30', 5, 'zh'"
        );
    }

    #[test]
    fn a_report_knows_whether_it_is_cut_at_the_limit() {
        assert!(Report::parse("t", "SELECT 1 LIMIT {{ limit }}", false).uses_limit());
        assert!(!Report::parse("t", "SELECT {{org}} -- no cut", false).uses_limit());
        let builtin = load_reports(None).unwrap();
        let cut: Vec<_> =
            builtin.iter().filter(|r| r.uses_limit()).map(|r| r.name.as_str()).collect();
        assert!(cut.contains(&"suppression") && !cut.contains(&"overview"), "{cut:?}");
    }

    #[test]
    fn unknown_parameters_and_bad_ranges_are_refused() {
        let r = Report::parse("t", "SELECT {{orgg}}", false);
        assert!(render(&r, &params()).unwrap_err().to_string().contains("orgg"));
        let mut p = params();
        p.from = NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        assert!(matches!(
            render(&Report::parse("t", "x", false), &p),
            Err(ReportError::BadRange { .. })
        ));
    }

    #[test]
    fn every_builtin_report_says_what_it_answers() {
        for r in load_reports(None).unwrap() {
            assert!(
                r.description.contains("Answers:"),
                "{} has no `Answers:` header",
                r.name
            );
        }
    }
}
