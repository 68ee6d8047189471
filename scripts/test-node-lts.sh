#!/usr/bin/env bash
# The unit suite and the directory-store end-to-end suite again on each newer Node LTS line (the
# default run is on the machine's Node). The Node binaries come from npm's `node` package through
# npx (cached after the first run); nothing else is downloaded. The zstd binding compiled by
# `npm ci` against the machine's Node is Node-API, so the same build loads on every line.
# Usage: scripts/test-node-lts.sh [MAJOR…]   (default: 22 24; needs `npm ci` and a build)
set -euo pipefail
cd "$(dirname "$0")/.."
majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(22 24)
# The end-to-end files that need no S3, GCS or ZFS server, and that install nothing (packaging,
# release): those that neither inject a server nor start one.
mapfile -t directory_e2e < <(grep -L -e 'inject(' -e 'servers/' test/*.test.ts | grep -v -e 'test/packaging.test.ts' -e 'test/release.test.ts')
for major in "${majors[@]}"; do
  started=$SECONDS
  node_cmd=(npx -y -p "node@$major" -- node)
  echo "== Node $("${node_cmd[@]}" --version): unit and directory-store e2e (${#directory_e2e[@]} files)"
  BUCKETPIPE_TEST_SERVERS=none "${node_cmd[@]}" node_modules/vitest/vitest.mjs run --project unit
  BUCKETPIPE_TEST_SERVERS=none "${node_cmd[@]}" node_modules/vitest/vitest.mjs run --project e2e "${directory_e2e[@]}"
  echo "== Node $major: $((SECONDS - started)) s"
done
