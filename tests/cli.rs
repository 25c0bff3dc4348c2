//! The command line as a user drives it: `classify` line by line with bad
//! lines among good ones, taxonomy overrides, and `ingest` of broken,
//! hostile and compressed input.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

fn run_with_stdin(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn classify_answers_every_line_and_flags_bad_ones() {
    let mut input = Vec::new();
    input.extend_from_slice(b"550 5.1.1 <a@example.com>: Recipient address rejected: User unknown in local recipient table\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice("552 邮箱空间已满\n".as_bytes());
    input.extend_from_slice(b"{\"reply\": \"554 SDN13 overseas\", \"smtp_code\": 554}\n");
    input.extend_from_slice(b"{\"reply\": \n");
    input.extend_from_slice(&[0xff, 0xfe, b'\n']);
    input.extend_from_slice(b"{\"outcome\": \"bounced\"}\n");
    input.extend_from_slice(b"{\"reply\": 123}\n");
    let (code, out, err) = run_with_stdin(&["classify"], &input);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert_eq!(lines[0]["category"], "recipient_unknown");
    assert_eq!(lines[0]["rule"], "phrase");
    assert_eq!(lines[0]["matched"], "User unknown in local recipient table");
    assert!(lines[0]["advice_zh"].as_str().unwrap().chars().any(|c| c > '\u{3000}'));
    assert_eq!(lines[1]["category"], "mailbox_full");
    assert_eq!(lines[2]["category"], "spam_channel");
    for (i, want) in [
        (3, "does not parse"),
        (4, "not UTF-8"),
        (5, "none of"),
        (6, "has `reply` but not as expected"),
    ] {
        assert!(lines[i]["error"].as_str().unwrap().contains(want), "{}", lines[i]);
    }
    assert!(err.contains("4 lines could not be read"), "{err}");
}

#[test]
fn a_broken_taxonomy_override_is_refused_with_its_problems() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    std::fs::write(
        &file,
        "[[reason]]\nid = \"x\"\ncategory = \"nope\"\nseverity = \"hard\"\nlabel_en = \"a\"\nlabel_zh = \"a\"\nadvice_en = \"a\"\nadvice_zh = \"a\"\nphrases = [\"user unknown\"]\n",
    )
    .unwrap();
    let (code, _, err) =
        run_with_stdin(&["taxonomy", "--taxonomy", file.to_str().unwrap()], b"");
    assert_ne!(code, 0);
    assert!(err.contains("unknown category `nope`"), "{err}");
    assert!(err.contains("listed twice"), "{err}");
    // A good override shows up in the listing.
    std::fs::write(
        &file,
        "[[reason]]\nid = \"gateway_quarantine\"\ncategory = \"rejected_by_recipient\"\nseverity = \"hard\"\nlabel_en = \"Quarantined by the gateway\"\nlabel_zh = \"被网关隔离\"\nadvice_en = \"Ask the recipient to release it.\"\nadvice_zh = \"请收件人放行。\"\nphrases = [\"held in quarantine\"]\n",
    )
    .unwrap();
    let (code, out, err) =
        run_with_stdin(&["taxonomy", "--taxonomy", file.to_str().unwrap()], b"");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("gateway_quarantine"), "{out}");
    let (_, out, _) = run_with_stdin(
        &["classify", "--taxonomy", file.to_str().unwrap()],
        b"550 message held in quarantine\n",
    );
    assert!(out.contains("\"reason\":\"gateway_quarantine\""), "{out}");
}

