#!/usr/bin/env bash
# Stops the daemons that ceph-up.sh started in DIR (by the pids in their pid files, nothing else)
# and removes DIR, unless --keep is given.
# usage: ceph-down.sh [--keep] DIR
set -uo pipefail

keep=false
if [ "${1:-}" = --keep ]; then keep=true; shift; fi
dir=${1:?usage: ceph-down.sh [--keep] DIR}
[ -d "$dir" ] || exit 0
if [ ! -f "$dir/ceph.conf" ] || [ ! -d "$dir/run" ]; then
  echo "ceph-down.sh: $dir does not look like a ceph-up.sh cluster (no ceph.conf, run/): leaving it alone" >&2
  exit 2
fi

# A daemon that exited but was not reaped yet (a zombie: state Z) counts as stopped.
running() { local state; state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]; }

pids=()
for name in client.rgw.a osd.0 mon.a; do
  file="$dir/run/$name.pid"
  [ -f "$file" ] || continue
  pid=$(cat "$file")
  # Only a process that is still this cluster's daemon (its command line names our ceph.conf).
  if [ -n "$pid" ] && grep -qF "$dir/ceph.conf" "/proc/$pid/cmdline" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null && pids+=("$pid")
  fi
done

# SIGKILL, not SIGTERM: the data is thrown away anyway, and a clean stop takes seconds (the memstore
# OSD writes its whole contents out to disk on shutdown). Wait until they are gone (up to 5 s).
for _ in $(seq 1 50); do
  alive=0
  for pid in "${pids[@]}"; do running "$pid" && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.1
done

$keep || rm -rf "$dir"
exit 0
