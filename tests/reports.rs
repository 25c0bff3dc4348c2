//! Reports, SQL and daily summaries over a fixture dataset built from the
//! real Postfix log and `tests/fixtures/events.ndjson`. Each report's
//! output is compared exactly with `tests/expected/<case>.csv`; run with
//! `BOUNCELENS_BLESS=1` to rewrite those files after an intended change.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bouncelens::formats::DecodeSettings;
use bouncelens::ingest::ingest_input;
use bouncelens::pipeline::FlushPolicy;
use bouncelens::report::{self, Lang, Params};
use bouncelens::sink::{Committer, Layout};
use bouncelens::taxonomy::{Classifier, Taxonomy};
use chrono::NaiveDate;
use datafusion::physical_plan::displayable;
use datafusion::prelude::SessionContext;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fixture dataset, built once per test binary.
fn fixture() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let committer = Committer::new(Layout::new(dir.path()), chrono_tz::UTC);
        let classifier = Classifier::builtin();
        let settings =
            DecodeSettings { syslog_year: Some(2014), ..DecodeSettings::default() };
        for input in ["examples/postfix-mail.log", "tests/fixtures/events.ndjson"] {
            let path = repo().join(input);
            ingest_input(
                path.to_str().unwrap(),
                &committer,
                &classifier,
                &settings,
                &FlushPolicy::default(),
                1024,
            )
            .unwrap();
        }
        dir
    })
    .path()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn session(data: &Path) -> SessionContext {
    let ctx = bouncelens::query::session(&Layout::new(data)).await.unwrap();
    report::register_taxonomy(&ctx, &Taxonomy::builtin()).unwrap();
    ctx
}

fn csv(batches: &[arrow::array::RecordBatch]) -> String {
    let mut out = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
        for b in batches {
            w.write(b).unwrap();
        }
    }
    String::from_utf8(out).unwrap()
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// (case, report, org, from, to, lang)
const CASES: &[(&str, &str, &str, &str, &str, Lang)] = &[
    (
        "postfix_overview",
        "overview",
        "dmnesisparty.co.uk",
        "2014-12-15",
        "2014-12-16",
        Lang::En,
    ),
    (
        "postfix_categories",
        "categories",
        "dmnesisparty.co.uk",
        "2014-12-15",
        "2014-12-16",
        Lang::En,
    ),
    (
        "postfix_reasons_zh",
        "reasons",
        "dmnesisparty.co.uk",
        "2014-12-15",
        "2014-12-16",
        Lang::Zh,
    ),
    (
        "postfix_domains",
        "domains",
        "dmnesisparty.co.uk",
        "2014-12-15",
        "2014-12-16",
        Lang::En,
    ),
    (
        "postfix_trend",
        "trend",
        "dmnesisparty.co.uk",
        "2014-12-16",
        "2014-12-16",
        Lang::En,
    ),
    ("events_overview", "overview", "Example.COM", "2026-11-02", "2026-11-03", Lang::En),
    (
        "events_categories",
        "categories",
        "example.com",
        "2026-11-02",
        "2026-11-03",
        Lang::En,
    ),
    ("events_reasons", "reasons", "example.com", "2026-11-02", "2026-11-03", Lang::En),
    ("events_domains", "domains", "example.com", "2026-11-02", "2026-11-03", Lang::En),
    ("events_senders", "senders", "example.com", "2026-11-02", "2026-11-03", Lang::En),
    (
        "events_spam_channel",
        "spam_channel",
        "example.com",
        "2026-11-02",
        "2026-11-03",
        Lang::En,
    ),
    (
        "events_blacklist",
        "blacklist",
        "example.com",
        "2026-11-02",
        "2026-11-03",
        Lang::En,
    ),
    ("events_virus", "virus", "example.com", "2026-11-02", "2026-11-03", Lang::En),
    (
        "events_suppression",
        "suppression",
        "example.com",
        "2026-11-02",
        "2026-11-03",
        Lang::En,
    ),
    ("events_limits", "limits", "example.com", "2026-11-02", "2026-11-03", Lang::En),
    ("events_trend", "trend", "example.com", "2026-11-03", "2026-11-03", Lang::En),
];

