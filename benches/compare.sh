#!/usr/bin/env bash
# End-to-end comparison of cairn with restic and borg, on the same data, in
# the same run, with encryption on for all three.
#
#   bash benches/compare.sh              # full run (about 1 GB + 10 releases + 320 MB DB, 3 reps)
#   QUICK=1 bash benches/compare.sh      # smoke run: 100 MB, 3 releases, 50 MB DB, 1 rep
#
# Data sets (built deterministically, cached under $BENCH_DIR/data):
#   bulk    about 1 GB of real files: a deterministic sample of the Rust
#           toolchain directory ($(rustc --print sysroot)), files picked in an
#           order given by a hash of their path until the size budget is met
#           (so small and large files stay mixed).
#   django  ten successive Django releases (4.2.1 .. 4.2.10 sdists from PyPI),
#           applied one after another to one directory the way `rsync -a
#           --checksum --delete` would: unchanged files keep their inode and
#           mtime, changed files are replaced.
#   sqlite  a 320 MB SQLite database (python3's sqlite3, seeded generator)
#           changed a little between twelve hourly backups: each hour appends
#           0.3% new rows, updates 50 recent rows and SQLITE_RANDOM_UPDATES
#           (10) rows anywhere, expires the 40 oldest rows, bumps counters.
#           cairn runs twice here: on the file like the peers ("cairn"), and
#           the way its users back up a live database, `backup --sqlite
#           --sqlite-quick` ("cairn-db"; its restore is compared by SQL dump).
#
# Steps per data set and tool: init (untimed), first backup, unchanged
# re-backup, each next version / hour, restore of the latest snapshot into a
# fresh directory. References: `tar cf - DIR | zstd -3 -T2 > /dev/null` for
# the first backup, `cp -a` of the same tree for the restore.
#
# Every timed step runs under /usr/bin/time -v (wall, user+sys CPU, peak RSS)
# after `sync` and dropping the page cache (when allowed; as root). Tools run
# interleaved within each step, and the order rotates between repetitions.
# Tables show medians over repetitions. A tool that is not installed is
# skipped with a message.
#
# Knobs (environment):
#   QUICK=1            small smoke-run defaults (below)
#   REPS=3             repetitions (QUICK: 1)
#   DATASETS="bulk django sqlite"   which data sets (or 1 2 3)
#   TOOLS="cairn restic borg"       which tools
#   BENCH_DIR=/var/tmp/cairn-compare   work area (data, repos, logs, results)
#   BULK_SRC=$(rustc --print sysroot)  source of the bulk set
#   BULK_MB=1024       bulk set size (QUICK: 100; 0 = the whole source)
#   DJANGO_SERIES=4.2  DJANGO_FIRST=1  DJANGO_VERSIONS=10 (QUICK: 3)
#   SQLITE_MB=320      (QUICK: 50)     SQLITE_BACKUPS=12 (QUICK: 4)
#   SQLITE_RANDOM_UPDATES=10   rows updated at random places each hour
#   DROP_CACHES=1      drop the page cache before each timed step (needs root)
#   VERIFY=1           compare each restored tree with its source (first rep, untimed)
#   CAIRN_BIN=...      cairn binary (default: `cargo build --release` here)
#   CAIRN_BASE_BIN=... a second cairn binary, run as tool "cairn-base" (add it
#                      to TOOLS) to compare two builds in one interleaved run:
#                      CAIRN_BASE_BIN=/tmp/cairn-old TOOLS="cairn cairn-base"
#   KEEP=0             keep repositories after the run (1) or delete them (0)
#   INDEX_RSS=1        also run examples/index_rss (10M blobs; QUICK: 1M) for
#                      the "10M-chunk index" peak-RSS figure
#
# Results: $BENCH_DIR/results.tsv (one line per timed command) and
# $BENCH_DIR/report.md (the tables printed at the end).

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    : "${REPS:=1}" "${BULK_MB:=100}" "${DJANGO_VERSIONS:=3}" "${SQLITE_MB:=50}" "${SQLITE_BACKUPS:=4}"
fi
REPS=${REPS:-3}
DATASETS=${DATASETS:-bulk django sqlite}
TOOLS=${TOOLS:-cairn restic borg}
BENCH_DIR=${BENCH_DIR:-/var/tmp/cairn-compare}
BULK_MB=${BULK_MB:-1024}
DJANGO_SERIES=${DJANGO_SERIES:-4.2}
DJANGO_FIRST=${DJANGO_FIRST:-1}
DJANGO_VERSIONS=${DJANGO_VERSIONS:-10}
SQLITE_MB=${SQLITE_MB:-320}
SQLITE_BACKUPS=${SQLITE_BACKUPS:-12}
SQLITE_RANDOM_UPDATES=${SQLITE_RANDOM_UPDATES:-10}
DROP_CACHES=${DROP_CACHES:-1}
VERIFY=${VERIFY:-1}
KEEP=${KEEP:-0}

