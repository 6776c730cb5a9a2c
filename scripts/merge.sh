#!/usr/bin/env bash
# Merge results.csv files from several machines (or runs) into one directory and redraw the
# plots and summary from the union. Rows carry host, CPU model and run id, so nothing is lost.
#   scripts/merge.sh OUT_DIR RUN_DIR [RUN_DIR...]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OUT_DIR RUN_DIR [RUN_DIR...]" >&2; exit 2; }
cd "$(dirname "$0")/.."
out=$1; shift
mkdir -p "$out"
first=1
header=
for d in "$@"; do
  f="$d/results.csv"
  [ -s "$f" ] || { echo "error: $f missing or empty" >&2; exit 1; }
  # Files of different schema versions (README "CSV schema") cannot be concatenated.
  h=$(head -n 1 "$f")
  if [ -z "$header" ]; then header=$h
  elif [ "$h" != "$header" ]; then
    echo "error: $f has another CSV schema than $1/results.csv (see README, CSV schema)" >&2; exit 1
  fi
  if [ $first = 1 ]; then cat "$f"; first=0; else tail -n +2 "$f"; fi
done > "$out/results.csv"
cargo run --release -q -p harness -- plot "$out"
echo "merged $# run(s) into $out"
