#!/usr/bin/env bash
# cairn vs restic on object storage: a real S3 server (Ceph RGW, started
# here with .ci/rgw.sh unless CAIRN_TEST_S3_ENDPOINT is set) behind a proxy
# that adds LATENCY_MS to every request (a WAN link) and counts requests
# and bytes (examples/s3_proxy). Run it directly or as the s3 mode of
# compare.sh (DATASETS=s3 bash benches/compare.sh).
#
#   bash benches/s3_compare.sh                 # 3 repetitions, 200 MB, 20 ms
#   REPS=1 MIXED_MB=50 bash benches/s3_compare.sh
#
# Per repetition and tool, in a fresh bucket prefix, tools interleaved with
# the order alternating: first backup of a ~MIXED_MB mixed tree (a
# deterministic sample of the Rust toolchain), unchanged re-backup, HOURS
# hourly backups after small changes (files appended, one added, one
# removed), restore of the latest snapshot. Each timed step runs after
# `sync` and a page-cache drop, under /usr/bin/time -v; the proxy's
# counters are reset before it and read after. Both tools keep their
# default local caches between steps (cleared at the start of a repetition).
# Results: $BENCH_DIR/s3-results.tsv and $BENCH_DIR/s3-report.md (medians).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${REPS:-3}
LATENCY_MS=${LATENCY_MS:-20}
MIXED_MB=${MIXED_MB:-200}
HOURS=${HOURS:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/cairn-s3-compare}
TOOLS=${TOOLS:-cairn restic}
CAIRN_INIT_ARGS=${CAIRN_INIT_ARGS:-}   # e.g. "--pack-size 64" to compare pack sizes
DROP_CACHES=${DROP_CACHES:-1}
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-s3-bench-password}
export RESTIC_PASSWORD=$CAIRN_PASSWORD
unset CAIRN_REPOSITORY RESTIC_REPOSITORY CAIRN_PASSWORD_FILE RESTIC_PASSWORD_FILE 2>/dev/null || true

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$BENCH_DIR"/{data,logs,restore,home}
export HOME_BENCH=$BENCH_DIR/home
export XDG_CACHE_HOME=$BENCH_DIR/home/cache
RESULTS=$BENCH_DIR/s3-results.tsv
REPORT=$BENCH_DIR/s3-report.md

for t in $TOOLS; do
    [[ $t == cairn ]] || command -v "$t" >/dev/null || die "$t is not installed (apt-get install $t)"
done
command -v curl >/dev/null || die "curl is required"

log "building cairn and the proxy (release)"
(cd "$ROOT" && cargo build --release --quiet --bin cairn --example s3_proxy) || die "cargo build failed"
CAIRN=${CAIRN_BIN:-$ROOT/target/release/cairn}
PROXY_BIN=$ROOT/target/release/examples/s3_proxy

STARTED_RGW=0
if [[ -z ${CAIRN_TEST_S3_ENDPOINT:-} ]]; then
    log "starting Ceph RGW (.ci/rgw.sh)"
    eval "$(bash "$ROOT/.ci/rgw.sh" start)"
    STARTED_RGW=1
fi
PROXY_PID=
cleanup() {
    [[ -n $PROXY_PID ]] && kill "$PROXY_PID" 2>/dev/null || true
    ((STARTED_RGW)) && bash "$ROOT/.ci/rgw.sh" stop || true
}
trap cleanup EXIT

upstream=${CAIRN_TEST_S3_ENDPOINT#http://}
"$PROXY_BIN" --upstream "$upstream" --latency-ms "$LATENCY_MS" >"$BENCH_DIR/logs/proxy.addr" 2>"$BENCH_DIR/logs/proxy.err" &
PROXY_PID=$!
for _ in $(seq 50); do [[ -s $BENCH_DIR/logs/proxy.addr ]] && break; sleep 0.1; done
PROXY=$(head -1 "$BENCH_DIR/logs/proxy.addr")
[[ -n $PROXY ]] || die "the proxy did not start: $(cat "$BENCH_DIR/logs/proxy.err")"
log "proxy $PROXY -> $CAIRN_TEST_S3_ENDPOINT, $LATENCY_MS ms per request"
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

# The mixed tree: files of the Rust toolchain picked in an order given by a
# hash of their path until MIXED_MB is reached.
SRC=$BENCH_DIR/data/mixed
if [[ ! -f $SRC.stamp || $(cat "$SRC.stamp") != "$MIXED_MB v1" ]]; then
    log "sampling $MIXED_MB MB of the Rust toolchain into $SRC"
    rm -rf "$SRC"
    python3 - "$(rustc --print sysroot)" "$SRC" "$MIXED_MB" <<'PY'
import hashlib, os, shutil, sys
src, dst, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = []
for d, _, names in os.walk(src):
    for n in names:
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append(p)
files.sort(key=lambda p: hashlib.sha256(p.encode()).hexdigest())
total = 0
for p in files:
    size = os.path.getsize(p)
    if total + size > mb * 1_000_000:
        continue
    q = os.path.join(dst, os.path.relpath(p, src))
    os.makedirs(os.path.dirname(q), exist_ok=True)
    shutil.copy2(p, q)
    total += size
print(f"{total/1e6:.1f} MB", file=sys.stderr)
PY
    echo "$MIXED_MB v1" >"$SRC.stamp"
fi
WORK=$BENCH_DIR/data/work

drop_caches() {
    sync
    [[ $DROP_CACHES == 1 ]] && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || true
}

stats() { curl -s "$PROXY/__proxy/stats"; }
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

# timed STEP TOOL -- COMMAND...
timed() {
    local step=$1 tool=$2
    shift 3
    local tf=$BENCH_DIR/logs/$tool-r$REP-${step// /_}.time lf=$BENCH_DIR/logs/$tool-r$REP-${step// /_}.log rc=0
    drop_caches
    curl -s "$PROXY/__proxy/reset" >/dev/null
    /usr/bin/time -v -o "$tf" "$@" </dev/null >"$lf" 2>&1 || rc=$?
    local s
    s=$(stats)
    local wall rss
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tf" | awk -F: '{ t = 0; for (i = 1; i <= NF; i++) t = t * 60 + $i; printf "%.3f", t }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tf")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$step" "$tool" "$REP" "$wall" "$rss" \
        "$(field "$s" requests)" "$(field "$s" down)" "$(field "$s" up)" "$rc" >>"$RESULTS"
    log "  $(printf '%-7s %-10s %7.2fs %6.1f MB rss' "$tool" "$step" "$wall" "$(awk "BEGIN{print $rss/1024}")") $s rc=$rc"
    ((rc == 0 || rc == 3)) || { log "  $tool $step failed; see $lf"; tail -5 "$lf" >&2; }
}

RUN_ID=$(date +%s)
location() { echo "s3:$PROXY/bench-$1-$RUN_ID/r$REP"; }

backup() {
    local step=$1 tool=$2
    case $tool in
        cairn) timed "$step" cairn -- "$CAIRN" -r "$(location cairn)" backup "$WORK" ;;
        restic) timed "$step" restic -- restic -r "$(location restic)" backup "$WORK" ;;
    esac
}