DATASETS=${DATASETS//1/bulk}
DATASETS=${DATASETS//2/django}
DATASETS=${DATASETS//3/sqlite}

export CAIRN_PASSWORD=${CAIRN_PASSWORD:-compare-bench-password}
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-$CAIRN_PASSWORD}
export BORG_PASSPHRASE=${BORG_PASSPHRASE:-$CAIRN_PASSWORD}
export BORG_DISPLAY_PASSPHRASE=no
export BORG_BASE_DIR=$BENCH_DIR/home/borg
export RESTIC_CACHE_DIR=$BENCH_DIR/home/restic-cache
unset CAIRN_REPOSITORY RESTIC_REPOSITORY BORG_REPO CAIRN_PASSWORD_FILE RESTIC_PASSWORD_FILE 2>/dev/null || true

DATA=$BENCH_DIR/data
REPOS=$BENCH_DIR/repos
OUT=$BENCH_DIR/restore
LOGS=$BENCH_DIR/logs
RESULTS=$BENCH_DIR/results.tsv
META=$BENCH_DIR/meta.tsv
HELPER=$BENCH_DIR/compare_helper.py

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------

command -v python3 >/dev/null || die "python3 is required (data generation and report)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is required: apt-get install time"
command -v zstd >/dev/null || die "zstd is required for the tar reference: apt-get install zstd"

mkdir -p "$DATA" "$REPOS" "$OUT" "$LOGS" "$BENCH_DIR/home" "$BENCH_DIR/cache"

if [[ -z ${CAIRN_BIN:-} ]]; then
    log "building cairn (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin cairn) || die "cargo build failed"
    CAIRN_BIN=$ROOT/target/release/cairn
fi
[[ -x $CAIRN_BIN ]] || die "cairn binary not found: $CAIRN_BIN"

ACTIVE=()
for t in $TOOLS; do
    case $t in
        cairn) ACTIVE+=(cairn) ;;
        cairn-base)
            [[ -x ${CAIRN_BASE_BIN:-} ]] || die "cairn-base needs CAIRN_BASE_BIN, an executable cairn"
            ACTIVE+=(cairn-base) ;;
        restic | borg)
            if command -v "$t" >/dev/null; then ACTIVE+=("$t"); else
                log "$t is not installed: skipping it (apt-get install ${t/borg/borgbackup})"
            fi ;;
        *) die "unknown tool: $t" ;;
    esac
done
((${#ACTIVE[@]})) || die "no tool to run"

tool_version() {
    case $1 in
        cairn) echo "cairn $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')" ;;
        cairn-base) echo "cairn-base $("$CAIRN_BASE_BIN" --version 2>/dev/null || echo '?')" ;;
        restic) restic version | head -1 | awk '{print "restic " $2}' ;;
        borg) borg --version ;;
    esac
}

# ---------------------------------------------------------------------------
# Python helper: data sets and the report
# ---------------------------------------------------------------------------

cat >"$HELPER" <<'PY'
import filecmp, hashlib, os, random, shutil, sqlite3, statistics, stat, sys

def sample_tree(src, dst, mb):
    """Copies a deterministic sample of `src` of at most `mb` MiB to `dst`."""
    files = []
    for d, dirs, names in os.walk(src):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(d, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                rel = os.path.relpath(p, src)
                files.append((hashlib.blake2b(rel.encode(), digest_size=8).digest(), rel, st.st_size))
    files.sort()
    budget = mb * 1024 * 1024 if mb > 0 else float("inf")
    total = 0
    chosen = []
    for _, rel, size in files:
        if total + size <= budget:
            chosen.append(rel)
            total += size
    for rel in sorted(chosen):
        s, t = os.path.join(src, rel), os.path.join(dst, rel)
        os.makedirs(os.path.dirname(t), exist_ok=True)
        if os.path.islink(s):
            os.symlink(os.readlink(s), t)
        else:
            shutil.copy2(s, t)
    print(f"{len(chosen)} files, {total / 1e6:.1f} MB")

def sync_tree(src, dst):
    """Makes dst equal to src like `rsync -a --checksum --delete`: files with
    unchanged content are left alone (same inode and mtime), others replaced."""
    changed = removed = 0
    for d, dirs, names in os.walk(dst, topdown=False):
        rel = os.path.relpath(d, dst)
        for n in names + dirs:
            t = os.path.join(d, n)
            s = os.path.join(src, rel, n)
            if not os.path.lexists(s) or (os.path.isdir(s) and not os.path.islink(s)) != (os.path.isdir(t) and not os.path.islink(t)):
                if os.path.isdir(t) and not os.path.islink(t):
                    shutil.rmtree(t)
                else:
                    os.unlink(t)
                removed += 1
    dirs_seen = []
    for d, dirs, names in os.walk(src):
        dirs.sort()
        rel = os.path.relpath(d, src)
        td = os.path.normpath(os.path.join(dst, rel))
        os.makedirs(td, exist_ok=True)
        dirs_seen.append((d, td))
        for n in sorted(names):
            s, t = os.path.join(d, n), os.path.join(td, n)
            if os.path.islink(s):
                if os.path.islink(t) and os.readlink(t) == os.readlink(s):
                    continue
                if os.path.lexists(t):
                    os.unlink(t)
                os.symlink(os.readlink(s), t)
                changed += 1
                continue
            if os.path.isfile(t) and not os.path.islink(t) and filecmp.cmp(s, t, shallow=False):
                continue
            tmp = t + ".sync-tmp"
            shutil.copy2(s, tmp)
            os.replace(tmp, t)
            changed += 1
    for d, td in reversed(dirs_seen):
        shutil.copystat(d, td)
    print(f"{changed} files new or changed, {removed} removed")

WORDS = None
def words(rng):
    global WORDS
    if WORDS is None:
        r = random.Random(12345)
        WORDS = ["".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 10))) for _ in range(5000)]
    return WORDS

