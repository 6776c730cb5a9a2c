#!/usr/bin/env bash
# Run common's page-provider tests inside a two-node qemu guest (TCG), so real mbind placement
# is verified on a one-node machine: every test, then the placement test again with its output
# ("node 1: 4 pages placed on real node 1 (verified)"). Needs (Debian):
#   apt-get install -y --no-install-recommends qemu-system-x86 linux-image-amd64 busybox-static cpio
# (qemu-system-x86 may replace the base image's qemu-utils). Uses ../shared/reference/numa-vm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static,+cmpxchg16b" \
  cargo test --release -p common --test provider --no-run --target $target 2>&1 | tail -1
bin=$(ls -t target/$target/release/deps/provider-* | grep -v '\.d$' | head -1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$bin" "$tmp/provider-tests"
printf '#!/bin/sh\n/bin/provider-tests --nocapture real_nodes_back_their_arenas arenas_are_bound\n' > "$tmp/placement"
chmod +x "$tmp/placement"
exec ../shared/reference/numa-vm.sh "$tmp/provider-tests" "$tmp/placement"
