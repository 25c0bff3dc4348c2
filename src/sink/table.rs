//! The two output tables as Arrow: `deliveries` (every event, classified
//! when it failed) and `rejected` (dead letters with their raw bytes).
//!
//! The columns are a public contract, documented in
//! `schemas/deliveries.md`; add columns at the end, never rename one. The
//! partition columns `date` and `org` are not stored in the files: they
//! come from the directory names.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Int32Builder, Int64Builder,
    RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};

use crate::rows::{Row, TEXTS, Texts};

/// Where a record came from: the Kafka topic and partition (or the input
/// file) and its offset there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePosition {
    /// Shared by every row of a source.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// A message that could not be read.
#[derive(Clone, Debug)]
pub struct RejectedRow {
    pub received_at: DateTime<Utc>,
    pub source: SourcePosition,
    pub reason: &'static str,
    pub detail: String,
    pub raw: Vec<u8>,
    pub raw_size: u64,
    pub raw_truncated: bool,
}

pub static DELIVERIES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        text("event_id", false),
        text("org_id", false),
        text("sender", true),
        text("sender_domain", true),
        text("recipient", false),
        text("recipient_domain", true),
        text("message_id", true),
        text("queue_id", true),
        text("outcome", false),
        Field::new("smtp_code", DataType::Int32, true),
        text("enhanced_code", true),
        text("reply", true),
        text("remote_host", true),
        text("remote_ip", true),
        text("sending_ip", true),
        Field::new("attempt", DataType::Int32, true),
        Field::new("size_bytes", DataType::Int64, true),
        Field::new("nrcpt", DataType::Int32, true),
        text("category", true),
        text("reason", true),
        text("severity", true),
        text("rule", true),
        text("matched", true),
        text("source_format", false),
        text("source_topic", false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("source_offset", DataType::Int64, false),
        text("extra", true),
    ]))
});

pub static REJECTED_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(
            "received_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("source_offset", DataType::Int64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("raw", DataType::Binary, false),
        Field::new("raw_size", DataType::Int64, false),
        Field::new("raw_truncated", DataType::Boolean, false),
    ]))
});

/// The `deliveries` columns of one output partition (a local date and an
/// organisation), filled a row at a time as rows are buffered.
///
/// Buffering columns rather than rows keeps a buffered row in a few
/// contiguous buffers instead of a dozen allocations of its own, and a
/// flush only hands the columns to the Parquet writer: no pass over rows
/// left cold in memory since they were read.
pub struct DeliveriesBuilder {
    time: TimestampMicrosecondBuilder,
    /// The text columns of a [`Row`]'s spans, in the order of
    /// [`Text`](crate::rows::Text). They are filled as bytes and checked to
    /// be UTF-8 when finished: one pass over each column is cheaper than a
    /// check of each value.
    texts: [BinaryBuilder; TEXTS],
    /// The columns of a few fixed values, in the order of [`Self::labels`].
    labels: [StringBuilder; LABELS],
    smtp_code: Int32Builder,
    attempt: Int32Builder,
    size: Int64Builder,
    nrcpt: Int32Builder,
    partition: Int32Builder,
    offset: Int64Builder,
}

/// Columns of a few fixed values: outcome, severity, rule, source format
/// and topic.
const LABELS: usize = 5;

/// Typical bytes per value of each variable-width column of a builder, to
/// size the next builders by (see [`DeliveriesBuilder::widths`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Widths {
    texts: [usize; TEXTS],
    labels: [usize; LABELS],
}

impl Default for Widths {
    fn default() -> Self {
        Self { texts: [16; TEXTS], labels: [8; LABELS] }
    }
}

impl DeliveriesBuilder {
    /// Room for `rows` rows whose values are about `widths` wide, so that a
    /// buffer sized from the last one seldom grows (growing copies it, and
    /// leaves memory behind that the next growth cannot reuse).
    pub fn with_capacity(rows: usize, widths: &Widths) -> Self {
        let text = |width: usize| StringBuilder::with_capacity(rows, rows * width);
        Self {
            time: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            texts: std::array::from_fn(|i| {
                BinaryBuilder::with_capacity(rows, rows * widths.texts[i])
            }),
            labels: std::array::from_fn(|i| text(widths.labels[i])),
            smtp_code: Int32Builder::with_capacity(rows),
            attempt: Int32Builder::with_capacity(rows),
            size: Int64Builder::with_capacity(rows),
            nrcpt: Int32Builder::with_capacity(rows),
            partition: Int32Builder::with_capacity(rows),
            offset: Int64Builder::with_capacity(rows),
        }
    }

