"""DuckDB's side of the ingest benchmark: NDJSON to hive-partitioned Parquet
by date and organisation, as a DuckDB user would write it (no classification)."""
import sys
import time

import duckdb

source, target = sys.argv[1], sys.argv[2]
con = duckdb.connect()
t = time.time()
con.execute(
    f"""
    COPY (
      SELECT *, strftime(CAST("timestamp" AS TIMESTAMP), '%Y-%m-%d') AS date, lower(org_id) AS org
      FROM read_json('{source}', format = 'newline_delimited')
    ) TO '{target}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date, org))
    """
)
print(f"DuckDB's COPY alone, timed in Python (the table uses the whole process): {time.time() - t:.2f} s", file=sys.stderr)
