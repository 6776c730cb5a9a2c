#!/usr/bin/env bash
# stacks.sh PID... — prints every thread's stack of each process (gdb, else eu-stack, else the
# kernel's /proc/PID/task/*/stack and wchan). Used by the watchdog and the soak script when a
# test hangs, so a hang becomes a failure with stacks.
for pid in "$@"; do
  echo "----- stacks of pid $pid: $(tr '\0' ' ' < /proc/"$pid"/cmdline 2>/dev/null | cut -c1-200)"
  if command -v gdb >/dev/null 2>&1; then
    timeout 60 gdb -q -batch -p "$pid" -ex "set pagination off" -ex "thread apply all bt 40" 2>&1 \
      | grep -v "^\[New LWP\|^warning: \|^Missing separate\|^Download failed"
  elif command -v eu-stack >/dev/null 2>&1; then
    timeout 60 eu-stack -p "$pid" 2>&1
  else
    for t in /proc/"$pid"/task/*; do
      echo "thread $(basename "$t"): $(cat "$t"/comm 2>/dev/null) wchan=$(cat "$t"/wchan 2>/dev/null)"
      cat "$t"/stack 2>/dev/null
    done
  fi
done
