#!/bin/sh
# Generates tests/vectors/repo-v1, the committed repository-format-v1 test
# vector. It was run ONCE; the result is committed and pinned by
# tests/format_vectors.rs. Do NOT run it again unless the repository format
# version changes (then write a new script and a new repo-vN directory and
# keep this one): re-running produces different bytes (random keys, salts,
# nonces, inode numbers, ctimes) and would silently re-baseline the vector.
#
# Usage (from the top of the source tree): cargo build && sh tests/vectors/make-repo-v1.sh [path/to/cairn]
set -eu

CAIRN=${1:-target/debug/cairn}
REPO=tests/vectors/repo-v1
SRC=/tmp/cairn-vector-v1

if [ -e "$REPO" ]; then
    echo "$REPO exists; refusing to overwrite the committed test vector" >&2
    exit 1
fi

rm -rf "$SRC"
mkdir -p "$SRC/sub" "$SRC/emptydir"

printf 'hello, cairn\n' > "$SRC/hello.txt"
: > "$SRC/empty.txt"
# 5000 bytes of SplitMix64 output (seed 0x0123456789abcdef, each u64 little-endian),
# the same generator as `splitmix64_bytes` in tests/format_vectors.rs.
python3 - "$SRC/random.bin" <<'PY'
import struct, sys
M = (1 << 64) - 1
x = 0x0123456789abcdef
out = bytearray()
while len(out) < 5000:
    x = (x + 0x9e3779b97f4a7c15) & M
    z = x
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    z ^= z >> 31
    out += struct.pack('<Q', z)
open(sys.argv[1], 'wb').write(bytes(out[:5000]))
PY
i=0
while [ $i -lt 200 ]; do printf 'cairn format v1 test vector\n'; i=$((i + 1)); done > "$SRC/repeat.txt"
printf 'non-UTF-8 name\n' > "$(printf "$SRC/name-\377.txt")"
cp "$SRC/hello.txt" "$SRC/sub/copy-of-hello.txt"
ln "$SRC/random.bin" "$SRC/sub/hardlink.bin"
ln -s hello.txt "$SRC/link"

chmod 0644 "$SRC/hello.txt" "$SRC/random.bin"
chmod 0600 "$SRC/empty.txt"
chmod 0755 "$SRC/repeat.txt" "$SRC"
chmod 0640 "$(printf "$SRC/name-\377.txt")"
chmod 0444 "$SRC/sub/copy-of-hello.txt"
chmod 0700 "$SRC/emptydir"
chmod 0750 "$SRC/sub"

export TZ=UTC
touch -d '2025-06-01 12:00:00.123456789' "$SRC/hello.txt"
touch -d '2025-06-01 12:00:01' "$SRC/empty.txt"
touch -d '2025-06-01 12:00:02.5' "$SRC/random.bin"
touch -d '2025-06-01 12:00:03' "$SRC/repeat.txt"
touch -d '2025-06-01 12:00:04' "$(printf "$SRC/name-\377.txt")"
touch -d '2025-06-01 12:00:05' "$SRC/sub/copy-of-hello.txt"
touch -h -d '2025-06-01 12:00:06' "$SRC/link"
touch -d '2025-06-01 12:00:07' "$SRC/emptydir"
touch -d '2025-06-01 12:00:08' "$SRC/sub"
touch -d '2025-06-01 12:00:09' "$SRC"

export CAIRN_PASSWORD=cairn-test-vector
export USER=vector-user
"$CAIRN" -r "$REPO" init --kdf-memory 64 --kdf-iterations 1 \
    --chunk-min 64 --chunk-avg 256 --chunk-max 1024
"$CAIRN" -r "$REPO" backup "$SRC" --time 2026-01-01T00:00:00Z --host vector --tag format-v1
