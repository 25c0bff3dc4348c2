//! The command implementations behind `main`: logging set-up, `ingest`,
//! `run`, `produce`, `demo` and the taxonomy listing.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::watch;

use bouncelens::config::Config;
use bouncelens::ingest::{ingest_input, open_decompressed};
use bouncelens::query;
use bouncelens::sink::{Committer, Layout, Totals};
use bouncelens::stream::{StopWhen, StreamJob};
use bouncelens::taxonomy::{CATEGORY_IDS, Classifier, Taxonomy};

/// The real Postfix log the demo replays.
const DEMO_LOG: &[u8] = include_bytes!("../examples/postfix-mail.log");

/// The demo's closing report: one row per organisation.
const DEMO_REPORT_SQL: &str = include_str!("../queries/demo/org_overview.sql");

pub fn init_logging(config: &Config, quiet: bool) {
    let default = if quiet { "warn" } else { config.log.level.as_str() };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn committer(config: &Config) -> Result<Committer> {
    Ok(Committer::new(Layout::new(&config.data_dir), config.zone()?))
}

pub fn ingest(
    config: &Config,
    classifier: &Classifier,
    inputs: &[String],
) -> Result<ExitCode> {
    // A missing input is found before anything is created under --data.
    for input in inputs.iter().filter(|i| i.as_str() != "-") {
        if let Err(e) = std::fs::metadata(input) {
            bail!("cannot read {input}: {e}; check the path");
        }
    }
    let committer = committer(config)?;
    committer.check_writable()?;
    let settings = crate::decode_settings(config)?;
    let mut all = Totals::default();
    for input in inputs {
        let report = ingest_input(
            input,
            &committer,
            classifier,
            &settings,
            &config.flush,
            config.dead_letter.max_raw_bytes,
        )?;
        let t = report.totals;
        eprintln!(
            "{input}: consumed {} lines: {} deliveries ({} rows), {} dead-lettered, {} without a delivery; {} already ingested before; {} files",
            t.consumed,
            t.written,
            t.rows,
            t.dead_lettered,
            t.skipped,
            report.already_written,
            report.files
        );
        all.add(&t);
    }
    println!("{}", serde_json::to_string(&all)?);
    if all.rows > 0 || all.dead_lettered > 0 {
        eprintln!("data written under {}", config.data_dir.display());
    } else {
        eprintln!("nothing new to write under {}", config.data_dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_stream(
    config: Config,
    classifier: Classifier,
    until_drained: bool,
) -> Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async move {
        let settings = crate::decode_settings(&config)?;
        let committer = committer(&config)?;
        let job = StreamJob::new(config.clone(), classifier, settings);
        if !config.metrics.listen.is_empty() {
            let (listener, addr) = bouncelens::serve::bind(&config.metrics.listen)
                .await
                .with_context(|| format!("cannot listen on metrics.listen {}", config.metrics.listen))?;
            tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
            tokio::spawn(bouncelens::serve::serve(listener, job.health(), committer.clone()));
        } else {
            bouncelens::serve::install_metrics();
        }
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        if config.summary.enabled {
            tokio::spawn(crate::report_cli::summary_scheduler(config.clone()));
        }
        let stop = if until_drained { StopWhen::Drained } else { StopWhen::Signalled };
        let summary = job.run(stop, rx).await?;
        let t = summary.totals;
        eprintln!(
            "consumed {} messages: {} deliveries, {} dead-lettered, {} without a delivery ({} already written before, skipped)",
            t.consumed, t.written, t.dead_lettered, t.skipped, summary.replayed
        );
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// How long a message sent by `produce` may wait for the brokers.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends every non-empty line of `files` to `topic`; returns how many.
pub fn produce(
    brokers: &str,
    topic: &str,
    files: &[PathBuf],
    config: &Config,
) -> Result<u64> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("linger.ms", "20")
            .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string());
        for (k, v) in &config.kafka.librdkafka {
            c.set(k, v);
        }
        let producer: FutureProducer =
            c.create().context("cannot create the Kafka producer")?;
        // Ask once before sending, so that a wrong address fails in seconds,
        // not after every message's timeout.
        producer.client().fetch_metadata(None, Duration::from_secs(10)).with_context(|| {
            format!("no Kafka broker at {brokers} answered within 10 s: check --brokers (or kafka.brokers) and that the brokers are running and reachable")
        })?;
        let mut sent = 0u64;
        for file in files {
            let reader = open_decompressed(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            sent += send_lines(&producer, topic, reader).await?;
        }
        Ok(sent)
    })
}

async fn send_lines(
    producer: &FutureProducer,
    topic: &str,
    reader: Box<dyn BufRead>,
) -> Result<u64> {
    let mut pending = futures::stream::FuturesOrdered::new();
    let mut sent = 0;
    for line in reader.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Key by syslog host when there is one, so one server's lines stay
        // in order on one partition (the Postfix join needs that).
        let key = syslog_host(&line).map(<[u8]>::to_vec).unwrap_or_default();
        let sender = producer.clone();
        let to = topic.to_string();
        pending.push_back(async move {
            let record = FutureRecord::to(&to).payload(&line).key(&key);
            sender.send(record, SEND_TIMEOUT).await.map_err(|(e, _)| e)
        });
        if pending.len() >= 1000 {
            use futures::StreamExt;
            if let Some(r) = pending.next().await {
                r.with_context(|| not_accepted(producer, topic))?;
                sent += 1;
            }
        }
    }
    use futures::StreamExt;
    while let Some(r) = pending.next().await {
        r.with_context(|| not_accepted(producer, topic))?;
        sent += 1;
    }
    Ok(sent)
}

/// What to say when the brokers did not take a message in time.
fn not_accepted(producer: &FutureProducer, topic: &str) -> String {
    let brokers = producer.client().fetch_metadata(Some(topic), Duration::from_secs(2));
    let hint = match brokers {
        Ok(_) => "the brokers answer: check that the topic exists or can be created",
        Err(_) => {
            "no broker answered: check --brokers (or kafka.brokers) and that the brokers are running and reachable"
        }
    };
    let secs = SEND_TIMEOUT.as_secs();
    format!("Kafka did not accept a message for topic {topic} within {secs} s; {hint}")
}

/// The host field of a BSD syslog line (`Mmm dd hh:mm:ss HOST ...`).
fn syslog_host(line: &[u8]) -> Option<&[u8]> {
    if line.first() == Some(&b'{') || line.len() < 17 {
        return None;
    }
    let rest = &line[16..];
    let end = rest.iter().position(|b| *b == b' ')?;
    Some(&rest[..end])
}

/// `bouncelens generate`: to a file, standard output, or a Kafka topic.
pub fn generate(
    config: &Config,
    opts: &bouncelens::generate::GenerateOptions,
    out: Option<PathBuf>,
    topic: Option<String>,
    brokers: Option<String>,
) -> Result<ExitCode> {
    opts.check().map_err(|why| anyhow::anyhow!("cannot generate {why}"))?;
    let written = match (&topic, &out) {
        (Some(topic), _) => {
            // Through a temporary file, then the same path as `produce`.
            let tmp = generate_spool_path(config)?;
            let spooled = generate_to_file(opts, &tmp);
            let brokers = brokers.unwrap_or(config.kafka.brokers.clone());
            let sent = spooled.and_then(|_| {
                produce(&brokers, topic, std::slice::from_ref(&tmp), config)
            });
            let _ = std::fs::remove_file(&tmp);
            let sent = sent?;
            eprintln!("sent {sent} events to {topic} at {brokers}");
            sent
        }
        (None, Some(path)) => generate_to_file(opts, path)?,
        (None, None) => {
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            let written = bouncelens::generate::generate(opts, &mut stdout)
                .and_then(|n| stdout.flush().map(|()| n));
            match written {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(ExitCode::SUCCESS);
                }
                other => other.context("cannot write the events to standard output")?,
            }
        }
    };
    eprintln!("{written} events");
    Ok(ExitCode::SUCCESS)
}

