#!/usr/bin/env bash
# cairn prune vs restic prune on object storage: a real S3 server (Ceph RGW,
# started here with .ci/rgw.sh unless CAIRN_TEST_S3_ENDPOINT is set) behind a
# proxy that adds LATENCY_MS to every request (a WAN link) and counts
# requests and bytes (examples/s3_proxy), as in s3_compare.sh.
#
#   bash benches/prune_compare.sh              # 3 repetitions, 200 MB, 20 snapshots, 20 ms
#   REPS=1 MIXED_MB=50 SNAPSHOTS=6 bash benches/prune_compare.sh     # a quick run
#   TOOLS="cairn restic" bash benches/prune_compare.sh                # without cairn-instant
#
# The goal it checks: after forgetting half of 20 snapshots of a ~200 MB
# changing tree, prune finishes >= 3x faster than restic prune and downloads
# no more bytes than restic does, counted at the proxy.
#
# Per repetition, one fresh bucket prefix per tool variant (TOOLS, default
# "cairn cairn-instant restic"), tools interleaved with the order alternating:
#   setup (untimed, straight to RGW, no proxy): init, then SNAPSHOTS backups
#     of a ~MIXED_MB mixed tree (the deterministic sample of the Rust
#     toolchain of s3_compare.sh); before each backup but the first, about
#     CHANGE_PCT percent of the tree's bytes are rewritten with fresh random
#     content (whole files, chosen and filled by a PRNG seeded with the step
#     number, so every tool and repetition sees the same tree states and each
#     snapshot holds data of its own);
#   forget (untimed, through the proxy): `forget --keep-last KEEP` (default
#     SNAPSHOTS/2), no prune; it also warms what the tools keep per location;
#   prune (timed, through the proxy, after `sync` and a page-cache drop, under
#     /usr/bin/time -v, proxy counters reset before and read after):
#       restic         restic prune                   (defaults: --max-unused 5%)
#       cairn          cairn prune                    (the default: lock-free,
#                      unused packs are marked and deleted after a grace period)
#       cairn-instant  cairn prune --instant-delete   (deletes at once)
#   The bucket prefix's objects and bytes are listed (straight from RGW)
#   before and after the prune; for `cairn` packs marked for deletion are
#   still there after it, so its "after" size is not what it frees in the end.
# Both tools keep their default local caches between steps (cleared at the
# start of a repetition). A repetition's repositories are deleted at its end
# (KEEP_REPOS=1 keeps them) since RGW here keeps objects in RAM.
# Results: $BENCH_DIR/prune-results.tsv (one row per timed prune) and
# $BENCH_DIR/prune-report.md (medians of the successful runs, speed-up
# restic/cairn and bytes downloaded cairn/restic). The script exits 1 if any
# timed prune failed (after writing the report).
# Needs: cargo, restic, curl, python3, /usr/bin/time; Debian's Ceph packages
# (radosgw, ceph-mon, ceph-osd; .ci/rgw.sh installs them) unless
# CAIRN_TEST_S3_ENDPOINT and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY name a
# server. NO_BUILD=1 skips `cargo build`; CAIRN_BIN/PROXY_BIN pick binaries.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${REPS:-3}
LATENCY_MS=${LATENCY_MS:-20}
MIXED_MB=${MIXED_MB:-200}
SNAPSHOTS=${SNAPSHOTS:-20}
KEEP=${KEEP:-$((SNAPSHOTS / 2))}
CHANGE_PCT=${CHANGE_PCT:-5}
BENCH_DIR=${BENCH_DIR:-/var/tmp/cairn-prune-compare}
TOOLS=${TOOLS:-cairn cairn-instant restic}
CAIRN_INIT_ARGS=${CAIRN_INIT_ARGS:-}   # e.g. "--pack-size 64" to compare pack sizes
DROP_CACHES=${DROP_CACHES:-1}
KEEP_REPOS=${KEEP_REPOS:-0}
NO_BUILD=${NO_BUILD:-0}
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-prune-bench-password}
export RESTIC_PASSWORD=$CAIRN_PASSWORD
unset CAIRN_REPOSITORY RESTIC_REPOSITORY CAIRN_PASSWORD_FILE RESTIC_PASSWORD_FILE 2>/dev/null || true

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

