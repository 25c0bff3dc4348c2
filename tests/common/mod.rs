//! Shared by the integration tests: a real Kafka-protocol broker (tansu)
//! on 127.0.0.1, a producer, the `bouncelens` binary, and reading the
//! output back with DataFusion.
//!
//! The broker binary comes from `TANSU_BIN`; `scripts/test.sh` installs it
//! and sets it. Each test starts its own broker on a free port with
//! in-memory storage, so tests do not share state.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// A tansu broker, killed on drop.
pub struct Broker {
    child: Child,
    pub port: u16,
    bin: PathBuf,
}

impl Broker {
    pub fn start() -> Broker {
        let bin = PathBuf::from(std::env::var("TANSU_BIN").expect(
            "TANSU_BIN must name a tansu broker binary; run the tests with scripts/test.sh, which installs one",
        ));
        assert!(
            bin.exists(),
            "TANSU_BIN={} does not exist; run scripts/test.sh",
            bin.display()
        );
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, port, bin }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
            ])
            .args(["--partitions", &partitions.to_string(), name])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create runs");
        assert!(status.success(), "creating topic {name} failed");
    }

    /// Stops the broker abruptly, as a crashed broker would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Produces `(key, payload)` messages and waits until all are acknowledged.
pub fn produce(brokers: &str, topic: &str, messages: &[(Option<String>, Vec<u8>)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", "60000000")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (key, payload) in messages {
        let mut record = BaseRecord::<String, Vec<u8>>::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "produce failed: {e}"
                    );
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("all messages acknowledged");
}

/// The lines of the bundled real Postfix log, keyed by host like a shipper would.
pub fn postfix_lines() -> Vec<(Option<String>, Vec<u8>)> {
    let text = std::fs::read_to_string(repo().join("examples/postfix-mail.log")).unwrap();
    text.lines().map(|l| (Some("phoenix".to_string()), l.as_bytes().to_vec())).collect()
}

/// `n` canonical events over a few organisations, days and outcomes.
pub fn canonical_events(n: usize, seed: u64) -> Vec<(Option<String>, Vec<u8>)> {
    let outcomes = [
        ("delivered", Some(250), "250 2.0.0 OK"),
        (
            "bounced",
            Some(550),
            "550 5.1.1 <x@example.net>: Recipient address rejected: User unknown in local recipient table",
        ),
        ("deferred", Some(452), "452 4.2.2 Mailbox full"),
        (
            "bounced",
            Some(554),
            "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org",
        ),
        ("bounced", Some(550), "550 SDN3 message held in the domestic spam channel"),
    ];
    (0..n)
        .map(|i| {
            let k = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(seed) >> 33;
            let (outcome, code, reply) = outcomes[(k % 5) as usize];
            let org = ["Acme", "globex.example", "initech"][(k % 3) as usize];
            let day = 1 + (k % 3);
            let json = serde_json::json!({
                "timestamp": format!("2026-11-0{day}T{:02}:{:02}:00Z", k % 24, k % 60),
                "org_id": org,
                "sender": format!("user{}@{}.example", k % 7, org.to_lowercase()),
                "recipient": format!("r{i}@receiver{}.example", k % 11),
                "outcome": outcome,
                "smtp_code": code,
                "reply": reply,
                "message_id": format!("<m{i}@example>"),
                "campaign": format!("c{}", k % 4),
            });
            (Some(format!("k{}", k % 17)), json.to_string().into_bytes())
        })
        .collect()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bouncelens"))
}

/// A `bouncelens run` child process configured through the environment.
pub fn spawn_job(
    brokers: &str,
    topic: &str,
    group: &str,
    data: &Path,
    extra: &[(&str, &str)],
    drained: bool,
) -> Child {
    let mut cmd = Command::new(binary());
    cmd.arg("run").arg("--data").arg(data);
    if drained {
        cmd.arg("--until-drained");
    }
    cmd.env("BOUNCELENS_KAFKA__BROKERS", brokers)
        .env("BOUNCELENS_KAFKA__TOPICS", format!("[\"{topic}\"]"))
        .env("BOUNCELENS_KAFKA__GROUP_ID", group)
        .env("BOUNCELENS_METRICS__LISTEN", "")
        .env("BOUNCELENS_SUMMARY__ENABLED", "false")
        .env("BOUNCELENS_LOG__LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(job_log(data));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("bouncelens run starts")
}

/// Appends a job's stderr to `<data>.log`, shown by tests that fail.
fn job_log(data: &Path) -> Stdio {
    let path = data.with_extension("log");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// The stderr of the jobs run over `data`.
pub fn job_output(data: &Path) -> String {
    std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
}

/// Runs SQL over a data root and returns the batches.
pub fn sql(data: &Path, query: &str) -> Vec<RecordBatch> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ctx = bouncelens::query::session(&bouncelens::sink::Layout::new(data))
            .await
            .unwrap();
        bouncelens::query::collect(&ctx, query).await.unwrap()
    })
}

/// A single integer from a query such as `SELECT count(*) ...`.
pub fn scalar(data: &Path, query: &str) -> i64 {
    let batches = sql(data, &format!("SELECT CAST(({query}) AS BIGINT) AS v"));
    let col = batches[0].column(0).as_primitive::<Int64Type>();
    assert!(!col.is_null(0), "{query} gave NULL");
    col.value(0)
}

/// Rows of a query as strings, for comparisons.
pub fn rows(data: &Path, query: &str) -> Vec<String> {
    let batches = sql(data, query);
    let mut out = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = (0..b.num_columns())
                .map(|c| {
                    arrow::util::display::array_value_to_string(b.column(c), r).unwrap()
                })
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

/// Every file below `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