def row(rng, i, ts):
    w = words(rng)
    text = " ".join(w[int(rng.random() ** 2 * len(w))] for _ in range(rng.randint(30, 90)))
    return (i, ts, rng.randrange(100000), rng.choice(("view", "click", "buy", "login", "error")), text, rng.randbytes(64))

def sqlite_gen(path, mb):
    """A deterministic SQLite database of about `mb` MiB."""
    if os.path.exists(path):
        os.unlink(path)
    rng = random.Random(2024)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts INTEGER, user_id INTEGER, kind TEXT, payload TEXT, token BLOB)")
    db.execute("CREATE INDEX events_ts ON events(ts)")
    db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER)")
    db.executemany("INSERT INTO counters VALUES (?, 0)", [(f"c{i}",) for i in range(100)])
    i = 0
    target = mb * 1024 * 1024
    while True:
        batch = [row(rng, i + k, 1_700_000_000 + (i + k) * 7) for k in range(5000)]
        i += len(batch)
        db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", batch)
        db.commit()
        if os.path.getsize(path) >= target:
            break
    db.close()
    print(f"{i} rows, {os.path.getsize(path) / 1e6:.1f} MB")

def sqlite_change(path, hour, random_updates):
    """One hour of activity on an application database: new rows appended
    (0.3%), 50 recent rows updated, `random_updates` rows anywhere updated,
    the 40 oldest rows expired, and a small table of counters bumped."""
    rng = random.Random(1000 + int(hour))
    db = sqlite3.connect(path)
    (n, top) = db.execute("SELECT count(*), max(id) FROM events").fetchone()
    new = max(100, n * 3 // 1000)
    db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)",
                   [row(rng, top + 1 + k, 1_800_000_000 + int(hour) * 3600 + k) for k in range(new)])
    recent = max(1, n // 50)
    ids = [top - rng.randrange(recent) for _ in range(50)] + [rng.randrange(top) for _ in range(int(random_updates))]
    for i in ids:
        r = row(rng, 0, 0)
        db.execute("UPDATE events SET payload = ?, kind = ? WHERE id = ?", (r[4], r[3], i))
    db.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT 40)")
    db.executemany("UPDATE counters SET value = value + ? WHERE name = ?",
                   [(rng.randrange(100), f"c{rng.randrange(100)}") for _ in range(50)])
    db.commit()
    db.close()
    print(f"hour {hour}: +{new} rows, {len(ids)} updated ({random_updates} at random), 40 oldest deleted; "
          f"{os.path.getsize(path) / 1e6:.1f} MB")

# ----------------------------------------------------------------- report

def fnum(x, nd=2):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.{nd}f}"