#[test]
fn ingest_dead_letters_broken_lines_and_keeps_hostile_organisations_inside() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ev = |org: &str| {
        serde_json::json!({"timestamp": "2026-11-02T10:00:00Z", "org_id": org, "recipient": "a@b.example", "outcome": "bounced", "reply": "550 user unknown"}).to_string()
    };
    let long_org = "x".repeat(10_000);
    let mut input = String::new();
    for org in [
        "../x",
        "a/b",
        "",
        "nul\u{0}byte",
        long_org.as_str(),
        "MiXeD",
        "mixed",
        "..",
        "/etc",
    ] {
        input.push_str(&ev(org));
        input.push('\n');
    }
    input.push_str("{\"timestamp\": \"2026-11-02T10:00:00Z\", \"recipient\"\n");
    input.push_str(
        "{\"org_id\": \"a\", \"recipient\": \"a@b\", \"outcome\": \"bounced\"}\n",
    );
    input.push_str(&format!("{}\n", "y".repeat(50 * 1024 * 1024)));
    let mut bytes = input.into_bytes();
    bytes.extend_from_slice(&[0xc3, 0x28, b'\n']);
    let path = dir.path().join("in.ndjson");
    std::fs::write(&path, &bytes).unwrap();
    let (code, out, err) = run_with_stdin(
        &["ingest", path.to_str().unwrap(), "--data", data.to_str().unwrap()],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let totals: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(totals["consumed"], 13);
    assert_eq!(totals["written"], 9);
    assert_eq!(totals["dead_lettered"], 4);
    // Every file stays under the data root, one directory per organisation.
    let orgs = rows(&data, "SELECT DISTINCT org FROM deliveries ORDER BY org");
    assert_eq!(orgs.len(), 8, "{orgs:?}");
    assert!(orgs.contains(&"mixed".to_string()));
    for entry in walk(dir.path()) {
        assert!(entry.starts_with(dir.path()), "{entry:?}");
    }
    let outside: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| !p.starts_with(&data) && p != &path)
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
    assert_eq!(
        rows(
            &data,
            "SELECT reason, raw_size, raw_truncated FROM rejected ORDER BY source_offset"
        ),
        [
            "invalid_json|49|false".to_string(),
            "missing_field|57|false".to_string(),
            format!("too_large|{}|true", 50 * 1024 * 1024),
            "invalid_utf8|2|false".to_string(),
        ]
    );
    // Reports and summaries find these organisations and stay inside too.
    for org in ["../x", "a/b", "MIXED", "/etc"] {
        let (code, out, err) = run_with_stdin(
            &[
                "report",
                "overview",
                "--org",
                org,
                "--from",
                "2026-11-02",
                "--to",
                "2026-11-02",
                "--format",
                "csv",
                "--data",
                data.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().count(), 2, "report for {org:?}: {out}");
    }
    let (code, out, err) = run_with_stdin(
        &["summary", "--date", "2026-11-02", "--data", data.to_str().unwrap()],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 16, "{out}");
    let summaries = data.join("summaries/date=2026-11-02");
    for written in out.lines() {
        let p = std::path::Path::new(written);
        assert!(p.starts_with(&summaries) && p.exists(), "{written}");
        assert_eq!(
            p.strip_prefix(&summaries).unwrap().components().count(),
            2,
            "{written}"
        );
    }
    // Ingesting the same file again writes nothing twice.
    let (_, out, _) = run_with_stdin(
        &["ingest", path.to_str().unwrap(), "--data", data.to_str().unwrap()],
        b"",
    );
    let again: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(again["consumed"], 0);
    assert_eq!(scalar(&data, "SELECT count(*) FROM deliveries"), 9);
}

