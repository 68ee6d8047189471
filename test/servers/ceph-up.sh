#!/usr/bin/env bash
# Starts a throwaway single-node Ceph (1 mon, 1 memstore OSD, radosgw) on 127.0.0.1 for the S3 tests,
# and prints the S3 connection as shell assignments on stdout:
#
#   eval "$(test/servers/ceph-up.sh /tmp/bp-ceph)"   # then run the tests against it:
#   BUCKETPIPE_TEST_S3_ENDPOINT=… BUCKETPIPE_TEST_S3_ACCESS_KEY_ID=… BUCKETPIPE_TEST_S3_SECRET_ACCESS_KEY=…
#   test/servers/ceph-down.sh /tmp/bp-ceph            # stops the daemons and removes the directory
#
# usage: ceph-up.sh DIR   (DIR must not exist or be empty; everything, data included, lives in it)
# No authentication inside the cluster (cephx off), pool size 1, objects in memory: for tests only.
# Every port is picked free at start, so several runs can share a machine.
set -euo pipefail

dir=${1:?usage: ceph-up.sh DIR}
for tool in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph node; do
  if ! command -v "$tool" >/dev/null; then
    echo "ceph-up.sh: $tool not found: run .ci/run, or apt-get install --no-install-recommends ceph-mon ceph-osd radosgw" >&2
    exit 3
  fi
done
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  echo "ceph-up.sh: $dir exists and is not empty: give a new directory (it becomes the throwaway cluster)" >&2
  exit 2
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
mkdir -p "$dir"/{run,log,mon.a,osd.0,rgw}
cd "$dir"

# On failure: stop what was started, show why, leave the logs for a look.
fail() {
  echo "ceph-up.sh: $1 (logs in $dir/log)" >&2
  for log in "$dir"/log/*; do [ -s "$log" ] && { echo "--- $log" >&2; tail -n 15 "$log" >&2; }; done
  "$(dirname "${BASH_SOURCE[0]}")/ceph-down.sh" --keep "$dir" >&2 || true
  exit 1
}
trap 'fail "a step failed at line $LINENO"' ERR

# Free ports, asked of the kernel (bound to port 0) and released at once.
read -r mon_port rgw_port < <(node -e '
  const net = require("node:net");
  const one = () => new Promise((ok) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); }); });
  Promise.all([one(), one()]).then((ports) => console.log(ports.join(" ")));')

fsid=$(cat /proc/sys/kernel/random/uuid)
access_key="BP$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)"
secret_key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

cat > ceph.conf <<EOF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$mon_port
public_network = 127.0.0.0/8
ms_bind_msgr1 = false
ms_bind_port_min = 20000
ms_bind_port_max = 32000
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# Without it a client offers only "secure" mode and waits 300 s for a monitor that does not offer it.
ms_mon_client_mode = crc
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
# Tests run on whatever disk there is; the monitor must not stop when it is nearly full.
mon_data_avail_warn = 1
mon_data_avail_crit = 0
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 2000
osd_crush_chooseleaf_type = 0
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
log_file = $dir/log/\$name.log
pid_file = $dir/run/\$name.pid
[mon]
mon_data = $dir/mon.\$id
# Commit map changes at once instead of batching them for 1 s: radosgw creates its pools one by one.
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
[osd]
osd_data = $dir/osd.\$id
osd_objectstore = memstore
memstore_device_bytes = 4294967296
osd_memory_target = 1073741824
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$rgw_port
rgw_data = $dir/rgw
# Free the space of deleted and overwritten objects within seconds (default: after 2 hours), so that
# a long test run does not fill the in-memory OSD.
rgw_gc_obj_min_wait = 1
rgw_gc_processor_period = 2
rgw_gc_processor_max_time = 2
EOF
echo "$rgw_port" > rgw.port

monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" monmap >/dev/null
ceph-mon -c "$dir/ceph.conf" --mkfs -i a --monmap monmap 2>>log/mon-mkfs.log
ceph-mon -c "$dir/ceph.conf" -i a 2>>log/mon-start.log
osd_uuid=$(cat /proc/sys/kernel/random/uuid)
osd_id=$(timeout 30 ceph -c "$dir/ceph.conf" --connect-timeout 20 osd new "$osd_uuid" 2>>log/ceph-cli.log)
[ "$osd_id" = 0 ] || fail "expected OSD id 0, got '$osd_id'"
ceph-osd -c "$dir/ceph.conf" -i 0 --mkfs --osd-uuid "$osd_uuid" 2>>log/osd-mkfs.log
ceph-osd -c "$dir/ceph.conf" -i 0 2>>log/osd-start.log
radosgw -c "$dir/ceph.conf" -n client.rgw.a 2>>log/rgw-start.log
timeout 30 radosgw-admin -c "$dir/ceph.conf" user create --uid=bucketpipe-test --display-name=bucketpipe-test \
  --access-key="$access_key" --secret-key="$secret_key" >/dev/null 2>>log/rgw-admin.log

# Ready when an anonymous request gets an HTTP answer (radosgw answers 200 once its pools exist).
if node -e '
  const url = process.argv[1], deadline = Date.now() + 30000;
  const poll = () => fetch(url).then((r) => { if (r.ok) process.exit(0); throw 0; }).catch(() => {
    if (Date.now() > deadline) process.exit(1);
    setTimeout(poll, 100);
  });
  poll();' "http://127.0.0.1:$rgw_port/"; then
  echo "BUCKETPIPE_TEST_S3_ENDPOINT=http://127.0.0.1:$rgw_port"
  echo "BUCKETPIPE_TEST_S3_ACCESS_KEY_ID=$access_key"
  echo "BUCKETPIPE_TEST_S3_SECRET_ACCESS_KEY=$secret_key"
  exit 0
fi
fail "radosgw did not answer on 127.0.0.1:$rgw_port within 30 s"
