#!/usr/bin/env bash
# A real 3-replica Ceph cluster with an S3 gateway on 127.0.0.1, for the
# cloud-tier tests (facts in ../shared/notes/ceph-loopback.md).
# The object-tier tests start one with `start DIR PORT OWNER_PID`: a
# watcher stops it when the test process exits, however it exits.
#
#   .ci/ceph.sh install          install the Debian packages if missing
#   .ci/ceph.sh start DIR [PORT] [OWNER_PID]
#                                start 1 mon, 3 OSDs (memstore), radosgw on PORT
#                                (default 7480), bound to 127.0.0.1; prints the
#                                env to export; with OWNER_PID, stop it all
#                                once that process is gone
#   .ci/ceph.sh stop DIR         stop every daemon started in DIR (by pid file)
#   .ci/ceph.sh kill-osd DIR N   SIGKILL OSD N (fault tests)
#   .ci/ceph.sh start-osd DIR N  start OSD N again
#   .ci/ceph.sh restart-rgw DIR  stop and start the gateway
set -euo pipefail

ACCESS=tierseedkey
SECRET=tierseedsecret
BUCKET=tierseed-test

install() {
  local need=()
  for b in ceph-mon ceph-osd radosgw ceph; do command -v "$b" >/dev/null 2>&1 || need+=("$b"); done
  dpkg -s python3-boto3 >/dev/null 2>&1 || need+=(python3-boto3)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ceph-mon ceph-osd radosgw ceph-common python3-boto3 >/dev/null
  fi
}

conf() {
  local dir=$1 port=$2
  cat > "$dir/ceph.conf" <<CONF
[global]
fsid = $(cat "$dir/fsid")
mon host = 127.0.0.1
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.1/32
cluster network = 127.0.0.1/32
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 3
osd pool default min size = 2
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd objectstore = memstore
memstore device bytes = 8589934592
paxos propose interval = 0.1
mon osd reporter subtree level = osd
osd heartbeat interval = 2
osd heartbeat grace = 8
osd recovery sleep hdd = 0
mon data avail warn = 2
mon data avail crit = 1
mon allow pool delete = true
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
mon data = $dir/mon/\$name
osd data = $dir/osd/\$id
[client.rgw.a]
ms mon client mode = crc secure
rgw frontends = beast endpoint=127.0.0.1:$port tcp_nodelay=1
rgw data = $dir/rgw
CONF
}

