//! The operations endpoint of the stream job: Prometheus `/metrics`,
//! `/healthz` (the process is alive) and `/readyz` (Kafka is reachable and
//! the data root is writable).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::sink::Committer;
use crate::stream::Health;

/// Installs the Prometheus recorder (once per process) and describes the
/// metrics so `/metrics` carries HELP lines.
pub fn install_metrics() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "bouncelens_records_consumed_total",
        "Messages taken from the source"
    );
    describe_counter!(
        "bouncelens_records_written_total",
        "Delivery rows written to Parquet"
    );
    describe_counter!(
        "bouncelens_records_dead_lettered_total",
        "Messages dead-lettered, by reason"
    );
    describe_counter!(
        "bouncelens_bounces_total",
        "Failed deliveries written, classified, by category"
    );
    describe_counter!("bouncelens_files_written_total", "Parquet files committed");
    describe_counter!("bouncelens_summary_runs_total", "Daily summary runs, by result");
    describe_gauge!(
        "bouncelens_consumer_lag",
        "Messages between the partition's end and the committed offset (what is not yet durable)"
    );
    describe_gauge!(
        "bouncelens_consumer_read_lag",
        "Messages between the partition's end and the last one read"
    );
    describe_gauge!(
        "bouncelens_last_commit_timestamp_seconds",
        "Unix time of the last offset commit"
    );
    describe_histogram!("bouncelens_flush_rows", "Rows per flush");
    describe_histogram!("bouncelens_flush_bytes", "Parquet bytes per flush");
    describe_histogram!("bouncelens_flush_duration_seconds", "Time to commit one flush");
}

#[derive(Clone)]
struct Ops {
    metrics: Option<PrometheusHandle>,
    health: Arc<Health>,
    committer: Committer,
}

/// Serves the endpoints on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    committer: Committer,
) -> std::io::Result<()> {
    let ops = Ops { metrics: install_metrics(), health, committer };
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(ops);
    axum::serve(listener, app).await
}

/// Binds the configured address (`127.0.0.1:0` picks a free port).
pub async fn bind(addr: &str) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

async fn metrics_page(State(ops): State<Ops>) -> (StatusCode, String) {
    match &ops.metrics {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => {
            (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed\n".into())
        }
    }
}

async fn ready(State(ops): State<Ops>) -> (StatusCode, String) {
    let kafka = ops.health.kafka_up.load(Ordering::Relaxed);
    let writable = tokio::task::spawn_blocking(move || ops.committer.check_writable())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match (kafka, writable) {
        (true, Ok(())) => (StatusCode::OK, "ready\n".into()),
        (false, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no Kafka broker is reachable\n".into(),
        ),
        (_, Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}