def report(results, meta, out_md):
    rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip() and not l.startswith("#")]
    m = {}
    for l in open(meta):
        k, _, v = l.rstrip("\n").partition("\t")
        m[k] = v
    hdr = ["dataset", "step", "tool", "rep", "wall", "user", "sys", "rss_kb", "repo_bytes", "status"]
    recs = [dict(zip(hdr, r)) for r in rows]
    # Restores whose result differed from the source (checked on the first rep).
    bad_restore = {(r["dataset"], r["tool"]) for r in recs if r["step"] == "restore-verify"}
    recs = [r for r in recs if r["step"] != "restore-verify"]
    tools_order = ["cairn", "cairn-base", "cairn-db", "restic", "borg", "tar|zstd", "cp -a"]
    lines = []
    tsv = ["dataset\tstep\ttool\treps\twall_s\tcpu_s\tMB_per_s\tpeak_rss_MB\trepo_MB\tstatus"]
    def p(s=""):
        lines.append(s)
    quick = m.get("quick") == "1"
    p(f"# cairn vs restic vs borg ({'QUICK smoke run' if quick else 'full run'})")
    p("")
    for k in ("date", "host", "cpus", "kernel", "load_before", "load_after", "reps", "drop_caches", "versions"):
        if k in m:
            p(f"- {k}: {m[k]}")
    p("")
    p("Medians over repetitions. CPU = user + sys. MB/s = data set size / wall. "
      "Peak RSS from /usr/bin/time -v. Repo = bytes in the repository's files after the step (directory entries not counted).")
    summary = {}  # (dataset, step, tool) -> dict
    datasets = []
    for r in recs:
        if r["dataset"] not in datasets:
            datasets.append(r["dataset"])
    for ds in datasets:
        size = float(m.get(f"size_{ds}", "0") or 0)
        p("")
        p(f"## {ds}: {m.get(f'desc_{ds}', '')}")
        dsrecs = [r for r in recs if r["dataset"] == ds]
        # Group incremental steps ("next 2", "hour 3") into total and median.
        steps = []
        for r in dsrecs:
            st = r["step"]
            key = st.split(" ")[0] if st.startswith(("next ", "hour ")) else st
            if key not in steps:
                steps.append(key)
        for key in steps:
            inc = key in ("next", "hour")
            srecs = [r for r in dsrecs if (r["step"].split(" ")[0] == key if inc else r["step"] == key)]
            tools = [t for t in tools_order if any(r["tool"] == t for r in srecs)]
            title = {"first": "first backup", "unchanged": "unchanged re-backup",
                     "next": "next versions (one backup per release)",
                     "hour": "hourly backups after small changes",
                     "restore": "restore of the latest snapshot"}.get(key, key)
            p("")
            p(f"### {ds} / {title}")
            p("")
            if inc:
                p("| tool | total wall s | median wall s | total CPU s | max peak RSS MB | final repo MB | status |")
                p("|---|---:|---:|---:|---:|---:|---|")
            else:
                p("| tool | wall s | CPU s | CPU/wall | MB/s | peak RSS MB | repo MB | status |")
                p("|---|---:|---:|---:|---:|---:|---:|---|")
            for t in tools:
                tr = [r for r in srecs if r["tool"] == t]
                ok = all(r["status"] == "ok" for r in tr)
                status = "ok" if ok else ",".join(sorted({r["status"] for r in tr if r["status"] != "ok"}))
                if key == "restore" and (ds, t) in bad_restore:
                    status = "RESTORED TREE DIFFERS" if ok else status + ", RESTORED TREE DIFFERS"
                reps = sorted({r["rep"] for r in tr})
                def per_rep(f):
                    return [f([r for r in tr if r["rep"] == rp]) for rp in reps]
                def fl(x):
                    try:
                        return float(x)
                    except ValueError:
                        return None
                if inc:
                    tot_wall = statistics.median(per_rep(lambda rs: sum(float(r["wall"]) for r in rs)))
                    med_wall = statistics.median(float(r["wall"]) for r in tr)
                    tot_cpu = statistics.median(per_rep(lambda rs: sum(float(r["user"]) + float(r["sys"]) for r in rs)))
                    rss = statistics.median(per_rep(lambda rs: max(float(r["rss_kb"]) for r in rs))) / 1024
                    def last_repo(rs):
                        last = max(rs, key=lambda r: int(r["step"].split(" ")[1]))
                        return fl(last["repo_bytes"])
                    repos = [x for x in per_rep(last_repo) if x is not None]
                    repo = statistics.median(repos) / 1e6 if repos else None
                    p(f"| {t} | {fnum(tot_wall)} | {fnum(med_wall)} | {fnum(tot_cpu)} | {fnum(rss, 1)} | {fnum(repo, 1)} | {status} |")
                    summary[(ds, key, t)] = dict(wall=tot_wall, cpu=tot_cpu, rss=rss, repo=repo, med=med_wall)
                    tsv.append(f"{ds}\t{key} (total)\t{t}\t{len(reps)}\t{tot_wall:.3f}\t{tot_cpu:.3f}\t\t{rss:.1f}\t{'' if repo is None else f'{repo:.1f}'}\t{status}")
                else:
                    wall = statistics.median(float(r["wall"]) for r in tr)
                    cpu = statistics.median(float(r["user"]) + float(r["sys"]) for r in tr)
                    rss = statistics.median(float(r["rss_kb"]) for r in tr) / 1024
                    repos = [fl(r["repo_bytes"]) for r in tr if fl(r["repo_bytes"]) is not None]
                    repo = statistics.median(repos) / 1e6 if repos else None
                    mbs = size / 1e6 / wall if size and wall > 0 and key in ("first", "restore") else None
                    p(f"| {t} | {fnum(wall)} | {fnum(cpu)} | {fnum(cpu / wall if wall else 0)} | {fnum(mbs, 1)} | {fnum(rss, 1)} | {fnum(repo, 1)} | {status} |")
                    summary[(ds, key, t)] = dict(wall=wall, cpu=cpu, rss=rss, repo=repo)
                    tsv.append(f"{ds}\t{key}\t{t}\t{len(reps)}\t{wall:.3f}\t{cpu:.3f}\t{'' if mbs is None else f'{mbs:.1f}'}\t{rss:.1f}\t{'' if repo is None else f'{repo:.1f}'}\t{status}")
    # Targets of the issue, as ratios measured in this run.
    p("")
    p("## Targets (ratios from this run" + ("; a QUICK run on small data is NOT a measurement)" if quick else ")"))
    p("")
    p("| target | measured | verdict |")
    p("|---|---|---|")
    def g(ds, st, t, f="wall"):
        v = summary.get((ds, st, t))
        return None if v is None else v.get(f)
    def check(name, val, ok, fmt):
        if val is None:
            p(f"| {name} | n/a | - |")
        else:
            p(f"| {name} | {fmt} | {'met' if ok else 'MISSED'} |")
    for peer, want in (("restic", 3.0), ("borg", 3.0)):
        a, b = g("bulk", "first", "cairn"), g("bulk", "first", peer)
        r = b / a if a and b else None
        check(f"bulk first backup: throughput >= {want}x {peer}", r, r is not None and r >= want, f"{r:.2f}x" if r else "")
    a, b = g("bulk", "first", "cairn"), g("bulk", "first", "tar|zstd")
    r = a / b if a and b else None
    check("bulk first backup: wall <= 1.6x tar|zstd -3 -T2", r, r is not None and r <= 1.6, f"{r:.2f}x" if r else "")
    for ds, want in (("bulk", 5.0), ("django", 3.0)):
        a, b = g(ds, "unchanged", "cairn"), g(ds, "unchanged", "restic")
        r = b / a if a and b else None
        check(f"{ds} unchanged re-backup: >= {want}x faster than restic", r, r is not None and r >= want, f"{r:.2f}x" if r else "")
    for ds in datasets:
        a, b = g(ds, "restore", "cairn"), g(ds, "restore", "restic")
        r = b / a if a and b else None
        check(f"{ds} restore: throughput >= 1.5x restic", r, r is not None and r >= 1.5, f"{r:.2f}x" if r else "")
        c = g(ds, "restore", "cp -a")
        r = c / a if a and c else None
        check(f"{ds} restore: no slower than cp -a", r, r is not None and r >= 1.0, f"{r:.2f}x cp's speed" if r else "")
    a = g("django", "next", "cairn", "repo")
    peers = [x for x in (g("django", "next", "restic", "repo"), g("django", "next", "borg", "repo")) if x]
    if a and peers:
        check("django repo size after all releases <= min(restic, borg)", a / min(peers), a <= min(peers),
              f"{a:.1f} MB vs {min(peers):.1f} MB ({a / min(peers):.2f}x)")
    worst = None
    for (ds, st, t), v in summary.items():
        if t != "cairn":
            continue
        rv = summary.get((ds, st, "restic"))
        if rv and v["rss"] and rv["rss"]:
            ratio = v["rss"] / rv["rss"]
            if worst is None or ratio > worst[0]:
                worst = (ratio, ds, st, v["rss"], rv["rss"])
    if worst:
        check("peak RSS <= restic's on every step", worst[0], worst[0] <= 1.0,
              f"worst {worst[1]}/{worst[2]}: {worst[3]:.0f} MB vs {worst[4]:.0f} MB ({worst[0]:.2f}x)")
    if "index_rss_mb" in m:
        v = float(m["index_rss_mb"])
        n = int(m.get("index_rss_n", "0"))
        check(f"index of {n / 1e6:g}M chunks: peak RSS < 300 MB (examples/index_rss; target is for 10M)",
              v, v < 300, f"{v:.0f} MB")
    p("")
    p("## Machine-readable (TSV)")
    p("")
    p("```")
    lines.extend(tsv)
    p("```")
    text = "\n".join(lines) + "\n"
    open(out_md, "w").write(text)
    sys.stdout.write(text)

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "sample-tree":
        sample_tree(args[0], args[1], int(args[2]))
    elif cmd == "sync-tree":
        sync_tree(args[0], args[1])
    elif cmd == "sqlite-gen":
        sqlite_gen(args[0], int(args[1]))
    elif cmd == "sqlite-change":
        sqlite_change(args[0], args[1], args[2])
    elif cmd == "sqlite-same":
        # The online backup API writes a new file with the same content, not
        # the same bytes (header counters differ): compare the SQL dumps.
        a, b = (list(sqlite3.connect(p).iterdump()) for p in args[:2])
        if a != b:
            sys.exit(f"{args[0]} and {args[1]} hold different data")
    elif cmd == "report":
        report(args[0], args[1], args[2])
    else:
        sys.exit(f"unknown helper command {cmd}")