#[test]
fn every_report_matches_its_expected_output() {
    let data = fixture();
    let bless = std::env::var_os("BOUNCELENS_BLESS").is_some();
    let reports = report::load_reports(None).unwrap();
    let covered: std::collections::BTreeSet<&str> = CASES.iter().map(|c| c.1).collect();
    for r in &reports {
        assert!(
            covered.contains(r.name.as_str()),
            "report {} has no expected-output case",
            r.name
        );
    }
    let rt = runtime();
    let mut mismatches = Vec::new();
    for (case, name, org, from, to, lang) in CASES {
        let params = Params {
            org: org.to_string(),
            from: day(from),
            to: day(to),
            limit: 50,
            lang: *lang,
        };
        let got = rt.block_on(async {
            let ctx = session(data).await;
            csv(&report::run(&ctx, report::find(&reports, name).unwrap(), &params)
                .await
                .unwrap())
        });
        let path = repo().join("tests/expected").join(format!("{case}.csv"));
        if bless {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!("{} is missing; run with BOUNCELENS_BLESS=1", path.display())
        });
        if got != want {
            mismatches.push(format!("== {case}\n-- want\n{want}-- got\n{got}"));
        }
        assert!(
            got.lines().count() > 1,
            "case {case} returned no rows; it tests nothing"
        );
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn a_one_organisation_one_day_report_reads_only_that_partition() {
    let data = fixture();
    let reports = report::load_reports(None).unwrap();
    let params = Params {
        org: "example.com".into(),
        from: day("2026-11-02"),
        to: day("2026-11-02"),
        limit: 10,
        lang: Lang::En,
    };
    let sql =
        report::render(report::find(&reports, "overview").unwrap(), &params).unwrap();
    let plan = runtime().block_on(async {
        let ctx = session(data).await;
        let df = bouncelens::query::plan(&ctx, &sql).await.unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        displayable(plan.as_ref()).indent(true).to_string()
    });
    assert!(plan.contains("date=2026-11-02/org=example.com/"), "{plan}");
    for other in
        ["date=2026-11-03", "org=other.example", "date=2014-12-15", "org=dmnesisparty"]
    {
        assert!(!plan.contains(other), "the plan reads {other}:\n{plan}");
    }
}

#[test]
fn sql_is_read_only() {
    let data = fixture();
    let rt = runtime();
    for statement in [
        "COPY (SELECT 1) TO '/tmp/bouncelens-escape.csv'",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/'",
        "INSERT INTO deliveries SELECT * FROM deliveries",
        "DROP TABLE deliveries",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let err = rt.block_on(async {
            let ctx = session(data).await;
            bouncelens::query::collect(&ctx, statement).await.unwrap_err().to_string()
        });
        assert!(err.contains("read-only"), "{statement}: {err}");
    }
    assert!(!Path::new("/tmp/bouncelens-escape.csv").exists());
    let n = rt.block_on(async {
        let ctx = session(data).await;
        bouncelens::query::collect(&ctx, "SELECT count(*) FROM deliveries").await.unwrap()
            [0]
        .num_rows()
    });
    assert_eq!(n, 1);
}

#[test]
fn summaries_are_written_per_active_organisation_and_repeat_identically() {
    let data = fixture();
    let out = tempfile::tempdir().unwrap();
    // The summaries go under a copy's root so the fixture stays read-only.
    let layout = Layout::new(out.path());
    let reports = report::load_reports(None).unwrap();
    let rt = runtime();
    let write = || {
        rt.block_on(async {
            let ctx = session(data).await;
            bouncelens::summary::write_summaries(
                &ctx,
                &layout,
                &reports,
                day("2026-11-02"),
                None,
            )
            .await
            .unwrap()
        })
    };
    let first = write();
    let names: Vec<String> = first
        .iter()
        .map(|p| p.strip_prefix(out.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "summaries/date=2026-11-02/org=example.com/summary.json",
            "summaries/date=2026-11-02/org=example.com/summary.md",
            "summaries/date=2026-11-02/org=other.example/summary.json",
            "summaries/date=2026-11-02/org=other.example/summary.md",
        ]
    );
    let bytes: Vec<Vec<u8>> = first.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let second = write();
    let again: Vec<Vec<u8>> = second.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(bytes, again, "a second run must give the same files");
    let json: serde_json::Value = serde_json::from_slice(&bytes[0]).unwrap();
    assert_eq!(json["overview"]["attempts"], 1170);
    assert!(
        json["limit_breaches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["kind"] == "user_daily_messages")
    );
    let md = String::from_utf8(bytes[1].clone()).unwrap();
    assert!(md.starts_with("# Bounce summary: Example.COM, 2026-11-02"), "{md}");
    assert!(md.contains("## Recipients to remove from mailing lists"));
}

/// The 15-minute limit counts every message from 15 minutes before a
/// message up to and including it: the message exactly 15 minutes earlier
/// is in, one a millisecond further back is out, and messages sent at the
/// same instant all count.
#[test]
fn the_sliding_window_includes_its_edge_and_same_instant_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    let mut message = 0;
    let mut send = |lines: &mut String, sender: &str, at: &str| {
        message += 1;
        lines.push_str(&format!(
            r#"{{"timestamp": "2026-11-05T{at}Z", "org_id": "w.example", "sender": "{sender}@w.example", "recipient": "r{message}@x.example", "outcome": "delivered", "message_id": "<m{message}@w.example>", "attempt": 1, "nrcpt": 1}}"#
        ));
        lines.push('\n');
    };
    // 501 messages within [10:00, 10:15], the last exactly 15 minutes
    // after the first; the same shape a millisecond wider; 501 at once.
    for (sender, last) in [("edge", "10:15:00.000"), ("wider", "10:15:00.001")] {
        send(&mut lines, sender, "10:00:00.000");
        for _ in 0..499 {
            send(&mut lines, sender, "10:05:00.000");
        }
        send(&mut lines, sender, last);
    }
    for _ in 0..501 {
        send(&mut lines, "burst", "11:00:00.000");
    }
    let input = dir.path().join("events.ndjson");
    std::fs::write(&input, lines).unwrap();
    let data = dir.path().join("data");
    let committer = Committer::new(Layout::new(&data), chrono_tz::UTC);
    ingest_input(
        input.to_str().unwrap(),
        &committer,
        &Classifier::builtin(),
        &DecodeSettings::default(),
        &FlushPolicy::default(),
        1024,
    )
    .unwrap();
    let reports = report::load_reports(None).unwrap();
    let params = Params {
        org: "w.example".into(),
        from: day("2026-11-05"),
        to: day("2026-11-05"),
        limit: 50,
        lang: Lang::En,
    };
    let got = runtime().block_on(async {
        let ctx = session(&data).await;
        csv(&report::run(&ctx, report::find(&reports, "limits").unwrap(), &params)
            .await
            .unwrap())
    });
    assert_eq!(
        got,
        "kind,subject,date,value,limit_value\n\
         user_15_minute_messages,burst@w.example,2026-11-05,501,500\n\
         user_15_minute_messages,edge@w.example,2026-11-05,501,500\n"
    );
}
