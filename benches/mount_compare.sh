#!/usr/bin/env bash
# `cairn mount` measured against `cairn dump` and `restic mount`, on the same
# data, in the same run.
#
#   bash benches/mount_compare.sh            # 1 GiB file, 50,000-file tree, 3 reps
#   QUICK=1 bash benches/mount_compare.sh    # smoke run: 100 MiB, 5,000 files, 1 rep
#
# Data (built deterministically, cached under $BENCH_DIR/data):
#   big/big.bin   BIG_MB MiB of pseudo-random bytes (incompressible)
#   tree/         FILES small files (0-8 KiB) in directories of 100, 10 per parent
# One cairn snapshot of both (repository defaults), one restic snapshot of tree/.
#
# Timed steps, interleaved, the order rotating between repetitions; each runs
# after `sync` and dropping the page cache (as root), and each mount is fresh
# (mounted, waited for until snapshots/latest resolves, then timed):
#   seq/mount    cat MNT/snapshots/latest/.../big.bin > /dev/null  (cairn mount)
#   seq/dump     cairn dump latest .../big.bin > /dev/null  (whole command)
#   ls/cairn     ls -lR MNT/snapshots/latest/.../tree > /dev/null  (cairn mount)
#   ls/restic    the same through restic mount
# Targets (the mount issue): seq/mount at least 0.8x the speed of seq/dump;
# ls/cairn at least 2x faster than ls/restic. Medians of REPS.
#
# Knobs: REPS=3 BIG_MB=1024 FILES=50000 BENCH_DIR=/var/tmp/cairn-mount-bench
#        DROP_CACHES=1 CAIRN_BIN=... (default: cargo build --release here)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

if [[ ${QUICK:-0} == 1 ]]; then
    : "${REPS:=1}" "${BIG_MB:=100}" "${FILES:=5000}"
fi
REPS=${REPS:-3}
BIG_MB=${BIG_MB:-1024}
FILES=${FILES:-50000}
BENCH_DIR=${BENCH_DIR:-/var/tmp/cairn-mount-bench}
DROP_CACHES=${DROP_CACHES:-1}

export CAIRN_PASSWORD=${CAIRN_PASSWORD:-mount-bench-password}
export RESTIC_PASSWORD=$CAIRN_PASSWORD
export RESTIC_CACHE_DIR=$BENCH_DIR/restic-cache
unset CAIRN_REPOSITORY RESTIC_REPOSITORY CAIRN_PASSWORD_FILE RESTIC_PASSWORD_FILE 2>/dev/null || true

DATA=$BENCH_DIR/data
CREPO=$BENCH_DIR/cairn-repo
RREPO=$BENCH_DIR/restic-repo
MNT=$BENCH_DIR/mnt
RESULTS=$BENCH_DIR/results.tsv

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 is required (data generation)"
if ! command -v restic >/dev/null; then
    [[ $(id -u) == 0 ]] || die "restic is not installed (apt-get install restic)"
    log "installing restic"
    apt-get update -qq && apt-get install -y -qq restic >/dev/null
fi
[[ -e /dev/fuse ]] || die "/dev/fuse is missing"

if [[ -z ${CAIRN_BIN:-} ]]; then
    log "building cairn (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin cairn) || die "cargo build failed"
    CAIRN_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn
fi
[[ -x $CAIRN_BIN ]] || die "no cairn binary at $CAIRN_BIN"

mkdir -p "$BENCH_DIR" "$MNT"

# ---------------------------------------------------------------------------
# Data and repositories
# ---------------------------------------------------------------------------

stamp="$BIG_MB-$FILES"
if [[ ! -f $DATA/.done-$stamp ]]; then
    log "building data: ${BIG_MB} MiB file, $FILES files"
    rm -rf "$DATA" "$CREPO" "$RREPO"
    mkdir -p "$DATA/big" "$DATA/tree"
    python3 - "$DATA" "$BIG_MB" "$FILES" <<'EOF'
import os, random, sys
data, big_mb, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20261202)
with open(os.path.join(data, "big", "big.bin"), "wb") as f:
    for _ in range(big_mb):
        f.write(rng.randbytes(1 << 20))
for i in range(files):
    d = os.path.join(data, "tree", f"g{i // 1000:03d}", f"d{(i // 100) % 10:02d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file-{i:06d}.txt"), "wb") as f:
        f.write(rng.randbytes(rng.randrange(0, 8192)))
EOF
    touch "$DATA/.done-$stamp"
fi
if [[ ! -f $CREPO/config ]]; then
    log "cairn: init and backup"
    "$CAIRN_BIN" -r "$CREPO" init -q
    "$CAIRN_BIN" -r "$CREPO" backup -q "$DATA/big" "$DATA/tree"
