//! bouncelens: mail-delivery analytics. Classifies failed deliveries with
//! the platform's bounce reason taxonomy, writes every delivery event from
//! Kafka to hive-partitioned Parquet exactly once, and answers
//! per-organisation reports with SQL.

pub mod classify;
pub mod config;
pub mod event;
pub mod formats;
pub mod generate;
pub mod ingest;
pub mod pipeline;
pub mod query;
pub mod report;
pub mod rows;
pub mod schedule;
pub mod serve;
pub mod sink;
pub mod stream;
pub mod summary;
pub use bouncelens_taxonomy as taxonomy;