#[test]
fn ingest_reads_gzip_zstd_and_stdin_like_plain_files() {
    let log = std::fs::read(repo().join("examples/postfix-mail.log")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("mail.log.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&log).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let zst = dir.path().join("mail.log.zst");
    std::fs::write(&zst, zstd::encode_all(&log[..], 3).unwrap()).unwrap();
    for (name, args, stdin) in [
        ("gz", vec![gz.to_str().unwrap()], &b""[..]),
        ("zst", vec![zst.to_str().unwrap()], &b""[..]),
        ("stdin", vec!["-"], &log[..]),
    ] {
        let data = dir.path().join(name);
        let mut all = vec!["ingest"];
        all.extend(args);
        all.extend(["--syslog-year", "2014", "--data", data.to_str().unwrap()]);
        let (code, out, err) = run_with_stdin(&all, stdin);
        assert_eq!(code, 0, "{name}: {err}");
        let totals: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(totals["consumed"], 20_000, "{name}");
        assert_eq!(totals["rows"], 2955, "{name}");
        // The counts grep gives for the log: sent, deferred, bounced, expired.
        assert_eq!(
            rows(&data, "SELECT outcome, count(*) FROM deliveries GROUP BY 1 ORDER BY 1"),
            ["bounced|271", "deferred|120", "delivered|2447", "expired|117"],
            "{name}"
        );
    }
}

/// A file that grew is continued where it stopped; one that shrank was
/// replaced or truncated: nothing is written and the user is told why.
#[test]
fn ingest_continues_a_grown_file_and_warns_about_a_shrunk_one() {
    let events =
        std::fs::read_to_string(repo().join("tests/fixtures/events.ndjson")).unwrap();
    let lines: Vec<&str> = events.lines().collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let data = dir.path().join("data");
    let ingest = || {
        let (code, out, err) = run_with_stdin(
            &["ingest", file.to_str().unwrap(), "--data", data.to_str().unwrap()],
            b"",
        );
        assert_eq!(code, 0, "{err}");
        let totals: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        (totals["consumed"].as_u64().unwrap(), err)
    };
    std::fs::write(&file, lines[..5].join("\n") + "\n").unwrap();
    assert_eq!(ingest().0, 5);
    std::fs::write(&file, lines[..8].join("\n") + "\n").unwrap();
    let (consumed, err) = ingest();
    assert_eq!(consumed, 3, "only the new lines");
    assert!(!err.contains("replaced or truncated"), "{err}");
    std::fs::write(&file, lines[..2].join("\n") + "\n").unwrap();
    let (consumed, err) = ingest();
    assert_eq!(consumed, 0);
    assert!(err.contains("replaced or truncated"), "{err}");
    assert_eq!(scalar(&data, "SELECT count(*) FROM deliveries"), 8);
}

#[test]
fn ingest_that_cannot_write_stops_with_the_path_and_loses_nothing() {
    let file = repo().join("tests/fixtures/events.ndjson");
    let lines = std::fs::read_to_string(&file).unwrap().lines().count() as i64;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A file where the table's directory belongs: every flush fails.
    let blocker = data.join("deliveries");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let ingest = || {
        let out = Command::new(binary())
            .args(["ingest", file.to_str().unwrap(), "--data", data.to_str().unwrap()])
            .env("BOUNCELENS_FLUSH__MAX_ROWS", "100")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = ingest();
    assert_ne!(code, 0, "a flush that cannot be written is an error");
    assert!(err.contains("deliveries"), "the error names the path: {err}");
    assert!(err.contains("a file stands where"), "and says what is wrong: {err}");
    std::fs::remove_file(&blocker).unwrap();
    let (code, err) = ingest();
    assert_eq!(code, 0, "{err}");
    assert_eq!(scalar(&data, "SELECT count(*) FROM deliveries"), lines);
}

#[test]
fn a_dataset_of_dead_letters_only_can_be_queried() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hello.txt");
    std::fs::write(&input, b"hello world\n").unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (code, _, err) =
        run_with_stdin(&["ingest", input.to_str().unwrap(), "--data", data], b"");
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_with_stdin(
        &[
            "sql",
            "--data",
            data,
            "SELECT (SELECT count(*) FROM rejected) AS bad, (SELECT count(*) FROM deliveries) AS good",
        ],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let last = out
        .lines()
        .rev()
        .find(|l| l.contains('|') && l.chars().any(|c| c.is_ascii_digit()));
    let cells: Vec<&str> =
        last.expect(&out).split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(cells, ["1", "0"], "{out}");
    let empty = dir.path().join("empty");
    let (code, _, err) =
        run_with_stdin(&["sql", "--data", empty.to_str().unwrap(), "SELECT 1"], b"");
    assert_eq!(code, 2);
    assert!(err.contains("there is no dataset"), "{err}");
}

#[test]
fn generate_refuses_what_it_cannot_make_and_compresses_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["--orgs", "0"][..], "1..=100000"),
        (&["--days", "100000000"][..], "1..=3660"),
        (&["--start", "9999-12-31", "--days", "5"][..], "1970 to 2199"),
        (&["--topic", "t", "--out", "x"][..], "cannot be used with"),
    ] {
        let (code, _, err) =
            run_with_stdin(&[&["generate", "--events", "10"], args].concat(), b"");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    for name in ["e.ndjson", "e.ndjson.gz", "e.ndjson.zst"] {
        let (code, _, err) =
            run_with_stdin(&["generate", "--events", "500", "--out", &path(name)], b"");
        assert_eq!(code, 0, "{err}");
    }
    let plain = std::fs::read(path("e.ndjson")).unwrap();
    let mut gz = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(
            std::fs::File::open(path("e.ndjson.gz")).unwrap(),
        ),
        &mut gz,
    )
    .unwrap();
    let zst =
        zstd::decode_all(std::fs::File::open(path("e.ndjson.zst")).unwrap()).unwrap();
    assert_eq!(plain.iter().filter(|b| **b == b'\n').count(), 500);
    assert!(gz == plain && zst == plain, "compressed output differs from the plain one");
}

