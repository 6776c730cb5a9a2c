#!/usr/bin/env bash
# Regenerates the published run in results/ with the default command (release build, default
# sweep), replacing the previous run's files; results/README.md is then updated by hand with an
# honest reading of the new numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p harness
rm -f results/results.csv results/meta.json results/summary.md results/*.svg results/*.png
./target/release/harness -o results "$@"
