//! Operating the stream job: `/metrics` counters move while it ingests,
//! `/healthz` answers, and `/readyz` turns unready when the broker goes
//! away.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

/// A plain HTTP GET on 127.0.0.1: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body =
        text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// The value of an unlabelled counter in a Prometheus text page.
fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn metrics_move_during_an_ingest_and_readiness_follows_the_broker() {
    let mut broker = Broker::start();
    broker.create_topic("logs", 2);
    produce(&broker.bootstrap(), "logs", &canonical_events(2000, 1));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut job = spawn_job(
        &broker.bootstrap(),
        "logs",
        "ops",
        &data,
        &[
            ("BOUNCELENS_METRICS__LISTEN", listen.as_str()),
            ("BOUNCELENS_FLUSH__MAX_AGE_SECS", "1"),
        ],
        false,
    );
    let (status, body) = wait_for("/healthz", || get(port, "/healthz"));
    assert_eq!((status, body.trim()), (200, "ok"));
    wait_for("/readyz to be ready", || get(port, "/readyz").filter(|(s, _)| *s == 200));

    let first = wait_for("the first records", || {
        let (_, page) = get(port, "/metrics")?;
        let n = counter(&page, "bouncelens_records_consumed_total");
        (n >= 2000.0).then_some(page)
    });
    // More mail arrives: the counters move on.
    produce(&broker.bootstrap(), "logs", &canonical_events(1500, 2));
    let second = wait_for("the counters to move", || {
        let (_, page) = get(port, "/metrics")?;
        (counter(&page, "bouncelens_records_consumed_total") >= 3500.0).then_some(page)
    });
    assert!(
        counter(&second, "bouncelens_records_consumed_total")
            > counter(&first, "bouncelens_records_consumed_total")
    );
    let written = wait_for("the rows to be written", || {
        let (_, page) = get(port, "/metrics")?;
        let n = counter(&page, "bouncelens_records_written_total");
        (n >= 3500.0).then_some(n)
    });
    assert_eq!(written, 3500.0);
    for name in [
        "bouncelens_bounces_total{category=\"recipient_unknown\"}",
        "bouncelens_files_written_total",
        "bouncelens_flush_duration_seconds",
        "bouncelens_last_commit_timestamp_seconds",
        "# HELP bouncelens_records_consumed_total",
    ] {
        assert!(
            second.contains(name) || get(port, "/metrics").unwrap().1.contains(name),
            "{name} missing"
        );
    }

    // The broker goes away: the job stays alive but is no longer ready.
    broker.kill();
    let (status, body) = wait_for("/readyz to turn unready", || {
        get(port, "/readyz").filter(|(s, _)| *s == 503)
    });
    assert_eq!(status, 503);
    assert!(body.contains("Kafka"), "{body}");
    assert_eq!(get(port, "/healthz").map(|(s, _)| s), Some(200));
    job.kill().unwrap();
    job.wait().unwrap();
}
