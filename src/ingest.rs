//! `bouncelens ingest`: the stream job's pipeline over files or stdin, for
//! backfills and for trying bouncelens without Kafka.
//!
//! Each input is a source of its own, its offsets the line numbers. A file
//! is named by its canonical path, so ingesting the same file again writes
//! nothing twice: lines below its checkpoint are skipped, and a file that
//! grew is continued where it stopped. (A different file later written to
//! the same path is taken as the same source: ingest it under another name,
//! or with another `--data` root.) Blank lines are not records: they are
//! passed over, uncounted. Standard input has no
//! identity and is always new. `.gz` and `.zst` inputs are decompressed
//! (by extension or magic bytes).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use crate::formats::DecodeSettings;
use crate::pipeline::{Accepted, FlushPolicy, PendingFlush, PreparedBatch, SourceWriter};
use crate::sink::{Committer, SinkError, Totals};
use crate::taxonomy::Classifier;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(
        "cannot read {path}: {source}; the lines read before this point that were not yet flushed are not kept. Put a complete copy at the same path and ingest again: what was already written is skipped, so nothing is written twice"
    )]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Lines decoded together, at most.
const BATCH_LINES: usize = 16 * 1024;
/// Bytes of lines decoded together, about.
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Lines taken between two looks at the clock for the buffer's age.
const AGE_CHECK_LINES: i64 = 1024;

/// What one input gave.
#[derive(Clone, Debug, Default)]
pub struct IngestReport {
    pub input: String,
    /// This run's counts.
    pub totals: Totals,
    /// Lines skipped because an earlier run already wrote them.
    pub already_written: u64,
    pub files: usize,
}

/// Ingests one input (`-` is standard input).
pub fn ingest_input(
    input: &str,
    committer: &Committer,
    classifier: &Classifier,
    settings: &DecodeSettings,
    policy: &FlushPolicy,
    max_raw_bytes: usize,
) -> Result<IngestReport, IngestError> {
    let read_err = |source| IngestError::Read { path: input.to_string(), source };
    let (source, reader): (String, Box<dyn BufRead + Send>) = if input == "-" {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        (format!("stdin.{now}"), Box::new(BufReader::new(std::io::stdin())))
    } else {
        let path = Path::new(input);
        let canonical = path.canonicalize().map_err(read_err)?;
        let digest = Sha256::digest(canonical.to_string_lossy().as_bytes());
        let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        (format!("file.{id}"), open_decompressed(path).map_err(read_err)?)
    };
    let mut writer = SourceWriter::open(
        committer,
        source,
        input.to_string(),
        0,
        settings.clone(),
        max_raw_bytes,
    )?;
    let start = writer.totals();
    let resumed_at = writer.read_offset();
    let mut report = IngestReport { input: input.to_string(), ..IngestReport::default() };
    let parallel = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    let mut offset: i64 = 0;
    // Four stages overlap: a thread reads batches of lines, a thread
    // decodes and classifies them (on every core), this one buffers the
    // rows, and a thread commits the buffers that are due, one after
    // another, in order. At most one buffer is being committed while the
    // next fills.
    let preparer = writer.preparer();
    std::thread::scope(|scope| -> Result<(), IngestError> {
        let (batches, batches_rx) = mpsc::sync_channel::<std::io::Result<Batch>>(2);
        let (spares, spares_rx) = mpsc::channel::<Batch>();
        scope.spawn(move || read_batches(reader, &batches, &spares_rx));
        let (ready, ready_rx) = mpsc::sync_channel::<std::io::Result<Ready>>(1);
        let (spent, spent_rx) = mpsc::channel::<PreparedBatch>();
        let preparer = &preparer;
        scope.spawn(move || {
            let mut first_offset = 0;
            for batch in batches_rx {
                let ready_batch = batch.map(|batch| {
                    let mut prepared = spent_rx.try_recv().unwrap_or_default();
                    preparer.prepare(
                        classifier,
                        first_offset,
                        &batch.buf,
                        &batch.lines,
                        parallel,
                        &mut prepared,
                    );
                    first_offset += batch.lines.len() as i64;
                    Ready { batch, prepared }
                });
                if ready.send(ready_batch).is_err() {
                    return;
                }
            }
        });
        let (flushes, flushes_rx) = mpsc::sync_channel::<PendingFlush>(0);
        let flusher = scope.spawn(move || -> Result<usize, SinkError> {
            let mut files = 0;
            for flush in flushes_rx {
                files += flush.commit(committer)?.1.files;
            }
            Ok(files)
        });
        let mut failed = false;
        for ready in ready_rx {
            let Ready { batch, prepared } = ready.map_err(read_err)?;
            let messages = prepared.iter(&batch.buf);
            for (line, prepared) in batch.lines.iter().zip(messages) {
                let payload = &batch.buf[line.clone()];
                if writer.day_turns_at(&prepared, policy)
                    && let Some(flush) = writer.take()
                    && flushes.send(flush).is_err()
                {
                    failed = true;
                    break;
                }
                // Blank lines (empty, or white space only) are not records.
                if !payload.iter().all(u8::is_ascii_whitespace) {
                    let taken = writer
                        .accept_prepared(classifier, offset, payload, None, prepared);
                    if let Accepted::AlreadyWritten = taken {
                        report.already_written += 1;
                    }
                }
                offset += 1;
                let due = if offset % AGE_CHECK_LINES == 0 {
                    writer.due(policy)
                } else {
                    writer.due_by_size(policy)
                };
                if due
                    && let Some(flush) = writer.take()
                    && flushes.send(flush).is_err()
                {
                    // The flusher stopped on an error, told below.
                    failed = true;
                    break;
                }
            }
            if failed {
                break;
            }
            let _ = spares.send(batch);
            let _ = spent.send(prepared);
        }
        if !failed && let Some(flush) = writer.take() {
            let _ = flushes.send(flush);
        }
        drop(flushes);
        report.files = flusher.join().expect("the flusher does not panic")?;
        Ok(())
    })?;
    report.totals = writer.totals().since(&start);
    if offset < resumed_at {
        tracing::warn!(
            input,
            lines = offset,
            already_ingested = resumed_at,
            "the input has fewer lines than were already ingested from this path, so it was replaced or truncated and none of it was written; ingest it under another path or into another --data root"
        );
    }
    Ok(report)
}

