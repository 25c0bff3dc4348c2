//! The `report`, `sql` and `summary` commands, and the summary scheduler
//! of `run`: session set-up, parameter defaults and output formats.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use arrow::array::RecordBatch;
use chrono::{NaiveDate, Utc};
use datafusion::prelude::SessionContext;

use bouncelens::config::Config;
use bouncelens::query;
use bouncelens::report::{self, Lang, Params};
use bouncelens::schedule::DailySchedule;
use bouncelens::sink::Layout;
use bouncelens::summary;
use bouncelens::taxonomy::Taxonomy;

/// How results are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
    Parquet,
}

/// A day given as `YYYY-MM-DD`, `today` or `yesterday` (in the configured zone).
pub fn parse_day(text: &str, config: &Config) -> Result<NaiveDate> {
    let today = Utc::now().with_timezone(&config.zone()?).date_naive();
    match text {
        "today" => Ok(today),
        "yesterday" => Ok(today.pred_opt().expect("a day before today")),
        _ => NaiveDate::parse_from_str(text, "%Y-%m-%d").with_context(|| {
            format!("{text:?} is not a date: use YYYY-MM-DD, `today` or `yesterday`")
        }),
    }
}

async fn session(config: &Config) -> Result<SessionContext> {
    let ctx = query::session(&Layout::new(&config.data_dir)).await?;
    let taxonomy = Taxonomy::load(config.taxonomy.as_deref())?;
    report::register_taxonomy(&ctx, &taxonomy)?;
    Ok(ctx)
}

/// Rows a report lists on screen unless `--limit` says otherwise.
const SCREEN_ROWS: u64 = 100;
/// "No limit", as the SQL's `LIMIT` takes it.
const ALL_ROWS: u64 = i64::MAX as u64;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The report's name.
    pub name: Option<String>,
    /// List the reports and what each answers.
    #[arg(long)]
    pub list: bool,
    /// The organisation id (e.g. example.com).
    #[arg(long)]
    pub org: Option<String>,
    /// First day, YYYY-MM-DD (default: the --to day).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD, `today` or `yesterday` (default: yesterday).
    #[arg(long)]
    pub to: Option<String>,
    /// Most rows for reports that list things (default: 100 in a table on
    /// the terminal, all of them in a file or as CSV or JSON).
    #[arg(long)]
    pub limit: Option<u64>,
    /// Language of advice and labels.
    #[arg(long, value_enum, default_value = "en")]
    pub lang: Lang,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the report's SQL with its parameters bound, and do not run it.
    #[arg(long)]
    pub sql: bool,
}