/// Generates into `path`, compressed when its name ends in `.gz` or `.zst`;
/// a file left half-written by an error is removed.
fn generate_to_file(
    opts: &bouncelens::generate::GenerateOptions,
    path: &std::path::Path,
) -> Result<u64> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let regular = file.metadata().is_ok_and(|m| m.is_file());
    let file = std::io::BufWriter::with_capacity(256 * 1024, file);
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let written = match extension {
        "gz" => {
            let mut out =
                flate2::write::GzEncoder::new(file, flate2::Compression::default());
            bouncelens::generate::generate(opts, &mut out)
                .and_then(|n| out.finish()?.flush().map(|()| n))
        }
        "zst" => zstd::stream::write::Encoder::new(file, 3).and_then(|mut out| {
            let n = bouncelens::generate::generate(opts, &mut out)?;
            out.finish()?.flush().map(|()| n)
        }),
        _ => {
            let mut out = file;
            bouncelens::generate::generate(opts, &mut out)
                .and_then(|n| out.flush().map(|()| n))
        }
    };
    written.or_else(|e| {
        let removed = regular && std::fs::remove_file(path).is_ok();
        Err(e).with_context(|| {
            let removed = if removed { " (the partial file was removed)" } else { "" };
            format!(
                "cannot write {}{removed}: check the space and permissions there, or choose another --out",
                path.display()
            )
        })
    })
}