PY

helper() { python3 "$HELPER" "$@" </dev/null; }

# ---------------------------------------------------------------------------
# Data sets (built once, reused while their parameters are unchanged)
# ---------------------------------------------------------------------------

# stamp DIR PARAMS: true if DIR was built with PARAMS.
stamp_ok() { [[ -f $1.stamp && $(cat "$1.stamp") == "$2" ]]; }

prepare_bulk() {
    BULK_SRC=${BULK_SRC:-$(rustc --print sysroot 2>/dev/null || true)}
    [[ -d $BULK_SRC ]] || die "bulk source not found (set BULK_SRC): '$BULK_SRC'"
    local dir=$DATA/bulk params="$BULK_SRC $BULK_MB v1"
    if ! stamp_ok "$dir" "$params"; then
        log "bulk: sampling ${BULK_MB} MB (0 = all) of $BULK_SRC"
        rm -rf "$dir" "$dir.stamp"
        mkdir -p "$dir"
        helper sample-tree "$BULK_SRC" "$dir" "$BULK_MB" >&2
        echo "$params" >"$dir.stamp"
    fi
    SRC_bulk=$dir
    DESC_bulk="sample of $BULK_SRC"
}

DJANGO_LIST=()
prepare_django() {
    local i v cache=$BENCH_DIR/cache/django
    mkdir -p "$cache"
    DJANGO_LIST=()
    for ((i = DJANGO_FIRST; i < DJANGO_FIRST + DJANGO_VERSIONS; i++)); do
        v=$DJANGO_SERIES.$i
        local dir=$DATA/django/$v
        if ! stamp_ok "$dir" "$v"; then
            local tgz
            tgz=$(find "$cache" -maxdepth 1 -iname "django-$v.tar.gz" | head -1)
            if [[ -z $tgz ]]; then
                log "django: downloading $v from PyPI"
                pip download --quiet --no-deps --no-binary :all: "django==$v" -d "$cache" >&2 ||
                    { log "django: pip download of $v failed"; return 1; }
                tgz=$(find "$cache" -maxdepth 1 -iname "django-$v.tar.gz" | head -1)
                [[ -n $tgz ]] || { log "django: no sdist for $v"; return 1; }
            fi
            rm -rf "$dir" "$dir.stamp"
            mkdir -p "$dir"
            tar xzf "$tgz" -C "$dir" --strip-components=1
            echo "$v" >"$dir.stamp"
        fi
        DJANGO_LIST+=("$v")
    done
    SRC_django=$DATA/src/django
    DESC_django="Django ${DJANGO_LIST[0]} .. ${DJANGO_LIST[-1]} (${#DJANGO_LIST[@]} releases) applied in turn to one directory"
}

