//! Exactly-once output: how a flush becomes visible, and how a restart
//! finishes or forgets what a crash interrupted.
//!
//! # The protocol
//!
//! Every source (a Kafka partition, an input file) is written by one
//! process at a time, in flushes that each cover a contiguous offset range
//! `[first, next)`. One flush is one transaction:
//!
//! 1. **Stage.** One Parquet file per output partition (`date`, `org`, and
//!    one for rejected records) is written under `_bouncelens/staging/`,
//!    then fsynced, with the directories above them up to the data root.
//!    Nothing is visible to readers yet.
//! 2. **Commit point.** A transaction record listing each staged file, its
//!    final path and the checkpoint to write afterwards (the next offset
//!    and the source's join state) is written to a temporary name, fsynced,
//!    and renamed into `_bouncelens/txn/`. Once that rename is durable the
//!    flush *will* happen, whatever crashes next.
//! 3. **Apply.** Each staged file is renamed to its final path. Final names
//!    are derived from the source and offsets
//!    (`<source>.<first>-<next>.parquet`), so applying twice renames nothing
//!    new and can never create a second copy. The directories renamed into,
//!    and those above them, are fsynced.
//! 4. **Checkpoint.** The checkpoint is replaced (write aside, rename), then
//!    the transaction record and the staging directory are removed.
//! 5. Only then does the caller commit the Kafka offset `next`.
//!
//! On start, and whenever a source is (re)assigned, [`Committer::recover`]
//! applies every transaction record of that source left by a crash (steps
//! 3-4 again) and deletes staging directories without a record (a flush
//! that never reached its commit point: its records are still after the
//! checkpoint and will be read again). The checkpoint, not Kafka's
//! committed offset, says where the data ends: a consumer skips every
//! message below the checkpoint's offset, which covers a crash between
//! step 4 and step 5.
//!
//! Readers list directories; they never see a partly written file, because
//! files only appear by rename. During step 3 a reader may see some of a
//! flush's files and not yet the others; it never sees a record twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use chrono_tz::Tz;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::layout::{Layout, encode_org};
use super::table::{
    DELIVERIES_SCHEMA, PartitionRows, REJECTED_SCHEMA, RejectedRow, rejected_batch,
};
use crate::formats::postfix::JoinState;

/// What to check for an I/O error on the output side.
fn io_advice(error: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::NotADirectory | ErrorKind::AlreadyExists => {
            "a file stands where the data directory needs a directory: move it away"
        }
        _ => "is the data directory writable and not full?",
    }
}

/// Errors of the output side. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write {path}: {source} ({})", io_advice(source))]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot write Parquet file {path}: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error(
        "{path} is damaged: {problem}; move it aside and restart (its flush will be read again from Kafka)"
    )]
    Corrupt { path: PathBuf, problem: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io { path: path.to_path_buf(), source }
}

/// Counters kept per source across restarts, so they always reconcile:
/// `consumed = written + dead_lettered + skipped`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Messages read from the source.
    pub consumed: u64,
    /// Messages that gave at least one delivery row.
    pub written: u64,
    /// Delivery rows written (a Postfix expiry can give several).
    pub rows: u64,
    pub dead_lettered: u64,
    /// Well-formed messages that carry no delivery (Postfix `qmgr` lines).
    pub skipped: u64,
}

impl Totals {
    /// What was counted since `earlier`.
    pub fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            consumed: self.consumed - earlier.consumed,
            written: self.written - earlier.written,
            rows: self.rows - earlier.rows,
            dead_lettered: self.dead_lettered - earlier.dead_lettered,
            skipped: self.skipped - earlier.skipped,
        }
    }

    pub fn add(&mut self, other: &Totals) {
        self.consumed += other.consumed;
        self.written += other.written;
        self.rows += other.rows;
        self.dead_lettered += other.dead_lettered;
        self.skipped += other.skipped;
    }
}

