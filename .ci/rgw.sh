#!/usr/bin/env bash
# Starts a private S3 server (Ceph RGW) for the S3 tests and prints the
# settings as `export` lines (eval them). Usage:
#   eval "$(bash .ci/rgw.sh start)"   ...   bash .ci/rgw.sh stop
# Each start installs Debian's radosgw/ceph-mon/ceph-osd if missing, then makes
# a fresh single-node Ceph cluster in its own directory /tmp/cairn-rgw.XXXXXX:
# one monitor, one OSD whose disk is RAM (memstore), one gateway (beast) on
# 127.0.0.1, cephx authentication on, all of it on free ports, so concurrent
# runs do not disturb each other. Two S3 users are made: the first one's keys
# are exported as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the second one's
# (for tests of restricted credentials) as CAIRN_TEST_S3_USER2_KEY/_SECRET.
# `stop` stops the daemons of the cluster named by $CAIRN_TEST_RGW_DIR (by
# their pid files) and removes its directory.
#
# Memory: the OSD keeps objects in RAM. Measured: ~120 MB idle; after 1.5 GiB
# written, ~3.4 GB (the OSD holds about twice the bytes stored). Deleting frees
# small objects at once and the 4 MiB tails of larger ones when the gateway's
# garbage collector runs (set here to every minute, ~1-2 min after the delete).
# CAIRN_TEST_RGW_MEMSTORE_BYTES is the OSD's reported capacity (default 4 GiB).
# It is not enforced (there is no ceph-mgr to report fullness): writing more
# than that still succeeds and just uses more RAM.
#
# Seen of this gateway (Ceph 16.2): If-None-Match: * on PUT answers 412 for an
# existing key only in unversioned buckets (versioned and Object Lock buckets
# store a new version); Content-MD5 is verified, x-amz-checksum-* is ignored;
# the only storage class is STANDARD (others: 400 InvalidStorageClass).
set -euo pipefail

memstore_bytes=${CAIRN_TEST_RGW_MEMSTORE_BYTES:-$((4 << 30))}
case "$memstore_bytes" in
  '' | *[!0-9]*)
    echo "rgw.sh: CAIRN_TEST_RGW_MEMSTORE_BYTES must be a number of bytes" >&2
    exit 2
    ;;
esac

say() { echo "rgw.sh: $*" >&2; }

# Ports 20000-32767 (below Linux's ephemeral range); one that nothing answers.
free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$((20000 + RANDOM % 12768))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  say "no free TCP port found"
  return 1
}

# True while the process runs (a killed daemon stays a zombie until init reaps it).
running() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

