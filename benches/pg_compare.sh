#!/usr/bin/env bash
# End-to-end comparison of cairn's PostgreSQL support (WAL archiving, base
# backups, point-in-time restore) with pgBackRest, on the same cluster, the
# same data and the same WAL, in the same run.
#
#   bash benches/pg_compare.sh                            # defaults below (~7-10 min on 2 cores)
#   SCALE=5 PGBENCH_SECONDS=20 SEGMENTS=8 REPS=1 bash benches/pg_compare.sh   # smoke run
#
# Setup: one private PostgreSQL 15 cluster (Unix socket in $WORKDIR, port
# $PORT, default settings otherwise: fsync on, full_page_writes on) whose
# archive_command pushes every WAL segment to BOTH tools, one process each,
# as PostgreSQL does:
#     cairn ... wal push %p && pgbackrest ... archive-push %p
# so both repositories receive byte-for-byte the same WAL (the segments
# switched by either tool's base backups included). pgBackRest runs with its
# defaults (compress-type gz level 6 in 2.45, one process, archive-async=n,
# no encryption unless PGBR_CIPHER is set; cairn always encrypts), plus
# start-fast=y. cairn runs with its defaults (repository created with the
# default KDF; `wal push` keeps its 10-minute session key in --cache-dir).
# Everything PostgreSQL-related runs as the `postgres` user, in $WORKDIR.
#
# Scenarios:
#   1 repo size   `pgbench -i -s $SCALE`, one base backup per tool, then
#                 `pgbench -c $CLIENTS -T $PGBENCH_SECONDS`, pg_switch_wal()
#                 and wait until pg_stat_archiver has archived everything.
#                 Reported: `du -sb` of each repository.
#   2 2nd backup  a base backup per tool right after the pgbench run (shown
#                 for information), then light changes ($CHANGE: UPDATE of 1%
#                 of pgbench_accounts, rows aid <= 1% ("contiguous", default)
#                 or every 100th row ("scattered", which dirties ~45% of the
#                 heap pages and nearly every page of its primary key index)),
#                 then one more base backup per tool; reported: what that
#                 last backup added to the repository (du before/after, the
#                 archiver idle on both sides; cairn's data_added_stored and
#                 pgBackRest's backup "repository size" in the log). pgBackRest
#                 takes FULL backups (--type=full), as asked by the target.
#   3 WAL push    the first SEGMENTS+1 segments written during the pgbench run
#                 (copied by the archive_command while it ran) are pushed into
#                 a fresh repository / stanza per repetition, one process per
#                 segment in a loop as PostgreSQL does: the first untimed
#                 (cairn: key stretching once per 10 min; pgBackRest: nothing
#                 special), the next SEGMENTS timed. The page cache is dropped
#                 and the segments read back in before the loop (PostgreSQL
#                 archives a segment it has just written).
#   4 PITR        restore to the middle of the scenario-1 pgbench run (same
#                 target time for both; both pick the first base backup) and
#                 wait for recovery to finish:
#                   cairn  `pg restore --at T --verify` (restore, private
#                          server, wait, row count of every table, stop), with
#                          a cold --cache-dir (a restore pays one key stretch)
#                   pgBackRest `restore --type=time --target=T
#                          --target-action=promote` into an empty folder,
#                          pg_ctl start (archive_mode=off, as cairn's --verify),
#                          poll until pg_is_in_recovery() is false, the same
#                          row counts (PGBR_COUNT_ROWS=1), pg_ctl stop -m fast.
#                 Both check that pgbench_history has the same row count.
# Scenarios 3 and 4 run REPS times, interleaved, order alternating (cairn
# first on odd repetitions); tables show medians. Before each timed step:
# `sync` and a page-cache drop (DROP_CACHES=1, needs root). Timed commands
# run under /usr/bin/time -v (wall; CPU excludes the detached servers).
#
# Knobs (environment):
#   SCALE=50              pgbench scale (50: ~750 MB cluster)
#   PGBENCH_SECONDS=120   length of the scenario-1 pgbench run
#   CLIENTS=4             pgbench clients (-j 2)
#   SEGMENTS=64           WAL segments timed in scenario 3
#   REPS=3                repetitions of scenarios 3 and 4
#   CHANGE=contiguous     light change of scenario 2: contiguous | scattered
#   WORKDIR=/var/tmp/cairn-pg-compare   work area (deleted at start; must be
#                         new or made by this script); results stay in it
#   CAIRN=...             cairn binary (default: `cargo build --release` here);
#                         copied into WORKDIR so the postgres user can run it
#   PORT=55990            port of the private cluster (restored ones: PORT+1)
#   PGBIN=/usr/lib/postgresql/15/bin
#   PGBR_CIPHER=none      pgBackRest repo1-cipher-type (aes-256-cbc to encrypt)
#   PGBR_COUNT_ROWS=1     pgBackRest restore also counts rows (as --verify)
#   DROP_CACHES=1         sync + drop the page cache before timed steps
#   KEEP=0                1: keep the cluster data and repositories afterwards
#
# Results: $WORKDIR/results.tsv (one line per timed command), $WORKDIR/logs/,
# $WORKDIR/report.md (the tables printed at the end).

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

