//! Daily bounce summaries: for each organisation active on a day, a JSON
//! file for machines and a Markdown file for people, under
//! `<root>/summaries/date=DATE/org=ORG/`.
//!
//! A summary is a pure function of the day's data: it carries no time of
//! generation, rows are in a fixed order, and the files are replaced
//! atomically, so running it twice gives the same bytes and a day with
//! late data is recomputed by running it again.

use std::fmt::Write as _;
use std::path::PathBuf;

use arrow::array::{Array, AsArray, RecordBatch};
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use serde_json::{Map, Value};

use crate::query;
use crate::report::{self, Lang, Params, Report, ReportError};
use crate::sink::commit::write_atomic;
use crate::sink::{Layout, SinkError, encode_org};

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// The sections of a summary: (key, report, row limit).
const SECTIONS: &[(&str, &str, u64)] = &[
    ("overview", "overview", 1),
    ("top_categories", "categories", 5),
    ("top_reasons", "reasons", 10),
    ("top_failing_domains", "domains", 10),
    ("suppression_candidates", "suppression", 200),
    ("limit_breaches", "limits", 50),
];

/// Writes the summaries of `date` (of one organisation, or of every one
/// active that day). Returns the files written.
pub async fn write_summaries(
    ctx: &SessionContext,
    layout: &Layout,
    reports: &[Report],
    date: NaiveDate,
    only_org: Option<&str>,
) -> Result<Vec<PathBuf>, SummaryError> {
    let day = date.to_string();
    let sql = format!(
        "SELECT org, min(org_id) AS org_id FROM deliveries WHERE date = '{day}' GROUP BY org ORDER BY org"
    );
    let batches = query::collect(ctx, &sql).await.map_err(ReportError::from)?;
    // The `org` column holds the decoded directory value; the directory
    // to write to is encoded again from the organisation id.
    let mut orgs = Vec::new();
    for b in &batches {
        let ids = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            let org_id = ids.value(i).to_string();
            orgs.push((encode_org(&org_id), org_id));
        }
    }
    if let Some(org) = only_org {
        let dir = encode_org(org);
        orgs.retain(|(d, _)| *d == dir);
    }
    let mut written = Vec::new();
    for (dir, org_id) in orgs {
        let summary = summarise(ctx, reports, &org_id, date).await?;
        let folder = layout.summary_dir(&day, &dir);
        let json_path = folder.join("summary.json");
        let md_path = folder.join("summary.md");
        let mut json = serde_json::to_vec_pretty(&summary).expect("serializable");
        json.push(b'\n');
        write_atomic(&json_path, &json)?;
        write_atomic(&md_path, markdown(&summary).as_bytes())?;
        written.push(json_path);
        written.push(md_path);
    }
    metrics::counter!("bouncelens_summary_runs_total", "result" => "ok").increment(1);
    Ok(written)
}

/// One organisation's summary of one day, as JSON.
pub async fn summarise(
    ctx: &SessionContext,
    reports: &[Report],
    org_id: &str,
    date: NaiveDate,
) -> Result<Value, SummaryError> {
    let mut out = Map::new();
    out.insert("organisation".into(), org_id.into());
    out.insert("date".into(), date.to_string().into());
    for (key, name, limit) in SECTIONS {
        let report = report::find(reports, name)?;
        let params = Params {
            org: org_id.to_string(),
            from: date,
            to: date,
            limit: *limit,
            lang: Lang::En,
        };
        let rows = to_json_rows(&report::run(ctx, report, &params).await?);
        let value = if *key == "overview" {
            rows.into_iter().next().unwrap_or(Value::Object(Map::new()))
        } else {
            Value::Array(rows)
        };
        out.insert((*key).into(), value);
    }
    Ok(Value::Object(out))
}

/// Batches as JSON objects, one per row, cells as display strings or numbers.
pub fn to_json_rows(batches: &[RecordBatch]) -> Vec<Value> {
    let mut rows = Vec::new();
    for b in batches {
        let schema = b.schema();
        for r in 0..b.num_rows() {
            let mut obj = Map::new();
            for (c, field) in schema.fields().iter().enumerate() {
                let col = b.column(c);
                let value = if col.is_null(r) {
                    Value::Null
                } else {
                    let text = arrow::util::display::array_value_to_string(col, r)
                        .unwrap_or_default();
                    if col.data_type().is_numeric() {
                        serde_json::from_str(&text).unwrap_or(Value::String(text))
                    } else {
                        Value::String(text)
                    }
                };
                obj.insert(field.name().clone(), value);
            }
            rows.push(Value::Object(obj));
        }
    }
    rows
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.replace('|', "\\|").replace('\n', " "),
        other => other.to_string(),
    }
}

fn table(rows: &[Value], out: &mut String) {
    let Some(Value::Object(first)) = rows.first() else {
        out.push_str("_None._\n");
        return;
    };
    let keys: Vec<&String> = first.keys().collect();
    let _ = writeln!(
        out,
        "| {} |",
        keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(out, "|{}", "---|".repeat(keys.len()));
    for row in rows {
        let cells: Vec<String> = keys.iter().map(|k| cell(&row[k.as_str()])).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// The summary for people.
pub fn markdown(summary: &Value) -> String {
    let mut out = String::new();
    let org = summary["organisation"].as_str().unwrap_or_default();
    let date = summary["date"].as_str().unwrap_or_default();
    let _ = writeln!(out, "# Bounce summary: {org}, {date}\n");
    let o = &summary["overview"];
    if o.get("attempts").is_some() {
        let _ = writeln!(
            out,
            "{} delivery attempts: {} delivered, {} deferred, {} bounced, {} expired. \
             Bounce rate {}% ({} hard, {} soft failures).\n",
            cell(&o["attempts"]),
            cell(&o["delivered"]),
            cell(&o["deferred"]),
            cell(&o["bounced"]),
            cell(&o["expired"]),
            cell(&o["bounce_rate_pct"]),
            cell(&o["hard_failures"]),
            cell(&o["soft_failures"]),
        );
    }
    let sections = [
        ("Top categories", "top_categories"),
        ("Top reasons, and what to do", "top_reasons"),
        ("Receiving domains that failed most", "top_failing_domains"),
        ("Recipients to remove from mailing lists", "suppression_candidates"),
        ("Sending-limit breaches", "limit_breaches"),
    ];
    for (title, key) in sections {
        let _ = writeln!(out, "## {title}\n");
        table(summary[key].as_array().map(Vec::as_slice).unwrap_or(&[]), &mut out);
        out.push('\n');
    }
    out
}