#[test]
fn a_report_exported_to_a_file_is_not_cut_at_the_screen_limit() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("e.ndjson");
    let data = dir.path().join("data");
    let (data, events) = (data.to_str().unwrap(), events.to_str().unwrap());
    let generate =
        ["generate", "--events", "20000", "--orgs", "1", "--days", "1", "--out", events];
    assert_eq!(run_with_stdin(&generate, b"").0, 0);
    assert_eq!(run_with_stdin(&["ingest", events, "--data", data], b"").0, 0);
    let org = rows(std::path::Path::new(data), "SELECT DISTINCT org FROM deliveries");
    assert_eq!(org.len(), 1, "{org:?}");
    let report = |more: &[&str]| {
        let base = ["report", "suppression", "--org", &org[0], "--from", "2026-11-01"];
        let to = ["--to", "2026-11-01", "--data", data];
        run_with_stdin(&[&base[..], &to, more].concat(), b"")
    };
    let file = dir.path().join("remove.csv");
    let (code, _, err) = report(&["--format", "csv", "--out", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let exported = std::fs::read_to_string(&file).unwrap().lines().count() - 1;
    assert!(exported > 100, "only {exported} addresses exported");
    let (code, _, err) = report(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the first 100 rows; --limit N for more"), "{err}");
    let (_, out, _) = report(&["--format", "csv", "--limit", "7"]);
    assert_eq!(out.lines().count(), 8, "{out}");
}

#[test]
fn ingest_says_what_to_do_with_a_missing_a_damaged_or_an_already_read_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let missing = dir.path().join("no-such.ndjson");
    let (code, _, err) =
        run_with_stdin(&["ingest", missing.to_str().unwrap(), "--data", data_arg], b"");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no-such.ndjson") && err.contains("check the path"), "{err}");
    assert!(!data.exists(), "a missing input created {}", data.display());

    let events = dir.path().join("e.ndjson");
    let events_arg = events.to_str().unwrap();
    let generate = ["generate", "--events", "3000", "--out", events_arg];
    assert_eq!(run_with_stdin(&generate, b"").0, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(&events).unwrap()).unwrap();
    let gz = gz.finish().unwrap();
    let damaged = dir.path().join("e.ndjson.gz");
    std::fs::write(&damaged, &gz[..gz.len() / 2]).unwrap();
    let (code, _, err) =
        run_with_stdin(&["ingest", damaged.to_str().unwrap(), "--data", data_arg], b"");
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("Put a complete copy at the same path and ingest again"),
        "{err}"
    );
    std::fs::write(&damaged, &gz).unwrap();
    let (code, _, err) =
        run_with_stdin(&["ingest", damaged.to_str().unwrap(), "--data", data_arg], b"");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("data written under"), "{err}");
    assert_eq!(scalar(&data, "SELECT count(*) FROM deliveries"), 3000);
    let (code, _, err) =
        run_with_stdin(&["ingest", damaged.to_str().unwrap(), "--data", data_arg], b"");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing new to write"), "{err}");
    assert_eq!(scalar(&data, "SELECT count(*) FROM deliveries"), 3000);
}