fn generate_spool_path(config: &Config) -> Result<PathBuf> {
    let dir = std::env::temp_dir();
    Ok(dir.join(format!(
        "bouncelens-generate-{}-{}.ndjson",
        std::process::id(),
        config.kafka.group_id
    )))
}

pub fn demo(
    mut config: Config,
    classifier: Classifier,
    log: Option<PathBuf>,
) -> Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async move {
        let lines: Vec<u8> = match &log {
            Some(path) => std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            None => DEMO_LOG.to_vec(),
        };
        if config.data_dir == std::path::Path::new("./data") {
            config.data_dir = std::env::temp_dir().join(format!("bouncelens-demo-{}", std::process::id()));
        }
        let cluster = MockCluster::new(1).context("cannot start the in-process Kafka cluster")?;
        let topic = "mail-delivery-logs";
        cluster.create_topic(topic, 3, 1).context("cannot create the demo topic")?;
        config.kafka.brokers = cluster.bootstrap_servers();
        config.kafka.topics = vec![topic.to_string()];
        config.kafka.group_id = "bouncelens-demo".to_string();
        eprintln!("1/3 started an in-process Kafka broker at {} (librdkafka's mock cluster)", config.kafka.brokers);
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.kafka.brokers).set("linger.ms", "5");
        let producer: FutureProducer = c.create()?;
        let sent = send_lines(&producer, topic, Box::new(std::io::Cursor::new(lines))).await?;
        drop(producer);
        eprintln!("2/3 produced {sent} real Postfix log lines to topic {topic}; running the stream job until it has read them all");
        let settings = crate::decode_settings(&config)?;
        let job = StreamJob::new(config.clone(), classifier, settings);
        let (_tx, rx) = watch::channel(false);
        let summary = job.run(StopWhen::Drained, rx).await?;
        let t = summary.totals;
        eprintln!(
            "3/3 consumed {} messages: {} deliveries written, {} dead-lettered, {} context lines (qmgr, cleanup, ...)",
            t.consumed, t.written, t.dead_lettered, t.skipped
        );
        if t.consumed != sent {
            bail!("the job consumed {} of {sent} messages", t.consumed);
        }
        let ctx = query::session(&Layout::new(&config.data_dir)).await?;
        let df = query::plan(&ctx, DEMO_REPORT_SQL).await?;
        df.show().await?;
        eprintln!(
            "\nData: {d}\nTry:  bouncelens sql --data {d} \"SELECT category, reason, count(*) FROM deliveries WHERE category IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC\"",
            d = config.data_dir.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub fn print_taxonomy(taxonomy: &Taxonomy, format: &str) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        "toml" => write!(out, "{}", toml::to_string_pretty(taxonomy)?)?,
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(taxonomy)?)?,
        "table" => {
            for id in CATEGORY_IDS {
                let Some(c) = taxonomy.category(id) else { continue };
                writeln!(out, "{} — {} / {}", c.id, c.name_en, c.name_zh)?;
                for r in taxonomy.reasons.iter().filter(|r| r.category == id) {
                    let phrases = r.faq_phrases.len() + r.phrases.len();
                    writeln!(
                        out,
                        "  {:<36} {:<4} {:>3} phrases  {}",
                        r.id,
                        r.severity.as_str(),
                        phrases,
                        r.label_en
                    )?;
                }
            }
        }
        other => bail!("unknown --format {other:?}: use table, toml or json"),
    }
    Ok(())
}
