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
    #[error(
        "there is no dataset at {0}: write one with `bouncelens ingest` or `bouncelens run`, or point --data (or data_dir) at it"
    )]
    NoData(String),
}

/// A session over the data root, with the two tables registered.
pub async fn session(layout: &Layout) -> Result<SessionContext, QueryError> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true);
    let ctx = SessionContext::new_with_config(config);
    if !layout.deliveries().is_dir() && !layout.rejected().is_dir() {
        return Err(QueryError::NoData(layout.root().display().to_string()));
    }
    let text = |name: &str| (name.to_string(), DataType::Utf8);
    register(
        &ctx,
        "deliveries",
        &layout.deliveries(),
        &DELIVERIES_SCHEMA,
        vec![text("date"), text("org")],
    )
    .await?;
    register(&ctx, "rejected", &layout.rejected(), &REJECTED_SCHEMA, vec![text("date")])
        .await?;
    Ok(ctx)
}

/// Registers a table's hive-partitioned directory. A dataset that never
/// had a bad record has no `rejected` directory, and one whose every record
/// was bad has no `deliveries`: the table is still there, empty. Reading
/// never creates anything.
async fn register(
    ctx: &SessionContext,
    name: &str,
    dir: &std::path::Path,
    schema: &arrow::datatypes::SchemaRef,
    partition_cols: Vec<(String, DataType)>,
) -> Result<(), QueryError> {
    if dir.is_dir() {
        let options = ParquetReadOptions::default()
            .schema(schema)
            .table_partition_cols(partition_cols);
        ctx.register_parquet(name, format!("{}/", dir.display()), options).await?;
    } else {
        let mut fields: Vec<arrow::datatypes::Field> =
            schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (column, data_type) in partition_cols {
            fields.push(arrow::datatypes::Field::new(column, data_type, false));
        }
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
        let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(name, std::sync::Arc::new(empty))?;
    }
    Ok(())
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