    /// The bytes per value of each variable-width column so far, rounded
    /// up (at least 1); `None` when empty.
    pub fn widths(&self) -> Option<Widths> {
        let rows = self.len();
        if rows == 0 {
            return None;
        }
        let width = |bytes: usize| bytes.div_ceil(rows).max(1);
        Some(Widths {
            texts: std::array::from_fn(|i| width(self.texts[i].values_slice().len())),
            labels: std::array::from_fn(|i| width(self.labels[i].values_slice().len())),
        })
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows that fit before the builder grows.
    pub fn capacity(&self) -> usize {
        self.time.capacity()
    }

    /// The columns of a few fixed values of a row, in the order `labels`
    /// holds their builders.
    fn labels<'a>(row: &Row, topic: &'a str) -> [Option<&'a str>; LABELS] {
        [
            Some(row.outcome.as_str()),
            row.severity,
            row.rule,
            Some(row.format.as_str()),
            Some(topic),
        ]
    }

    /// Appends one row of a source (`topic` and `partition`), its text
    /// read through `texts`.
    pub fn append(&mut self, row: &Row, texts: Texts<'_>, topic: &str, partition: i32) {
        self.time.append_value(row.time_micros);
        for (builder, span) in self.texts.iter_mut().zip(row.texts) {
            match texts.bytes(span) {
                Some(text) => builder.append_value(text),
                None => builder.append_null(),
            }
        }
        for (builder, value) in self.labels.iter_mut().zip(Self::labels(row, topic)) {
            builder.append_option(value);
        }
        self.smtp_code.append_option(row.smtp_code.map(i32::from));
        self.attempt.append_option(row.attempt.and_then(|v| i32::try_from(v).ok()));
        self.size.append_option(row.size_bytes.and_then(|v| i64::try_from(v).ok()));
        self.nrcpt.append_option(row.nrcpt.and_then(|v| i32::try_from(v).ok()));
        self.partition.append_value(partition);
        self.offset.append_value(row.offset);
    }

    /// The rows appended, as a batch of the `deliveries` schema; the
    /// builder is left empty.
    pub fn finish(&mut self) -> RecordBatch {
        let mut texts = self.texts.iter_mut().map(|b| {
            let text = StringArray::try_from_binary(b.finish())
                .expect("spans are cut at the bounds of text");
            Arc::new(text) as ArrayRef
        });
        let mut text = || texts.next().expect("a text column");
        let mut labels = self.labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut label = || labels.next().expect("a label column");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            text(),  // event_id
            text(),  // org_id
            text(),  // sender
            text(),  // sender_domain
            text(),  // recipient
            text(),  // recipient_domain
            text(),  // message_id
            text(),  // queue_id
            label(), // outcome
            Arc::new(self.smtp_code.finish()),
            text(), // enhanced_code
            text(), // reply
            text(), // remote_host
            text(), // remote_ip
            text(), // sending_ip
            Arc::new(self.attempt.finish()),
            Arc::new(self.size.finish()),
            Arc::new(self.nrcpt.finish()),
            text(),  // category
            text(),  // reason
            label(), // severity
            label(), // rule
            text(),  // matched
            label(), // source_format
            label(), // source_topic
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            text(), // extra
        ];
        RecordBatch::try_new(DELIVERIES_SCHEMA.clone(), columns)
            .expect("columns are built to the schema")
    }
}

/// The rows buffered for one output partition: a local date and an
/// organisation as given (organisations that differ only in case share a
/// partition directory, and are put together when written).
pub struct PartitionRows {
    pub date: NaiveDate,
    pub org_id: String,
    pub rows: DeliveriesBuilder,
}

/// Builds a `rejected` batch from rows.
pub fn rejected_batch(rows: &[&RejectedRow]) -> RecordBatch {
    let mut time = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut topic = StringBuilder::new();
    let mut partition = Int32Builder::new();
    let mut offset = Int64Builder::new();
    let mut reason = StringBuilder::new();
    let mut detail = StringBuilder::new();
    let mut raw = BinaryBuilder::new();
    let mut raw_size = Int64Builder::new();
    let mut truncated = BooleanBuilder::new();
    for row in rows {
        time.append_value(row.received_at.timestamp_micros());
        topic.append_value(&row.source.topic);
        partition.append_value(row.source.partition);
        offset.append_value(row.source.offset);
        reason.append_value(row.reason);
        detail.append_value(&row.detail);
        raw.append_value(&row.raw);
        raw_size.append_value(i64::try_from(row.raw_size).unwrap_or(i64::MAX));
        truncated.append_value(row.raw_truncated);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(reason.finish()),
        Arc::new(detail.finish()),
        Arc::new(raw.finish()),
        Arc::new(raw_size.finish()),
        Arc::new(truncated.finish()),
    ];
    RecordBatch::try_new(REJECTED_SCHEMA.clone(), columns)
        .expect("columns are built to the schema")
}
