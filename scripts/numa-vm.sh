#!/usr/bin/env bash
# Run common's NUMA placement test binary inside a 2-node qemu guest (TCG), so real mbind and
# get_mempolicy placement is verified on a one-node machine. Needs (Debian):
#   apt-get install -y --no-install-recommends qemu-system-x86 linux-image-amd64 busybox-static cpio
# (qemu-system-x86 may replace the qemu-utils of the base image). Prints the guest's test output.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static,+cmpxchg16b" cargo test --release -p common --test provider --no-run --target x86_64-unknown-linux-gnu 2>&1 | tail -1
bin=$(ls -t target/x86_64-unknown-linux-gnu/release/deps/provider-* | grep -v '\.d$' | head -1)
exec ../shared/reference/numa-vm.sh "$bin"
