#!/usr/bin/env bash
# The preload library's checks in release mode: real programs (python3, git, sort, sqlite3 if
# installed, a C cross-thread-free stress with fork) under LD_PRELOAD on SLAB and SLUB compared
# byte for byte with glibc, the C API checks, the Rust #[global_allocator] example, bad settings.
# Called by .ci/run; runs from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p preload -- --nocapture
