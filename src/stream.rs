//! The stream job: a Kafka consumer group member that runs every assigned
//! partition through its [`SourceWriter`] and commits offsets only after
//! the data they cover is durable.
//!
//! Offsets: auto-commit is off. After a partition's flush has been applied
//! (see [`crate::sink::commit`]) its next offset is committed to Kafka.
//! The data root's checkpoint is the authority: a message below it is
//! skipped, which makes a crash between the checkpoint and the Kafka commit
//! harmless.
//!
//! Rebalance: when partitions are revoked their unflushed buffers are
//! dropped (under the same lock a flush holds, so a flush in progress
//! finishes first); the next owner resumes from the checkpoint and reads
//! those records again. When partitions are assigned, each is recovered
//! (an interrupted flush finished) before its first message is taken.
//!
//! Shutdown (SIGTERM, SIGINT, or the end of the topics in drain mode)
//! flushes every partition and commits synchronously.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::config::Config;
use crate::formats::DecodeSettings;
use crate::pipeline::{Accepted, FlushPolicy, SourceWriter};
use crate::sink::{Committer, RejectedRow, SinkError, Totals};
use crate::taxonomy::Classifier;

/// Errors that stop the stream job. Bad input never does.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("Kafka client for {brokers}: {source}")]
    Kafka { brokers: String, source: KafkaError },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Health shared with `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    /// Whether at least one broker is up, per the last statistics.
    pub kafka_up: AtomicBool,
    /// Unix seconds of the last offset commit.
    pub last_commit: AtomicI64,
}

/// Names a Kafka partition as a source of the data root.
pub fn kafka_source(topic: &str, partition: i32) -> String {
    format!("kafka.{topic}.{partition}")
}

struct JobState {
    committer: Committer,
    decode: DecodeSettings,
    max_raw_bytes: usize,
    writers: HashMap<(String, i32), SourceWriter>,
    assigned: HashSet<(String, i32)>,
}

impl JobState {
    fn revoke(&mut self, tpl: &TopicPartitionList) {
        for e in tpl.elements() {
            let key = (e.topic().to_string(), e.partition());
            self.assigned.remove(&key);
            if let Some(w) = self.writers.remove(&key) {
                tracing::info!(topic = %key.0, partition = key.1, dropped = w.buffered_rows(), "partition revoked; unflushed records will be read again by its next owner");
            }
        }
    }

    fn assign(&mut self, tpl: &TopicPartitionList) {
        for e in tpl.elements() {
            self.assigned.insert((e.topic().to_string(), e.partition()));
        }
        tracing::info!(partitions = ?self.assigned, "partitions assigned");
    }

    fn writer(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut SourceWriter, SinkError> {
        let key = (topic.to_string(), partition);
        if !self.writers.contains_key(&key) {
            let writer = SourceWriter::open(
                &self.committer,
                kafka_source(topic, partition),
                topic.to_string(),
                partition,
                self.decode.clone(),
                self.max_raw_bytes,
            )?;
            tracing::info!(
                topic,
                partition,
                resume_at = writer.committed_offset(),
                "partition opened"
            );
            self.writers.insert(key.clone(), writer);
        }
        Ok(self.writers.get_mut(&key).expect("inserted above"))
    }
}

struct JobContext {
    state: Arc<Mutex<JobState>>,
    health: Arc<Health>,
}

impl ClientContext for JobContext {
    fn stats_raw(&self, statistics: &[u8]) {
        record_statistics(statistics, &self.health);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
        if matches!(error, KafkaError::PartitionEOF(_))
            || matches!(&error, KafkaError::Global(code) if *code == rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        {
            return;
        }
        if matches!(
            error,
            KafkaError::Global(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.health.kafka_up.store(false, Ordering::Relaxed);
        }
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            tracing::warn!(%error, reason, "kafka client error (repeats are not logged for a minute)");
            *last = Some(std::time::Instant::now());
        }
    }
}

impl ConsumerContext for JobContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            lock(&self.state).revoke(tpl);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            lock(&self.state).assign(tpl);
        }
    }
}

fn lock(state: &Mutex<JobState>) -> std::sync::MutexGuard<'_, JobState> {
    // A panic while holding the lock leaves nothing half-done on disk (the
    // commit protocol is crash-safe), so a poisoned lock is still usable.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads consumer lag per partition and broker state from librdkafka's
/// statistics JSON.
fn record_statistics(raw: &[u8], health: &Health) {
    let Ok(stats) = serde_json::from_slice::<serde_json::Value>(raw) else { return };
    if let Some(brokers) = stats.get("brokers").and_then(|b| b.as_object()) {
        let up = brokers
            .values()
            .any(|b| b.get("state").and_then(|s| s.as_str()) == Some("UP"));
        health.kafka_up.store(up, Ordering::Relaxed);
    }
    let Some(topics) = stats.get("topics").and_then(|t| t.as_object()) else { return };
    for (topic, t) in topics {
        let Some(partitions) = t.get("partitions").and_then(|p| p.as_object()) else {
            continue;
        };
        for (partition, p) in partitions {
            if partition == "-1" {
                continue;
            }
            let offset =
                |key: &str| p.get(key).and_then(|l| l.as_i64()).filter(|l| *l >= 0);
            if let Some(lag) = offset("consumer_lag") {
                metrics::gauge!("bouncelens_consumer_lag", "topic" => topic.clone(), "partition" => partition.clone())
                    .set(lag as f64);
            }
            // Read, not yet committed: the end minus the next offset to read.
            if let (Some(end), Some(next)) = (offset("hi_offset"), offset("app_offset")) {
                metrics::gauge!("bouncelens_consumer_read_lag", "topic" => topic.clone(), "partition" => partition.clone())
                    .set(end.saturating_sub(next) as f64);
            }
        }
    }
}

/// How the job ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopWhen {
    /// On SIGTERM/SIGINT (or the shutdown channel) only.
    Signalled,
    /// Also once every assigned partition has been read to its end.
    Drained,
}

/// What a finished run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub totals: Totals,
    pub replayed: u64,
}

/// The stream job.
pub struct StreamJob {
    config: Config,
    classifier: Classifier,
    decode: DecodeSettings,
    health: Arc<Health>,
}

impl StreamJob {
    pub fn new(config: Config, classifier: Classifier, decode: DecodeSettings) -> Self {
        Self { config, classifier, decode, health: Arc::new(Health::default()) }
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    fn client_config(&self, stop: StopWhen) -> ClientConfig {
        let k = &self.config.kafka;
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &k.brokers)
            .set("group.id", &k.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &k.auto_offset_reset)
            .set("statistics.interval.ms", "5000")
            .set("session.timeout.ms", "10000")
            .set(
                "enable.partition.eof",
                if stop == StopWhen::Drained { "true" } else { "false" },
            )
            .set_log_level(RDKafkaLogLevel::Warning);
        for (key, value) in &k.librdkafka {
            c.set(key, value);
        }
        c
    }

    /// Runs until `shutdown` turns true, or until drained.
    pub async fn run(
        &self,
        stop: StopWhen,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<RunSummary, StreamError> {
        let brokers = self.config.kafka.brokers.clone();
        let kafka = |source| StreamError::Kafka { brokers: brokers.clone(), source };
        let committer = Committer::new(
            crate::sink::Layout::new(&self.config.data_dir),
            self.config.zone().map_err(|e| SinkError::Corrupt {
                path: "time_zone".into(),
                problem: e.to_string(),
            })?,
        );
        committer.check_writable()?;
        let state = Arc::new(Mutex::new(JobState {
            committer: committer.clone(),
            decode: self.decode.clone(),
            max_raw_bytes: self.config.dead_letter.max_raw_bytes,
            writers: HashMap::new(),
            assigned: HashSet::new(),
        }));
        let context = JobContext { state: state.clone(), health: self.health.clone() };
        let consumer: StreamConsumer<JobContext> =
            self.client_config(stop).create_with_context(context).map_err(kafka)?;
        let topics: Vec<&str> =
            self.config.kafka.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(kafka)?;
        let dead_letters = self.dead_letter_producer().map_err(kafka)?;
        let policy = self.config.flush;
        let mut summary = RunSummary::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_warning = None;
        let mut last_drain_check = None;
        tracing::info!(brokers = %self.config.kafka.brokers, topics = ?topics, group = %self.config.kafka.group_id, data = %self.config.data_dir.display(), "stream job started");
        loop {
            tokio::select! {
                message = consumer.recv() => {
                    match message {
                        Ok(m) => {
                            let key = (m.topic().to_string(), m.partition());
                            let received = m.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis);
                            let payload = m.payload().unwrap_or_default().to_vec();
                            let offset = m.offset();
                            drop(m);
                            let rejected = self.take_message(&state, &key, offset, &payload, received, &mut summary)?;
                            if let (Some(row), Some(producer)) = (rejected, &dead_letters) {
                                self.send_dead_letter(producer, &row, &payload).await;
                            }
                            self.flush_due(&state, &consumer, &policy, false)?;
                        }
                        Err(KafkaError::PartitionEOF(_)) => {
                            last_drain_check = Some(std::time::Instant::now());
                            if stop == StopWhen::Drained && self.drained(&state, &consumer) {
                                tracing::info!("every assigned partition is read to its end");
                                break;
                            }
                        }
                        Err(e) => {
                            // Said once a minute at most; the client retries by itself.
                            if last_warning.is_none_or(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(60)) {
                                tracing::warn!(error = %e, "kafka consumer error; retrying (repeats are not logged for a minute)");
                                last_warning = Some(std::time::Instant::now());
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                _ = tick.tick() => {
                    self.flush_due(&state, &consumer, &policy, false)?;
                    // Once this member has reached an end, look again now and
                    // then: the partitions left may be another member's.
                    let due = last_drain_check.is_some_and(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(5));
                    if stop == StopWhen::Drained && due {
                        last_drain_check = Some(std::time::Instant::now());
                        if self.drained(&state, &consumer) {
                            tracing::info!("every partition is read to its end");
                            break;
                        }
                    }
                }
                _ = shutdown.changed() => {
                    tracing::info!("shutdown requested");
                    break;
                }
            }
        }
        self.flush_due(&state, &consumer, &policy, true)?;
        let st = lock(&state);
        for w in st.writers.values() {
            summary.totals.add(&w.totals());
        }
        tracing::info!(
            consumed = summary.totals.consumed,
            written = summary.totals.written,
            dead_lettered = summary.totals.dead_lettered,
            skipped = summary.totals.skipped,
            "stream job stopped"
        );
        Ok(summary)
    }

    /// Hands one message to its partition's writer. Returns the dead
    /// letter to forward, if the message was one.
    fn take_message(
        &self,
        state: &Mutex<JobState>,
        key: &(String, i32),
        offset: i64,
        payload: &[u8],
        received: Option<DateTime<Utc>>,
        summary: &mut RunSummary,
    ) -> Result<Option<RejectedRow>, StreamError> {
        let mut st = lock(state);
        if !st.assigned.contains(key) {
            // Fetched before a revoke: its next owner reads it.
            return Ok(None);
        }
        let writer = st.writer(&key.0, key.1)?;
        metrics::counter!("bouncelens_records_consumed_total").increment(1);
        Ok(match writer.accept(&self.classifier, offset, payload, received) {
            Accepted::AlreadyWritten => {
                summary.replayed += 1;
                None
            }
            Accepted::DeadLettered(row) => Some(*row),
            Accepted::Buffered { .. } | Accepted::Skipped => None,
        })
    }

    /// Flushes due partitions (all of them when `all`), then commits
    /// their offsets to Kafka.
    fn flush_due(
        &self,
        state: &Mutex<JobState>,
        consumer: &StreamConsumer<JobContext>,
        policy: &FlushPolicy,
        all: bool,
    ) -> Result<(), StreamError> {
        let mut offsets = TopicPartitionList::new();
        {
            let mut st = lock(state);
            let committer = st.committer.clone();
            for ((topic, partition), writer) in st.writers.iter_mut() {
                if !(all || writer.due(policy)) {
                    continue;
                }
                let flushed = tokio::task::block_in_place(|| writer.flush(&committer))?;
                if let Some((next, _)) = flushed {
                    offsets
                        .add_partition_offset(topic, *partition, Offset::Offset(next))
                        .expect("a valid offset");
                }
            }
        }
        if offsets.count() == 0 {
            return Ok(());
        }
        // The data is durable; now Kafka may know.
        let mode = if all { CommitMode::Sync } else { CommitMode::Async };
        match consumer.commit(&offsets, mode) {
            Ok(()) => {
                self.health.last_commit.store(Utc::now().timestamp(), Ordering::Relaxed);
                metrics::gauge!("bouncelens_last_commit_timestamp_seconds")
                    .set(Utc::now().timestamp() as f64);
            }
            // Harmless: the checkpoint already covers these offsets.
            Err(e) => {
                tracing::warn!(error = %e, "offset commit to Kafka failed; the data root's checkpoint still holds")
            }
        }
        Ok(())
    }

    /// In drain mode: whether every partition of the subscribed topics is
    /// read to its end, by this member (its buffer) or by any member before
    /// (the checkpoint in the shared data root). Partitions still held by a
    /// member that died and has not yet been timed out of the group are not
    /// done, so a drained run never stops short of them.
    fn drained(
        &self,
        state: &Mutex<JobState>,
        consumer: &StreamConsumer<JobContext>,
    ) -> bool {
        if lock(state).assigned.is_empty() {
            return false;
        }
        let timeout = Duration::from_secs(5);
        for topic in &self.config.kafka.topics {
            let metadata = tokio::task::block_in_place(|| {
                consumer.fetch_metadata(Some(topic), timeout)
            });
            let Ok(metadata) = metadata else { return false };
            let Some(t) = metadata.topics().first() else { return false };
            if t.partitions().is_empty() {
                return false;
            }
            for p in t.partitions() {
                let high = tokio::task::block_in_place(|| {
                    consumer.fetch_watermarks(topic, p.id(), timeout)
                });
                let Ok((_, high)) = high else { return false };
                let mut st = lock(state);
                let key = (topic.clone(), p.id());
                let read_to = if st.assigned.contains(&key) {
                    st.writer(topic, p.id()).map_or(0, |w| w.read_offset())
                } else {
                    st.committer
                        .read_checkpoint(&kafka_source(topic, p.id()))
                        .ok()
                        .flatten()
                        .map_or(0, |c| c.next_offset)
                };
                if read_to < high {
                    tracing::debug!(
                        topic,
                        partition = p.id(),
                        read_to,
                        high,
                        "drain check: not at the end"
                    );
                    return false;
                }
            }
        }
        true
    }

    /// Builds (without connecting) a client from the configuration, so
    /// unknown or invalid librdkafka settings are reported up front.
    pub fn check_client_config(&self) -> Result<(), KafkaError> {
        let consumer: BaseConsumer = self.client_config(StopWhen::Signalled).create()?;
        drop(consumer);
        Ok(())
    }

    fn dead_letter_producer(&self) -> Result<Option<FutureProducer>, KafkaError> {
        if self.config.dead_letter.topic.is_empty() {
            return Ok(None);
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.config.kafka.brokers);
        for (key, value) in &self.config.kafka.librdkafka {
            c.set(key, value);
        }
        c.create().map(Some)
    }

    async fn send_dead_letter(
        &self,
        producer: &FutureProducer,
        row: &RejectedRow,
        payload: &[u8],
    ) {
        let partition = row.source.partition.to_string();
        let offset = row.source.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "bouncelens.reason", value: Some(row.reason) })
            .insert(Header { key: "bouncelens.detail", value: Some(row.detail.as_str()) })
            .insert(Header {
                key: "bouncelens.source.topic",
                value: Some(&*row.source.topic),
            })
            .insert(Header {
                key: "bouncelens.source.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "bouncelens.source.offset",
                value: Some(offset.as_str()),
            });
        let record = FutureRecord::<(), [u8]>::to(&self.config.dead_letter.topic)
            .payload(payload)
            .headers(headers);
        if let Err((error, _)) = producer.send(record, Duration::from_secs(10)).await {
            tracing::error!(%error, topic = %self.config.dead_letter.topic, "could not forward a dead letter to Kafka; it is still in the rejected table");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both lags come from librdkafka's statistics: the committed one and
    /// the read one; unknown offsets (-1, -1001) set nothing.
    #[test]
    fn statistics_give_the_committed_and_the_read_lag() {
        let recorder =
            metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let stats = br#"{"brokers":{"b":{"state":"UP"}},"topics":{"mail":{"partitions":{
            "0":{"hi_offset":1000,"app_offset":900,"consumer_lag":400},
            "1":{"hi_offset":50,"app_offset":-1001,"consumer_lag":-1},
            "-1":{"hi_offset":-1,"app_offset":-1,"consumer_lag":-1}}}}}"#;
        let health = Health::default();
        metrics::with_local_recorder(&recorder, || record_statistics(stats, &health));
        let text = handle.render();
        assert!(health.kafka_up.load(Ordering::Relaxed));
        assert!(
            text.contains(r#"bouncelens_consumer_lag{topic="mail",partition="0"} 400"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"bouncelens_consumer_read_lag{topic="mail",partition="0"} 100"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"partition="1""#), "{text}");
    }
}
