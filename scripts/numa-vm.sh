#!/usr/bin/env bash
# Real NUMA on a one-node machine: boots a multi-node qemu guest (scripts/qemu-numa-guest.sh,
# TCG; KVM with ACCEL=auto only if a probe guest boots) and runs the project's binaries in it.
#
#   scripts/numa-vm.sh            two nodes x 2 CPUs: common's page-provider tests (every test,
#                                 then the placement test again with its output, "node 1: 4 pages
#                                 placed on real node 1 (verified)"), then the allocators'
#                                 real-NUMA tests (slub/tests/numa_real.rs, numa_real_sheaves.rs,
#                                 slab-classic/tests/numa_real.rs), each printing "… real NUMA: …",
#                                 and the sheaves test binaries (sheaves.rs, global_alloc_sheaves.rs).
#   scripts/numa-vm.sh harness    four nodes x 2 CPUs, distances 10/16/22/28 (the main job on a
#                                 real multi-node machine): common's page-provider tests and the
#                                 placement test (every node), both allocators'
#                                 real-NUMA tests (node-1 scenarios and every ordered pair of the
#                                 4 nodes), the cross-allocator stress test, the sheaves tests
#                                 (slub/tests/numa_real_sheaves.rs on every ordered pair, eras
#                                 6.18 and 7.0; slub/tests/sheaves.rs; global_alloc_sheaves.rs),
#                                 and `harness --quick`
#                                 on the guest's own topology. The run directory comes back over
#                                 a second serial port into $OUT (default target/numa-vm-harness/
#                                 run), plots are drawn on the host (`harness plot`), and the
#                                 checks below must pass (exit 1 otherwise):
#       - every binary exited 0;
#       - placement.csv: every worker of every workload was still on its pinned CPU and on that
#         CPU's kernel node when it finished, and all 8 CPUs and 4 nodes had workers;
#       - node-bound allocations on every node were verified with get_mempolicy, SLAB's alien
#         arrays (remotefrees) and SLUB's remote frees (free_slowpath) moved objects between all
#         12 ordered pairs of nodes, validate() clean (the real-NUMA tests' lines);
#       - sheaves, both eras, all 12 ordered pairs: remote-node frees bypass the sheaves (every
#         free a slab free, no sheaf free, the sheaf census unchanged) and node-mismatch
#         allocations are served from the requested node's slabs (verified by get_mempolicy);
#       - meta.json says 4 real nodes; results.csv has the metadata rows of this 4-node machine,
#         and slub-sheaves rows of slab_test, the memory census and sheaf_batch.
#     Measured here (2 shared cores, TCG, host loaded by other builds): 105 s of guest wall time
#     with the default test-profile binaries (tests 17 s, harness --quick 59 s), 149 s for the
#     whole script on a warm target/; 77-118 s of guest time with PROFILE=release binaries.
#     With the sheaves (three runs 2026-12-03): 121-148 s of guest wall time — tests
#     23-27 s of which the sheaves binaries 7-15 s, harness --quick 74-97 s (its memory census
#     and sheaf_batch, now in the default sweep; the 97 s run shared the host with builds) —
#     so about +20-40 s. With the sheaves' signal storm back in (CI rehearsal, 2026-12-03):
#     191 s of guest wall time, tests 122 s of which the sheaves binaries 111 s (the storm runs
#     32 threads on 8 CPUs), harness --quick 53 s; the whole CI step 257 s.
#
# Environment: NODES, CPUS_PER_NODE, MEM_PER_NODE_MB, TIMEOUT, ACCEL (see qemu-numa-guest.sh);
# OUT (harness mode's output directory); PROFILE=release for release binaries (default: the
# test profile's, which `cargo test` has built already). Shared libraries are copied into the
# guest. Needs (Debian):
#   apt-get install -y --no-install-recommends qemu-system-x86 linux-image-amd64 busybox-static cpio
# (qemu-system-x86 may replace the base image's qemu-utils).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-tests}
case $mode in
  tests | harness) ;;
  *) echo "usage: $0 [tests|harness]" >&2; exit 2 ;;
esac

# Binaries: the test profile's (what `cargo test` already built: correctness, not speed, is
# what the guest checks; TCG timings mean nothing), or PROFILE=release.
rel=()
if [ "${PROFILE:-dev}" = release ]; then rel=(--release); fi

