#!/usr/bin/env bash
# Run tests inside a two-node qemu guest (TCG), so real mbind placement is verified on a
# one-node machine: common's page-provider tests (every test, then the placement test again
# with its output, "node 1: 4 pages placed on real node 1 (verified)"), then the allocators'
# real-NUMA tests (slub/tests/numa_real.rs, slab-classic/tests/numa_real.rs: node-1 placement
# checked with get_mempolicy, SLUB remote frees onto node 1's partial list, SLAB frees through
# the alien cache, validate clean), run bare, each printing its "… real NUMA: …" lines. Needs (Debian):
#   apt-get install -y --no-install-recommends qemu-system-x86 linux-image-amd64 busybox-static cpio
# (qemu-system-x86 may replace the base image's qemu-utils). Uses ../shared/reference/numa-vm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
# Builds one test binary statically and prints its path.
build() {
  RUSTFLAGS="-C target-feature=+crt-static,+cmpxchg16b" \
    cargo test --release -p "$1" --test "$2" --no-run --target $target 2>&1 |
    grep -o "[^ (]*$target/release/deps/$2-[0-9a-f]*" | tail -1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$(build common provider)" "$tmp/provider-tests"
cp "$(build slub numa_real)" "$tmp/slub-numa-real"
cp "$(build slab-classic numa_real)" "$tmp/slab-numa-real"
printf '#!/bin/sh\n/bin/provider-tests --nocapture real_nodes_back_their_arenas arenas_are_bound\n' > "$tmp/placement"
chmod +x "$tmp/placement"
# The numa_real binaries print their lines past the test harness's capture: run bare.
exec ../shared/reference/numa-vm.sh "$tmp/provider-tests" "$tmp/placement" \
  "$tmp/slub-numa-real" "$tmp/slab-numa-real"