start() {
  local dir=$1 port=${2:-7480} owner=${3:-}
  # The monitor's ports are fixed: one cluster per machine at a time. A
  # test run just before this one may still be stopping its own (its
  # watcher polls each second): give it a few seconds.
  for _ in $(seq 1 20); do
    (exec 3<>/dev/tcp/127.0.0.1/3300) 2>/dev/null || break
    sleep 0.5
  done
  if (exec 3<>/dev/tcp/127.0.0.1/3300) 2>/dev/null; then
    echo "ceph: a monitor already listens on 127.0.0.1:3300; stop that cluster (ceph.sh stop DIR)," \
      "or point the tests at it with TIERSEED_CEPH_DIR=DIR" >&2
    exit 1
  fi
  # A stopped cluster of ours in DIR cannot be restarted: memstore OSDs
  # come back empty. Start it afresh (only our own subdirectories go).
  if [ -f "$dir/fsid" ]; then
    rm -rf "$dir"/{run,log,mon,osd,rgw} "$dir/fsid" "$dir/monmap" "$dir/keyring"
  fi
  mkdir -p "$dir"/{run,log,mon,osd,rgw}
  # A start that fails part way (an OSD that never comes up, the bucket
  # not created) stops what it started: nothing is left holding the
  # monitor's fixed port for the next run (the bug "a failed start left
  # its daemons running and every later test run failed").
  trap "stop '$dir' >/dev/null 2>&1" EXIT
  [ -f "$dir/fsid" ] || cat /proc/sys/kernel/random/uuid > "$dir/fsid"
  conf "$dir" "$port"
  echo "$port" > "$dir/port"
  local c="$dir/ceph.conf"
  if [ ! -d "$dir/mon/mon.a" ]; then
    monmaptool --create --fsid "$(cat "$dir/fsid")" --addv a "[v2:127.0.0.1:3300,v1:127.0.0.1:6789]" "$dir/monmap" >/dev/null
    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-mon -c "$c" -i a --mkfs --monmap "$dir/monmap" --keyring "$dir/keyring"
  fi
  timeout 30 ceph-mon -c "$c" -i a
  for n in 0 1 2; do
    if [ ! -d "$dir/osd/$n" ]; then
      local uuid; uuid=$(cat /proc/sys/kernel/random/uuid)
      timeout 30 ceph -c "$c" osd new "$uuid" "$n" >/dev/null
      mkdir -p "$dir/osd/$n"
      ceph-osd -c "$c" -i "$n" --mkfs --osd-uuid "$uuid" >/dev/null 2>&1
    fi
  done
  for n in 0 1 2; do timeout 30 ceph-osd -c "$c" -i "$n"; done
  for _ in $(seq 1 120); do
    up=$(timeout 10 ceph -c "$c" osd stat -f json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_up_osds"])' 2>/dev/null || echo 0)
    [ "$up" = 3 ] && break
    sleep 0.5
  done
  [ "$up" = 3 ] || { echo "ceph: OSDs did not come up" >&2; exit 1; }
  timeout 60 radosgw -c "$c" -n client.rgw.a
  for _ in $(seq 1 120); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    sleep 0.5
  done
  timeout 60 radosgw-admin -c "$c" user create --uid tierseed --display-name tierseed \
    --access-key "$ACCESS" --secret-key "$SECRET" >/dev/null 2>&1 || true
  /usr/bin/python3 - "$port" "$BUCKET" <<'PY'
import sys, boto3, botocore
port, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="tierseedkey",
                  aws_secret_access_key="tierseedsecret", region_name="us-east-1",
                  config=botocore.config.Config(s3={"addressing_style": "path"}))
for b in (bucket, bucket + "-2"):
    try:
        s3.create_bucket(Bucket=b)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
PY
  trap - EXIT
  if [ -n "$owner" ]; then
    # Detached from the caller's pipes, so the caller sees this script end.
    setsid nohup bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; bash "$2" stop "$3"; rm -rf "$3"' \
      watcher "$owner" "$0" "$dir" >/dev/null 2>&1 &
  fi
  echo "AWS_ENDPOINT_URL=http://127.0.0.1:$port"
  echo "AWS_ACCESS_KEY_ID=$ACCESS"
  echo "AWS_SECRET_ACCESS_KEY=$SECRET"
  echo "AWS_REGION=us-east-1"
  echo "TIERSEED_TEST_BUCKET=$BUCKET"
}

stop() {
  local dir=$1
  for p in "$dir"/run/*.pid; do
    [ -f "$p" ] || continue
    kill "$(cat "$p")" 2>/dev/null || true
  done
  sleep 1
  for p in "$dir"/run/*.pid; do
    [ -f "$p" ] || continue
    kill -9 "$(cat "$p")" 2>/dev/null || true
    rm -f "$p"
  done
}

# Stops the gateway, waits until its process is gone, starts it again and
# waits until its port answers. A fixed "sleep 1" between the two let a
# loaded machine start the new gateway while the old one still held its
# pidfile lock: the new one gave up, the gateway stayed down and every
# later object test failed to connect (seen in CI with a large bench
# running beside it).
restart_rgw() {
  local dir=$1 pid port
  port=$(cat "$dir/port")
  pid=$(cat "$dir/run/client.rgw.a.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  for _ in 1 2 3; do
    timeout 60 radosgw -c "$dir/ceph.conf" -n client.rgw.a || true
    for _ in $(seq 1 60); do
      (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0
      sleep 0.5
    done
  done
  echo "ceph: the gateway did not come back on port $port" >&2
  return 1
}

case "${1:-}" in
  install) install ;;
  start) start "$2" "${3:-7480}" "${4:-}" ;;
  stop) stop "$2" ;;
  kill-osd) kill -9 "$(cat "$2/run/osd.$3.pid")" ;;
  start-osd) timeout 30 ceph-osd -c "$2/ceph.conf" -i "$3" ;;
  restart-rgw) restart_rgw "$2" ;;
  *) echo "usage: $0 install | start DIR [PORT] | stop DIR | kill-osd DIR N | start-osd DIR N | restart-rgw DIR" >&2; exit 2 ;;
esac