((SNAPSHOTS >= 2 && KEEP >= 1 && KEEP < SNAPSHOTS)) || die "need SNAPSHOTS >= 2 and 1 <= KEEP < SNAPSHOTS"

mkdir -p "$BENCH_DIR"/{data,logs,home}
export XDG_CACHE_HOME=$BENCH_DIR/home/cache
RESULTS=$BENCH_DIR/prune-results.tsv
REPORT=$BENCH_DIR/prune-report.md

for t in $TOOLS; do
    case $t in
        cairn | cairn-instant) ;;
        restic) command -v restic >/dev/null || die "restic is not installed (apt-get install restic)" ;;
        *) die "unknown tool '$t' in TOOLS (cairn, cairn-instant, restic)" ;;
    esac
done
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is required (apt-get install time)"

CAIRN=${CAIRN_BIN:-$ROOT/target/release/cairn}
PROXY_BIN=${PROXY_BIN:-$ROOT/target/release/examples/s3_proxy}
if [[ $NO_BUILD != 1 ]]; then
    log "building cairn and the proxy (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin cairn --example s3_proxy) || die "cargo build failed"
fi
[[ -x $CAIRN ]] || die "no cairn binary at $CAIRN"
[[ -x $PROXY_BIN ]] || die "no proxy binary at $PROXY_BIN"
if [[ " $TOOLS " == *" cairn-instant "* ]] && ! "$CAIRN" prune --help 2>/dev/null | grep -q -- '--instant-delete'; then
    die "$CAIRN has no \`prune --instant-delete\` (variant cairn-instant); leave it out: TOOLS=\"${TOOLS//cairn-instant/}\""
fi

STARTED_RGW=0
if [[ -z ${CAIRN_TEST_S3_ENDPOINT:-} ]]; then
    log "starting Ceph RGW (.ci/rgw.sh)"
    eval "$(bash "$ROOT/.ci/rgw.sh" start)"
    STARTED_RGW=1