pub fn report(config: &Config, args: ReportArgs) -> Result<ExitCode> {
    let reports = report::load_reports(config.reports.dir.as_deref())?;
    if args.list || args.name.is_none() {
        for r in &reports {
            let origin = if r.builtin { "" } else { " (user)" };
            println!("{:<14} {}{origin}", r.name, r.title());
        }
        if args.name.is_none() && !args.list {
            eprintln!(
                "\nrun one with: bouncelens report NAME --org ORG --from YYYY-MM-DD --to YYYY-MM-DD"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = args.name.expect("checked above");
    let r = report::find(&reports, &name)?;
    let Some(org) = args.org else {
        bail!("report {name} needs --org ORG (the organisation id, e.g. example.com)");
    };
    let to = match &args.to {
        Some(t) => parse_day(t, config)?,
        None => parse_day("yesterday", config)?,
    };
    let from = match &args.from {
        Some(f) => parse_day(f, config)?,
        None => to,
    };
    // A table on screen is for reading: the first rows. An export (a file,
    // CSV, JSON) is for using: all of them, unless asked otherwise.
    let on_screen = args.out.is_none() && matches!(args.format, OutputFormat::Table);
    let limit = args.limit.unwrap_or(if on_screen { SCREEN_ROWS } else { ALL_ROWS });
    let params = Params { org, from, to, limit, lang: args.lang };
    if args.sql {
        println!("{}", report::render(r, &params)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rt = crate::cli::runtime()?;
    let batches = rt.block_on(async {
        let ctx = session(config).await?;
        anyhow::Ok(report::run(&ctx, r, &params).await?)
    })?;
    write_batches(&batches, args.format, args.out.as_deref())?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if args.limit.is_none() && on_screen && rows as u64 == SCREEN_ROWS && r.uses_limit() {
        eprintln!(
            "the first {SCREEN_ROWS} rows; --limit N for more, or --format csv --out FILE for all"
        );
    }
    if rows == 0 {
        eprintln!(
            "no rows for organisation {:?} from {} to {}; to see what the dataset holds:\n  bouncelens sql --data {} \"SELECT org, min(date), max(date), count(*) FROM deliveries GROUP BY org ORDER BY 4 DESC\"",
            params.org,
            params.from,
            params.to,
            config.data_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sql(
    config: &Config,
    query_text: Option<String>,
    format: OutputFormat,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    let rt = crate::cli::runtime()?;
    rt.block_on(async {
        let ctx = session(config).await?;
        if let Some(q) = query_text {
            let batches = query::collect(&ctx, &q).await?;
            write_batches(&batches, format, out.as_deref())?;
            return Ok(ExitCode::SUCCESS);
        }
        repl(&ctx, format).await
    })
}

/// The interactive prompt: statements end with `;`; `.tables`, `.quit`.
async fn repl(ctx: &SessionContext, format: OutputFormat) -> Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "bouncelens SQL over tables `deliveries`, `rejected` and `taxonomy_reasons`; end statements with `;`, `.quit` to leave."
        );
    }
    let stdin = std::io::stdin();
    let mut statement = String::new();
    let mut failed = false;
    loop {
        if interactive {
            eprint!(
                "{}",
                if statement.is_empty() { "bouncelens> " } else { "      ...> " }
            );
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let trimmed = line.trim();
        if statement.is_empty()
            && (trimmed == ".quit" || trimmed == ".exit" || trimmed == "\\q")
        {
            break;
        }
        if statement.is_empty() && trimmed == ".tables" {
            statement.push_str("SHOW TABLES;");
        } else {
            statement.push_str(&line);
        }
        if !statement.trim_end().ends_with(';') {
            continue;
        }
        let text = std::mem::take(&mut statement);
        match query::collect(ctx, text.trim().trim_end_matches(';')).await {
            Ok(batches) => write_batches(&batches, format, None)?,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    if !statement.trim().is_empty() {
        let batches = query::collect(ctx, statement.trim()).await?;
        write_batches(&batches, format, None)?;
    }
    Ok(if failed && !interactive { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn summary(config: &Config, date: &str, org: Option<&str>) -> Result<ExitCode> {
    let date = parse_day(date, config)?;
    let rt = crate::cli::runtime()?;
    let files = rt.block_on(run_summaries(config, date, org))?;
    if files.is_empty() {
        eprintln!("no organisation had deliveries on {date}; nothing written");
    }
    for f in files {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_summaries(
    config: &Config,
    date: NaiveDate,
    org: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let ctx = session(config).await?;
    let reports = report::load_reports(config.reports.dir.as_deref())?;
    Ok(summary::write_summaries(
        &ctx,
        &Layout::new(&config.data_dir),
        &reports,
        date,
        org,
    )
    .await?)
}

/// Inside `run`: writes yesterday's summaries on the configured schedule.
pub async fn summary_scheduler(config: Config) {
    let zone = match bouncelens::config::parse_zone(
        "summary.time_zone",
        &config.summary.time_zone,
    ) {
        Ok(z) => z,
        Err(e) => return tracing::error!(%e, "summary scheduler not started"),
    };
    let state = Layout::new(&config.data_dir).state().join("summary-schedule.json");
    let mut schedule = match DailySchedule::new(&config.summary.cron, zone, state) {
        Ok(s) => s,
        Err(e) => return tracing::error!(%e, "summary scheduler not started"),
    };
    let config = Arc::new(config);
    tracing::info!(next = ?schedule.next_after(Utc::now()), cron = %config.summary.cron, zone = %zone, "daily summaries scheduled");
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let Some(day) = schedule.due(Utc::now()) else { continue };
        match run_summaries(&config, day, None).await {
            Ok(files) => {
                tracing::info!(%day, files = files.len(), "daily summaries written");
                if let Err(e) = schedule.mark_done(day) {
                    tracing::error!(%e, "cannot record the summary run; it may repeat after a restart");
                }
            }
            Err(e) => {
                metrics::counter!("bouncelens_summary_runs_total", "result" => "error")
                    .increment(1);
                tracing::error!(%day, error = %e, "daily summaries failed; retrying at the next check");
            }
        }
    }
}

/// Writes batches in the chosen format to `out` or standard output.
pub fn write_batches(
    batches: &[RecordBatch],
    format: OutputFormat,
    out: Option<&Path>,
) -> Result<()> {
    let mut sink: Box<dyn Write> = match out {
        Some(path) if format != OutputFormat::Parquet => {
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            ))
        }
        _ => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    match format {
        OutputFormat::Table => {
            writeln!(sink, "{}", arrow::util::pretty::pretty_format_batches(batches)?)?;
            let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
            writeln!(sink, "{n} row{}", if n == 1 { "" } else { "s" })?;
        }
        OutputFormat::Csv => {
            let mut w =
                arrow::csv::WriterBuilder::new().with_header(true).build(&mut sink);
            for b in batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut sink);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            writeln!(sink)?;
        }
        OutputFormat::Parquet => {
            let Some(path) = out else {
                bail!("--format parquet needs --out FILE");
            };
            let schema = batches
                .first()
                .map(RecordBatch::schema)
                .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
    }
    sink.flush()?;
    Ok(())
}
