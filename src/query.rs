//! The dataset as SQL tables: `deliveries` and `rejected`, read with
//! DataFusion straight from the hive-partitioned Parquet files, with `date`
//! and `org` as partition columns (a filter on them skips whole
//! directories).
//!
//! Queries run read-only: DDL, DML (`INSERT`, `COPY ... TO`) and
//! statements (`SET`, ...) are refused before planning, so a report or an
//! analyst's query can neither write nor read outside the data root.

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::options::ParquetReadOptions;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

use crate::sink::{DELIVERIES_SCHEMA, Layout, REJECTED_SCHEMA};

/// A query problem, said for the person who wrote the query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("cannot prepare the data root {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// A session over the data root, with the two tables registered.
pub async fn session(layout: &Layout) -> Result<SessionContext, QueryError> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true);
    let ctx = SessionContext::new_with_config(config);
    let partition_cols =
        vec![("date".to_string(), DataType::Utf8), ("org".to_string(), DataType::Utf8)];
    for dir in [layout.deliveries(), layout.rejected()] {
        std::fs::create_dir_all(&dir).map_err(|source| QueryError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let url = |p: std::path::PathBuf| format!("{}/", p.display());
    ctx.register_parquet(
        "deliveries",
        url(layout.deliveries()),
        ParquetReadOptions::default()
            .schema(&DELIVERIES_SCHEMA)
            .table_partition_cols(partition_cols),
    )
    .await?;
    ctx.register_parquet(
        "rejected",
        url(layout.rejected()),
        ParquetReadOptions::default()
            .schema(&REJECTED_SCHEMA)
            .table_partition_cols(vec![("date".to_string(), DataType::Utf8)]),
    )
    .await?;
    Ok(ctx)
}

/// The options that make a query read-only.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Plans a read-only query.
pub async fn plan(ctx: &SessionContext, sql: &str) -> Result<DataFrame, QueryError> {
    match ctx.sql_with_options(sql, read_only()).await {
        Ok(df) => Ok(df),
        Err(e) => {
            let text = e.to_string();
            if text.contains("not supported")
                && (text.contains("DDL")
                    || text.contains("DML")
                    || text.contains("Statement"))
            {
                Err(QueryError::Refused(format!(
                    "only read-only queries (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE) are allowed here; \
                     the dataset is written by `ingest` and `run` ({text})"
                )))
            } else {
                Err(e.into())
            }
        }
    }
}

/// Runs a read-only query and collects its result; an empty result is one
/// empty batch, so its columns are still known.
pub async fn collect(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<RecordBatch>, QueryError> {
    let df = plan(ctx, sql).await?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    if batches.is_empty() {
        return Ok(vec![RecordBatch::new_empty(schema)]);
    }
    Ok(batches)
}