fi
PROXY_PID=
cleanup() {
    if [[ -n $PROXY_PID ]]; then kill "$PROXY_PID" 2>/dev/null || true; fi
    if ((STARTED_RGW)); then bash "$ROOT/.ci/rgw.sh" stop || true; fi
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
# hash of their path until MIXED_MB is reached (as in s3_compare.sh).
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

# mutate STEP: rewrites whole files, chosen in an order given by a PRNG
# seeded with STEP, with that PRNG's bytes (same size, a new inode) until
# about CHANGE_PCT percent of the tree's bytes are new. The same tree and
# STEP always give the same result.
mutate() {
    python3 - "$WORK" "$1" "$CHANGE_PCT" <<'PY'
import os, random, sys
root, step, pct = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
files = []
for d, _, names in os.walk(root):
    for n in names:
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append((os.path.relpath(p, root), os.path.getsize(p)))
files.sort()
budget = sum(s for _, s in files) * pct / 100
rng = random.Random(f"cairn prune bench step {step}")
rng.shuffle(files)
done = count = 0
for rel, size in files:
    if size == 0 or done + size > budget:
        continue
    p = os.path.join(root, rel)
    mode = os.stat(p).st_mode & 0o7777
    with open(p + ".new", "wb") as f:
        f.write(rng.randbytes(size))
    os.chmod(p + ".new", mode)
    os.replace(p + ".new", p)
    done += size
    count += 1
print(f"step {step}: {count} files, {done/1e6:.1f} MB rewritten", file=sys.stderr)
PY
}

# s3 size|delete BUCKET PREFIX, straight to the S3 server (AWS_* keys,
# signature v4): `size` prints "objects bytes" of the keys under PREFIX,
# `delete` deletes them.
s3() {
    python3 - "$1" "$CAIRN_TEST_S3_ENDPOINT" "$2" "$3" <<'PY'
import base64, datetime, hashlib, hmac, os, sys, urllib.parse, urllib.request
import xml.etree.ElementTree as ET
op, endpoint, bucket, prefix = sys.argv[1:5]
ak, sk = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
u = urllib.parse.urlsplit(endpoint)
def q(s): return urllib.parse.quote(s, safe="-_.~")
def req(method, query, body=b"", headers=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    path = "/" + urllib.parse.quote(bucket, safe="")
    qs = "&".join(f"{q(k)}={q(v)}" for k, v in sorted(query.items()))
    h = {"host": u.netloc, "x-amz-date": amz, "x-amz-content-sha256": hashlib.sha256(body).hexdigest()}
    h.update({k.lower(): v for k, v in (headers or {}).items()})
    names = sorted(h)
    creq = "\n".join([method, path, qs, "".join(f"{k}:{h[k].strip()}\n" for k in names),
                      ";".join(names), h["x-amz-content-sha256"]])
    scope = f"{day}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = ("AWS4" + sk).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, "
                          f"SignedHeaders={';'.join(names)}, Signature={sig}")
    del h["host"]
    r = urllib.request.Request(f"{u.scheme}://{u.netloc}{path}?{qs}", data=body or None,
                               method=method, headers=h)
    with urllib.request.urlopen(r, timeout=120) as resp:
        return ET.fromstring(resp.read())
def tag(e): return e.tag.rsplit("}", 1)[-1]
def listing():
    token = None
    while True:
        query = {"list-type": "2", "prefix": prefix}
        if token:
            query["continuation-token"] = token
        root = req("GET", query)
        for c in root:
            if tag(c) == "Contents":
                d = {tag(x): x.text for x in c}
                yield d["Key"], int(d["Size"])
        token = next((c.text for c in root if tag(c) == "NextContinuationToken"), None)
        if not token:
            return
objs = list(listing())
if op == "size":
    print(len(objs), sum(s for _, s in objs))
elif op == "delete":
    esc = lambda k: k.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for i in range(0, len(objs), 1000):
        body = ("<Delete><Quiet>true</Quiet>"
                + "".join(f"<Object><Key>{esc(k)}</Key></Object>" for k, _ in objs[i:i + 1000])
                + "</Delete>").encode()
        req("POST", {"delete": ""}, body,
            {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
             "Content-Type": "application/xml"})
PY
}

drop_caches() {
    sync
    if [[ $DROP_CACHES == 1 ]]; then { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || true; fi
}

stats() { curl -s "$PROXY/__proxy/stats"; }
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

RUN_ID=$(date +%s)
bucket() { echo "bench-prune-$1-$RUN_ID"; }
direct() { echo "s3:$CAIRN_TEST_S3_ENDPOINT/$(bucket "$1")/r$REP"; }
proxied() { echo "s3:$PROXY/$(bucket "$1")/r$REP"; }

# run TOOL LOCATION ARGS...: the tool's binary (both cairn variants are cairn).
run() {
    local tool=$1 loc=$2
    shift 2
    case $tool in
        cairn | cairn-instant) "$CAIRN" -r "$loc" "$@" ;;
        restic) restic -r "$loc" "$@" ;;
    esac
}

# untimed STEP TOOL LOCATION ARGS...: runs the tool, output to a log; stops
# the benchmark if it fails (restic's 3, "some files unreadable", is no failure).
untimed() {
    local step=$1 tool=$2 loc=$3 rc=0
    shift 3
    local lf=$BENCH_DIR/logs/$tool-r$REP-$step.log
    run "$tool" "$loc" "$@" </dev/null >>"$lf" 2>&1 || rc=$?
    ((rc == 0 || rc == 3)) || { tail -5 "$lf" >&2; die "$tool $step failed (rc=$rc); see $lf"; }
}

snapshot_count() {
    run "$1" "$(direct "$1")" snapshots --json 2>/dev/null </dev/null |
        python3 -c 'import json, sys; print(len(json.load(sys.stdin) or []))'
}