# Resets the working tree to the first release (new inodes; untimed).
reset_django() {
    rm -rf "$SRC_django"
    mkdir -p "$(dirname "$SRC_django")"
    cp -a "$DATA/django/${DJANGO_LIST[0]}" "$SRC_django"
}

prepare_sqlite() {
    local base=$DATA/sqlite-base.db params="$SQLITE_MB v2"
    if [[ -x $SCRIPT_DIR/sqlite_dedup.sh ]]; then
        log "sqlite: note: benches/sqlite_dedup.sh exists; this script uses its own generator so that all tools see identical bytes"
    fi
    if ! stamp_ok "$base" "$params"; then
        log "sqlite: generating a ${SQLITE_MB} MB database"
        rm -f "$base" "$base.stamp"
        helper sqlite-gen "$base" "$SQLITE_MB" >&2
        echo "$params" >"$base.stamp"
    fi
    SRC_sqlite=$DATA/src/sqlite
    DESC_sqlite="${SQLITE_MB} MB SQLite database, $SQLITE_BACKUPS hourly backups with small changes in between ($SQLITE_RANDOM_UPDATES random updates per hour)"
}

reset_sqlite() {
    rm -rf "$SRC_sqlite"
    mkdir -p "$SRC_sqlite"
    cp "$DATA/sqlite-base.db" "$SRC_sqlite/app.db"
}

# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

drop_caches() {
    sync
    [[ $DROP_CACHES == 1 ]] || return 0
    if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        log "cannot drop the page cache (not root?); continuing with warm caches"
        DROP_CACHES=0
    fi
}

# Seconds from GNU time's "h:mm:ss" or "m:ss.ss".
to_seconds() { awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.3f", s }' <<<"$1"; }

# timed DATASET STEP TOOL REPO OKCODES -- COMMAND...
# Runs COMMAND under /usr/bin/time -v and appends a line to $RESULTS.
timed() {
    local ds=$1 step=$2 tool=$3 repo=$4 okcodes=$5
    shift 6
    local tag="${ds}-r${REP}-${step// /_}-${tool//[^a-z]/_}"
    local logf=$LOGS/$tag.log tf=$LOGS/$tag.time rc=0
    drop_caches
    /usr/bin/time -v -o "$tf" "$@" </dev/null >"$logf" 2>&1 || rc=$?
    local wall user sys rss status=ok
    wall=$(to_seconds "$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tf")")
    user=$(sed -n 's/.*User time (seconds): //p' "$tf")
    sys=$(sed -n 's/.*System time (seconds): //p' "$tf")
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tf")
    if [[ " $okcodes " != *" $rc "* ]]; then
        status="fail(rc=$rc)"
        log "  $tool $step FAILED (exit $rc); last lines of $logf:"
        tail -n 5 "$logf" | sed 's/^/      /' >&2
    elif ((rc != 0)); then
        status="warn(rc=$rc)"
    fi
    local size=- shown=
    if [[ $repo != - && -e $repo ]]; then
        # Bytes in the repository's files (what an object store bills;
        # directory entries, which differ by file system, are not counted).
        size=$(find "$repo" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
        shown=" repo $(awk "BEGIN{printf \"%.1f MB\", $size/1e6}")"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$ds" "$step" "$tool" "$REP" "${wall:-0}" "${user:-0}" "${sys:-0}" "${rss:-0}" "$size" "$status" >>"$RESULTS"
    log "  $(printf '%-9s %-12s %8.2fs wall %8.2fs cpu %7.1f MB rss' "$tool" "$step" "${wall:-0}" \
        "$(awk "BEGIN{print ${user:-0}+${sys:-0}}")" "$(awk "BEGIN{print ${rss:-0}/1024}")")$shown $status"
}

# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------

declare -A SNAPS # borg archive counter per tool repo

repo_of() { echo "$REPOS/$1"; }

tool_init() {
    local t=$1 r
    r=$(repo_of "$t")
    rm -rf "$r"
    case $t in
        cairn | cairn-db) "$CAIRN_BIN" -r "$r" init >"$LOGS/init-$t.log" 2>&1 ;;
        cairn-base) "$CAIRN_BASE_BIN" -r "$r" init >"$LOGS/init-$t.log" 2>&1 ;;
        restic) restic -r "$r" init --repository-version 2 >"$LOGS/init-$t.log" 2>&1 ;;
        borg) borg init --encryption repokey-blake2 "$r" >"$LOGS/init-$t.log" 2>&1 ;;
    esac || die "$t init failed; see $LOGS/init-$t.log"
    SNAPS[$t]=0
}

