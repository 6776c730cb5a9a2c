#!/usr/bin/env bash
# Reproduce the published run in results/: the default sweep with more repetitions, written to
# results/<host>-<date>/, then plots and summary redrawn.
#   scripts/reproduce.sh [extra harness flags...]     e.g. --fake-numa 2
#
# What to expect on a 2-socket server (e.g. 2 x 32 cores x 2 threads = 128 CPUs, 2 nodes): the
# harness prints its estimate first (`--estimate` prints only that). The default sweep is
# modelled at about 6 minutes there (2 minutes on the 2-core VM), so this script (5
# repetitions, as the default) takes about that, +-2x: slab_test and remote_free (page faults of
# large objects) about as long as on a small machine, plus `scaling` and `custom_caches`, which
# run 1..128 threads (128 runs and ~8,000 thread starts per size and allocator). remote_free gets a real cross-node pair, so its
# same_node/cross_node split is SLAB's alien-cache cost on real hardware; the metadata section
# of summary.md has this machine's row beside the fixture servers. For a quicker first look:
#   scripts/reproduce.sh --nodes 0          # one socket's CPUs (about 3.5 minutes modelled)
#   scripts/reproduce.sh --threads 16       # the first 16 CPUs (about 2.5 minutes)
# Above 512 CPU ids or 64 nodes the harness refuses the machine with an error naming the limit.
set -euo pipefail
cd "$(dirname "$0")/.."
out="results/$(hostname)-$(date -u +%Y%m%dT%H%M%SZ)"
cargo build --release -p harness
./target/release/harness --reps 5 -o "$out" "$@"
echo "results in $out (compare with results/README.md)"