/// Where a source stands: everything below `next_offset` is in the data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub source: String,
    pub next_offset: i64,
    pub totals: Totals,
    #[serde(default)]
    pub join_state: JoinState,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StagedFile {
    staged: PathBuf,
    target: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Transaction {
    source: String,
    first_offset: i64,
    files: Vec<StagedFile>,
    checkpoint: Checkpoint,
}

/// One flush of one source.
pub struct Flush<'a> {
    pub first_offset: i64,
    /// The rows, by the partition they were buffered for.
    pub deliveries: Vec<PartitionRows>,
    pub rejected: &'a [RejectedRow],
    pub checkpoint: Checkpoint,
}

/// What a flush wrote.
#[derive(Clone, Debug, Default)]
pub struct FlushStats {
    pub files: usize,
    pub bytes: u64,
    pub rows: usize,
}

/// Writes flushes with the protocol above.
#[derive(Clone, Debug)]
pub struct Committer {
    layout: Layout,
    time_zone: Tz,
}

impl Committer {
    pub fn new(layout: Layout, time_zone: Tz) -> Self {
        Self { layout, time_zone }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The time zone whose local dates name the `date` partitions.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// Checks that the data root can be written, creating it if needed.
    pub fn check_writable(&self) -> Result<(), SinkError> {
        for dir in
            [self.layout.staging(), self.layout.transactions(), self.layout.checkpoints()]
        {
            fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        let probe = self.layout.staging().join(".write-probe");
        fs::write(&probe, b"ok").map_err(io(&probe))?;
        fs::remove_file(&probe).map_err(io(&probe))?;
        Ok(())
    }

    /// Finishes what a crash left of `source` and returns its checkpoint.
    pub fn recover(&self, source: &str) -> Result<Option<Checkpoint>, SinkError> {
        self.check_writable()?;
        let prefix = format!("{source}.");
        let mut pending: Vec<PathBuf> = list(&self.layout.transactions())?
            .into_iter()
            .filter(|p| {
                file_name(p).starts_with(&prefix) && file_name(p).ends_with(".json")
            })
            .collect();
        pending.sort();
        for path in pending {
            let text = fs::read_to_string(&path).map_err(io(&path))?;
            let txn: Transaction = serde_json::from_str(&text).map_err(|e| {
                SinkError::Corrupt { path: path.clone(), problem: e.to_string() }
            })?;
            tracing::info!(
                source,
                first_offset = txn.first_offset,
                "finishing an interrupted flush"
            );
            self.apply(&txn, &path)?;
        }
        for dir in list(&self.layout.staging())? {
            if file_name(&dir).starts_with(&prefix) {
                tracing::info!(source, dir = %dir.display(), "dropping a flush that never committed");
                fs::remove_dir_all(&dir).map_err(io(&dir))?;
            }
        }
        self.read_checkpoint(source)
    }

    pub fn read_checkpoint(&self, source: &str) -> Result<Option<Checkpoint>, SinkError> {
        let path = self.checkpoint_path(source);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| SinkError::Corrupt { path, problem: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SinkError::Io { path, source: e }),
        }
    }

    fn checkpoint_path(&self, source: &str) -> PathBuf {
        self.layout.checkpoints().join(format!("{source}.json"))
    }

    /// Writes one flush: stage, commit point, apply, checkpoint.
    pub fn commit(&self, flush: Flush<'_>) -> Result<FlushStats, SinkError> {
        let source = flush.checkpoint.source.clone();
        let name = format!(
            "{source}.{:020}-{:020}",
            flush.first_offset, flush.checkpoint.next_offset
        );
        let staging = self.layout.staging().join(&name);
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        let mut stats = FlushStats::default();
        let mut files = Vec::new();

        // Buffers by the partition directory they name: organisations
        // differing only in case share one.
        let mut groups: BTreeMap<(String, String), Vec<PartitionRows>> = BTreeMap::new();
        for buffer in flush.deliveries {
            let dir = (buffer.date.to_string(), encode_org(&buffer.org_id));
            groups.entry(dir).or_default().push(buffer);
        }
        // One file per output partition, written on every core: encoding
        // and compression dominate a flush.
        let jobs: Vec<(PathBuf, PathBuf, Vec<PartitionRows>)> = groups
            .into_iter()
            .enumerate()
            .map(|(i, ((date, org), buffers))| {
                let staged = staging.join(format!("{i}.parquet"));
                let target =
                    self.layout.delivery_dir(&date, &org).join(format!("{name}.parquet"));
                (staged, target, buffers)
            })
            .collect();
        let written: Vec<Result<(StagedFile, u64, usize), SinkError>> = jobs
            .into_par_iter()
            .map(|(staged, target, buffers)| {
                let batches: Vec<RecordBatch> =
                    buffers.into_iter().map(|mut b| b.rows.finish()).collect();
                let rows = batches.iter().map(RecordBatch::num_rows).sum();
                let bytes = write_parquet(&staged, &DELIVERIES_SCHEMA, &batches)?;
                Ok((StagedFile { staged, target }, bytes, rows))
            })
            .collect();
        for result in written {
            let (file, bytes, rows) = result?;
            stats.bytes += bytes;
            stats.rows += rows;
            files.push(file);
        }
        let mut by_date: BTreeMap<String, Vec<&RejectedRow>> = BTreeMap::new();
        for row in flush.rejected {
            let date = row.received_at.with_timezone(&self.time_zone).date_naive();
            by_date.entry(date.to_string()).or_default().push(row);
        }
        for (date, rows) in &by_date {
            let staged = staging.join(format!("{}.parquet", files.len()));
            stats.bytes +=
                write_parquet(&staged, &REJECTED_SCHEMA, &[rejected_batch(rows)])?;
            let target = self.layout.rejected_dir(date).join(format!("{name}.parquet"));
            files.push(StagedFile { staged, target });
        }
        // The files, and the directories whose entries lead to them.
        let root = self.layout.root();
        let mut staged: Vec<&Path> = files.iter().map(|f| f.staged.as_path()).collect();
        staged.extend(staging.ancestors().take_while(|d| d.starts_with(root)));
        make_durable(&staged)?;
        stats.files = files.len();

        let txn = Transaction {
            source: source.clone(),
            first_offset: flush.first_offset,
            files,
            checkpoint: flush.checkpoint,
        };
        let txn_path = self.layout.transactions().join(format!("{name}.json"));
        write_atomic(&txn_path, &serde_json::to_vec(&txn).expect("serializable"))?;
        self.apply(&txn, &txn_path)?;
        Ok(stats)
    }

    /// Steps 3 and 4; safe to repeat.
    fn apply(&self, txn: &Transaction, txn_path: &Path) -> Result<(), SinkError> {
        let mut renamed_into: BTreeSet<&Path> = BTreeSet::new();
        for file in &txn.files {
            let dir = file.target.parent().expect("targets are inside the root");
            if file.staged.exists() {
                fs::create_dir_all(dir).map_err(io(dir))?;
                fs::rename(&file.staged, &file.target).map_err(io(&file.target))?;
                // The directory, and those above it that may be new.
                let root = self.layout.root();
                renamed_into.extend(dir.ancestors().take_while(|d| d.starts_with(root)));
            } else if !file.target.exists() {
                return Err(SinkError::Corrupt {
                    path: txn_path.to_path_buf(),
                    problem: format!(
                        "neither the staged file {} nor its target {} exists",
                        file.staged.display(),
                        file.target.display()
                    ),
                });
            }
        }
        // The renames are durable before the checkpoint moves past them.
        make_durable(&renamed_into.into_iter().collect::<Vec<_>>())?;
        let checkpoint = self.checkpoint_path(&txn.source);
        write_atomic(
            &checkpoint,
            &serde_json::to_vec(&txn.checkpoint).expect("serializable"),
        )?;
        fs::remove_file(txn_path).map_err(io(txn_path))?;
        if let Some(staging) = txn.files.first().and_then(|f| f.staged.parent()) {
            match fs::remove_dir_all(staging) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(SinkError::Io { path: staging.to_path_buf(), source: e });
                }
            }
        } else {
            let name = file_name(txn_path).trim_end_matches(".json").to_string();
            let _ = fs::remove_dir_all(self.layout.staging().join(name));
        }
        Ok(())
    }
}