fi
if [[ ! -f $RREPO/config ]]; then
    log "restic: init and backup"
    restic -r "$RREPO" init -q
    restic -r "$RREPO" backup -q "$DATA/tree"
fi

# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------

CACHE_NOTE="page cache kept (DROP_CACHES=0)"
if [[ $DROP_CACHES == 1 ]]; then
    if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then
        CACHE_NOTE="page cache dropped before each step"
    else
        DROP_CACHES=0
        CACHE_NOTE="page cache could NOT be dropped here (not permitted): every step ran with the repositories cached"
    fi
fi
log "$CACHE_NOTE"

drop_caches() {
    sync
    if [[ $DROP_CACHES == 1 ]]; then
        echo 3 > /proc/sys/vm/drop_caches
    fi
}

now() { date +%s.%N; }

MOUNT_PID=
mount_cairn() {
    "$CAIRN_BIN" -r "$CREPO" mount "$MNT" > "$BENCH_DIR/mount.log" 2>&1 &
    MOUNT_PID=$!
    wait_ready
}
mount_restic() {
    restic -r "$RREPO" mount "$MNT" > "$BENCH_DIR/mount.log" 2>&1 &
    MOUNT_PID=$!
    wait_ready
}
wait_ready() {
    for _ in $(seq 1 600); do
        if stat "$MNT/snapshots/latest/" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$MOUNT_PID" 2>/dev/null || { cat "$BENCH_DIR/mount.log" >&2; die "mount exited"; }
        sleep 0.1
    done
    die "mount not ready after 60 s"
}
unmount() {
    kill -INT "$MOUNT_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$MOUNT_PID" 2>/dev/null || break
        sleep 0.1
    done
    wait "$MOUNT_PID" 2>/dev/null || true
    if grep -q " $MNT " /proc/mounts; then
        fusermount -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    fi
}

record() { # step rep seconds
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RESULTS"
    log "$1 (rep $2): $3 s"
}

step() { # name rep
    local name=$1 rep=$2 t0 t1
    drop_caches
    case $name in
    seq/mount)
        mount_cairn
        t0=$(now); cat "$MNT/snapshots/latest$DATA/big/big.bin" > /dev/null; t1=$(now)
        unmount ;;
    seq/dump)
        t0=$(now); "$CAIRN_BIN" -r "$CREPO" dump latest "$DATA/big/big.bin" > /dev/null; t1=$(now) ;;
    ls/cairn)
        mount_cairn
        t0=$(now); ls -lR "$MNT/snapshots/latest$DATA/tree" > /dev/null; t1=$(now)
        unmount ;;
    ls/restic)
        mount_restic
        t0=$(now); ls -lR "$MNT/snapshots/latest$DATA/tree" > /dev/null; t1=$(now)
        unmount ;;
    esac
    record "$name" "$rep" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
}

: > "$RESULTS"
steps=(seq/mount seq/dump ls/cairn ls/restic)
for rep in $(seq 1 "$REPS"); do
    n=${#steps[@]}
    for k in $(seq 0 $((n - 1))); do
        step "${steps[$(((k + rep - 1) % n))]}" "$rep"
    done
done

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

python3 - "$RESULTS" "$BIG_MB" "$FILES" "$REPS" "$CACHE_NOTE" <<'EOF'
import statistics, sys
path, big_mb, files, reps, note = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
t = {}
for line in open(path):
    step, rep, secs = line.split("\t")
    t.setdefault(step, []).append(float(secs))
m = {k: statistics.median(v) for k, v in t.items()}
mb = big_mb * 1.048576
print(f"\nmedians of {reps} (seconds; {note}):")
for k in ("seq/mount", "seq/dump", "ls/cairn", "ls/restic"):
    print(f"  {k:10} {m[k]:8.2f}   all: {', '.join(f'{x:.2f}' for x in t[k])}")
seq = m["seq/dump"] / m["seq/mount"]
ls = m["ls/restic"] / m["ls/cairn"]
print(f"\nsequential read of a {big_mb} MiB file: mount {mb / m['seq/mount']:.0f} MB/s, dump {mb / m['seq/dump']:.0f} MB/s: "
      f"mount = {seq:.2f}x dump (target >= 0.8x: {'met' if seq >= 0.8 else 'MISSED'})")
print(f"ls -lR of {files} files: cairn {m['ls/cairn']:.2f} s, restic {m['ls/restic']:.2f} s: "
      f"{ls:.2f}x faster (target >= 2x: {'met' if ls >= 2 else 'MISSED'})")
EOF
