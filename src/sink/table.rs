//! The two output tables as Arrow: `deliveries` (every event, classified
//! when it failed) and `rejected` (dead letters with their raw bytes).
//!
//! The columns are a public contract, documented in
//! `schemas/deliveries.md`; add columns at the end, never rename one. The
//! partition columns `date` and `org` are not stored in the files: they
//! come from the directory names.

use std::fmt::Write;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Int32Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};

use crate::event::{DeliveryEvent, domain_part};

/// Where a record came from: the Kafka topic and partition (or the input
/// file) and its offset there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePosition {
    /// Shared by every row of a source.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// A delivery event with its classification, ready to be written.
///
/// It lives only until it is buffered: [`DeliveriesBuilder::append`] copies
/// it into columns and derives `event_id` and the domains there.
#[derive(Clone, Debug)]
pub struct DeliveryRow {
    pub event: DeliveryEvent,
    /// Which of its message's events this is (a Postfix expiry gives one
    /// per recipient); part of `event_id`.
    pub index: u32,
    pub category: Option<String>,
    pub reason: Option<String>,
    pub severity: Option<&'static str>,
    pub rule: Option<&'static str>,
    pub matched: Option<String>,
    pub source: SourcePosition,
}

impl DeliveryRow {
    /// A rough size once buffered in columns, for flushing by bytes.
    pub fn approx_bytes(&self) -> usize {
        let e = &self.event;
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        160 + e.org_id.len()
            + e.recipient.len()
            + opt(&e.sender)
            + opt(&e.reply)
            + opt(&e.extra)
            + opt(&e.message_id)
            + opt(&e.remote_host)
            + opt(&self.matched)
    }
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
    event_id: StringBuilder,
    sender_domain: StringBuilder,
    recipient_domain: StringBuilder,
    /// The text columns taken as they are, in the order of [`Self::texts`].
    texts: [StringBuilder; 17],
    smtp_code: Int32Builder,
    attempt: Int32Builder,
    size: Int64Builder,
    nrcpt: Int32Builder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    extra: StringBuilder,
}

/// Typical bytes per value of each variable-width column of a builder, to
/// size the next builders by (see [`DeliveriesBuilder::widths`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Widths {
    event_id: usize,
    sender_domain: usize,
    recipient_domain: usize,
    texts: [usize; 17],
    topic: usize,
    extra: usize,
}

impl Default for Widths {
    fn default() -> Self {
        Self {
            event_id: 16,
            sender_domain: 16,
            recipient_domain: 16,
            texts: [16; 17],
            topic: 16,
            extra: 16,
        }
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
            event_id: text(widths.event_id),
            sender_domain: text(widths.sender_domain),
            recipient_domain: text(widths.recipient_domain),
            texts: std::array::from_fn(|i| text(widths.texts[i])),
            smtp_code: Int32Builder::with_capacity(rows),
            attempt: Int32Builder::with_capacity(rows),
            size: Int64Builder::with_capacity(rows),
            nrcpt: Int32Builder::with_capacity(rows),
            topic: text(widths.topic),
            partition: Int32Builder::with_capacity(rows),
            offset: Int64Builder::with_capacity(rows),
            extra: text(widths.extra),
        }
    }

    /// The bytes per value of each variable-width column so far, rounded
    /// up (at least 1); `None` when empty.
    pub fn widths(&self) -> Option<Widths> {
        let rows = self.len();
        if rows == 0 {
            return None;
        }
        let width = |b: &StringBuilder| b.values_slice().len().div_ceil(rows).max(1);
        Some(Widths {
            event_id: width(&self.event_id),
            sender_domain: width(&self.sender_domain),
            recipient_domain: width(&self.recipient_domain),
            texts: std::array::from_fn(|i| width(&self.texts[i])),
            topic: width(&self.topic),
            extra: width(&self.extra),
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

    /// The columns taken from a row as they are, in the order `texts` holds
    /// their builders.
    fn texts(row: &DeliveryRow) -> [Option<&str>; 17] {
        let e = &row.event;
        [
            Some(&e.org_id),
            e.sender.as_deref(),
            Some(&e.recipient),
            e.message_id.as_deref(),
            e.queue_id.as_deref(),
            Some(e.outcome.as_str()),
            e.enhanced_code.as_deref(),
            e.reply.as_deref(),
            e.remote_host.as_deref(),
            e.remote_ip.as_deref(),
            e.sending_ip.as_deref(),
            row.category.as_deref(),
            row.reason.as_deref(),
            row.severity,
            row.rule,
            row.matched.as_deref(),
            Some(e.format.as_str()),
        ]
    }

    /// Appends one row, deriving `event_id` and the domains.
    pub fn append(&mut self, row: &DeliveryRow) {
        let e = &row.event;
        let s = &row.source;
        self.time.append_value(e.event_time.timestamp_micros());
        write!(self.event_id, "{}:{}:{}:{}", s.topic, s.partition, s.offset, row.index)
            .expect("writing to memory");
        self.event_id.append_value("");
        append_domain(&mut self.sender_domain, e.sender.as_deref());
        append_domain(&mut self.recipient_domain, Some(&e.recipient));
        for (builder, value) in self.texts.iter_mut().zip(Self::texts(row)) {
            builder.append_option(value);
        }
        self.smtp_code.append_option(e.smtp_code.map(i32::from));
        self.attempt.append_option(e.attempt.and_then(|v| i32::try_from(v).ok()));
        self.size.append_option(e.size_bytes.and_then(|v| i64::try_from(v).ok()));
        self.nrcpt.append_option(e.nrcpt.and_then(|v| i32::try_from(v).ok()));
        self.topic.append_value(&s.topic);
        self.partition.append_value(s.partition);
        self.offset.append_value(s.offset);
        self.extra.append_option(e.extra.as_deref());
    }

    /// The rows appended, as a batch of the `deliveries` schema; the
    /// builder is left empty.
    pub fn finish(&mut self) -> RecordBatch {
        let mut texts = self.texts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut next = || texts.next().expect("17 text columns");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.event_id.finish()),
            next(), // org_id
            next(), // sender
            Arc::new(self.sender_domain.finish()),
            next(), // recipient
            Arc::new(self.recipient_domain.finish()),
            next(), // message_id
            next(), // queue_id
            next(), // outcome
            Arc::new(self.smtp_code.finish()),
            next(), // enhanced_code
            next(), // reply
            next(), // remote_host
            next(), // remote_ip
            next(), // sending_ip
            Arc::new(self.attempt.finish()),
            Arc::new(self.size.finish()),
            Arc::new(self.nrcpt.finish()),
            next(), // category
            next(), // reason
            next(), // severity
            next(), // rule
            next(), // matched
            next(), // source_format
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.extra.finish()),
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

/// Appends the lower-cased domain of an address, or null.
fn append_domain(builder: &mut StringBuilder, address: Option<&str>) {
    match address.and_then(domain_part) {
        Some(domain) if domain.bytes().any(|b| b.is_ascii_uppercase()) => {
            builder.append_value(domain.to_ascii_lowercase());
        }
        Some(domain) => builder.append_value(domain),
        None => builder.append_null(),
    }
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
