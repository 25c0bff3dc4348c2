//! The `bouncelens` command line: one subcommand per job, each a thin
//! wrapper over the library.

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use bouncelens::config::Config;
use bouncelens::formats::{DecodeSettings, InputFormat, OrgResolver};
use bouncelens::generate::{MAX_GENERATED_DAYS, MAX_GENERATED_ORGS};
use bouncelens::taxonomy::{Classifier, Taxonomy};

mod cli;
mod report_cli;

/// The job allocates many small strings per record on several threads;
/// mimalloc serves that pattern better than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps freed memory for reuse instead of handing it back to the OS.
///
/// A flush frees its whole buffer and the next one fills again at once;
/// mimalloc's default (purge freed memory after 10 ms) made the kernel
/// clear those pages again on every flush. Zstandard, in C, allocates its
/// contexts with the C library's malloc: one per column of every file
/// written, each above glibc's default mmap threshold, so each was a fresh
/// mapping to fault in and clear. Together these cost more than decoding.
/// The process stays at its peak size instead, which the flush policy
/// bounds.
fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc.h (v3, as libmimalloc-sys 0.1.49
    // builds it): milliseconds before freed memory is purged, -1 for never.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: setting an option is allowed at any time and takes no pointer.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // Small pages, not transparent huge ones: after other programs have run
    // (a page cache full of the input, say) each huge-page fault waits for
    // the kernel to compact memory, which cost a 5-million-event ingest
    // over two seconds. The buffers are reused, so few faults remain.
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integers only.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc tunables; called before any thread
    // starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[derive(Parser)]
#[command(
    name = "bouncelens",
    version,
    about = "Mail-delivery analytics: classify bounces, write exactly-once Parquet from Kafka, report with SQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command that touches the dataset shares.
#[derive(Args, Clone, Debug, Default)]
pub struct Common {
    /// Configuration file (TOML); BOUNCELENS_* variables override it.
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Data root (default ./data, or data_dir in the config).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// A taxonomy file layered over the built-in one.
    #[arg(long, global = true)]
    taxonomy: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Classify bounce replies: one raw reply or JSON record per input line.
    Classify {
        /// Files to read (default: standard input).
        files: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Print the loaded taxonomy, or validate a taxonomy file.
    Taxonomy {
        /// Output: `table` (default), `toml` or `json`.
        #[arg(long, default_value = "table")]
        format: String,
        #[command(flatten)]
        common: Common,
    },
    /// Run the pipeline over files or standard input (`-`); plain, .gz or .zst.
    Ingest {
        #[arg(required = true)]
        inputs: Vec<String>,
        /// Input format (default: detected per line).
        #[arg(long, value_enum)]
        format: Option<InputFormat>,
        /// Year of syslog timestamps (default: inferred from now).
        #[arg(long)]
        syslog_year: Option<i32>,
        #[command(flatten)]
        common: Common,
    },
    /// The stream job: consume the configured topics as a consumer group.
    Run {
        /// Stop once every assigned partition is read to its end.
        #[arg(long)]
        until_drained: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Send log lines from files to a Kafka topic, one message per line.
    Produce {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        topic: String,
        /// Brokers (default: kafka.brokers of the config).
        #[arg(long)]
        brokers: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Try it: an in-process Kafka, the bundled real Postfix log, the real
    /// stream job, and a per-organisation bounce report.
    Demo {
        /// Log to replay (default: the bundled Postfix log).
        #[arg(long)]
        log: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Run a report (`--list` shows them) for one organisation and date range.
    Report {
        #[command(flatten)]
        args: report_cli::ReportArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Run a read-only SQL query over `deliveries` and `rejected`; without
    /// a query, an interactive prompt.
    Sql {
        query: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: report_cli::OutputFormat,
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Write the daily bounce summaries (JSON and Markdown) of one day.
    Summary {
        /// The day: YYYY-MM-DD, `today` or `yesterday`.
        #[arg(long)]
        date: String,
        /// Only this organisation.
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Write realistic canonical delivery events (NDJSON) for load tests.
    Generate {
        /// How many events.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// How many organisations (of very different sizes), 1 to 100,000.
        #[arg(long, default_value_t = 50,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_GENERATED_ORGS)))]
        orgs: u32,
        /// Over how many days, 1 to 3,660.
        #[arg(long, default_value_t = 7,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_GENERATED_DAYS)))]
        days: u32,
        /// The same seed gives the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First day (YYYY-MM-DD).
        #[arg(long, default_value = "2026-11-01")]
        start: chrono::NaiveDate,
        /// Write to this file (default: standard output); gzip or zstd when
        /// its name ends in .gz or .zst.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Send to this Kafka topic instead.
        #[arg(long, conflicts_with = "out")]
        topic: Option<String>,
        /// Brokers for --topic (default: kafka.brokers of the config).
        #[arg(long)]
        brokers: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate a configuration file and print the effective configuration, secrets masked.
    Check { file: Option<PathBuf> },
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                // The reader went away (`| head`): nothing more to say.
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Classify { files, common } => {
            let (_, classifier) = load(&common)?;
            classify(&classifier, &files)
        }
        Command::Taxonomy { format, common } => {
            let (config, _) = load_config(&common)?;
            let taxonomy = Taxonomy::load(config.taxonomy.as_deref())?;
            cli::print_taxonomy(&taxonomy, &format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest { inputs, format, syslog_year, common } => {
            let (mut config, classifier) = load(&common)?;
            if let Some(f) = format {
                config.input.format = f;
            }
            if syslog_year.is_some() {
                config.input.syslog_year = syslog_year;
            }
            cli::init_logging(&config, true);
            cli::ingest(&config, &classifier, &inputs)
        }
        Command::Run { until_drained, common } => {
            let (config, classifier) = load(&common)?;
            cli::init_logging(&config, false);
            cli::run_stream(config, classifier, until_drained)
        }
        Command::Produce { files, topic, brokers, common } => {
            let (config, _) = load_config(&common)?;
            let brokers = brokers.unwrap_or(config.kafka.brokers.clone());
            let sent = cli::produce(&brokers, &topic, &files, &config)?;
            eprintln!("sent {sent} messages to {topic} at {brokers}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { log, common } => {
            let (config, classifier) = load(&common)?;
            cli::init_logging(&config, true);
            cli::demo(config, classifier, log)
        }
        Command::Report { args, common } => {
            let (config, ()) = load_config(&common)?;
            report_cli::report(&config, args)
        }
        Command::Sql { query, format, out, common } => {
            let (config, ()) = load_config(&common)?;
            report_cli::sql(&config, query, format, out)
        }
        Command::Summary { date, org, common } => {
            let (config, ()) = load_config(&common)?;
            cli::init_logging(&config, true);
            report_cli::summary(&config, &date, org.as_deref())
        }
        Command::Generate {
            events,
            orgs,
            days,
            seed,
            start,
            out,
            topic,
            brokers,
            common,
        } => {
            let (config, ()) = load_config(&common)?;
            let opts = bouncelens::generate::GenerateOptions {
                events,
                orgs,
                days,
                seed,
                start_date: start,
            };
            cli::generate(&config, &opts, out, topic, brokers)
        }
        Command::Config { action: ConfigAction::Check { file } } => {
            let config = Config::load(file.as_deref())?;
            Taxonomy::load(config.taxonomy.as_deref())?;
            let settings = decode_settings(&config)?;
            let classifier = Classifier::builtin();
            bouncelens::stream::StreamJob::new(config.clone(), classifier, settings)
                .check_client_config()
                .context("kafka.librdkafka holds a setting librdkafka refuses")?;
            print!("{}", config.to_masked_toml());
            eprintln!("configuration is valid");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The error and its causes, each cause only where it adds something the
/// message before it does not already say.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(part.trim()) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(part.trim());
        }
    }
    text
}

/// The configuration with the command line's overrides applied.
fn load_config(common: &Common) -> Result<(Config, ())> {
    let mut config = Config::load(common.config.as_deref())?;
    if let Some(data) = &common.data {
        config.data_dir = data.clone();
    }
    if let Some(t) = &common.taxonomy {
        config.taxonomy = Some(t.clone());
    }
    Ok((config, ()))
}

fn load(common: &Common) -> Result<(Config, Classifier)> {
    let (config, ()) = load_config(common)?;
    let classifier = Classifier::new(Taxonomy::load(config.taxonomy.as_deref())?)?;
    Ok((config, classifier))
}

/// The decoders' settings from the configuration.
pub fn decode_settings(config: &Config) -> Result<DecodeSettings> {
    let orgs = match &config.input.org_map {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read input.org_map {}", path.display())
            })?;
            OrgResolver::from_file_text(&text)
                .map_err(|e| anyhow::anyhow!("input.org_map {}: {e}", path.display()))?
        }
        None => OrgResolver::default(),
    };
    Ok(DecodeSettings {
        format: config.input.format,
        max_record_bytes: config.input.max_record_bytes,
        orgs,
        null_sender_org: config.input.null_sender_org.clone(),
        unknown_sender_org: config.input.unknown_sender_org.clone(),
        syslog_timezone: bouncelens::config::parse_zone(
            "input.syslog_time_zone",
            &config.input.syslog_time_zone,
        )?,
        syslog_year: config.input.syslog_year,
    })
}

fn classify(classifier: &Classifier, files: &[PathBuf]) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut ok, mut bad) = (0, 0);
    if files.is_empty() {
        let (o, b) = bouncelens::classify::classify_lines(
            classifier,
            std::io::stdin().lock(),
            &mut out,
        )?;
        (ok, bad) = (o, b);
    }
    for file in files {
        let f = std::fs::File::open(file)
            .with_context(|| format!("cannot open {}", file.display()))?;
        let (o, b) = bouncelens::classify::classify_lines(
            classifier,
            BufReader::new(f),
            &mut out,
        )?;
        ok += o;
        bad += b;
    }
    out.flush()?;
    if bad > 0 {
        eprintln!(
            "{ok} lines classified, {bad} lines could not be read (see their `error`)"
        );
    }
    if ok == 0 && bad > 0 {
        bail!("no line could be classified");
    }
    Ok(ExitCode::SUCCESS)
}