/// Columns whose values are (nearly) all different: a dictionary would only
/// be built to be thrown away. (A message's id and queue id repeat only
/// across its recipients and retries.)
const UNIQUE_COLUMNS: [&str; 6] =
    ["event_time", "event_id", "recipient", "message_id", "queue_id", "source_offset"];

/// Columns of a few distinct values: their pages are short run-length
/// codes into a small dictionary, which zstd barely shrinks; storing them
/// uncompressed saves a compressor per column per file.
const FEW_VALUED_COLUMNS: [&str; 14] = [
    "org_id",
    "sender_domain",
    "outcome",
    "smtp_code",
    "attempt",
    "nrcpt",
    "category",
    "reason",
    "severity",
    "rule",
    "source_format",
    "source_topic",
    "source_partition",
    "extra",
];

/// Free text and identifiers: a file's lowest and highest value prune no
/// query (each file spans nearly the whole range), so no statistics are
/// kept for them; computing them cost a fiftieth of an ingest.
const UNPRUNABLE_COLUMNS: [&str; 11] = [
    "event_id",
    "sender",
    "recipient",
    "message_id",
    "queue_id",
    "reply",
    "remote_host",
    "remote_ip",
    "sending_ip",
    "matched",
    "extra",
];

fn writer_properties() -> WriterProperties {
    static PROPERTIES: LazyLock<WriterProperties> = LazyLock::new(|| {
        let mut builder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("valid level"),
            ))
            .set_created_by(format!("bouncelens {}", env!("CARGO_PKG_VERSION")));
        for column in UNIQUE_COLUMNS {
            builder = builder.set_column_dictionary_enabled(column.into(), false);
        }
        for column in UNPRUNABLE_COLUMNS {
            builder = builder
                .set_column_statistics_enabled(column.into(), EnabledStatistics::None);
        }
        for column in FEW_VALUED_COLUMNS {
            builder =
                builder.set_column_compression(column.into(), Compression::UNCOMPRESSED);
        }
        builder.build()
    });
    PROPERTIES.clone()
}

