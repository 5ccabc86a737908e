#!/usr/bin/env bash
# Dedup benchmark for hourly snapshots of a 300+ MB SQLite database: cairn
# (one repository per --db-chunking variant) against restic and borg (each
# skipped with a message if not installed). Prints, per hour, the pages that
# changed and their zstd-3 size, and what each tool's repository grew by; then
# the medians over twelve hourly snapshots and their ratios.
#
#   benches/sqlite_dedup.sh                       # default: fixed:1 vs restic, borg
#   benches/sqlite_dedup.sh --variants fixed:1,fixed:2,fixed:4,cdc:1:2:8,cdc:1:4:16
#   benches/sqlite_dedup.sh --scale 0.1 --hours 3 # quick run (35 MB database)
#
# Needs about 5 GB in $TMPDIR (or --dir DIR) with the defaults, ~0.6 GB more per
# extra cairn variant, and 10-20 minutes for the full run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin cairn --example sqlite_dedup
exec target/release/examples/sqlite_dedup --cairn target/release/cairn "$@"