restore() {
    local tool=$1 target=$BENCH_DIR/restore/$1
    rm -rf "$target"
    case $tool in
        cairn) timed restore cairn -- "$CAIRN" -r "$(location cairn)" restore latest --target "$target" ;;
        restic) timed restore restic -- restic -r "$(location restic)" restore latest --target "$target" ;;
    esac
    diff -rq "$WORK" "$target$WORK" >/dev/null || log "  $tool restore DIFFERS from the source"
    rm -rf "$target"
}

# A small hourly change: a few files appended to, one added, one removed.
change() {
    local h=$1
    find "$WORK" -type f -name '*.rs' | sort | awk -v h="$h" 'NR % 400 == h' | head -20 |
        while read -r f; do echo "// hour $h" >>"$f"; done
    head -c 200000 /dev/urandom >"$WORK/new-$h.bin"
    rm -f "$(find "$WORK" -type f -name '*.html' | sort | sed -n "${h}p")"
}

order() { if ((REP % 2)); then echo $TOOLS; else echo $TOOLS | tr ' ' '\n' | tac | tr '\n' ' '; fi; }

printf 'step\ttool\trep\twall_s\trss_kb\trequests\tbytes_down\tbytes_up\trc\n' >"$RESULTS"
for ((REP = 1; REP <= REPS; REP++)); do
    log "repetition $REP: tools in order $(order)"
    rm -rf "$XDG_CACHE_HOME" "$WORK"
    cp -a "$SRC" "$WORK"
    for t in $(order); do
        case $t in
            # shellcheck disable=SC2086 # CAIRN_INIT_ARGS is a list of words
            cairn) "$CAIRN" -r "$(location cairn)" init $CAIRN_INIT_ARGS >/dev/null ;;
            restic) restic -r "$(location restic)" init >/dev/null ;;
        esac
    done
    for t in $(order); do backup first "$t"; done
    for t in $(order); do backup unchanged "$t"; done
    for ((h = 1; h <= HOURS; h++)); do
        change "$h"
        for t in $(order); do backup hourly "$t"; done
    done
    for t in $(order); do restore "$t"; done
done

python3 - "$RESULTS" "$REPORT" "$MIXED_MB" "$LATENCY_MS" "$REPS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
steps = ["first", "unchanged", "hourly", "restore"]
tools = sorted({r["tool"] for r in rows}, key=lambda t: (t != "cairn", t))
def med(step, tool, col):
    v = [float(r[col]) for r in rows if r["step"] == step and r["tool"] == tool and r[col] not in ("", None)]
    return statistics.median(v) if v else float("nan")
out = [f"# cairn vs restic on S3 (Ceph RGW) with {sys.argv[4]} ms per request",
       "", f"{sys.argv[3]} MB mixed tree, medians of {sys.argv[5]} repetitions (hourly: median over all hourly backups).", "",
       "| step | " + " | ".join(f"{t} wall s | {t} requests | {t} MB down | {t} peak RSS MB" for t in tools) + " | cairn speed-up |",
       "|---|" + "---:|" * (4 * len(tools) + 1)]
for s in steps:
    cells = []
    for t in tools:
        cells += [f"{med(s, t, 'wall_s'):.2f}", f"{med(s, t, 'requests'):.0f}",
                  f"{med(s, t, 'bytes_down') / 1e6:.1f}", f"{med(s, t, 'rss_kb') / 1024:.0f}"]
    ratio = ""
    if "restic" in tools and "cairn" in tools:
        ratio = f"{med(s, 'restic', 'wall_s') / med(s, 'cairn', 'wall_s'):.2f}x"
    out.append(f"| {s} | " + " | ".join(cells) + f" | {ratio} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
log "report: $REPORT; raw: $RESULTS"