stop_cluster() {
  local dir=$1 f pids="" pid i alive
  # The data is thrown away, so no graceful shutdown (the gateway's takes ~6 s):
  # TERM all daemons, KILL what is left after 0.5 s, wait until all are gone.
  for f in "$dir"/run/*.pid; do
    if [ -s "$f" ]; then pids="$pids $(cat "$f")"; fi
  done
  # Also anything started but without a pid file yet.
  if command -v pgrep >/dev/null; then
    pids="$pids $(pgrep -f -- "-c $dir/ceph.conf" || true)"
  fi
  pids=$(tr -s ' ' '\n' <<<"$pids" | sort -u)
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 1 100); do
    alive=""
    for pid in $pids; do running "$pid" && alive="$alive $pid"; done
    pids=$alive
    [ -n "$pids" ] || break
    [ "$i" != 5 ] || for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 0.1
  done
}

case "${1:-start}" in
  start)
    export DEBIAN_FRONTEND=noninteractive
    if ! command -v radosgw >/dev/null || ! command -v ceph-mon >/dev/null \
      || ! command -v ceph-osd >/dev/null; then
      say "installing radosgw ceph-mon ceph-osd"
      log=$(mktemp /tmp/cairn-rgw-apt.XXXXXX)
      if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        radosgw ceph-mon ceph-osd; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        say "could not install Ceph"
        exit 1
      fi
      rm -f "$log"
    fi

    dir=$(mktemp -d /tmp/cairn-rgw.XXXXXX)
    chmod 755 "$dir"
    mkdir -p "$dir/run" "$dir/log" "$dir/mon.a" "$dir/osd.0" "$dir/rgw"
    conf=$dir/ceph.conf
    ok=0
    # fail MESSAGE [LOG...]: prints the tails of the logs named (default: every
    # non-empty *.out), stops what was started, removes the directory, exits 1.
    fail() {
      local msg=$1 f
      shift
      trap - EXIT
      [ $# -gt 0 ] || set -- "$dir"/log/*.out
      for f in "$@"; do
        [ -s "$f" ] || continue
        echo "---- tail of $f" >&2
        tail -n 25 "$f" >&2
      done
      say "$msg"
      stop_cluster "$dir"
      if [ -n "${CAIRN_TEST_RGW_KEEP_FAILED:-}" ]; then
        say "left $dir for inspection"
      else
        rm -rf "$dir"
      fi
      exit 1
    }
    trap '[ "$ok" = 1 ] || fail "start failed (line $LINENO)"' EXIT

    mon_port=$(free_port)
    rgw_port=$(free_port)
    while [ "$rgw_port" = "$mon_port" ]; do rgw_port=$(free_port); done
    fsid=$(cat /proc/sys/kernel/random/uuid)
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
public addr = 127.0.0.1
ms bind msgr2 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
log to stderr = false
err to stderr = false
mon cluster log file = $dir/log/cluster.log
mon data = $dir/mon.\$id
osd data = $dir/osd.\$id
osd objectstore = memstore
memstore device bytes = $memstore_bytes
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
# The monitor stops itself when its disk is nearly full (default 5% free): not here.
mon data avail warn = 2
mon data avail crit = 0
mon warn on insecure global id reclaim allowed = false
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
osd heartbeat grace = 60
# The monitor batches map changes for 1 s by default; each pool the gateway
# creates waits for that (start took 13 s instead of 3 s).
paxos propose interval = 0.1
paxos min wait = 0.01
rgw gc obj min wait = 60
rgw gc processor period = 60

[client.rgw.cairn]
# tcp_nodelay: without it small responses wait ~40 ms for the client's delayed ACK.
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw data = $dir/rgw
EOF
    # The ceph CLI as client.admin (its key is in the keyring named by ceph.conf).
    ceph_() { timeout 60 ceph -c "$conf" --connect-timeout 20 "$@" 2>>"$dir/log/ceph-cli.out"; }
    wait_for() { # SECONDS COMMAND...: true once COMMAND succeeds, false on timeout
      local t=$1 end
      shift
      end=$((SECONDS + t))
      while [ "$SECONDS" -lt "$end" ]; do
        if "$@"; then return 0; fi
        sleep 0.5
      done
      return 1
    }

    at=$dir/keyring
    {
      ceph-authtool --create-keyring "$at" --gen-key -n mon. --cap mon 'allow *'
      ceph-authtool "$at" --gen-key -n client.admin --cap mon 'allow *' \
        --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *'
      ceph-authtool "$at" --gen-key -n osd.0 --cap mon 'allow profile osd' \
        --cap osd 'allow *' --cap mgr 'allow profile osd'
      ceph-authtool "$at" --gen-key -n client.rgw.cairn --cap mon 'allow rw' \
        --cap osd 'allow rwx' --cap mgr 'allow rw'
      monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$mon_port]" "$dir/monmap"
    } >"$dir/log/setup.out" 2>&1 || fail "keyring/monmap creation failed" "$dir/log/setup.out"

    # Monitor.
    ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" --keyring "$at" \
      </dev/null >"$dir/log/mon-mkfs.out" 2>&1 \
      || fail "ceph-mon --mkfs failed" "$dir/log/mon-mkfs.out" "$dir/log/mon.a.log"
    ceph-mon -c "$conf" -i a </dev/null >"$dir/log/mon.out" 2>&1 \
      || fail "ceph-mon did not start" "$dir/log/mon.out" "$dir/log/mon.a.log"
    wait_for 30 ceph_ mon stat >/dev/null \
      || fail "the monitor did not answer in 30 s" "$dir/log/mon.a.log" "$dir/log/ceph-cli.out"

    # OSD (memstore): it must be created with the uuid the monitor knows.
    osd_id=$(ceph_ osd create "$osd_uuid") \
      || fail "ceph osd create failed" "$dir/log/ceph-cli.out" "$dir/log/mon.a.log"
    [ "$osd_id" = 0 ] || fail "unexpected OSD id '$osd_id'" "$dir/log/ceph-cli.out"
    ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" \
      </dev/null >"$dir/log/osd-mkfs.out" 2>&1 \
      || fail "ceph-osd --mkfs failed" "$dir/log/osd-mkfs.out" "$dir/log/osd.0.log"
    ceph-osd -c "$conf" -i 0 </dev/null >"$dir/log/osd.out" 2>&1 \
      || fail "ceph-osd did not start" "$dir/log/osd.out" "$dir/log/osd.0.log"
    osd_up() { ceph_ osd stat 2>/dev/null | grep -q ' 1 up'; }
    wait_for 60 osd_up \
      || fail "the OSD was not up after 60 s" "$dir/log/osd.0.log" "$dir/log/mon.a.log"

    # Gateway: it creates its pools on first start, then listens.
    radosgw -c "$conf" -n client.rgw.cairn </dev/null >"$dir/log/rgw.out" 2>&1 \
      || fail "radosgw did not start" "$dir/log/rgw.out" "$dir/log/client.rgw.cairn.log"
    rgw_started=$SECONDS
    rgw_answers() {
      local line pidfile=$dir/run/client.rgw.cairn.pid
      # radosgw forks to the background, then writes its pid file.
      if [ -s "$pidfile" ]; then
        running "$(cat "$pidfile")" \
          || fail "radosgw exited" "$dir/log/rgw.out" "$dir/log/client.rgw.cairn.log"
      elif [ $((SECONDS - rgw_started)) -gt 15 ]; then
        fail "radosgw wrote no pid file in 15 s" "$dir/log/rgw.out" "$dir/log/client.rgw.cairn.log"
      fi
      { exec 3<>"/dev/tcp/127.0.0.1/$rgw_port"; } 2>/dev/null || return 1
      printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
      IFS= read -r -t 5 line <&3 || line=
      exec 3<&-
      case "$line" in HTTP/1.?\ 200*) return 0 ;; *) return 1 ;; esac
    }
    wait_for 120 rgw_answers \
      || fail "the gateway did not answer HTTP on port $rgw_port in 120 s" \
        "$dir/log/rgw.out" "$dir/log/client.rgw.cairn.log"

    # S3 users: keys made here (20 and 40 characters, as AWS's).
    key() { tr -dc "$1" </dev/urandom 2>/dev/null | head -c "$2" || true; }
    ak1=$(key 'A-Z0-9' 20) sk1=$(key 'A-Za-z0-9' 40)
    ak2=$(key 'A-Z0-9' 20) sk2=$(key 'A-Za-z0-9' 40)
    timeout 60 radosgw-admin -c "$conf" user create --uid=cairn-test \
      --display-name="cairn test" --access-key="$ak1" --secret-key="$sk1" \
      >"$dir/log/user1.out" 2>&1 || fail "radosgw-admin user create failed" "$dir/log/user1.out"
    timeout 60 radosgw-admin -c "$conf" user create --uid=cairn-test2 \
      --display-name="cairn test 2" --access-key="$ak2" --secret-key="$sk2" \
      >"$dir/log/user2.out" 2>&1 \
      || fail "radosgw-admin user create (second user) failed" "$dir/log/user2.out"

    ok=1
    trap - EXIT
    echo "export CAIRN_TEST_S3_ENDPOINT=http://127.0.0.1:$rgw_port"
    echo "export AWS_ACCESS_KEY_ID=$ak1 AWS_SECRET_ACCESS_KEY=$sk1 AWS_DEFAULT_REGION=us-east-1"
    echo "export CAIRN_TEST_S3_USER2_KEY=$ak2 CAIRN_TEST_S3_USER2_SECRET=$sk2"
    echo "export CAIRN_TEST_RGW_DIR=$dir"
    ;;
  stop)
    dir=${CAIRN_TEST_RGW_DIR:-}
    case "$dir" in
      /tmp/cairn-rgw.*)
        stop_cluster "$dir"
        rm -rf "$dir"
        ;;
    esac
    ;;
  *)
    echo "usage: bash .ci/rgw.sh start|stop" >&2
    exit 2
    ;;
esac