# Builds one test binary and prints its path.
build_test() {
  local exe
  exe=$(cargo test "${rel[@]}" -p "$1" --test "$2" --no-run --message-format=json 2>/dev/null |
    grep -o "\"executable\":\"[^\"]*/$2-[0-9a-f]*\"" | tail -1 | cut -d'"' -f4)
  [ -n "$exe" ] || { echo "numa-vm: building $1 --test $2 failed" >&2; exit 1; }
  echo "$exe"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$(build_test common provider)" "$tmp/provider-tests"
cp "$(build_test slub numa_real)" "$tmp/slub-numa-real"
cp "$(build_test slab-classic numa_real)" "$tmp/slab-numa-real"
# Sheaves: the real-NUMA scenario, and the sheaves test binaries.
cp "$(build_test slub numa_real_sheaves)" "$tmp/slub-numa-real-sheaves"
cp "$(build_test slub sheaves)" "$tmp/sheaves-tests"
cp "$(build_test slub global_alloc_sheaves)" "$tmp/global-alloc-sheaves"
guest=$tmp/guest.sh
files=("$tmp/provider-tests" "$tmp/slub-numa-real" "$tmp/slab-numa-real"
  "$tmp/slub-numa-real-sheaves" "$tmp/sheaves-tests" "$tmp/global-alloc-sheaves")

if [ "$mode" = tests ]; then
  # The numa_real binaries print their lines past the test harness's capture: run bare.
  {
    echo '/bin/provider-tests; echo "EXIT provider-tests rc=$?"'
    echo '/bin/provider-tests --nocapture real_nodes_back_their_arenas arenas_are_bound; echo "EXIT placement rc=$?"'
    echo '/bin/slub-numa-real; echo "EXIT slub-numa-real rc=$?"'
    echo '/bin/slab-numa-real; echo "EXIT slab-numa-real rc=$?"'
    echo '/bin/slub-numa-real-sheaves; echo "EXIT slub-numa-real-sheaves rc=$?"'
    echo '/bin/sheaves-tests; echo "EXIT sheaves-tests rc=$?"'
    echo '/bin/global-alloc-sheaves; echo "EXIT global-alloc-sheaves rc=$?"'
  } > "$guest"
  exec scripts/qemu-numa-guest.sh "$guest" "${files[@]}"
fi

# harness mode
export NODES=${NODES:-4} CPUS_PER_NODE=${CPUS_PER_NODE:-2} MEM_PER_NODE_MB=${MEM_PER_NODE_MB:-512}
export TIMEOUT=${TIMEOUT:-900}
out=${OUT:-target/numa-vm-harness}
harness_bin=$(cargo build "${rel[@]}" -p harness --message-format=json 2>/dev/null |
  grep -o '"executable":"[^"]*/harness"' | tail -1 | cut -d'"' -f4)
[ -n "$harness_bin" ] || { echo "numa-vm: building the harness failed" >&2; exit 1; }
cp "$harness_bin" "$tmp/harness"
cp "$(build_test harness stress)" "$tmp/stress-tests"
files+=("$tmp/harness" "$tmp/stress-tests")
cat > "$guest" <<'EOF'
t0=$(date +%s)
/bin/provider-tests; echo "EXIT provider-tests rc=$?"
/bin/provider-tests --nocapture real_nodes_back_their_arenas arenas_are_bound; echo "EXIT placement rc=$?"
/bin/slub-numa-real; echo "EXIT slub-numa-real rc=$?"
/bin/slab-numa-real; echo "EXIT slab-numa-real rc=$?"
/bin/stress-tests --test-threads 1; echo "EXIT stress-tests rc=$?"
ts=$(date +%s)
/bin/slub-numa-real-sheaves; echo "EXIT slub-numa-real-sheaves rc=$?"
/bin/sheaves-tests; echo "EXIT sheaves-tests rc=$?"
/bin/global-alloc-sheaves; echo "EXIT global-alloc-sheaves rc=$?"
echo "GUEST_SHEAVES_SECONDS $(( $(date +%s) - ts ))"
t1=$(date +%s)
/bin/harness --quick --no-plots -o /tmp/run; echo "EXIT harness rc=$?"
echo "GUEST_SECONDS tests=$((t1 - t0)) harness=$(( $(date +%s) - t1 ))"
tar -C /tmp -cf - run | gzip -1 | base64 > /dev/ttyS1
echo "SENT run directory"
EOF
rm -rf "$out"; mkdir -p "$out"
log=$out/guest.log
start=$(date +%s)
OUT_FILE=$tmp/run.b64 scripts/qemu-numa-guest.sh "$guest" "${files[@]}" 2>&1 | tee "$log" |
  grep -E "qemu-numa-guest|NODE_ONLINE|every pair|real NUMA|placed on real node|test result|EXIT|GUEST_SECONDS|GUEST_SHEAVES_SECONDS|^error" || true
wall=$(( $(date +%s) - start ))
echo "numa-vm harness: guest wall time ${wall} s (boot, tests, harness --quick, copy out)"
tr -d '\r' < "$tmp/run.b64" | base64 -d | tar -xz -C "$out" ||
  { echo "numa-vm harness: FAIL: no run directory came back" >&2; exit 1; }
run=$out/run

fail=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then echo "  ok   $what"; else echo "  FAIL $what"; fail=1; fi
}
echo "numa-vm harness: checks on $run"
for b in provider-tests placement slub-numa-real slab-numa-real stress-tests \
  slub-numa-real-sheaves sheaves-tests global-alloc-sheaves harness; do
  check "$b exited 0" grep -q "EXIT $b rc=0" "$log"
