#!/usr/bin/env bash
# watchdog.sh [--per-binary S] [--total S] -- COMMAND...
# Runs COMMAND (e.g. `cargo test --workspace`). Any test binary it starts (an executable under
# target/*/deps/) that runs longer than S seconds (default 600), or the whole
# command past --total seconds (default 3600), is a hang: every thread's stack of every process
# of the command is printed (scripts/stacks.sh), the command is killed, and the exit status is
# 124. Otherwise the command's own status is returned.
set -uo pipefail
per=600
total=3600
while [ $# -gt 0 ]; do
  case "$1" in
    --per-binary) per=$2; shift 2 ;;
    --total) total=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: watchdog.sh [--per-binary S] [--total S] -- COMMAND..." >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"

setsid "$@" &
cmd=$!
start=$(date +%s)

descendants() { # every process in the command's session
  ps -e -o pid=,sid= | awk -v s="$cmd" '$2 == s { print $1 }'
}

hang() {
  echo
  echo "=== WATCHDOG: $1; stacks of every process follow, then the command is killed"
  # shellcheck disable=SC2046
  bash "$here/stacks.sh" $(descendants)
  kill -KILL -- -"$cmd" 2>/dev/null
  wait "$cmd" 2>/dev/null
  echo "=== WATCHDOG: killed (status 124)"
  exit 124
}

while kill -0 "$cmd" 2>/dev/null; do
  sleep 2
  now=$(date +%s)
  [ $(( now - start )) -gt "$total" ] && hang "'$*' ran longer than ${total} s"
  for p in $(descendants); do
    exe=$(readlink /proc/"$p"/exe 2>/dev/null) || continue
    case "$exe" in
      */target/*/deps/*) ;;
      *) continue ;;
    esac
    age=$(ps -o etimes= -p "$p" 2>/dev/null | tr -d ' ')
    if [ -n "$age" ] && [ "$age" -gt "$per" ]; then
      hang "test binary $(basename "$exe") (pid $p) ran longer than ${per} s"
    fi
  done
done
wait "$cmd"