FAILED=0
# prune TOOL: the timed step, with the bucket prefix's size before and after.
prune() {
    local tool=$1 args=(prune)
    [[ $tool == cairn-instant ]] && args+=(--instant-delete)
    local tf=$BENCH_DIR/logs/$tool-r$REP-prune.time lf=$BENCH_DIR/logs/$tool-r$REP-prune.log rc=0
    local before after
    before=$(s3 size "$(bucket "$tool")" "r$REP/")
    drop_caches
    curl -s "$PROXY/__proxy/reset" >/dev/null
    case $tool in
        cairn | cairn-instant) /usr/bin/time -v -o "$tf" "$CAIRN" -r "$(proxied "$tool")" "${args[@]}" </dev/null >"$lf" 2>&1 || rc=$? ;;
        restic) /usr/bin/time -v -o "$tf" restic -r "$(proxied "$tool")" "${args[@]}" </dev/null >"$lf" 2>&1 || rc=$? ;;
    esac
    local s
    s=$(stats)
    after=$(s3 size "$(bucket "$tool")" "r$REP/")
    local wall rss
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tf" | awk -F: '{ t = 0; for (i = 1; i <= NF; i++) t = t * 60 + $i; printf "%.3f", t }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tf")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' prune "$tool" "$REP" "${wall:-}" "${rss:-}" \
        "$(field "$s" requests)" "$(field "$s" get)" "$(field "$s" head)" "$(field "$s" put)" "$(field "$s" list)" \
        "$(field "$s" delete)" "$(field "$s" down)" "$(field "$s" up)" "$rc" \
        "${before% *}" "${before#* }" "${after% *}" "${after#* }" >>"$RESULTS"
    log "  $(printf '%-13s %7.2fs %6.1f MB rss' "$tool" "${wall:-0}" "$(awk "BEGIN{print ${rss:-0}/1024}")") $s rc=$rc"
    log "  $(printf '%-13s repository %.1f MB (%d objects) -> %.1f MB (%d objects)' "$tool" \
        "$(awk "BEGIN{print ${before#* }/1e6}")" "${before% *}" "$(awk "BEGIN{print ${after#* }/1e6}")" "${after% *}")"
    ((rc == 0)) || { FAILED=1; log "  $tool prune FAILED (rc=$rc); see $lf"; tail -5 "$lf" >&2; }
}

# shellcheck disable=SC2086 # TOOLS is a list of words
order() { if ((REP % 2)); then echo $TOOLS; else echo $TOOLS | tr ' ' '\n' | tac | tr '\n' ' '; fi; }