done
check "NODE_ONLINE=0-3 CPUS=8" grep -q "NODE_ONLINE=0-$((NODES - 1)) CPUS=$((NODES * CPUS_PER_NODE))" "$log"
pairs=$((NODES * (NODES - 1)))
check "SLAB alien arrays moved objects between all $pairs ordered node pairs" \
  grep -q "slab-classic real NUMA every pair: $NODES nodes, $pairs ordered pairs, objects on their node (verified by get_mempolicy).*validate clean" "$log"
for era in 6.4 2.6.32; do
  check "SLUB $era remote frees between all $pairs ordered node pairs" \
    grep -q "slub $era real NUMA every pair: $NODES nodes, $pairs ordered pairs, objects on their node (verified by get_mempolicy).*validate clean" "$log"
done
for era in 6.18 7.0; do
  check "SLUB sheaves $era: remote frees bypass the sheaves and node-mismatch allocations are served from the other node, all $pairs ordered node pairs" \
    grep -q "slub sheaves $era real NUMA every pair: $NODES nodes, $pairs ordered pairs, objects on their node (verified by get_mempolicy), .* remote frees bypassed the sheaves (.*sheaf frees 0, sheaf census unchanged), $pairs node-mismatch allocations.*validate clean" "$log"
done
check "results.csv has slub-sheaves rows (slab_test, memory census, sheaf_batch)" \
  awk -F, '$11 == "slub-sheaves" { w[$14] = 1; if ($21 ~ /^census:barn_full/) c = 1 }
    END { exit !(w["slab_test"] && w["memory"] && w["sheaf_batch"] && c) }' "$run/results.csv"
check "meta.json: $NODES real nodes" grep -q "\"nodes_real\": $NODES" "$run/meta.json"
check "results.csv has metadata rows for this $NODES-node machine" \
  grep -q "topology=this-machine cpus=$((NODES * CPUS_PER_NODE)) nodes=$NODES" "$run/results.csv"
placement=$run/placement.csv
check "placement.csv: every worker on its pinned CPU and node when done" \
  awk -F, 'NR > 1 { n++; if ($7 != "true") bad++ } END { exit !(n > 0 && bad == 0) }' "$placement"
check "placement.csv: workers on all $((NODES * CPUS_PER_NODE)) CPUs and $NODES nodes" \
  awk -F, -v c=$((NODES * CPUS_PER_NODE)) -v n="$NODES" \
  'NR > 1 { cpu[$3] = 1; node[$5] = 1 } END { exit !(length(cpu) == c && length(node) == n) }' "$placement"
if "$harness_bin" plot "$run" >/dev/null 2>&1; then
  echo "  ok   plots drawn on the host: $(ls "$run"/*.png | wc -l) PNGs"
else
  echo "  FAIL harness plot $run"; fail=1
fi
echo "numa-vm harness: $(awk -F, 'NR > 1' "$placement" | wc -l) worker placements checked; $(grep -o 'GUEST_SECONDS.*' "$log" | tr -d '\r')"
if [ $fail -ne 0 ]; then echo "numa-vm harness: FAILED (guest log: $log)"; exit 1; fi
echo "numa-vm harness: all checks passed"