/// A column whose values in a file come to fewer bytes than this is
/// compressed with Snappy rather than Zstandard: setting up a Zstandard
/// compressor costs more than compressing that much (most files of a day
/// are of small organisations), and Snappy needs no setup. Zstandard would
/// make such a column a few hundred bytes smaller.
const SMALL_COLUMN_BYTES: usize = 16 * 1024;

/// The writer settings for a file of `batches`: [`writer_properties`], with
/// its small columns compressed with Snappy.
fn properties_for(batches: &[RecordBatch]) -> WriterProperties {
    let base = writer_properties();
    let Some(first) = batches.first() else {
        return base;
    };
    let mut small = Vec::new();
    for (i, field) in first.schema().fields().iter().enumerate() {
        let path = ColumnPath::from(field.name().as_str());
        if base.compression(&path) == Compression::UNCOMPRESSED {
            continue;
        }
        let bytes: usize = batches.iter().map(|b| value_bytes(b.column(i))).sum();
        if bytes < SMALL_COLUMN_BYTES {
            small.push(path);
        }
    }
    if small.is_empty() {
        return base;
    }
    let mut builder = base.into_builder();
    for path in small {
        builder = builder.set_column_compression(path, Compression::SNAPPY);
    }
    builder.build()
}

/// The bytes of an array's values, leaving out nulls and offsets.
fn value_bytes(array: &ArrayRef) -> usize {
    if array.null_count() == array.len() {
        return 0;
    }
    let span = |offsets: &[i32]| match (offsets.first(), offsets.last()) {
        (Some(first), Some(last)) => usize::try_from(last - first).unwrap_or(0),
        _ => 0,
    };
    if let Some(text) = array.as_string_opt::<i32>() {
        return span(text.value_offsets());
    }
    if let Some(binary) = array.as_binary_opt::<i32>() {
        return span(binary.value_offsets());
    }
    let width = array.data_type().primitive_width().unwrap_or(8);
    (array.len() - array.null_count()) * width
}