printf 'step\ttool\trep\twall_s\trss_kb\trequests\tget\thead\tput\tlist\tdelete\tbytes_down\tbytes_up\trc\tobjects_before\trepo_bytes_before\tobjects_after\trepo_bytes_after\n' >"$RESULTS"
for ((REP = 1; REP <= REPS; REP++)); do
    log "repetition $REP: tools in order $(order)"
    rm -rf "$XDG_CACHE_HOME" "$WORK" "$BENCH_DIR"/logs/*-r"$REP"-*
    cp -a "$SRC" "$WORK"
    for t in $(order); do
        case $t in
            cairn | cairn-instant)
                # shellcheck disable=SC2086 # CAIRN_INIT_ARGS is a list of words
                untimed init "$t" "$(direct "$t")" init $CAIRN_INIT_ARGS
                ;;
            restic) untimed init "$t" "$(direct "$t")" init ;;
        esac
    done
    log "  setup: $SNAPSHOTS backups per tool, straight to RGW"
    for ((n = 1; n <= SNAPSHOTS; n++)); do
        ((n == 1)) || mutate "$n" 2>>"$BENCH_DIR/logs/tree-r$REP-mutate.log"
        for t in $(order); do untimed setup "$t" "$(direct "$t")" backup -q "$WORK"; done
    done
    for t in $(order); do
        untimed forget "$t" "$(proxied "$t")" forget --keep-last "$KEEP"
        left=$(snapshot_count "$t")
        [[ $left == "$KEEP" ]] || die "$t: $left snapshots after forget --keep-last $KEEP (expected $KEEP)"
    done
    log "  forgot $((SNAPSHOTS - KEEP)) of $SNAPSHOTS snapshots; timed prune through the proxy"
    for t in $(order); do prune "$t"; done
    if [[ $KEEP_REPOS != 1 ]]; then
        for t in $(order); do s3 delete "$(bucket "$t")" "r$REP/"; done
    fi
done

restic_version=$(restic version 2>/dev/null | head -1 || true)
cairn_version=$("$CAIRN" --version 2>/dev/null | head -1 || true)
python3 - "$RESULTS" "$REPORT" "$MIXED_MB" "$LATENCY_MS" "$REPS" "$SNAPSHOTS" "$KEEP" "$CHANGE_PCT" \
    "$cairn_version" "$restic_version" <<'PY'
import csv, math, statistics, sys
results, report, mb, latency, reps, snaps, keep, pct, cv, rv = sys.argv[1:11]
rows = list(csv.DictReader(open(results), delimiter="\t"))
order = {"cairn": 0, "cairn-instant": 1, "restic": 2}
tools = sorted({r["tool"] for r in rows}, key=lambda t: (order.get(t, 9), t))
def ok(tool): return [r for r in rows if r["tool"] == tool and r["rc"] == "0"]
def med(tool, col):
    v = [float(r[col]) for r in ok(tool) if r[col] not in ("", None)]
    return statistics.median(v) if v else float("nan")
def f(x, fmt): return "-" if math.isnan(x) else format(x, fmt)
out = [f"# prune: cairn vs restic on S3 (Ceph RGW) with {latency} ms per request", "",
       f"{snaps} backups of a {mb} MB mixed tree (~{pct}% of its bytes rewritten before each), "
       f"`forget --keep-last {keep}`, then the timed prune through the proxy. "
       f"Medians of the successful runs of {reps} repetitions.", "",
       f"cairn: {cv or '?'}; restic: {rv or '?'}", "",
       "| tool | ok runs | wall s | peak RSS MB | requests | GET | DELETE | MB down | MB up | repo MB before | repo MB after |",
       "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for t in tools:
    n = len([r for r in rows if r["tool"] == t])
    out.append(f"| {t} | {len(ok(t))}/{n} | {f(med(t, 'wall_s'), '.2f')} | {f(med(t, 'rss_kb') / 1024, '.0f')} | "
               f"{f(med(t, 'requests'), '.0f')} | {f(med(t, 'get'), '.0f')} | {f(med(t, 'delete'), '.0f')} | "
               f"{f(med(t, 'bytes_down') / 1e6, '.1f')} | {f(med(t, 'bytes_up') / 1e6, '.1f')} | "
               f"{f(med(t, 'repo_bytes_before') / 1e6, '.1f')} | {f(med(t, 'repo_bytes_after') / 1e6, '.1f')} |")
failed = [r for r in rows if r["rc"] != "0"]
if failed:
    out += ["", "FAILED runs: " + ", ".join(f"{r['tool']} rep {r['rep']} (rc={r['rc']})" for r in failed)]
if "restic" in tools:
    out += ["", "Goal: prune >= 3x faster than restic prune, and no more bytes downloaded than restic.", "",
            "| cairn variant | speed-up (restic s / cairn s) | bytes down (cairn / restic) | goal |",
            "|---|---:|---:|---|"]
    for t in tools:
        if t == "restic":
            continue
        speed = med("restic", "wall_s") / med(t, "wall_s")
        rd, cd = med("restic", "bytes_down"), med(t, "bytes_down")
        down = cd / rd if rd > 0 else (float("nan") if math.isnan(cd) or math.isnan(rd) else (0.0 if cd == 0 else math.inf))
        met = "-" if math.isnan(speed) or math.isnan(down) else ("met" if speed >= 3 and cd <= rd else "NOT met")
        out.append(f"| {t} | {f(speed, '.2f')}x | {f(down, '.2f')} | {met} |")
open(report, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
log "report: $REPORT; raw: $RESULTS"
((FAILED == 0)) || die "some timed prunes failed (see the report)"