# tool_backup DATASET STEP TOOL DIR
tool_backup() {
    local ds=$1 step=$2 t=$3 dir=$4 r
    r=$(repo_of "$t")
    case $t in
        cairn) timed "$ds" "$step" "$t" "$r" "0 3" -- "$CAIRN_BIN" -r "$r" backup "$dir" ;;
        cairn-base) timed "$ds" "$step" "$t" "$r" "0 3" -- "$CAIRN_BASE_BIN" -r "$r" backup "$dir" ;;
        # The way a cairn user backs up a live database: online backup API,
        # quick_check, page-aligned chunks (sqlite data set only).
        cairn-db) timed "$ds" "$step" "$t" "$r" "0" -- "$CAIRN_BIN" -r "$r" backup --sqlite-quick --sqlite "$dir/app.db" ;;
        restic) timed "$ds" "$step" "$t" "$r" "0 3" -- restic -r "$r" --compression auto backup "$dir" ;;
        borg)
            SNAPS[$t]=$((SNAPS[$t] + 1))
            timed "$ds" "$step" "$t" "$r" "0 1" -- borg create --compression zstd,3 "$r::s${SNAPS[$t]}" "$dir" ;;
        "tar|zstd") timed "$ds" "$step" "$t" - "0" -- bash -c 'tar cf - "$1" | zstd -3 -T2 > /dev/null' _ "$dir" ;;
    esac
}

# tool_restore DATASET TOOL DIR: restore latest into a fresh directory,
# check it against DIR (first repetition, untimed), remove it.
tool_restore() {
    local ds=$1 t=$2 dir=$3 r target restored
    r=$(repo_of "$t")
    target=$OUT/${t//[^a-z]/_}
    rm -rf "$target"
    mkdir -p "$target"
    restored=$target$dir
    case $t in
        cairn | cairn-db) timed "$ds" restore "$t" - "0" -- "$CAIRN_BIN" -r "$r" restore latest --target "$target" ;;
        cairn-base) timed "$ds" restore "$t" - "0" -- "$CAIRN_BASE_BIN" -r "$r" restore latest --target "$target" ;;
        restic) timed "$ds" restore "$t" - "0" -- restic -r "$r" restore latest --target "$target" ;;
        borg) timed "$ds" restore "$t" - "0 1" -- bash -c 'cd "$1" && exec borg extract "$2"' _ "$target" "$r::s${SNAPS[$t]}" ;;
        "cp -a")
            timed "$ds" restore "$t" - "0" -- cp -a "$dir" "$target/"
            restored=$target/$(basename "$dir") ;;
    esac
    if [[ $VERIFY == 1 && $REP == 1 && $t != "cp -a" ]]; then
        local same=(diff -r --no-dereference "$dir" "$restored")
        [[ $t == cairn-db ]] && same=(helper sqlite-same "$dir/app.db" "$restored/app.db")
        if "${same[@]}" >"$LOGS/verify-$ds-$t.log" 2>&1; then
            log "  $t restore verified: identical to the source"
        else
            log "  $t restore DIFFERS from the source; see $LOGS/verify-$ds-$t.log"
            printf '%s\t%s\t%s\t%s\t0\t0\t0\t0\t-\tverify-failed\n' "$ds" restore-verify "$t" "$REP" >>"$RESULTS"
        fi
    fi
    rm -rf "$target"
}

# Tools in this repetition's order: rotated by one per repetition, so each
# tool runs first, in the middle and last as often as possible.
order() {
    local list=("$@") n=$# k i
    k=$(((REP - 1) % n))
    for ((i = 0; i < n; i++)); do echo "${list[(i + k) % n]}"; done
}

# step_backup DATASET STEP DIR [reference]: back up DIR with every tool.
step_backup() {
    local ds=$1 step=$2 dir=$3 t
    local list=("${ACTIVE[@]}")
    [[ ${4:-} == ref ]] && list+=("tar|zstd")
    log "$ds rep $REP: $step"
    while read -r t; do tool_backup "$ds" "$step" "$t" "$dir"; done < <(order "${list[@]}")
}

step_restore() {
    local ds=$1 dir=$2 t
    log "$ds rep $REP: restore latest"
    while read -r t; do tool_restore "$ds" "$t" "$dir"; done < <(order "${ACTIVE[@]}" "cp -a")
}

init_all() { local t; for t in "${ACTIVE[@]}"; do tool_init "$t"; done; }

cleanup_repos() {
    [[ $KEEP == 1 ]] && return 0
    local t
    for t in "${ACTIVE[@]}"; do rm -rf "$(repo_of "$t")"; done
    rm -rf "$BORG_BASE_DIR" "$RESTIC_CACHE_DIR"
}

