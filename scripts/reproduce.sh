#!/usr/bin/env bash
# Reproduce the published run in results/: the default sweep with more repetitions, written to
# results/<host>-<date>/, then plots and summary redrawn. Takes about 3× the default run.
#   scripts/reproduce.sh [extra harness flags...]     e.g. --fake-numa 2
set -euo pipefail
cd "$(dirname "$0")/.."
out="results/$(hostname)-$(date -u +%Y%m%dT%H%M%SZ)"
cargo build --release -p harness
./target/release/harness --reps 5 -o "$out" "$@"
echo "results in $out (compare with results/README.md)"
