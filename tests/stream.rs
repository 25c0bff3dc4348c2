//! The stream job against a real Kafka-protocol broker (tansu on
//! 127.0.0.1): every record in the Parquet output exactly once, through
//! kill -9 at random moments, a consumer joining mid-stream, and broken
//! messages of every kind.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(180);

fn wait_ok(mut child: std::process::Child, what: &str, data: &std::path::Path) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "{what} exited with {status}:\n{}",
                job_output(data)
            );
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn broken_messages() -> Vec<(Option<String>, Vec<u8>, &'static str)> {
    vec![
        (None, b"{\"timestamp\": \"2026-11-01T00:00:00Z\", \"recipient\"".to_vec(), "invalid_json"),
        (None, vec![0xff, 0xfe, b'{', 0x80, b'}'], "invalid_utf8"),
        (None, br#"{"org_id":"acme","recipient":"a@b.example","outcome":"bounced"}"#.to_vec(), "missing_field"),
        (None, br#"{"timestamp":"soon","org_id":"acme","recipient":"a@b.example","outcome":"bounced"}"#.to_vec(), "bad_field"),
        (None, b"just some words that are no log format at all".to_vec(), "unknown_format"),
        (None, b"Dec 15 07:46 phoenix postfix/smtp[1]: truncated".to_vec(), "unparsable_postfix"),
        (None, vec![b'x'; 3 * 1024 * 1024], "too_large"),
    ]
}

#[test]
fn every_record_reaches_parquet_exactly_once() {
    let broker = Broker::start();
    broker.create_topic("logs", 3);
    broker.create_topic("dead-letters", 1);
    let postfix = postfix_lines();
    let canonical = canonical_events(3000, 7);
    let broken = broken_messages();
    let mut all = postfix.clone();
    all.extend(canonical.iter().cloned());
    all.extend(broken.iter().map(|(k, p, _)| (k.clone(), p.clone())));
    produce(&broker.bootstrap(), "logs", &all);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let job = spawn_job(
        &broker.bootstrap(),
        "logs",
        "g1",
        &data,
        &[
            ("BOUNCELENS_DEAD_LETTER__TOPIC", "dead-letters"),
            ("BOUNCELENS_KAFKA__LIBRDKAFKA__fetch.message.max.bytes", "60000000"),
            ("BOUNCELENS_KAFKA__LIBRDKAFKA__receive.message.max.bytes", "120000000"),
        ],
        true,
    );
    wait_ok(job, "bouncelens run --until-drained", &data);

    // The real log gives what grep gives: 2447 sent, 120 deferred, 271 bounced, 117 expired.
    let postfix_counts = rows(
        &data,
        "SELECT outcome, count(*) FROM deliveries WHERE source_format = 'postfix' GROUP BY outcome ORDER BY outcome",
    );
    assert_eq!(
        postfix_counts,
        ["bounced|271", "deferred|120", "delivered|2447", "expired|117"]
    );
    let total = scalar(&data, "SELECT count(*) FROM deliveries");
    assert_eq!(total, 2955 + 3000);
    assert_eq!(scalar(&data, "SELECT count(DISTINCT event_id) FROM deliveries"), total);
    assert_eq!(
        scalar(
            &data,
            "SELECT count(*) FROM (SELECT DISTINCT source_partition, source_offset FROM deliveries WHERE source_format = 'canonical')"
        ),
        3000
    );
    // Dead letters: one row each, with the reason and the raw bytes.
    let reasons = rows(
        &data,
        "SELECT reason, count(*) FROM rejected GROUP BY reason ORDER BY reason",
    );
    let mut want: Vec<String> = broken.iter().map(|(_, _, r)| format!("{r}|1")).collect();
    want.sort();
    assert_eq!(reasons, want);
    assert_eq!(
        scalar(&data, "SELECT sum(raw_size) FROM rejected WHERE reason = 'too_large'"),
        3 * 1024 * 1024
    );
    let raw = rows(
        &data,
        "SELECT arrow_cast(raw, 'Utf8') FROM rejected WHERE reason = 'unknown_format'",
    );
    assert_eq!(raw, ["just some words that are no log format at all"]);
    // Organisations of the canonical events are case-folded into one partition each.
    let orgs = rows(
        &data,
        "SELECT DISTINCT org FROM deliveries WHERE source_format = 'canonical' ORDER BY org",
    );
    assert_eq!(orgs, ["acme", "globex.example", "initech"]);
    // Counts reconcile: consumed = written + dead-lettered + skipped.
    let checkpoints = std::fs::read_dir(data.join("_bouncelens/checkpoints")).unwrap();
    let (mut consumed, mut written, mut dead, mut skipped) = (0, 0, 0, 0);
    for entry in checkpoints {
        let c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap())
                .unwrap();
        let t = &c["totals"];
        consumed += t["consumed"].as_u64().unwrap();
        written += t["written"].as_u64().unwrap();
        dead += t["dead_lettered"].as_u64().unwrap();
        skipped += t["skipped"].as_u64().unwrap();
    }
    assert_eq!(consumed as usize, all.len());
    assert_eq!(consumed, written + dead + skipped);
    assert_eq!(dead as usize, broken.len());

    // A second run of the same group finds nothing new and writes nothing.
    let files_before = count_files(&data);
    wait_ok(
        spawn_job(&broker.bootstrap(), "logs", "g1", &data, &[], true),
        "second run",
        &data,
    );
    assert_eq!(count_files(&data), files_before);
    assert_eq!(scalar(&data, "SELECT count(*) FROM deliveries"), total);
}

fn count_files(dir: &std::path::Path) -> usize {
    walk(dir).iter().filter(|p| p.extension().is_some_and(|x| x == "parquet")).count()
}

/// A tiny deterministic generator for kill times; the seed is printed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 =
            self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn kill_nine_at_random_moments_loses_and_doubles_nothing() {
    let broker = Broker::start();
    broker.create_topic("logs", 3);
    let mut all = postfix_lines();
    all.extend(canonical_events(20_000, 11));
    produce(&broker.bootstrap(), "logs", &all);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let small_flushes =
        [("BOUNCELENS_FLUSH__MAX_ROWS", "250"), ("BOUNCELENS_FLUSH__MAX_AGE_SECS", "1")];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill schedule seed: {seed}");
    let mut rng = Lcg(seed);
    let mut kills = 0;
    for round in 0..6 {
        let mut job =
            spawn_job(&broker.bootstrap(), "logs", "crash", &data, &small_flushes, true);
        let after = Duration::from_millis(300 + rng.next(3000));
        std::thread::sleep(after);
        if job.try_wait().unwrap().is_none() {
            // SIGKILL: no flush, no commit, no clean-up.
            let _ = Command::new("kill").args(["-9", &job.id().to_string()]).status();
            kills += 1;
        }
        let _ = job.wait();
        println!("round {round}: killed after {after:?}");
    }
    // The killed members stay in the group until their session times out
    // (10 s); a drained run waits for every partition, theirs included.
    std::thread::sleep(Duration::from_secs(12));
    wait_ok(
        spawn_job(&broker.bootstrap(), "logs", "crash", &data, &small_flushes, true),
        "final run",
        &data,
    );
    assert!(kills > 0, "the job was never killed mid-run; the test proved nothing");
    let total = scalar(&data, "SELECT count(*) FROM deliveries");
    assert_eq!(total, 2955 + 20_000, "records lost or doubled");
    assert_eq!(scalar(&data, "SELECT count(DISTINCT event_id) FROM deliveries"), total);
    // The Postfix join state survived the crashes: every delivery of the
    // real log gets the same organisation an uninterrupted ingest gives.
    let reference = tempfile::tempdir().unwrap();
    let status = Command::new(binary())
        .args(["ingest", "examples/postfix-mail.log", "--data"])
        .arg(reference.path())
        .current_dir(repo())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let by_org = "SELECT org_id, outcome, count(*) FROM deliveries WHERE source_format = 'postfix' GROUP BY 1, 2 ORDER BY 1, 2";
    assert_eq!(rows(&data, by_org), rows(reference.path(), by_org));
    // Nothing half-done is left behind.
    assert_eq!(std::fs::read_dir(data.join("_bouncelens/txn")).unwrap().count(), 0);
}

#[test]
fn a_second_consumer_joining_mid_stream_doubles_nothing() {
    let broker = Broker::start();
    broker.create_topic("logs", 4);
    let first_half = canonical_events(8000, 3);
    produce(&broker.bootstrap(), "logs", &first_half);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg =
        [("BOUNCELENS_FLUSH__MAX_ROWS", "500"), ("BOUNCELENS_FLUSH__MAX_AGE_SECS", "1")];
    let mut a = spawn_job(&broker.bootstrap(), "logs", "rebalance", &data, &cfg, false);
    // Wait until the first member has written something.
    let deadline = Instant::now() + WAIT;
    while !data.join("deliveries").is_dir()
        || scalar(&data, "SELECT count(*) FROM deliveries") == 0
    {
        assert!(
            Instant::now() < deadline,
            "the first member wrote nothing:\n{}",
            job_output(&data)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The second member joins while the first is consuming; more arrives.
    let mut b = spawn_job(&broker.bootstrap(), "logs", "rebalance", &data, &cfg, false);
    let second_half: Vec<_> = canonical_events(8000, 99)
        .into_iter()
        .map(|(k, p)| {
            (
                k,
                String::from_utf8(p)
                    .unwrap()
                    .replace("\"recipient\":\"r", "\"recipient\":\"second-r")
                    .into_bytes(),
            )
        })
        .collect();
    produce(&broker.bootstrap(), "logs", &second_half);
    let deadline = Instant::now() + WAIT;
    loop {
        let n = scalar(&data, "SELECT count(*) FROM deliveries");
        if n >= 16_000 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // SIGTERM: both flush and commit on the way out.
    for job in [&a, &b] {
        let _ = Command::new("kill").args(["-TERM", &job.id().to_string()]).status();
    }
    assert!(a.wait().unwrap().success(), "{}", job_output(&data));
    assert!(b.wait().unwrap().success(), "{}", job_output(&data));
    let total = scalar(&data, "SELECT count(*) FROM deliveries");
    assert_eq!(total, 16_000, "{}", job_output(&data));
    assert_eq!(scalar(&data, "SELECT count(DISTINCT event_id) FROM deliveries"), total);
    assert_eq!(scalar(&data, "SELECT count(*) FROM rejected"), 0);
    // Both members wrote: the second really took partitions over.
    let sources =
        std::fs::read_dir(data.join("_bouncelens/checkpoints")).unwrap().count();
    assert_eq!(sources, 4);
}