# ---------------------------------------------------------------------------
# Data set runs
# ---------------------------------------------------------------------------

run_bulk() {
    local dir=$SRC_bulk
    init_all
    step_backup bulk first "$dir" ref
    step_backup bulk unchanged "$dir"
    step_restore bulk "$dir"
    cleanup_repos
}

run_django() {
    local i
    reset_django
    init_all
    step_backup django first "$SRC_django" ref
    step_backup django unchanged "$SRC_django"
    for ((i = 1; i < ${#DJANGO_LIST[@]}; i++)); do
        log "django rep $REP: updating the tree to ${DJANGO_LIST[i]}: $(helper sync-tree "$DATA/django/${DJANGO_LIST[i]}" "$SRC_django")"
        step_backup django "next $((i + 1))" "$SRC_django"
    done
    step_restore django "$SRC_django"
    cleanup_repos
}

run_sqlite() {
    local h saved=("${ACTIVE[@]}")
    # A second cairn row: the database backed up with --sqlite.
    [[ " ${ACTIVE[*]} " == *" cairn "* ]] && ACTIVE+=(cairn-db)
    reset_sqlite
    init_all
    step_backup sqlite first "$SRC_sqlite" ref
    step_backup sqlite unchanged "$SRC_sqlite"
    for ((h = 2; h <= SQLITE_BACKUPS; h++)); do
        log "sqlite rep $REP: $(helper sqlite-change "$SRC_sqlite/app.db" "$h" "$SQLITE_RANDOM_UPDATES")"
        step_backup sqlite "hour $h" "$SRC_sqlite"
    done
    step_restore sqlite "$SRC_sqlite"
    cleanup_repos
    ACTIVE=("${saved[@]}")
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

ds_list=()
for ds in $DATASETS; do
    case $ds in
        bulk) prepare_bulk && ds_list+=(bulk) ;;
        django) if prepare_django; then ds_list+=(django); else log "skipping the django data set"; fi ;;
        sqlite) prepare_sqlite && ds_list+=(sqlite) ;;
        *) die "unknown data set: $ds" ;;
    esac
done

{
    echo -e "date\t$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo -e "host\t$(uname -n)"
    echo -e "cpus\t$(nproc)"
    echo -e "kernel\t$(uname -r)"
    echo -e "load_before\t$(cut -d' ' -f1-3 /proc/loadavg)"
    echo -e "reps\t$REPS"
    echo -e "quick\t$QUICK"
    echo -e "versions\t$(for t in "${ACTIVE[@]}"; do tool_version "$t"; done | paste -sd ';' | sed 's/;/; /g'); $(tar --version | head -1); zstd $(zstd -V | grep -o 'v[0-9.]*')"
    for ds in "${ds_list[@]}"; do
        d=DESC_$ds
        case $ds in
            bulk) sz=$(du -sb "$SRC_bulk" | cut -f1) ;;
            django) sz=$(du -sb "$DATA/django/${DJANGO_LIST[-1]}" | cut -f1) ;; # newest (restored) release
            sqlite) sz=$(du -sb "$DATA/sqlite-base.db" | cut -f1) ;;
        esac
        echo -e "size_$ds\t$sz"
        echo -e "desc_$ds\t${!d}, $(awk "BEGIN{printf \"%.0f\", $sz/1e6}") MB"
    done
} >"$META.tmp"

printf '# dataset\tstep\ttool\trep\twall_s\tuser_s\tsys_s\tmax_rss_kb\trepo_bytes\tstatus\n' >"$RESULTS"
log "tools: ${ACTIVE[*]}; data sets: ${ds_list[*]}; $REPS repetition(s); results in $RESULTS"
[[ $QUICK == 1 ]] && log "QUICK smoke run: small data, one repetition; ratios are not meaningful"

for ((REP = 1; REP <= REPS; REP++)); do
    for ds in "${ds_list[@]}"; do
        "run_$ds"
    done
done

# The 10M-chunk index figure (examples/index_rss), unless disabled.
if [[ ${INDEX_RSS:-1} == 1 ]]; then
    n=10000000
    [[ $QUICK == 1 ]] && n=1000000
    log "index RSS: building a $n-blob index (examples/index_rss)"
    if (cd "$ROOT" && cargo build --release --quiet --example index_rss) &&
        line=$("$ROOT/target/release/examples/index_rss" "$n" --dir "$BENCH_DIR" 2>>"$LOGS/index_rss.log" | tee -a "$LOGS/index_rss.log" | grep '^index_rss'); then
        kib=$(cut -f4 <<<"$line")
        echo -e "index_rss_mb\t$(awk "BEGIN{printf \"%.1f\", $kib/1024}")" >>"$META.tmp"
        echo -e "index_rss_n\t$n" >>"$META.tmp"
    else
        log "index RSS example failed; see $LOGS/index_rss.log"
    fi
fi

echo -e "load_after\t$(cut -d' ' -f1-3 /proc/loadavg)" >>"$META.tmp"
mv "$META.tmp" "$META"
echo
helper report "$RESULTS" "$META" "$BENCH_DIR/report.md"
log "report written to $BENCH_DIR/report.md; raw results in $RESULTS"
