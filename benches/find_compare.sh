#!/usr/bin/env bash
# `find` and `diff` over a history: cairn vs restic on the ten-release
# Django history of compare.sh (4.2.1 .. 4.2.10 sdists applied in turn to
# one directory, one snapshot each, in a local repository per tool).
#
#   bash benches/find_compare.sh                 # 3 runs of each step
#   REPS=5 bash benches/find_compare.sh
#
# Steps, each tool interleaved with the order alternating, `sync` before
# each run, output to /dev/null, wall time and peak RSS from /usr/bin/time:
#   find-rare    find a name that occurs once per release (`__main__.py`)
#   find-common  find every `*.py` (thousands of matches per snapshot)
#   diff         diff of the first and the last release
# Both tools run once untimed first (restic fills its cache). Results in
# $BENCH_DIR/find-results.tsv and the medians in $BENCH_DIR/find-report.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${REPS:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/cairn-find-compare}
DJANGO_CACHE=${DJANGO_CACHE:-/var/tmp/cairn-bench/cache/django}
VERSIONS=${VERSIONS:-"4.2.1 4.2.2 4.2.3 4.2.4 4.2.5 4.2.6 4.2.7 4.2.8 4.2.9 4.2.10"}
export CAIRN_PASSWORD=find-bench-password RESTIC_PASSWORD=find-bench-password
export RESTIC_CACHE_DIR=$BENCH_DIR/restic-cache
unset CAIRN_REPOSITORY RESTIC_REPOSITORY 2>/dev/null || true

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
command -v restic >/dev/null || die "restic is not installed (apt-get install restic)"
command -v rsync >/dev/null || die "rsync is required (apt-get install rsync)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is required (apt-get install time)"

log "building cairn (release)"
(cd "$ROOT" && cargo build --release --quiet --bin cairn) || die "cargo build failed"
CAIRN=${CAIRN_BIN:-$ROOT/target/release/cairn}

mkdir -p "$BENCH_DIR"/{releases,logs} "$DJANGO_CACHE"
SRC=$BENCH_DIR/src/django
CREPO=$BENCH_DIR/cairn-repo
RREPO=$BENCH_DIR/restic-repo

release_dir() {
    local v=$1 dir=$BENCH_DIR/releases/$1
    if [[ ! -d $dir ]]; then
        local tgz
        tgz=$(find "$DJANGO_CACHE" /var/tmp/cairn-*/cache/django -maxdepth 1 -iname "django-$v.tar.gz" 2>/dev/null | head -1 || true)
        if [[ -z $tgz ]]; then
            log "downloading Django $v from PyPI"
            pip download --quiet --no-deps --no-binary :all: "django==$v" -d "$DJANGO_CACHE" >&2 ||
                die "pip download of django==$v failed"
            tgz=$(find "$DJANGO_CACHE" -maxdepth 1 -iname "django-$v.tar.gz" | head -1)
        fi
        mkdir -p "$dir.tmp"
        tar xzf "$tgz" -C "$dir.tmp" --strip-components=1
        mv "$dir.tmp" "$dir"
    fi
    echo "$dir"
}

if [[ ! -f $BENCH_DIR/history.done ]]; then
    log "building both histories ($(wc -w <<<"$VERSIONS") releases)"
    rm -rf "$CREPO" "$RREPO" "$BENCH_DIR/src" "$RESTIC_CACHE_DIR"
    "$CAIRN" -r "$CREPO" init >/dev/null
    restic -r "$RREPO" init >/dev/null
    mkdir -p "$SRC"
    day=1
    for v in $VERSIONS; do
        rsync -a --delete "$(release_dir "$v")/" "$SRC/"
        t=$(printf '2026-11-%02d 10:00:00' "$day")
        "$CAIRN" -r "$CREPO" backup -q --time "$t" "$SRC"
        restic -r "$RREPO" backup -q --time "$t" "$SRC" >/dev/null
        day=$((day + 1))
    done
    touch "$BENCH_DIR/history.done"
fi

RESULTS=$BENCH_DIR/find-results.tsv
printf 'step\ttool\trun\tseconds\tmax_rss_kb\n' >"$RESULTS"

ends() { python3 -c 'import json,sys; l=json.load(sys.stdin); l.sort(key=lambda s: s["time"]); print(l[0]["id"], l[-1]["id"])'; }
read -r first_c last_c < <("$CAIRN" -r "$CREPO" --json snapshots | ends)
read -r first_r last_r < <(restic -r "$RREPO" snapshots --json | ends)

cmd_for() {
    local step=$1 tool=$2
    case $step/$tool in
    find-rare/cairn) echo "$CAIRN -r $CREPO find __main__.py" ;;
    find-rare/restic) echo "restic -r $RREPO find __main__.py" ;;
    find-common/cairn) echo "$CAIRN -r $CREPO find *.py" ;;
    find-common/restic) echo "restic -r $RREPO find *.py" ;;
    diff/cairn) echo "$CAIRN -r $CREPO diff $first_c $last_c" ;;
    diff/restic) echo "restic -r $RREPO diff $first_r $last_r" ;;
    esac
}

timed() {
    local step=$1 tool=$2 run=$3 log=$BENCH_DIR/logs/$1-$2-$3.time
    local cmd
    cmd=$(cmd_for "$step" "$tool")
    sync
    # shellcheck disable=SC2086
    set -f
    /usr/bin/time -f '%e %M' -o "$log" $cmd >/dev/null 2>"$BENCH_DIR/logs/$step-$tool-$run.err" ||
        die "$tool $step failed: $(tail -3 "$BENCH_DIR/logs/$step-$tool-$run.err")"
    set +f
    read -r secs rss <"$log"
    printf '%s\t%s\t%s\t%s\t%s\n' "$step" "$tool" "$run" "$secs" "$rss" >>"$RESULTS"
    log "$step $tool run $run: ${secs}s, ${rss} KB"
}

STEPS="find-rare find-common diff"
for step in $STEPS; do
    for tool in cairn restic; do
        set -f
        # shellcheck disable=SC2046
        $(cmd_for "$step" "$tool") >/dev/null 2>&1 || die "warm-up of $tool $step failed"
        set +f
    done
    for ((run = 1; run <= REPS; run++)); do
        if ((run % 2)); then order="cairn restic"; else order="restic cairn"; fi
        for tool in $order; do timed "$step" "$tool" "$run"; done
    done
done

python3 - "$RESULTS" "$BENCH_DIR/find-report.md" "$VERSIONS" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = {}
for step in dict.fromkeys(r["step"] for r in rows):
    for tool in ("cairn", "restic"):
        xs = [float(r["seconds"]) for r in rows if r["step"] == step and r["tool"] == tool]
        rs = [int(r["max_rss_kb"]) for r in rows if r["step"] == step and r["tool"] == tool]
        if xs:
            med[step, tool] = (statistics.median(xs), statistics.median(rs), len(xs))
out = ["# find and diff over the Django history", "",
       f"Releases: {sys.argv[3]} (one snapshot each). Medians of interleaved runs.", "",
       "| step | cairn s | restic s | restic/cairn | cairn RSS MB | restic RSS MB | runs |",
       "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
for step in dict.fromkeys(s for s, _ in med):
    c, r = med.get((step, "cairn")), med.get((step, "restic"))
    if c and r:
        out.append(f"| {step} | {c[0]:.2f} | {r[0]:.2f} | {r[0]/c[0]:.1f}x | {c[1]/1024:.0f} | {r[1]/1024:.0f} | {c[2]} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
