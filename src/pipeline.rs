//! One source's way from raw messages to committed Parquet: decode,
//! classify, buffer, and flush by rows, bytes or age through the
//! exactly-once [`Committer`].
//!
//! The stream job keeps one [`SourceWriter`] per assigned Kafka partition;
//! `ingest` keeps one per input file. Both go through the same code, so
//! what a backfill writes is what the stream job would have written.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::formats::{DecodeSettings, Decoder, Stateless};
use crate::rows::{Lane, Message, RowContext, Text};
use crate::sink::{
    Checkpoint, Committer, DeliveriesBuilder, Flush, FlushStats, PartitionRows,
    RejectedRow, SinkError, SourcePosition, Totals, Widths,
};
use crate::taxonomy::Classifier;

/// When a buffer is written out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlushPolicy {
    /// Rows buffered per source before a flush.
    pub max_rows: usize,
    /// Approximate in-memory bytes buffered per source before a flush.
    pub max_bytes: usize,
    /// Seconds the oldest buffered record may wait.
    pub max_age_secs: u64,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        Self { max_rows: 1_000_000, max_bytes: 256 * 1024 * 1024, max_age_secs: 120 }
    }
}

/// How much of a dead letter's raw bytes is kept.
pub const DEFAULT_MAX_RAW_BYTES: usize = 1024 * 1024;

/// What became of one message.
#[derive(Debug)]
pub enum Accepted {
    /// Below the checkpoint: already in the data, skipped.
    AlreadyWritten,
    Buffered {
        rows: usize,
    },
    Skipped,
    /// Dead-lettered; the row is also buffered for the `rejected` table.
    DeadLettered(Box<RejectedRow>),
}

/// A message decoded and classified ahead of being taken, possibly on
/// another thread: one message of a [`PreparedBatch`].
#[derive(Clone, Copy)]
pub struct Prepared<'p> {
    /// The bytes the batch was prepared from.
    input: &'p [u8],
    lane: &'p Lane,
    message: usize,
}

impl Prepared<'_> {
    fn message(&self) -> &Message {
        &self.lane.messages()[self.message]
    }
}

/// Messages prepared together by [`Preparer::prepare`], in lanes of
/// consecutive messages, one lane per task on the thread pool. Kept and
/// prepared into again, it reuses its memory.
#[derive(Default)]
pub struct PreparedBatch {
    lanes: Vec<Lane>,
}

impl PreparedBatch {
    /// The messages in order; `input` is what they were prepared from.
    pub fn iter<'p>(&'p self, input: &'p [u8]) -> impl Iterator<Item = Prepared<'p>> {
        self.lanes.iter().flat_map(move |lane| {
            (0..lane.messages().len()).map(move |message| Prepared {
                input,
                lane,
                message,
            })
        })
    }
}

/// Messages of a batch decoded one after another by one task.
const LANE_MESSAGES: usize = 1024;

/// The writer of one source.
pub struct SourceWriter {
    source: String,
    topic: Arc<str>,
    partition: i32,
    decoder: Decoder,
    committed: Checkpoint,
    /// Buffered rows, in columns, one buffer per output partition.
    deliveries: Vec<PartitionRows>,
    /// Where each organisation's buffers are in `deliveries`, by local date.
    partitions: HashMap<String, Vec<(NaiveDate, usize)>>,
    /// Rows each organisation had in one partition of the last flush, and
    /// how wide its values were: the next buffers are sized by them.
    last_rows: HashMap<String, usize>,
    last_widths: Widths,
    delivery_rows: usize,
    rejected: Vec<RejectedRow>,
    /// Classified rows buffered, by category.
    bounces: Vec<(String, u64)>,
    first_offset: Option<i64>,
    next_offset: i64,
    pending: Totals,
    bytes: usize,
    opened_at: Instant,
    max_raw_bytes: usize,
    /// The partitions' time zone, and the local date of the last row
    /// buffered.
    time_zone: Tz,
    last_date: Option<NaiveDate>,
    /// Where messages decoded in order are put before being buffered.
    scratch: Lane,
}

