#!/usr/bin/env bash
# Builds the benchmark corpus: the data directory of a real, freshly vacuumed PostgreSQL cluster
# holding one "orders" table (heap + 3 b-tree indexes), packed as a single tar stream. That is the
# kind of byte stream `zfs send` of a database dataset carries: page-structured, partly
# compressible (about 2.5-3x under zstd -1), nothing like /dev/urandom or /dev/zero.
#
# usage: bench/make-corpus.sh OUT.tar [ROWS]
#   ROWS  rows in the orders table (default 4500000, which gives a tar of about 1 GiB)
#
# Needs root the first time (installs Debian's postgresql package when initdb is missing).
# The server runs as the postgres user on a private Unix socket, without TCP, in a temporary
# directory that is removed on exit. OUT is written atomically (a partial file, then renamed).
set -euo pipefail

out=$(realpath -m "${1:?usage: make-corpus.sh OUT.tar [ROWS]}")
rows=${2:-4500000}
[[ $rows =~ ^[1-9][0-9]*$ ]] || { echo "make-corpus.sh: ROWS must be a positive integer, got '$rows'" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
partial="$out.partial-$$"

find_initdb() { ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1; }

if [[ -z $(find_initdb) ]]; then
  echo "make-corpus.sh: installing postgresql with apt-get (needed once to build the corpus)" >&2
  apt-get update -qq
  # policy-rc.d exit 101: do not start the distribution's own cluster; we only need the binaries.
  policy=/usr/sbin/policy-rc.d
  if [[ -e $policy ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  else
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null || {
      rm -f "$policy"
      exit 1
    }
    rm -f "$policy"
  fi
fi
pgbin=$(dirname "$(find_initdb)")
[[ -x $pgbin/initdb ]] || { echo "make-corpus.sh: initdb not found after installing postgresql" >&2; exit 1; }

work=$(mktemp -d /tmp/bucketpipe-corpus.XXXXXX)
chmod 755 "$work"
chown postgres: "$work"
as_postgres() { runuser -u postgres -- "$@"; }

cleanup() {
  as_postgres "$pgbin/pg_ctl" -D "$work/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$work" "$partial"
}
trap cleanup EXIT

echo "make-corpus.sh: building a PostgreSQL cluster with $rows orders rows in $work" >&2
as_postgres "$pgbin/initdb" -D "$work/data" --auth=trust --encoding=UTF8 --no-locale >/dev/null
# Durability is irrelevant for a throwaway cluster; the data files come out the same without it.
as_postgres "$pgbin/pg_ctl" -D "$work/data" -l "$work/server.log" -w start \
  -o "-c listen_addresses='' -c unix_socket_directories='$work' -c fsync=off -c synchronous_commit=off \
      -c full_page_writes=off -c max_wal_size=128MB -c min_wal_size=32MB -c maintenance_work_mem=256MB" >/dev/null

as_postgres "$pgbin/psql" -h "$work" -d postgres -X -q -v ON_ERROR_STOP=1 -v rows="$rows" <<'SQL'
SELECT setseed(0.1977) \g /dev/null
CREATE TABLE orders (
  id          bigint PRIMARY KEY,
  customer_id integer NOT NULL,
  placed_at   timestamptz NOT NULL,
  status      text NOT NULL,
  total       numeric(12,2) NOT NULL,
  email       text NOT NULL,
  sku         text NOT NULL,
  note        text
);
-- Mixed content, as in real tables: small integers, timestamps, low-cardinality enums, semi-random
-- strings (emails, SKUs) and high-entropy text (hex digests), so the compression ratio is realistic.
INSERT INTO orders
SELECT n,
       (random() * 999999)::int,
       timestamptz '2025-01-01' - random() * interval '1100 days',
       (ARRAY['new','paid','packed','shipped','delivered','cancelled','refunded'])[1 + floor(random() * 7)::int],
       round((random() * 1500)::numeric, 2),
       'customer' || (random() * 999999)::int || '@mail.' || (ARRAY['com','net','org','io'])[1 + floor(random() * 4)::int],
       'SKU-' || to_char((random() * 99999)::int, 'FM00000'),
       CASE WHEN random() < 0.9
            THEN md5(random()::text) || ' ' || left(md5(random()::text), (random() * 32)::int)
       END
FROM generate_series(1, :rows) AS n;
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_placed_idx ON orders (placed_at);
VACUUM (ANALYZE) orders;
CHECKPOINT;
SQL

as_postgres "$pgbin/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null
tar -C "$work" -cf "$partial" data
mv "$partial" "$out"
echo "make-corpus.sh: wrote $out ($(stat -c %s "$out") bytes)" >&2