/// Writes one Parquet file (not yet durable: the caller makes a flush's
/// files durable together, with [`make_durable`]); returns its size.
fn write_parquet(
    path: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<u64, SinkError> {
    let file = File::create(path).map_err(io(path))?;
    let parquet = |source| SinkError::Parquet { path: path.to_path_buf(), source };
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(properties_for(batches)))
            .map_err(parquet)?;
    for batch in batches {
        writer.write(batch).map_err(parquet)?;
    }
    let file = writer.into_inner().map_err(parquet)?;
    Ok(file.metadata().map_err(io(path))?.len())
}

/// Replaces `path` atomically: write aside, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let dir = path.parent().expect("a file inside a directory");
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(".{}.tmp", file_name(path)));
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir)
}

/// Makes `paths` (files just written, or directories just renamed into)
/// durable: each is fsynced, several at a time from threads of their own
/// (the file system joins concurrent fsyncs into fewer journal commits,
/// and the decoding pool is not held up waiting on the disk). Only these
/// paths are waited for, not other programs' writes to the same disk.
fn make_durable(paths: &[&Path]) -> Result<(), SinkError> {
    const SYNC_THREADS: usize = 8;
    let chunk = paths.len().div_ceil(SYNC_THREADS).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = paths
            .chunks(chunk)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk.iter().try_for_each(|path| {
                        File::open(path).and_then(|f| f.sync_all()).map_err(io(path))
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("an fsync thread does not panic"))
    })
}

fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, SinkError> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.path()).map_err(io(dir))).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(SinkError::Io { path: dir.to_path_buf(), source: e }),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::DateTime;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;
    use crate::sink::SourcePosition;

    fn dead_letter(raw_len: usize) -> RejectedRow {
        RejectedRow {
            received_at: DateTime::from_timestamp(1_764_583_200, 0).unwrap(),
            source: SourcePosition { topic: Arc::from("t"), partition: 0, offset: 7 },
            reason: "invalid_json",
            detail: "message looks like JSON but does not parse".to_string(),
            raw: vec![b'x'; raw_len],
            raw_size: raw_len as u64,
            raw_truncated: false,
        }
    }

    /// The codec of each column of the one row group of a file (its level
    /// is not stored).
    fn codecs(path: &Path) -> BTreeMap<String, &'static str> {
        let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        let group = reader.metadata().row_group(0);
        group
            .columns()
            .iter()
            .map(|c| {
                let codec = match c.compression() {
                    Compression::ZSTD(_) => "zstd",
                    Compression::SNAPPY => "snappy",
                    Compression::UNCOMPRESSED => "none",
                    _ => "other",
                };
                (c.column_path().string(), codec)
            })
            .collect()
    }

    #[test]
    fn small_columns_get_snappy_large_ones_zstandard_and_both_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let small = dead_letter(100);
        let large = dead_letter(SMALL_COLUMN_BYTES);
        for (name, rows, raw_codec) in [
            ("small.parquet", vec![&small], "snappy"),
            ("large.parquet", vec![&small, &large], "zstd"),
        ] {
            let batch = rejected_batch(&rows);
            let path = dir.path().join(name);
            write_parquet(&path, &REJECTED_SCHEMA, std::slice::from_ref(&batch)).unwrap();
            let codecs = codecs(&path);
            assert_eq!(codecs["raw"], raw_codec, "{name}");
            assert_eq!(codecs["detail"], "snappy", "{name}: a short column");
            assert_eq!(
                codecs["source_topic"], "none",
                "{name}: few values, uncompressed"
            );
            let read: Vec<RecordBatch> =
                parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                    File::open(&path).unwrap(),
                    1024,
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(read, vec![batch], "{name} reads back as written");
        }
    }
}
