#!/usr/bin/env bash
# soak-tests.sh [N] — finds flaky and hanging tests before they land.
#
# Builds the workspace's test binaries once (debug, as `cargo test` does), starts a CPU hog on
# every core (`yes > /dev/null`), then runs every multi-threaded test binary N times (default
# 50), one run after another, interleaved (run i of every binary before run i+1). A run that
# exits non-zero is a failure; a run still going after SOAK_TIMEOUT seconds (default 300) is a
# hang: every thread's stack is captured (scripts/stacks.sh) and it is killed. The output of
# every failure and hang is kept in SOAK_OUT (default target/soak/). Prints passes, failures and
# hangs per binary, and exits non-zero if there was any failure or hang.
#
# SOAK_BINS="slub/stress slub/global_alloc" chooses binaries (crate dir / test target; `lib` is
# a crate's unit tests). Default: the multi-threaded ones listed below.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
TIMEOUT=${SOAK_TIMEOUT:-300}
OUT=${SOAK_OUT:-target/soak}
BINS=${SOAK_BINS:-"common/lib common/provider common/global_alloc \
slub/stress slub/global_alloc slub/global_alloc_sheaves slub/sheaves slub/sheaf_lock slub/rseq slub/numa slub/lockdep slub/lib \
slab-classic/stress slab-classic/global_alloc slab-classic/rseq slab-classic/sequences slab-classic/numa \
harness/stress"}
case "$N" in ''|*[!0-9]*) echo "usage: soak-tests.sh [N]  (N a positive number of runs)" >&2; exit 2 ;; esac
[ "$N" -gt 0 ] || { echo "soak-tests.sh: N must be at least 1" >&2; exit 2; }
mkdir -p "$OUT"
here="$(pwd)"

echo "soak: building test binaries"
cargo test --workspace --no-run --message-format=json 2>/dev/null > "$OUT/build.json" || {
  cargo test --workspace --no-run; exit 1; }

# label<TAB>executable<TAB>crate dir, one line per requested binary.
python3 - "$OUT/build.json" "$BINS" > "$OUT/bins.tsv" <<'PY' || exit 1
import json, os, sys
want = sys.argv[2].split()
found = {}
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    crate_dir = os.path.dirname(m["manifest_path"])
    name = "lib" if "lib" in t["kind"] or "cdylib" in t["kind"] or "rlib" in t["kind"] else t["name"]
    label = os.path.basename(crate_dir) + "/" + name
    found[label] = (m["executable"], crate_dir)
missing = [w for w in want if w not in found]
if missing:
    sys.exit("soak: no test binary for: " + " ".join(missing) + "\nknown: " + " ".join(sorted(found)))
for w in want:
    print(f"{w}\t{found[w][0]}\t{found[w][1]}")
PY

hogs=()
for _ in $(seq "$(nproc)"); do yes > /dev/null & hogs+=($!); done
cleanup() { kill "${hogs[@]}" 2>/dev/null; }
trap cleanup EXIT
echo "soak: $N runs of $(wc -l < "$OUT/bins.tsv") binaries, CPU hog on $(nproc) cores, hang bound ${TIMEOUT} s"

declare -A pass fail hang
while IFS=$'\t' read -r label _ _; do pass[$label]=0; fail[$label]=0; hang[$label]=0; done < "$OUT/bins.tsv"
start=$(date +%s)
for i in $(seq "$N"); do
  while IFS=$'\t' read -r label exe dir; do
    log="$OUT/run.log"
    (cd "$dir" && exec "$exe" > "$here/$log" 2>&1) &
    pid=$!
    t0=$(date +%s)
    while kill -0 "$pid" 2>/dev/null && [ $(( $(date +%s) - t0 )) -lt "$TIMEOUT" ]; do sleep 0.1; done
    safe=${label//\//-}
    if kill -0 "$pid" 2>/dev/null; then
      hang[$label]=$(( ${hang[$label]} + 1 ))
      { echo "=== HANG: $label run $i still running after ${TIMEOUT} s"; bash scripts/stacks.sh "$pid"; } >> "$log" 2>&1
      kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
      cp "$log" "$OUT/$safe-run$i-hang.log"
      echo "soak: HANG $label run $i (stacks in $OUT/$safe-run$i-hang.log)"
    elif wait "$pid"; then
      pass[$label]=$(( ${pass[$label]} + 1 ))
    else
      rc=$?
      fail[$label]=$(( ${fail[$label]} + 1 ))
      cp "$log" "$OUT/$safe-run$i-fail.log"
      echo "soak: FAIL $label run $i (status $rc; output in $OUT/$safe-run$i-fail.log)"
    fi
  done < "$OUT/bins.tsv"
  if [ $(( i % 10 )) -eq 0 ] || [ "$i" -eq "$N" ]; then
    echo "soak: $i/$N rounds done ($(( $(date +%s) - start )) s)"
  fi
done

bad=0
printf '\n%-28s %6s %6s %6s\n' binary passed failed hung | tee "$OUT/summary.txt"
while IFS=$'\t' read -r label _ _; do
  printf '%-28s %6d %6d %6d\n' "$label" "${pass[$label]}" "${fail[$label]}" "${hang[$label]}" | tee -a "$OUT/summary.txt"
  bad=$(( bad + ${fail[$label]} + ${hang[$label]} ))
done < "$OUT/bins.tsv"
echo "soak: $N runs each in $(( $(date +%s) - start )) s; $bad failed or hung" | tee -a "$OUT/summary.txt"
[ "$bad" -eq 0 ]
