#!/usr/bin/env bash
# The main job on one machine, no cloud: a real send and receive through a local directory store,
# run concurrently as two processes, then the result checked byte for byte.
# usage: scripts/demo.sh [SIZE_MIB]   (default 512)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-512}
bp="node packages/cli/dist/bin.js"
work=$(mktemp -d "${TMPDIR:-/tmp}/bucketpipe-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "demo: writing a ${size_mib} MiB test stream (database-like rows mixed with random bytes)"
node test/fixtures/mixed-source.mjs $((size_mib * 1024 * 1024)) > "$work/input.bin"
expected=$(sha256sum < "$work/input.bin" | cut -d' ' -f1)

echo "demo: receiver and sender started together through $work/stream"
$bp receive "$work/stream" --poll-interval 250ms > "$work/output.bin" &
receiver=$!
$bp send "$work/stream" --chunk-size 8MiB -- cat "$work/input.bin"
wait "$receiver"

actual=$(sha256sum < "$work/output.bin" | cut -d' ' -f1)
$bp inspect "$work/stream"
if [ "$actual" != "$expected" ]; then
  echo "demo: FAILED: output sha256 $actual differs from input $expected" >&2
  exit 1
fi
echo "demo: OK: ${size_mib} MiB received byte-identical (sha256 $expected)"