impl SourceWriter {
    /// Opens a source: finishes any interrupted flush and loads its checkpoint.
    pub fn open(
        committer: &Committer,
        source: String,
        topic: String,
        partition: i32,
        settings: DecodeSettings,
        max_raw_bytes: usize,
    ) -> Result<Self, SinkError> {
        let committed = committer.recover(&source)?.unwrap_or_else(|| Checkpoint {
            source: source.clone(),
            ..Checkpoint::default()
        });
        let mut decoder = Decoder::new(settings);
        decoder.restore(committed.join_state.clone());
        Ok(Self {
            next_offset: committed.next_offset,
            source,
            topic: topic.into(),
            partition,
            decoder,
            committed,
            deliveries: Vec::new(),
            partitions: HashMap::new(),
            last_rows: HashMap::new(),
            last_widths: Widths::default(),
            delivery_rows: 0,
            rejected: Vec::new(),
            bounces: Vec::new(),
            first_offset: None,
            pending: Totals::default(),
            bytes: 0,
            opened_at: Instant::now(),
            max_raw_bytes,
            time_zone: committer.time_zone(),
            last_date: None,
            scratch: Lane::default(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Everything below this offset is durable.
    pub fn committed_offset(&self) -> i64 {
        self.committed.next_offset
    }

    /// The offset after the last message taken (flushed or not).
    pub fn read_offset(&self) -> i64 {
        self.next_offset
    }

    /// Totals over the life of the source, flushed or not.
    pub fn totals(&self) -> Totals {
        let mut t = self.committed.totals;
        t.add(&self.pending);
        t
    }

    pub fn buffered_rows(&self) -> usize {
        self.delivery_rows + self.rejected.len()
    }

    /// Decodes, classifies and buffers one message.
    pub fn accept(
        &mut self,
        classifier: &Classifier,
        offset: i64,
        payload: &[u8],
        received: Option<DateTime<Utc>>,
    ) -> Accepted {
        if offset < self.next_offset {
            return Accepted::AlreadyWritten;
        }
        self.accept_in_order(classifier, offset, payload, received)
    }

    /// What decodes and classifies messages ahead of
    /// [`accept_prepared`](Self::accept_prepared), on any thread: it holds
    /// no part of the buffer, so the next batch can be prepared while this
    /// one is taken.
    pub fn preparer(&self) -> Preparer {
        Preparer {
            decoder: Decoder::new(self.decoder.settings().clone()),
            topic: self.topic.clone(),
            partition: self.partition,
            skip_below: self.next_offset,
            time_zone: self.time_zone,
        }
    }

    /// Buffers one message prepared ahead by [`Preparer::prepare`]; one
    /// that could not be prepared (see [`Message::InOrder`]) is decoded
    /// here.
    pub fn accept_prepared(
        &mut self,
        classifier: &Classifier,
        offset: i64,
        payload: &[u8],
        received: Option<DateTime<Utc>>,
        prepared: Prepared<'_>,
    ) -> Accepted {
        if offset < self.next_offset {
            return Accepted::AlreadyWritten;
        }
        match prepared.message() {
            Message::InOrder => {
                self.accept_in_order(classifier, offset, payload, received)
            }
            message => self.take_message(
                offset,
                payload,
                received,
                prepared.input,
                prepared.lane,
                message,
            ),
        }
    }

    /// Decodes (with the join state), classifies and buffers a message at
    /// or above the read offset.
    fn accept_in_order(
        &mut self,
        classifier: &Classifier,
        offset: i64,
        payload: &[u8],
        received: Option<DateTime<Utc>>,
    ) -> Accepted {
        let decoded = self.decoder.decode(payload, received);
        let mut lane = std::mem::take(&mut self.scratch);
        lane.clear();
        let cx = RowContext {
            classifier,
            topic: &self.topic,
            partition: self.partition,
            time_zone: self.time_zone,
        };
        lane.push_decoded(&cx, offset, decoded);
        let accepted =
            self.take_message(offset, payload, received, &[], &lane, &lane.messages()[0]);
        self.scratch = lane;
        accepted
    }

    /// Buffers a decoded message at or above the read offset: its rows
    /// (in `lane`, their text in `input` or the lane), or its dead letter.
    fn take_message(
        &mut self,
        offset: i64,
        payload: &[u8],
        received: Option<DateTime<Utc>>,
        input: &[u8],
        lane: &Lane,
        message: &Message,
    ) -> Accepted {
        if self.first_offset.is_none() {
            self.first_offset = Some(offset);
            self.opened_at = Instant::now();
        }
        self.next_offset = offset + 1;
        self.pending.consumed += 1;
        match message {
            Message::Rows { first, count } => {
                self.pending.written += 1;
                let texts = lane.texts(input);
                for row in &lane.rows()[*first..first + count] {
                    if let Some(category) = texts.get(row.text(Text::Category)) {
                        self.count_bounce(category);
                    }
                    self.bytes += row.approx_bytes;
                    let org_id = texts.get(row.text(Text::OrgId)).unwrap_or_default();
                    let (topic, partition) = (self.topic.clone(), self.partition);
                    self.partition_rows(row.date, org_id)
                        .append(row, texts, &topic, partition);
                    self.last_date = Some(row.date);
                }
                self.pending.rows += *count as u64;
                self.delivery_rows += count;
                Accepted::Buffered { rows: *count }
            }
            Message::Skipped => {
                self.pending.skipped += 1;
                Accepted::Skipped
            }
            Message::Rejected(reason) => {
                self.pending.dead_lettered += 1;
                metrics::counter!("bouncelens_records_dead_lettered_total", "reason" => reason.as_str())
                    .increment(1);
                let keep = payload.len().min(self.max_raw_bytes);
                let row = RejectedRow {
                    received_at: received.unwrap_or_else(Utc::now),
                    source: self.position(offset),
                    reason: reason.as_str(),
                    detail: reason.to_string(),
                    raw: payload[..keep].to_vec(),
                    raw_size: payload.len() as u64,
                    raw_truncated: keep < payload.len(),
                };
                self.bytes += 200 + keep;
                self.rejected.push(row.clone());
                Accepted::DeadLettered(Box::new(row))
            }
            Message::InOrder => unreachable!("a message taken in order is decoded first"),
        }
    }

    /// The buffer of the partition for `date` and `org_id`, made if new.
    fn partition_rows(
        &mut self,
        date: NaiveDate,
        org_id: &str,
    ) -> &mut DeliveriesBuilder {
        let dates = match self.partitions.get_mut(org_id) {
            Some(dates) => dates,
            None => self.partitions.entry(org_id.to_string()).or_default(),
        };
        let i = match dates.iter().find(|(d, _)| *d == date) {
            Some(&(_, i)) => i,
            None => {
                let i = self.deliveries.len();
                dates.push((date, i));
                // A day's rows of an organisation are much like the last
                // day's: room for those and an eighth more. One not seen
                // yet starts small (a source holds many partitions, most of
                // them small) and its builders double as they fill.
                let rows = self.last_rows.get(org_id).map_or(16, |n| n + n / 8);
                self.deliveries.push(PartitionRows {
                    date,
                    org_id: org_id.to_string(),
                    rows: DeliveriesBuilder::with_capacity(rows, &self.last_widths),
                });
                i
            }
        };
        &mut self.deliveries[i].rows
    }

    /// Counts a classified row for `bouncelens_bounces_total`, which is
    /// told at the flush (one metrics lookup per category, not per row).
    fn count_bounce(&mut self, category: &str) {
        match self.bounces.iter_mut().find(|(c, _)| c == category) {
            Some((_, n)) => *n += 1,
            None => self.bounces.push((category.to_string(), 1)),
        }
    }

    fn position(&self, offset: i64) -> SourcePosition {
        SourcePosition { topic: self.topic.clone(), partition: self.partition, offset }
    }

    /// Whether the buffer is due by rows, bytes or age.
    pub fn due(&self, policy: &FlushPolicy) -> bool {
        self.due_by_size(policy)
            || (self.first_offset.is_some()
                && self.opened_at.elapsed() >= Duration::from_secs(policy.max_age_secs))
    }

    /// Whether the buffer is due by rows or bytes, leaving age aside (it
    /// needs the clock, which a caller taking a message every few
    /// microseconds need not read every time).
    pub fn due_by_size(&self, policy: &FlushPolicy) -> bool {
        self.first_offset.is_some()
            && (self.buffered_rows() >= policy.max_rows || self.bytes >= policy.max_bytes)
    }

    /// Whether to flush before taking `next`, a message prepared ahead:
    /// when the buffer is at least half due and `next` starts a new local
    /// day. Logs come in time order, so a buffer cut where the day turns
    /// gives each day's partitions one file where a cut anywhere else
    /// would leave two.
    pub fn day_turns_at(&self, next: &Prepared<'_>, policy: &FlushPolicy) -> bool {
        let Message::Rows { first, count: 1.. } = *next.message() else {
            return false;
        };
        let Some(last_date) = self.last_date else {
            return false;
        };
        (self.buffered_rows() >= policy.max_rows / 2
            || self.bytes >= policy.max_bytes / 2)
            && next.lane.rows()[first].date != last_date
    }

    /// Writes the buffer out. Returns the offset to commit to Kafka, or
    /// `None` when there was nothing to write.
    pub fn flush(
        &mut self,
        committer: &Committer,
    ) -> Result<Option<(i64, FlushStats)>, SinkError> {
        self.take().map(|job| job.commit(committer)).transpose()
    }

    /// Takes the buffer as a flush to commit, here or on another thread,
    /// and goes on as if it were committed: the next flush starts where
    /// this one ends. Flushes of a source must be committed in the order
    /// taken, and a failed one stops the source (reopen it to recover).
    /// `None` when there is nothing to write.
    pub fn take(&mut self) -> Option<PendingFlush> {
        let first_offset = self.first_offset.take()?;
        let mut totals = self.committed.totals;
        totals.add(&self.pending);
        let checkpoint = Checkpoint {
            source: self.source.clone(),
            next_offset: self.next_offset,
            totals,
            join_state: self.decoder.snapshot(),
        };
        self.last_rows.clear();
        for buffer in &self.deliveries {
            let rows = self.last_rows.entry(buffer.org_id.clone()).or_default();
            *rows = (*rows).max(buffer.rows.len());
        }
        if let Some(widths) = self
            .deliveries
            .iter()
            .max_by_key(|b| b.rows.len())
            .and_then(|b| b.rows.widths())
        {
            self.last_widths = widths;
        }
        let job = PendingFlush {
            source: self.source.clone(),
            first_offset,
            deliveries: std::mem::take(&mut self.deliveries),
            delivery_rows: self.delivery_rows,
            rejected: std::mem::take(&mut self.rejected),
            bounces: std::mem::take(&mut self.bounces),
            checkpoint: checkpoint.clone(),
        };
        self.committed = checkpoint;
        self.partitions.clear();
        self.delivery_rows = 0;
        self.pending = Totals::default();
        self.bytes = 0;
        self.last_date = None;
        Some(job)
    }
}

/// A buffer taken from a [`SourceWriter`], to be committed.
pub struct PendingFlush {
    source: String,
    first_offset: i64,
    deliveries: Vec<PartitionRows>,
    delivery_rows: usize,
    rejected: Vec<RejectedRow>,
    bounces: Vec<(String, u64)>,
    checkpoint: Checkpoint,
}

impl PendingFlush {
    /// Commits the flush; returns the offset to commit to Kafka.
    pub fn commit(self, committer: &Committer) -> Result<(i64, FlushStats), SinkError> {
        let started = Instant::now();
        let next_offset = self.checkpoint.next_offset;
        let stats = committer.commit(Flush {
            first_offset: self.first_offset,
            deliveries: self.deliveries,
            rejected: &self.rejected,
            checkpoint: self.checkpoint,
        })?;
        metrics::counter!("bouncelens_records_written_total")
            .increment(self.delivery_rows as u64);
        for (category, n) in self.bounces {
            metrics::counter!("bouncelens_bounces_total", "category" => category)
                .increment(n);
        }
        metrics::counter!("bouncelens_files_written_total").increment(stats.files as u64);
        metrics::histogram!("bouncelens_flush_rows").record(stats.rows as f64);
        metrics::histogram!("bouncelens_flush_bytes").record(stats.bytes as f64);
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!("bouncelens_flush_duration_seconds").record(seconds);
        tracing::debug!(source = %self.source, first_offset = self.first_offset, next_offset, files = stats.files, rows = stats.rows, seconds, "flushed");
        Ok((next_offset, stats))
    }
}

/// Decodes and classifies messages ahead of
/// [`SourceWriter::accept_prepared`], made by [`SourceWriter::preparer`].
pub struct Preparer {
    /// Used for the stateless formats only: Postfix lines need the
    /// writer's join state and are decoded when taken.
    decoder: Decoder,
    topic: Arc<str>,
    partition: i32,
    /// Offsets below this were already written when the preparer was made.
    skip_below: i64,
    time_zone: Tz,
}

impl Preparer {
    /// Decodes and classifies a batch of messages into `batch`, on the
    /// shared thread pool when `parallel`. Each message is `input[line]`
    /// for one of `lines`, the first at offset `first_offset` and the rest
    /// following on. Messages that need the join state (Postfix lines) or
    /// were already written are left to be decoded when taken.
    pub fn prepare(
        &self,
        classifier: &Classifier,
        first_offset: i64,
        input: &[u8],
        lines: &[Range<usize>],
        parallel: bool,
        batch: &mut PreparedBatch,
    ) {
        let lanes = lines.len().div_ceil(LANE_MESSAGES);
        batch.lanes.truncate(lanes);
        batch.lanes.resize_with(lanes, Lane::default);
        let cx = RowContext {
            classifier,
            topic: &self.topic,
            partition: self.partition,
            time_zone: self.time_zone,
        };
        let one = |(i, (lane, lines)): (usize, (&mut Lane, &[Range<usize>]))| {
            lane.clear();
            for (j, line) in lines.iter().enumerate() {
                let offset = first_offset + (i * LANE_MESSAGES + j) as i64;
                if offset < self.skip_below {
                    lane.push(Message::InOrder);
                    continue;
                }
                let first = lane.rows().len();
                let decoded = self.decoder.decode_stateless(
                    &input[line.clone()],
                    |index, event| {
                        lane.push_row(&cx, input, offset, index, event);
                    },
                );
                lane.push(match decoded {
                    Stateless::Events(count) => Message::Rows { first, count },
                    Stateless::Skipped(_) => Message::Skipped,
                    Stateless::Rejected(reason) => Message::Rejected(reason),
                    Stateless::InOrder => Message::InOrder,
                });
            }
        };
        if parallel {
            batch
                .lanes
                .par_iter_mut()
                .zip(lines.par_chunks(LANE_MESSAGES))
                .enumerate()
                .for_each(one);
        } else {
            batch
                .lanes
                .iter_mut()
                .zip(lines.chunks(LANE_MESSAGES))
                .enumerate()
                .for_each(one);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Layout;

    const EVENTS: &str = include_str!("../tests/fixtures/events.ndjson");
    const POSTFIX: &str = include_str!("../examples/postfix-mail.log");

    /// Canonical events and Postfix lines interleaved, with broken
    /// messages of each kind among them.
    fn messages() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (event, postfix) in EVENTS.lines().zip(POSTFIX.lines()).take(1500) {
            out.push(event.as_bytes().to_vec());
            out.push(postfix.as_bytes().to_vec());
        }
        let broken: [&[u8]; 4] = [
            b"{\"timestamp\": 1, \"recipient",
            b"\xff\xfe not text",
            b"   ",
            br#"{"type":"Reception","id":"x","sender":"a@b.c","recipient":"d@e.f","response":{"code":250},"timestamp":1}"#,
        ];
        for (i, bad) in broken.iter().enumerate() {
            out.insert(100 + 700 * i, bad.to_vec());
        }
        out
    }

    /// What a writer buffered: each partition's rows as a batch, the dead
    /// letters as text, and the totals.
    type Taken =
        (Vec<(NaiveDate, String, arrow::array::RecordBatch)>, Vec<String>, Totals);

    fn taken(writer: &mut SourceWriter) -> Taken {
        let totals = writer.totals();
        let flush = writer.take().expect("something was buffered");
        let rows = flush
            .deliveries
            .into_iter()
            .map(|mut p| (p.date, p.org_id, p.rows.finish()))
            .collect();
        let rejected = flush.rejected.iter().map(|r| format!("{r:?}")).collect();
        (rows, rejected, totals)
    }

    /// Messages laid one after another in one buffer, as ingest reads
    /// them, and where each lies.
    fn concatenated(messages: &[Vec<u8>]) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut input = Vec::new();
        let mut lines = Vec::new();
        for m in messages {
            let start = input.len();
            input.extend_from_slice(m);
            lines.push(start..input.len());
            input.push(b'\n');
        }
        (input, lines)
    }

    /// A writer of source `s` with the default settings.
    fn open_writer(committer: &Committer) -> SourceWriter {
        SourceWriter::open(
            committer,
            "s".into(),
            "t".into(),
            0,
            DecodeSettings::default(),
            64,
        )
        .unwrap()
    }

    #[test]
    fn batches_prepared_on_the_pool_buffer_what_one_at_a_time_does() {
        let dir = tempfile::tempdir().unwrap();
        let committer = Committer::new(Layout::new(dir.path()), chrono_tz::UTC);
        let classifier = Classifier::builtin();
        let settings =
            DecodeSettings { syslog_year: Some(2014), ..DecodeSettings::default() };
        let received = DateTime::from_timestamp(1_764_583_200, 0);
        let open = |name: &str| {
            SourceWriter::open(
                &committer,
                name.into(),
                "t".into(),
                0,
                settings.clone(),
                64,
            )
            .unwrap()
        };
        let messages = messages();
        let mut one_by_one = open("a");
        for (offset, m) in messages.iter().enumerate() {
            one_by_one.accept(&classifier, offset as i64, m, received);
        }
        let expected = taken(&mut one_by_one);
        let rows: usize = expected.0.iter().map(|(_, _, b)| b.num_rows()).sum();
        assert!(rows > 2000, "the batch yields deliveries");
        assert!(expected.1.len() >= 3, "the broken messages are dead letters");
        assert!(expected.2.skipped >= 1, "the KumoMTA reception is skipped");
        // Batches of several lanes each, the last lane of each part full.
        let per_batch = 2 * LANE_MESSAGES + 777;
        for parallel in [false, true] {
            let mut batched = open("b");
            let mut prepared = PreparedBatch::default();
            for (n, batch) in messages.chunks(per_batch).enumerate() {
                let first = (n * per_batch) as i64;
                let (input, lines) = concatenated(batch);
                let preparer = batched.preparer();
                preparer.prepare(
                    &classifier,
                    first,
                    &input,
                    &lines,
                    parallel,
                    &mut prepared,
                );
                for (i, (line, p)) in lines.iter().zip(prepared.iter(&input)).enumerate()
                {
                    batched.accept_prepared(
                        &classifier,
                        first + i as i64,
                        &input[line.clone()],
                        received,
                        p,
                    );
                }
            }
            assert!(taken(&mut batched) == expected, "parallel: {parallel}");
        }
    }

    #[test]
    fn a_half_due_buffer_is_cut_where_the_local_day_turns() {
        let dir = tempfile::tempdir().unwrap();
        let committer =
            Committer::new(Layout::new(dir.path()), chrono_tz::Asia::Shanghai);
        let classifier = Classifier::builtin();
        let mut writer = open_writer(&committer);
        let policy =
            FlushPolicy { max_rows: 4, max_bytes: usize::MAX, max_age_secs: 3600 };
        // 15:59 and 16:00 UTC are 23:59 and 00:00 in Shanghai.
        let at = |time: &str| {
            format!(
                r#"{{"timestamp": "2026-11-02T{time}Z", "org_id": "o", "recipient": "r@x.example", "outcome": "delivered"}}"#
            )
            .into_bytes()
        };
        let day_one = [at("15:58:00"), at("15:59:00")];
        let next_day = at("16:00:00");
        let prepare = |writer: &SourceWriter, offset: i64, payload: &[u8]| {
            let mut batch = PreparedBatch::default();
            let lines = vec![Range { start: 0, end: payload.len() }];
            writer.preparer().prepare(
                &classifier,
                offset,
                payload,
                &lines,
                false,
                &mut batch,
            );
            batch
        };
        let turns = |writer: &SourceWriter, batch: &PreparedBatch, payload: &[u8]| {
            let next = batch.iter(payload).next().expect("one message");
            writer.day_turns_at(&next, &policy)
        };
        writer.accept(&classifier, 0, &day_one[0], None);
        let turn = prepare(&writer, 1, &next_day);
        assert!(!turns(&writer, &turn, &next_day), "one row of four is not half due");
        writer.accept(&classifier, 1, &day_one[1], None);
        let same_day = at("15:59:30");
        let prepared = prepare(&writer, 2, &same_day);
        assert!(!turns(&writer, &prepared, &same_day), "the day has not turned");
        let turn = prepare(&writer, 2, &next_day);
        assert!(turns(&writer, &turn, &next_day), "half due, and a new local day");
        let flush = writer.take().unwrap();
        assert_eq!(flush.commit(&committer).unwrap().0, 2);
        assert!(!turns(&writer, &turn, &next_day), "an empty buffer is not cut");
    }

    #[test]
    fn a_new_buffer_is_sized_by_the_last_flush() {
        let dir = tempfile::tempdir().unwrap();
        let committer = Committer::new(Layout::new(dir.path()), chrono_tz::UTC);
        let classifier = Classifier::builtin();
        let mut writer = open_writer(&committer);
        let event = |org: &str, second: u32| {
            format!(
                r#"{{"timestamp": "2026-11-02T10:{:02}:{:02}Z", "org_id": "{org}", "recipient": "someone.with.a.long.name@x.example", "outcome": "delivered"}}"#,
                second / 60,
                second % 60
            )
            .into_bytes()
        };
        let mut offset = 0;
        let mut accept = |writer: &mut SourceWriter, org: &str, second: u32| {
            writer.accept(&classifier, offset, &event(org, second), None);
            offset += 1;
        };
        for second in 0..600 {
            accept(&mut writer, "big", second);
        }
        accept(&mut writer, "small", 0);
        let flush = writer.take().unwrap();
        assert_eq!(flush.commit(&committer).unwrap().1.rows, 601);
        for org in ["big", "small", "new"] {
            accept(&mut writer, org, 0);
        }
        let capacity = |org: &str| {
            let buffer = writer.deliveries.iter().find(|p| p.org_id == org).unwrap();
            assert_eq!(buffer.rows.len(), 1);
            buffer.rows.capacity()
        };
        assert!(capacity("big") >= 600, "room for a flush like the last");
        assert!(capacity("small") < 600, "sized by its own rows, not the largest");
        assert!(capacity("new") < 600, "an organisation not seen starts small");
        let widths = writer.deliveries[0].rows.widths().unwrap();
        assert_eq!(widths, writer.last_widths, "one row as wide as the last flush's");
    }
}
