"""Times every report: DataFusion through `bouncelens report` (the whole
process, best of three) against DuckDB in-process (best of three) on the
same Parquet files. Prints `name<TAB>datafusion_ms<TAB>duckdb_ms` lines."""
import subprocess
import sys
import time

import duckdb

bl, work = sys.argv[1], sys.argv[2]
data = f"{work}/bl"
con = duckdb.connect()
con.execute(
    f"CREATE VIEW deliveries AS SELECT * FROM read_parquet('{data}/deliveries/*/*/*.parquet', hive_partitioning = true, hive_types_autocast = false)"
)
taxonomy = subprocess.run(
    [bl, "sql", "--data", data, "--format", "csv", "SELECT * FROM taxonomy_reasons"],
    check=True, capture_output=True, text=True,
).stdout
with open(f"{work}/taxonomy.csv", "w") as f:
    f.write(taxonomy)
con.execute(f"CREATE TABLE taxonomy_reasons AS SELECT * FROM read_csv('{work}/taxonomy.csv', header = true)")
org, first, last, rows = con.execute(
    "SELECT org, min(date), max(date), count(*) FROM deliveries GROUP BY org ORDER BY count(*) DESC LIMIT 1"
).fetchone()
print(f"reports for the largest organisation {org}, {first} to {last}, {rows:,} rows", file=sys.stderr)
names = [l.split()[0] for l in subprocess.run([bl, "report", "--list"], check=True, capture_output=True, text=True).stdout.splitlines() if l.strip()]
for name in names:
    # The same row limit for both (an export would otherwise get every row).
    args = ["--org", org, "--from", first, "--to", last, "--data", data, "--limit", "100"]
    sql = subprocess.run([bl, "report", name, *args, "--sql"], check=True, capture_output=True, text=True).stdout
    df_best = duck_best = float("inf")
    for _ in range(3):
        t = time.time()
        subprocess.run([bl, "report", name, *args, "--format", "csv", "--out", "/dev/null"], check=True)
        df_best = min(df_best, time.time() - t)
        t = time.time()
        con.execute(sql).fetchall()
        duck_best = min(duck_best, time.time() - t)
    print(f"{name}\t{df_best * 1000:.0f}\t{duck_best * 1000:.0f}")