/// Lines read together: one buffer, and where each line lies in it (line
/// ends cut off).
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    lines: Vec<Range<usize>>,
}

/// A batch with its lines decoded and classified.
struct Ready {
    batch: Batch,
    prepared: PreparedBatch,
}

/// Reads `reader` to its end in batches, sending each; buffers sent back
/// on `spares` are used again. Stops early when the receiver is gone.
fn read_batches(
    mut reader: Box<dyn BufRead + Send>,
    batches: &mpsc::SyncSender<std::io::Result<Batch>>,
    spares: &mpsc::Receiver<Batch>,
) {
    loop {
        let mut batch = spares.try_recv().unwrap_or_else(|_| Batch {
            buf: Vec::with_capacity(BATCH_BYTES + 64 * 1024),
            lines: Vec::with_capacity(BATCH_LINES),
        });
        batch.buf.clear();
        batch.lines.clear();
        let mut at_end = false;
        while batch.lines.len() < BATCH_LINES && batch.buf.len() < BATCH_BYTES {
            let start = batch.buf.len();
            match reader.read_until(b'\n', &mut batch.buf) {
                Ok(0) => {
                    at_end = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = batches.send(Err(e));
                    return;
                }
            }
            let buf = &batch.buf;
            let mut end = buf.len();
            if buf[end - 1] == b'\n' {
                end -= 1;
                if end > start && buf[end - 1] == b'\r' {
                    end -= 1;
                }
            }
            batch.lines.push(start..end);
        }
        if (!batch.lines.is_empty() && batches.send(Ok(batch)).is_err()) || at_end {
            return;
        }
    }
}

/// Opens a file, decompressing gzip or zstd by extension or magic bytes.
pub fn open_decompressed(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 4];
    let got = file.read(&mut magic)?;
    let file = File::open(path)?;
    let name = path.to_string_lossy();
    let gzip = name.ends_with(".gz") || (got >= 2 && magic[..2] == [0x1f, 0x8b]);
    let zstd = name.ends_with(".zst") || (got == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd]);
    Ok(if gzip {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else if zstd {
        Box::new(BufReader::new(zstd::stream::read::Decoder::new(file)?))
    } else {
        Box::new(BufReader::with_capacity(256 * 1024, file))
    })
}