SCALE=${SCALE:-50}
PGBENCH_SECONDS=${PGBENCH_SECONDS:-120}
CLIENTS=${CLIENTS:-4}
SEGMENTS=${SEGMENTS:-64}
SEGMENTS_ASKED=$SEGMENTS
REPS=${REPS:-3}
CHANGE=${CHANGE:-contiguous}
WORKDIR=${WORKDIR:-/var/tmp/cairn-pg-compare}
PORT=${PORT:-55990}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGBR_CIPHER=${PGBR_CIPHER:-none}
PGBR_COUNT_ROWS=${PGBR_COUNT_ROWS:-1}
DROP_CACHES=${DROP_CACHES:-1}
KEEP=${KEEP:-0}
PASSWORD=${PASSWORD:-pg-compare-bench-password}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------

((EUID == 0)) || die "run as root (the benchmark runs PostgreSQL as 'postgres' with runuser and drops the page cache)"
id postgres >/dev/null 2>&1 || die "no 'postgres' user"
[[ -x $PGBIN/postgres && -x $PGBIN/pg_ctl && -x $PGBIN/pgbench ]] || die "PostgreSQL programs not found in PGBIN=$PGBIN"
command -v pgbackrest >/dev/null || die "pgbackrest is not installed (apt-get install pgbackrest)"
command -v jq >/dev/null || die "jq is required"
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is required: apt-get install time"
[[ $WORKDIR == /* && $WORKDIR != *[[:space:]\'\"\\\$]* ]] || die "WORKDIR must be an absolute path without spaces or quotes: $WORKDIR"
[[ $CHANGE == contiguous || $CHANGE == scattered ]] || die "CHANGE must be contiguous or scattered"
for v in SCALE PGBENCH_SECONDS CLIENTS SEGMENTS REPS PORT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (is '${!v}')"
done
if [[ -e $WORKDIR && ! -e $WORKDIR/.cairn-pg-compare ]]; then
    die "$WORKDIR exists and was not made by this script: refusing to delete it (choose another WORKDIR)"
fi

if [[ -z ${CAIRN:-} ]]; then
    log "building cairn (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin cairn) || die "cargo build failed"
    CAIRN=$ROOT/target/release/cairn
fi
[[ -x $CAIRN ]] || die "cairn binary not found: $CAIRN"

# ---------------------------------------------------------------------------
# Layout (all owned by postgres)
# ---------------------------------------------------------------------------

DATA=$WORKDIR/data              # the cluster
SOCK=$WORKDIR/sock              # its Unix socket
RSOCK=$WORKDIR/sock-restore     # restored clusters' socket (pgBackRest side)
BIN=$WORKDIR/bin                # cairn copy and helper scripts
PASS=$WORKDIR/password          # cairn's password file
CREPO=$WORKDIR/repo-cairn       # cairn repository
CCACHE=$WORKDIR/cache-cairn     # cairn cache dir of the archive_command
CTMP=$WORKDIR/tmp               # cairn pg backup --temp-dir
PREPO=$WORKDIR/repo-pgbackrest  # pgBackRest repo1-path
CONF=$WORKDIR/pgbackrest.conf
CAPTURE=$WORKDIR/wal-capture    # archive_command copies segments here while it exists
WALSET=$WORKDIR/wal-set         # segments for scenario 3
PUSH=$WORKDIR/push              # scenario-3 repositories
RESTORE=$WORKDIR/restore        # scenario-4 targets
LOGS=$WORKDIR/logs
RESULTS=$WORKDIR/results.tsv
REPORT=$WORKDIR/report.md
RPORT=$((PORT + 1))
PGENV=(env "PATH=$PGBIN:/usr/local/bin:/usr/bin:/bin" "HOME=$WORKDIR/home" "PGHOST=$SOCK" "PGPORT=$PORT"
    PGUSER=postgres PGDATABASE=postgres LC_ALL=C.UTF-8 TZ=UTC)

# Runs a command as postgres with the cluster's libpq environment.
as_pg() { runuser -u postgres -- "${PGENV[@]}" "$@"; }
# One SQL statement on the cluster; unaligned, tuples only.
sql() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

# Stops every server this script may have started (also on error / Ctrl-C).
cleanup() {
    local rc=$? d
    for d in "$DATA" "$RESTORE"/*; do
        if [[ -f $d/postmaster.pid ]]; then
            runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m fast -w -t 60 stop >/dev/null 2>&1 ||
                runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
        fi
    done
    if ((rc != 0)); then
        log "FAILED (exit $rc); logs in $LOGS (server: $LOGS/server.log)"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# An old run's servers must be down before its folder goes.
if [[ -d $WORKDIR ]]; then
    for d in "$DATA" "$RESTORE"/*; do
        [[ -f $d/postmaster.pid ]] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    done
    rm -rf "$WORKDIR"
fi
mkdir -p "$WORKDIR"
touch "$WORKDIR/.cairn-pg-compare"
mkdir -p "$SOCK" "$RSOCK" "$BIN" "$CCACHE" "$CTMP" "$PUSH" "$RESTORE" "$LOGS/pgbackrest" "$WORKDIR/home" \
    "$WORKDIR/pgbackrest-lock" "$WORKDIR/pgbackrest-spool"
cp "$CAIRN" "$BIN/cairn"
printf '%s\n' "$PASSWORD" >"$PASS"
chmod 600 "$PASS"
chown -R postgres:postgres "$WORKDIR"
chmod 700 "$WORKDIR"
C=$BIN/cairn
# cairn as the archive_command runs it (global options), without a command.
CAIRN_G=("$C" -r "$CREPO" --password-file "$PASS" --cache-dir "$CCACHE")
PGBR=(pgbackrest "--config=$CONF" --stanza=bench)

: >"$RESULTS"
printf 'scenario\ttool\trep\twall_s\tuser_s\tsys_s\trss_kb\tstatus\n' >"$RESULTS"

drop_caches() {
    sync
    [[ $DROP_CACHES == 1 ]] || return 0
    if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        log "cannot drop the page cache; continuing with warm caches"
        DROP_CACHES=0
    fi
}

to_seconds() { awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.3f", s }' <<<"$1"; }

# timed SCENARIO TOOL REP -- COMMAND...: runs COMMAND under /usr/bin/time -v
# (output in $LOGS/SCENARIO-TOOL-rREP.log), appends to $RESULTS, sets WALL.
# A failing command stops the benchmark (a failed step has no figure).
timed() {
    local scen=$1 tool=$2 rep=$3
    shift 4
    local tag="$scen-$tool-r$rep" rc=0
    local logf=$LOGS/$tag.log tf=$LOGS/$tag.time
    drop_caches
    [[ -z ${PREPARE:-} ]] || eval "$PREPARE"
    /usr/bin/time -v -o "$tf" "$@" </dev/null >"$logf" 2>&1 || rc=$?
    local user sys rss
    WALL=$(to_seconds "$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tf")")
    user=$(sed -n 's/.*User time (seconds): //p' "$tf")
    sys=$(sed -n 's/.*System time (seconds): //p' "$tf")
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tf")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$tool" "$rep" "$WALL" "${user:-0}" "${sys:-0}" "${rss:-0}" \
        "$( ((rc == 0)) && echo ok || echo "fail($rc)")" >>"$RESULTS"
    log "  $(printf '%-10s %-10s rep %s %8.2fs wall %8.2fs cpu %7.1f MB rss' "$scen" "$tool" "$rep" "$WALL" \
        "$(awk "BEGIN{print ${user:-0}+${sys:-0}}")" "$(awk "BEGIN{print ${rss:-0}/1024}")")"
    if ((rc != 0)); then
        log "  $tool $scen FAILED (exit $rc); last lines of $logf:"
        tail -n 15 "$logf" | sed 's/^/      /' >&2
        exit 1
    fi
}

repo_bytes() { du -sb "$1" | cut -f1; }
repo_file_bytes() { find "$1" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
mb() { awk "BEGIN{printf \"%.1f\", $1/1e6}"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# Forces a segment switch and waits until the archiver has archived it and
# nothing is left to archive (both tools, as the archive_command chains them).
wait_archived() {
    local seg last failed deadline=$((SECONDS + 1800))
    sql "INSERT INTO bench_marker VALUES (now())"
    seg=$(sql "SELECT pg_walfile_name(pg_switch_wal())")
    while :; do
        IFS='|' read -r last failed < <(sql "SELECT coalesce(last_archived_wal, ''), failed_count FROM pg_stat_archiver")
        if [[ -n $last && ! $last < $seg ]] && ! compgen -G "$DATA/pg_wal/archive_status/*.ready" >/dev/null; then
            break
        fi
        if ((SECONDS > deadline)); then
            die "archiving did not catch up with $seg (last archived: $last, failures: $failed); see $LOGS/server.log"
        fi
        sleep 0.5
    done
    ((failed == 0)) || log "  note: pg_stat_archiver reports $failed failed archive_command runs so far (see $LOGS/server.log)"
}

# ---------------------------------------------------------------------------
# The cluster, both repositories
# ---------------------------------------------------------------------------

PGBR_VERSION=$(pgbackrest version)
PG_VERSION=$("$PGBIN/postgres" --version)
# The checkout's commit describes the binary only when it was built here.
if [[ $(realpath "$CAIRN") == "$(realpath -m "$ROOT/target/release/cairn")" ]]; then
    CAIRN_VERSION="$("$C" --version 2>/dev/null || echo cairn) ($(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?'))"
else
    CAIRN_VERSION="$("$C" --version 2>/dev/null || echo cairn) ($CAIRN)"
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "$CAIRN_VERSION; $PGBR_VERSION; $PG_VERSION; $(nproc) CPUs; load $LOAD_BEFORE"
log "workdir $WORKDIR; SCALE=$SCALE PGBENCH_SECONDS=$PGBENCH_SECONDS CLIENTS=$CLIENTS SEGMENTS=$SEGMENTS_ASKED REPS=$REPS CHANGE=$CHANGE"

cipher_conf=""
if [[ $PGBR_CIPHER != none ]]; then
    cipher_conf="repo1-cipher-type=$PGBR_CIPHER
repo1-cipher-pass=$PASSWORD"
fi
cat >"$CONF" <<EOF
[global]
repo1-path=$PREPO
repo1-retention-full=99
$cipher_conf
start-fast=y
archive-async=n
log-path=$LOGS/pgbackrest
lock-path=$WORKDIR/pgbackrest-lock
spool-path=$WORKDIR/pgbackrest-spool
log-level-console=warn

[bench]
pg1-path=$DATA
pg1-socket-path=$SOCK
pg1-port=$PORT
pg1-user=postgres
EOF
chown postgres:postgres "$CONF"
chmod 600 "$CONF"
PGBR_COMPRESS=$(pgbackrest "--config=$CONF" help backup compress-type | sed -n 's/^default: //p')
# compress-level has no single default: it is listed per compress-type.
PGBR_LEVEL=$(pgbackrest "--config=$CONF" help backup compress-level | sed -n "s/^\* $PGBR_COMPRESS - //p")
[[ -n $PGBR_LEVEL ]] || PGBR_LEVEL="default for $PGBR_COMPRESS"

log "initdb"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres -A trust --no-instructions >"$LOGS/initdb.log" 2>&1 ||
    die "initdb failed: $(tail -3 "$LOGS/initdb.log")"
ARCHIVE_COMMAND="if [ -d $CAPTURE ]; then cp %p $CAPTURE/%f || exit 1; fi; ${CAIRN_G[*]} wal push %p && ${PGBR[*]} archive-push %p"
cat >>"$DATA/postgresql.conf" <<EOF

# pg_compare.sh
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
archive_mode = on
archive_command = '$ARCHIVE_COMMAND'
EOF
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$LOGS/server.log" -w -t 120 start >/dev/null ||
    die "the cluster did not start: $(tail -5 "$LOGS/server.log")"
sql "CREATE TABLE bench_marker (t timestamptz)"

log "cairn init (default KDF), pgbackrest stanza-create + check"
as_pg "${CAIRN_G[@]}" init >"$LOGS/cairn-init.log" 2>&1 || die "cairn init failed: $(tail -3 "$LOGS/cairn-init.log")"
as_pg "${PGBR[@]}" stanza-create >"$LOGS/pgbackrest-stanza-create.log" 2>&1 ||
    die "pgbackrest stanza-create failed: $(tail -5 "$LOGS/pgbackrest-stanza-create.log")"
as_pg "${PGBR[@]}" check >"$LOGS/pgbackrest-check.log" 2>&1 ||
    die "pgbackrest check failed (is the archive_command working? see $LOGS/server.log): $(tail -5 "$LOGS/pgbackrest-check.log")"

log "pgbench -i -s $SCALE"
as_pg "$PGBIN/pgbench" -i -q -s "$SCALE" >"$LOGS/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(tail -3 "$LOGS/pgbench-init.log")"
wait_archived
DB_BYTES=$(sql "SELECT pg_database_size('postgres')")
log "  database: $(mb "$DB_BYTES") MB"

# Base backups: cairn pg backup --json (summary on the last line) and
# pgbackrest backup --type=full; each followed by waiting for the archiver.
cairn_backup() { # NAME: sets ADDED_STORED
    timed "$1" cairn 1 -- runuser -u postgres -- "${PGENV[@]}" "${CAIRN_G[@]}" --json pg backup --pg-bin "$PGBIN" --temp-dir "$CTMP"
    ADDED_STORED=$(grep '"message_type":"summary"' "$LOGS/$1-cairn-r1.log" | tail -1 | jq -r '.data_added_stored' || echo "?")
    wait_archived
}
pgbr_backup() { # NAME: sets PGBR_BACKUP_SIZE (stored bytes of the newest backup, from info)
    timed "$1" pgbackrest 1 -- runuser -u postgres -- "${PGENV[@]}" "${PGBR[@]}" backup --type=full
    PGBR_BACKUP_SIZE=$(as_pg "${PGBR[@]}" info --output=json | jq -r '.[0].backup[-1].info.repository.delta')
    wait_archived
}

# ---------------------------------------------------------------------------
# Scenario 1: base backup + pgbench WAL
# ---------------------------------------------------------------------------

log "scenario 1: base backup A, pgbench -c $CLIENTS -T $PGBENCH_SECONDS, archive everything"
cairn_backup s1-backupA
C_A_STORED=$ADDED_STORED
pgbr_backup s1-backupA
P_A_STORED=$PGBR_BACKUP_SIZE
C_BASE=$(repo_bytes "$CREPO")
P_BASE=$(repo_bytes "$PREPO")
log "  after base backup A: cairn $(mb "$C_BASE") MB (backup stored $(mb "$C_A_STORED") MB), pgBackRest $(mb "$P_BASE") MB (backup $(mb "$P_A_STORED") MB)"

ARCH0=$(sql "SELECT archived_count FROM pg_stat_archiver")
as_pg mkdir "$CAPTURE"
T_START=$(sql "SELECT now()")
as_pg "$PGBIN/pgbench" -c "$CLIENTS" -j 2 -T "$PGBENCH_SECONDS" -P 30 >"$LOGS/pgbench-run.log" 2>&1 ||
    die "pgbench failed: $(tail -3 "$LOGS/pgbench-run.log")"
T_END=$(sql "SELECT now()")
TPS=$(sed -n 's/^tps = \([0-9]*\).*/\1/p' "$LOGS/pgbench-run.log" | head -1)
# The middle of the run, in whole seconds, UTC, in the forms each tool takes.
T_MID_EPOCH=$(sql "SELECT floor((extract(epoch FROM '$T_START'::timestamptz) + extract(epoch FROM '$T_END'::timestamptz)) / 2)::bigint")
T_MID_CAIRN=$(date -u -d "@$T_MID_EPOCH" '+%Y-%m-%dT%H:%M:%SZ')
T_MID_PGBR=$(date -u -d "@$T_MID_EPOCH" '+%Y-%m-%d %H:%M:%S+00')
log "  pgbench: $TPS tps; waiting for the archiver"
wait_archived
mv "$CAPTURE" "$WALSET"
ARCH1=$(sql "SELECT archived_count FROM pg_stat_archiver")
WAL_SEGS=$((ARCH1 - ARCH0))
C_S1=$(repo_bytes "$CREPO")
P_S1=$(repo_bytes "$PREPO")
C_S1_FILES=$(repo_file_bytes "$CREPO")
P_S1_FILES=$(repo_file_bytes "$PREPO")
log "  archived $WAL_SEGS segments ($(mb $((WAL_SEGS * 16777216))) MB of WAL) during and after the run"
log "  repository after base backup + WAL: cairn $(mb "$C_S1") MB, pgBackRest $(mb "$P_S1") MB (files only: $(mb "$C_S1_FILES") / $(mb "$P_S1_FILES") MB)"
{
    echo "== du per folder after scenario 1"
    du -sb "$CREPO"/* "$PREPO"/* "$PREPO"/*/* 2>/dev/null
    echo "== cairn stats"
    as_pg "${CAIRN_G[@]}" stats 2>&1 || true
    echo "== cairn wal list (tail)"
    as_pg "${CAIRN_G[@]}" wal list 2>&1 | tail -5 || true
    echo "== pgbackrest info"
    as_pg "${PGBR[@]}" info 2>&1 || true
} >"$LOGS/s1-repositories.txt"

# ---------------------------------------------------------------------------
# Scenario 2: base backup B (after pgbench), light change, base backup C
# ---------------------------------------------------------------------------

log "scenario 2: base backup B, UPDATE 1% of pgbench_accounts ($CHANGE), base backup C"
before=$(repo_bytes "$CREPO")
cairn_backup s2-backupB
C_B=$(($(repo_bytes "$CREPO") - before))
C_B_STORED=$ADDED_STORED
before=$(repo_bytes "$PREPO")
pgbr_backup s2-backupB
P_B=$(($(repo_bytes "$PREPO") - before))
P_B_STORED=$PGBR_BACKUP_SIZE
log "  backup B added: cairn $(mb "$C_B") MB (data_added_stored $(mb "$C_B_STORED")), pgBackRest $(mb "$P_B") MB (info $(mb "$P_B_STORED"))"

ROWS=$((SCALE * 100000))
if [[ $CHANGE == contiguous ]]; then
    WHERE="aid <= $((ROWS / 100))"
else
    WHERE="aid % 100 = 0"
fi
CHANGED=$(sql "WITH u AS (UPDATE pgbench_accounts SET abalance = abalance + 1, filler = md5(aid::text) WHERE $WHERE RETURNING 1) SELECT count(*) FROM u")
log "  updated $CHANGED of $ROWS rows ($WHERE)"
wait_archived
before=$(repo_bytes "$CREPO")
cairn_backup s2-backupC
C_C=$(($(repo_bytes "$CREPO") - before))
C_C_STORED=$ADDED_STORED
before=$(repo_bytes "$PREPO")
pgbr_backup s2-backupC
P_C=$(($(repo_bytes "$PREPO") - before))
P_C_STORED=$PGBR_BACKUP_SIZE
log "  backup C added: cairn $(mb "$C_C") MB (data_added_stored $(mb "$C_C_STORED")), pgBackRest $(mb "$P_C") MB (info $(mb "$P_C_STORED"))"

# ---------------------------------------------------------------------------
# Scenario 4: point-in-time restore to the middle of the pgbench run
# ---------------------------------------------------------------------------

# pgBackRest's side as one script, run as postgres: restore, start, wait
# for the end of recovery, count rows like cairn's --verify, stop.
cat >"$BIN/pgbackrest-pitr.sh" <<EOF
#!/usr/bin/env bash
# pgbackrest-pitr.sh TARGET_DIR: restore to $T_MID_PGBR, recover, count rows, stop.
set -euo pipefail
dir=\$1
${PGBR[*]} --pg1-path="\$dir" --log-level-console=info restore --type=time --target='$T_MID_PGBR' --target-action=promote
"$PGBIN/pg_ctl" -D "\$dir" -l "\$dir.server.log" -w -t 3600 \\
    -o "-c listen_addresses='' -k $RSOCK -p $RPORT -c archive_mode=off -c hot_standby=on" start
q() { "$PGBIN/psql" -XAtq -h $RSOCK -p $RPORT -U postgres -d "\$1" -c "\$2"; }
until [[ \$(q postgres 'SELECT pg_is_in_recovery()') == f ]]; do sleep 0.2; done
echo "recovered; last transaction replayed committed at \$(q postgres 'SELECT pg_last_xact_replay_timestamp()')"
if [[ $PGBR_COUNT_ROWS == 1 ]]; then
    for db in \$(q postgres "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"); do
        u=\$(q "\$db" "SELECT string_agg(format('SELECT %L, count(*) FROM %I.%I', n.nspname || '.' || c.relname, n.nspname, c.relname), ' UNION ALL ' ORDER BY n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND NOT c.relispartition")
        [[ -z \$u ]] || q "\$db" "\$u" | sed "s/^/rows \$db./"
    done
else
    echo "rows postgres.public.pgbench_history|\$(q postgres 'SELECT count(*) FROM pgbench_history')"
fi
"$PGBIN/pg_ctl" -D "\$dir" -m fast -w -t 600 stop
EOF
chmod 755 "$BIN/pgbackrest-pitr.sh"
chown postgres:postgres "$BIN/pgbackrest-pitr.sh"

log "scenario 4: point-in-time restore to $T_MID_CAIRN (middle of the pgbench run), $REPS reps"
HIST_ROWS=()
for ((rep = 1; rep <= REPS; rep++)); do
    if ((rep % 2)); then order=(cairn pgbackrest); else order=(pgbackrest cairn); fi
    for tool in "${order[@]}"; do
        target=$RESTORE/$tool-r$rep
        if [[ $tool == cairn ]]; then
            as_pg mkdir "$RESTORE/cache-r$rep"
            timed s4-restore cairn "$rep" -- runuser -u postgres -- "${PGENV[@]}" \
                "$C" -r "$CREPO" --password-file "$PASS" --cache-dir "$RESTORE/cache-r$rep" --json \
                pg restore --pg-bin "$PGBIN" --target "$target" --at "$T_MID_CAIRN" --verify
            h=$(grep '"message_type":"summary"' "$LOGS/s4-restore-cairn-r$rep.log" | tail -1 |
                jq -r '.verification.tables[] | select(.table == "public.pgbench_history") | .rows')
        else
            as_pg mkdir -m 700 "$target"
            timed s4-restore pgbackrest "$rep" -- runuser -u postgres -- "${PGENV[@]}" "$BIN/pgbackrest-pitr.sh" "$target"
            h=$(sed -n 's/^rows postgres\.public\.pgbench_history|//p' "$LOGS/s4-restore-pgbackrest-r$rep.log")
        fi
        HIST_ROWS+=("$tool:$h")
        rm -rf "$target" "$target.server.log" "$RESTORE/cache-r$rep"
    done
done
if [[ $(printf '%s\n' "${HIST_ROWS[@]}" | cut -d: -f2 | sort -u | wc -l) != 1 ]]; then
    log "  WARNING: restores disagree on pgbench_history rows: ${HIST_ROWS[*]}"
    RESTORE_CHECK="MISMATCH (${HIST_ROWS[*]})"
else
    RESTORE_CHECK="all restores: pgbench_history = ${HIST_ROWS[0]#*:} rows"
    log "  $RESTORE_CHECK"
fi

# ---------------------------------------------------------------------------
# Scenario 3: WAL push rate, fresh repository per repetition
# ---------------------------------------------------------------------------

mapfile -t segs < <(find "$WALSET" -maxdepth 1 -type f -name '[0-9A-F]*' -printf '%f\n' | grep -E '^[0-9A-F]{24}$' | sort)
# The last one is the segment switched at the end (mostly empty): left out.
((${#segs[@]} > 1)) && unset 'segs[-1]'
if ((${#segs[@]} < SEGMENTS + 1)); then
    log "  only ${#segs[@]} segments were written during the pgbench run: timing $((${#segs[@]} - 1)) (raise PGBENCH_SECONDS)"
    SEGMENTS=$((${#segs[@]} - 1))
    ((SEGMENTS > 0)) || die "no WAL segment to time"
fi
WARM=$WALSET/${segs[0]}
TIMED_SEGS=("${segs[@]:1:SEGMENTS}")
printf '%s\n' "${TIMED_SEGS[@]/#/$WALSET/}" >"$WORKDIR/wal-set.list"
find "$WALSET" -maxdepth 1 -type f | grep -vxF -f <(printf '%s\n' "$WARM" "${TIMED_SEGS[@]/#/$WALSET/}") | xargs -r rm -f || true
SEG_BYTES=$(cat "$WORKDIR/wal-set.list" | xargs stat -c %s | awk '{s+=$1} END {print s}')

cat >"$BIN/push-cairn.sh" <<EOF
#!/usr/bin/env bash
# push-cairn.sh REPO CACHE: one cairn process per segment, as archive_command.
set -euo pipefail
while read -r f; do
    "$C" -r "\$1" --password-file "$PASS" --cache-dir "\$2" wal push --pgdata "$DATA" "\$f"
done <"$WORKDIR/wal-set.list"
EOF
cat >"$BIN/push-pgbackrest.sh" <<EOF
#!/usr/bin/env bash
# push-pgbackrest.sh REPO: one pgbackrest process per segment, as archive_command.
set -euo pipefail
while read -r f; do
    ${PGBR[*]} --repo1-path="\$1" archive-push "\$f"
done <"$WORKDIR/wal-set.list"
EOF
chmod 755 "$BIN/push-cairn.sh" "$BIN/push-pgbackrest.sh"
chown postgres:postgres "$BIN"/*.sh

log "scenario 3: push $SEGMENTS segments ($(mb "$SEG_BYTES") MB), one process each, fresh repository per rep, $REPS reps"
# Before the timed loop (after the cache drop): read the segments back in,
# as PostgreSQL archives a segment it has just written.
PREPARE="cat \"$WARM\" \$(cat \"$WORKDIR/wal-set.list\") >/dev/null"
for ((rep = 1; rep <= REPS; rep++)); do
    if ((rep % 2)); then order=(cairn pgbackrest); else order=(pgbackrest cairn); fi
    for tool in "${order[@]}"; do
        r=$PUSH/$tool-r$rep
        if [[ $tool == cairn ]]; then
            as_pg mkdir "$r.cache"
            as_pg "$C" -r "$r" --password-file "$PASS" init >"$LOGS/s3-init-cairn-r$rep.log" 2>&1
            as_pg "$C" -r "$r" --password-file "$PASS" --cache-dir "$r.cache" wal push --pgdata "$DATA" "$WARM" \
                >>"$LOGS/s3-init-cairn-r$rep.log" 2>&1
            timed s3-push cairn "$rep" -- runuser -u postgres -- "${PGENV[@]}" "$BIN/push-cairn.sh" "$r" "$r.cache"
        else
            as_pg "${PGBR[@]}" --repo1-path="$r" stanza-create >"$LOGS/s3-init-pgbackrest-r$rep.log" 2>&1
            as_pg "${PGBR[@]}" --repo1-path="$r" archive-push "$WARM" >>"$LOGS/s3-init-pgbackrest-r$rep.log" 2>&1
            timed s3-push pgbackrest "$rep" -- runuser -u postgres -- "${PGENV[@]}" "$BIN/push-pgbackrest.sh" "$r"
        fi
        echo "$tool r$rep repository: $(repo_bytes "$r") bytes" >>"$LOGS/s3-repositories.txt"
        rm -rf "$r" "$r.cache"
    done
done
PREPARE=

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
walls() { awk -F'\t' -v s="$1" -v t="$2" '$1 == s && $2 == t && $8 == "ok" {print $4}' "$RESULTS"; }
cpus() { awk -F'\t' -v s="$1" -v t="$2" '$1 == s && $2 == t && $8 == "ok" {print $5 + $6}' "$RESULTS"; }
rsss() { awk -F'\t' -v s="$1" -v t="$2" '$1 == s && $2 == t && $8 == "ok" {print $7 / 1024}' "$RESULTS"; }
med() { # SCENARIO TOOL wall|cpu|rss
    local -a v
    case $3 in
        wall) mapfile -t v < <(walls "$1" "$2") ;;
        cpu) mapfile -t v < <(cpus "$1" "$2") ;;
        rss) mapfile -t v < <(rsss "$1" "$2") ;;
    esac
    median "${v[@]}"
}
ratio() { awk "BEGIN{ if ($2 == 0) print \"n/a\"; else printf \"%.2f\", $1/$2 }"; }
met() { awk "BEGIN{ print ($1) ? \"yes\" : \"**NO**\" }"; }
f1() { awk "BEGIN{printf \"%.1f\", $1}"; }
f2() { awk "BEGIN{printf \"%.2f\", $1}"; }

C_PUSH=$(med s3-push cairn wall)
P_PUSH=$(med s3-push pgbackrest wall)
C_MBS=$(awk "BEGIN{print $SEG_BYTES/1e6/$C_PUSH}")
P_MBS=$(awk "BEGIN{print $SEG_BYTES/1e6/$P_PUSH}")
C_SPS=$(awk "BEGIN{print $SEGMENTS/$C_PUSH}")
P_SPS=$(awk "BEGIN{print $SEGMENTS/$P_PUSH}")
C_REST=$(med s4-restore cairn wall)
P_REST=$(med s4-restore pgbackrest wall)

R1=$(ratio "$C_S1" "$P_S1")
R2=$(ratio "$C_C" "$P_C")
R3=$(ratio "$C_MBS" "$P_MBS")
R4=$(ratio "$C_REST" "$P_REST")
CMDLINE="SCALE=$SCALE PGBENCH_SECONDS=$PGBENCH_SECONDS CLIENTS=$CLIENTS SEGMENTS=$SEGMENTS_ASKED REPS=$REPS CHANGE=$CHANGE PGBR_CIPHER=$PGBR_CIPHER PGBR_COUNT_ROWS=$PGBR_COUNT_ROWS DROP_CACHES=$DROP_CACHES WORKDIR=$WORKDIR CAIRN=$CAIRN bash benches/pg_compare.sh"

{
    echo "# cairn vs pgBackRest: PostgreSQL archiving, base backups, PITR"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; load before $LOAD_BEFORE, after $LOAD_AFTER; page cache dropped before timed steps: $([[ $DROP_CACHES == 1 ]] && echo yes || echo no)"
    echo "- $CAIRN_VERSION; $PGBR_VERSION (compress-type $PGBR_COMPRESS, level $PGBR_LEVEL, cipher $PGBR_CIPHER, archive-async=n, process-max 1); $PG_VERSION"
    echo "- data: pgbench scale $SCALE ($(mb "$DB_BYTES") MB database); WAL: pgbench -c $CLIENTS -T $PGBENCH_SECONDS ($TPS tps), $WAL_SEGS segments ($(mb $((WAL_SEGS * 16777216))) MB) archived to both by one chained archive_command"
    echo "- scenario 3: $SEGMENTS segments ($(mb "$SEG_BYTES") MB) per run; scenario 4: target $T_MID_PGBR, $RESTORE_CHECK"
    echo "- medians of $REPS interleaved runs for scenarios 3 and 4; sizes are bytes from \`du -sb\`"
    echo
    echo "| metric | cairn | pgBackRest | ratio cairn/pgBackRest | target | met? |"
    echo "|---|---:|---:|---:|---|---|"
    echo "| 1. repository after base backup + WAL (MB) | $(mb "$C_S1") | $(mb "$P_S1") | $R1 | cairn <= pgBackRest | $(met "$C_S1 <= $P_S1") |"
    echo "| 2. second base backup after 1% $CHANGE update: bytes added (MB) | $(mb "$C_C") | $(mb "$P_C") | $R2 | <= 0.20 | $(met "$C_C * 5 <= $P_C") |"
    echo "| 3. WAL push, one process per segment (MB/s) | $(f1 "$C_MBS") | $(f1 "$P_MBS") | $R3 | cairn >= pgBackRest | $(met "$C_MBS >= $P_MBS") |"
    echo "| 3. WAL push (segments/s) | $(f2 "$C_SPS") | $(f2 "$P_SPS") | $R3 | | |"
    echo "| 4. PITR restore + recovery to target (s) | $(f1 "$C_REST") | $(f1 "$P_REST") | $R4 | cairn <= pgBackRest | $(met "$C_REST <= $P_REST") |"
    echo
    echo "Details (wall / CPU s; CPU excludes detached PostgreSQL servers; medians for s3/s4):"
    echo
    echo "| step | cairn | pgBackRest |"
    echo "|---|---:|---:|"
    for s in s1-backupA s2-backupB s2-backupC s3-push s4-restore; do
        echo "| $s | $(f1 "$(med $s cairn wall)") / $(f1 "$(med $s cairn cpu)") (RSS $(f1 "$(med $s cairn rss)") MB) | $(f1 "$(med $s pgbackrest wall)") / $(f1 "$(med $s pgbackrest cpu)") (RSS $(f1 "$(med $s pgbackrest rss)") MB) |"
    done
    echo "| base backup A stored (MB) | $(mb "$C_A_STORED") | $(mb "$P_A_STORED") |"
    echo "| repository after backup A (MB) | $(mb "$C_BASE") | $(mb "$P_BASE") |"
    echo "| WAL part of scenario 1 (MB) | $(mb $((C_S1 - C_BASE))) | $(mb $((P_S1 - P_BASE))) |"
    echo "| backup B after the pgbench run, added (MB) | $(mb "$C_B") | $(mb "$P_B") |"
    echo "| backup C stored (data_added_stored / info delta, MB) | $(mb "$C_C_STORED") | $(mb "$P_C_STORED") |"
    echo
    echo "Reproduce (as root, in $ROOT):"
    echo
    echo "    $CMDLINE"
} >"$REPORT"
echo
cat "$REPORT"

if [[ $KEEP != 1 ]]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$DATA" "$CREPO" "$PREPO" "$WALSET" "$CTMP" "$PUSH" "$RESTORE" "$CCACHE"
fi
