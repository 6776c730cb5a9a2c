#!/usr/bin/env bash
# Boots Debian's kernel in qemu with N NUMA nodes and runs a guest script from an initramfs.
# The project's own launcher (first copied from a reference launcher, now owned and extended
# here: a guest script instead of a fixed binary list, a second serial port for files, KVM only
# after a boot probe).
#
# usage: qemu-numa-guest.sh GUEST_SCRIPT [FILE...]
#   GUEST_SCRIPT  a busybox-sh script run as /run.sh inside the guest (cwd /tmp, PATH /bin)
#   FILE...       copied into the guest's /bin; dynamic binaries get their ldd libraries too
# env:
#   NODES=2 CPUS_PER_NODE=2 MEM_PER_NODE_MB=1024 TIMEOUT=180
#   ACCEL=tcg|kvm|auto   auto: kvm only if /dev/kvm is usable and a probe guest boots under it
#                        within PROBE_TIMEOUT (nested KVM here starts qemu but the guest kernel
#                        hangs after the boot loader), else tcg. KVM uses -cpu EPYC (host/max
#                        abort on MSR 0x10a on these machines); TCG uses -cpu max.
#   OUT_FILE=path        the guest's /dev/ttyS1 is written to this file (e.g. a base64 tar)
#   APPEND="..."         extra kernel command line
# Distances: 10 local, 10 + 6·|i-j| remote (a chain of sockets: 10/16/22/28 for 4 nodes).
# Needs (Debian): qemu-system-x86 linux-image-amd64 busybox-static cpio
set -euo pipefail
NODES=${NODES:-2}; CPN=${CPUS_PER_NODE:-2}; MEM=${MEM_PER_NODE_MB:-1024}; TO=${TIMEOUT:-180}
ACCEL=${ACCEL:-tcg}
[ $# -ge 1 ] || { echo "usage: $0 GUEST_SCRIPT [FILE...]" >&2; exit 2; }
script=$1; shift
KERNEL=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
[ -n "$KERNEL" ] || { echo "qemu-numa-guest: no /boot/vmlinuz-* (apt-get install linux-image-amd64)" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-numa-guest: qemu-system-x86_64 missing (apt-get install qemu-system-x86)" >&2; exit 2; }
[ -x /bin/busybox ] || { echo "qemu-numa-guest: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 2; }
W=$(mktemp -d); R=$W/root; mkdir -p "$R"/{bin,proc,sys,dev,tmp}
trap 'rm -rf "$W"' EXIT
cp /bin/busybox "$R/bin/busybox"
for f in "$@"; do
  cp "$f" "$R/bin/"
  for l in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
    mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"
  done
done
cp "$script" "$R/run.sh"; chmod +x "$R/run.sh"
{ echo '#!/bin/busybox sh'; echo '/bin/busybox --install -s /bin'
  echo 'mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev'
  echo 'echo "NODE_ONLINE=$(cat /sys/devices/system/node/online) CPUS=$(nproc)"; cd /tmp'
  echo 'PATH=/bin /bin/busybox sh /run.sh; echo "EXIT run.sh rc=$?"'
  echo 'poweroff -f'; } > "$R/init"; chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$W/initramfs.cpio.gz"

numa=()
for ((n = 0; n < NODES; n++)); do
  numa+=(-object "memory-backend-ram,id=m$n,size=${MEM}M"
         -numa "node,nodeid=$n,cpus=$((n * CPN))-$((n * CPN + CPN - 1)),memdev=m$n")
done
for ((i = 0; i < NODES; i++)); do for ((j = i + 1; j < NODES; j++)); do
  numa+=(-numa "dist,src=$i,dst=$j,val=$((10 + 6 * (j - i)))")
done; done

# qemu ACCEL CPU TIMEOUT INITRD [extra args]
boot() {
  local accel=$1 cpu=$2 to=$3 initrd=$4; shift 4
  timeout "$to" qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -m $((NODES * MEM))M \
    -smp $((NODES * CPN)),sockets=$NODES,cores=$CPN,threads=1 "${numa[@]}" \
    -kernel "$KERNEL" -initrd "$initrd" \
    -append "console=ttyS0 quiet panic=-1 ${APPEND:-}" \
    -display none -serial mon:stdio -no-reboot "$@"
}

if [ "$ACCEL" = auto ]; then
  ACCEL=tcg
  if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    # Probe: a guest whose init only prints a marker must boot under KVM.
    P=$W/probe; mkdir -p "$P"/{bin,proc,sys,dev}; cp /bin/busybox "$P/bin/busybox"
    printf '#!/bin/busybox sh\n/bin/busybox echo KVM-PROBE-OK\n/bin/busybox poweroff -f\n' > "$P/init"
    chmod +x "$P/init"
    (cd "$P" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$W/probe.cpio.gz"
    if boot kvm EPYC "${PROBE_TIMEOUT:-30}" "$W/probe.cpio.gz" </dev/null 2>/dev/null |
      grep -q KVM-PROBE-OK; then
      ACCEL=kvm
    else
      echo "qemu-numa-guest: KVM probe guest did not boot within ${PROBE_TIMEOUT:-30} s; using TCG" >&2
    fi
  fi
fi
if [ "$ACCEL" = kvm ]; then CPU=EPYC; else CPU=max; fi
extra=()
if [ -n "${OUT_FILE:-}" ]; then : > "$OUT_FILE"; extra+=(-serial "file:$OUT_FILE"); fi
echo "qemu-numa-guest: $NODES nodes x $CPN CPUs, ${MEM} MiB per node, accel=$ACCEL cpu=$CPU" >&2
boot "$ACCEL" "$CPU" "$TO" "$W/initramfs.cpio.gz" "${extra[@]}" </dev/null
