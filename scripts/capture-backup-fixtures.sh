#!/usr/bin/env bash
# Captures the real-server byte fixtures under test/fixtures/backup/ (see its README.md).
#
# Starts small throwaway clusters (embedded PG 14, 16, 17, 18 from node_modules/pgNN and Debian's PG 15, which is
# the only server here built with lz4 and zstd), each with one tiny tablespace, then takes backups with Debian's
# pg_basebackup 15 (works against 14 and 15 only) or with a raw `BASE_BACKUP (TARGET 'server', ...)` over psql
# (16-18), and copies: backup_manifest files, tablespace archives (complete, a few KB), a trimmed base.tar (a few
# real members copied block for block), and the first two WAL pages of segment 1 of each major.
#
# Must run as root (it runs the servers as the `postgres` OS user) from the repository root:
#   bash scripts/capture-backup-fixtures.sh
# Re-running overwrites the fixtures (system identifiers, timestamps and checksums change; tests read them from
# meta.json files, never hard-code them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/test/fixtures/backup
W=${PGARK_CAPTURE_DIR:-/tmp/pgark-capture}
DEB=/usr/lib/postgresql/15/bin
PSQL=$DEB/psql
AS_PG="runuser -u postgres --"

rm -rf "$W"; mkdir -p "$W/sock"; chown -R postgres: "$W"
mkdir -p "$OUT/wal" "$OUT/pg14" "$OUT/pg15" "$OUT/pg16" "$OUT/pg17" "$OUT/pg18"

started=()
cleanup() {
  for d in "${started[@]}"; do $AS_PG "$(cat "$d.bin")/pg_ctl" -D "$d" -m immediate -w -s stop || true; done
}
trap cleanup EXIT

# start_cluster MAJOR BINDIR PORT -> data dir $W/dataMAJOR
start_cluster() {
  local major=$1 bin=$2 port=$3 d=$W/data$1
  $AS_PG "$bin/initdb" -D "$d" -U postgres -E UTF8 --locale=C --no-sync >/dev/null
  echo "$bin" > "$d.bin"
  $AS_PG "$bin/pg_ctl" -D "$d" -l "$W/log$major" -w -s -o "-c port=$port -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories=$W/sock -c wal_level=replica -c max_wal_senders=10 -c fsync=off" start
  started+=("$d")
  mkdir -p "$W/ts$major"; chown postgres: "$W/ts$major"
  $PSQL -X -q "host=127.0.0.1 port=$port user=postgres" -v ON_ERROR_STOP=1 <<SQL
CREATE TABLESPACE ts LOCATION '$W/ts$major';
CREATE TABLE t (i int, s text) TABLESPACE ts;
INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 200) g;
CHECKPOINT;
SQL
}

sysid() { $PSQL -X -At "host=127.0.0.1 port=$1 user=postgres replication=true" -c IDENTIFY_SYSTEM | cut -d'|' -f1; }
tsoid() { $PSQL -X -At "host=127.0.0.1 port=$1 user=postgres" -c "SELECT oid FROM pg_tablespace WHERE spcname='ts'"; }
version() { $PSQL -X -At "host=127.0.0.1 port=$1 user=postgres" -c "SHOW server_version_num"; }

# wal_head MAJOR PORT: first two 8 KiB pages of segment 1 (written by initdb, so it starts with a long header).
wal_head() {
  local major=$1 port=$2 d=$W/data$1
  head -c 16384 "$d/pg_wal/000000010000000000000001" > "$OUT/wal/pg$major-000000010000000000000001.head"
  printf '{ "major": %s, "serverVersionNum": %s, "systemIdentifier": "%s", "segmentSize": 16777216, "name": "000000010000000000000001" }\n' \
    "$major" "$(version "$port")" "$(sysid "$port")" > "$OUT/wal/pg$major.json"
}

# meta MAJOR PORT -> backup meta.json
meta() {
  printf '{ "major": %s, "serverVersionNum": %s, "systemIdentifier": "%s", "tablespaceOid": %s }\n' \
    "$1" "$(version "$2")" "$(sysid "$2")" "$(tsoid "$2")" > "$OUT/pg$1/meta.json"
}

# server_backup PORT DIR OPTIONS: BASE_BACKUP written by the server itself into DIR (15+; psql exits 1 on success).
server_backup() {
  $PSQL -X "host=127.0.0.1 port=$1 user=postgres replication=true" \
    -c "BASE_BACKUP (LABEL 'pgark fixture', CHECKPOINT 'fast', MANIFEST 'yes', TARGET 'server', TARGET_DETAIL '$2' $3)" \
    >/dev/null 2>&1 || true
  test -s "$2/backup_manifest" || { echo "no manifest in $2" >&2; exit 1; }
}

trim_tar() { (cd "$ROOT" && npx tsx scripts/trim-tar.ts "$@"); }
KEEP='backup_label,tablespace_map,PG_VERSION,global/pg_control,global/pg_filenode.map,pg_wal,pg_wal/archive_status,pg_xact/0000,pg_tblspc,pg_tblspc/*'

# --- 14: pg_basebackup 15 (legacy protocol), CRC32C manifest v1, plain tars -------------------------------------
start_cluster 14 "$ROOT/node_modules/pg14/native/bin" 56414
wal_head 14 56414
$DEB/pg_basebackup -d "host=127.0.0.1 port=56414 user=postgres" -D "$W/bb14" -Ft -X none -c fast -l 'pgark fixture' \
  --manifest-checksums=CRC32C
meta 14 56414
oid=$(tsoid 56414)
cp "$W/bb14/backup_manifest" "$OUT/pg14/backup_manifest"
# pg_basebackup appends the 1024-byte terminator PG14 does not send; strip it to get the bytes as the server sent them.
head -c -1024 "$W/bb14/$oid.tar" > "$OUT/pg14/$oid.tar.unterminated"
trim_tar "$W/bb14/base.tar" "$OUT/pg14/base-trimmed.tar" "$KEEP"
# A second manifest of the same cluster with SHA256 and Encoded-Path on every entry.
$DEB/pg_basebackup -d "host=127.0.0.1 port=56414 user=postgres" -D "$W/bb14b" -Ft -X none -c fast \
  --manifest-checksums=SHA256 --manifest-force-encode
cp "$W/bb14b/backup_manifest" "$OUT/pg14/backup_manifest.sha256-encoded"

# --- 15 (Debian, with lz4 and zstd): server-side lz4 and zstd, client-side gzip, SHA512 manifest ---------------
start_cluster 15 "$DEB" 56415
wal_head 15 56415
meta 15 56415
oid=$(tsoid 56415)
$DEB/pg_basebackup -d "host=127.0.0.1 port=56415 user=postgres" -D "$W/bb15lz4" -Ft -X none -c fast \
  --compress=server-lz4 --manifest-checksums=CRC32C
$DEB/pg_basebackup -d "host=127.0.0.1 port=56415 user=postgres" -D "$W/bb15zst" -Ft -X none -c fast \
  --compress=server-zstd --manifest-checksums=SHA512
$DEB/pg_basebackup -d "host=127.0.0.1 port=56415 user=postgres" -D "$W/bb15gz" -Ft -X none -c fast \
  --compress=client-gzip:9 --manifest-checksums=SHA224
cp "$W/bb15lz4/backup_manifest" "$OUT/pg15/backup_manifest.lz4-crc32c"
cp "$W/bb15lz4/$oid.tar.lz4" "$OUT/pg15/$oid.tar.lz4"
cp "$W/bb15zst/backup_manifest" "$OUT/pg15/backup_manifest.zst-sha512"
cp "$W/bb15zst/$oid.tar.zst" "$OUT/pg15/$oid.tar.zst"
cp "$W/bb15gz/backup_manifest" "$OUT/pg15/backup_manifest.gz-sha224"
cp "$W/bb15gz/$oid.tar.gz" "$OUT/pg15/$oid.tar.gz"
$AS_PG "$DEB/pg_ctl" -D "$W/data15" -m fast -w -s stop

# --- 16: server target, plain, SHA384 manifest v1 ------------------------------------------------------------------
start_cluster 16 "$ROOT/node_modules/pg16/native/bin" 56416
wal_head 16 56416
meta 16 56416
oid=$(tsoid 56416)
server_backup 56416 "$W/bb16" ", MANIFEST_CHECKSUMS 'SHA384'"
cp "$W/bb16/backup_manifest" "$OUT/pg16/backup_manifest"
cp "$W/bb16/$oid.tar" "$OUT/pg16/$oid.tar"

# --- 17: server target, server-side gzip, CRC32C manifest v2 ---------------------------------------------------------
start_cluster 17 "$ROOT/node_modules/pg17/native/bin" 56417
wal_head 17 56417
meta 17 56417
oid=$(tsoid 56417)
server_backup 56417 "$W/bb17" ", COMPRESSION 'gzip'"
cp "$W/bb17/backup_manifest" "$OUT/pg17/backup_manifest"
cp "$W/bb17/$oid.tar.gz" "$OUT/pg17/$oid.tar.gz"
gzip -dc "$W/bb17/base.tar.gz" > "$W/bb17-base.tar"
trim_tar "$W/bb17-base.tar" "$OUT/pg17/base-trimmed.tar" "$KEEP,pg_wal/summaries"

# --- 18: server target, plain, CRC32C manifest v2 (18 has data checksums on by default) -----------------------------
start_cluster 18 "$ROOT/node_modules/pg18/native/bin" 56418
wal_head 18 56418
meta 18 56418
oid=$(tsoid 56418)
server_backup 56418 "$W/bb18" ""
cp "$W/bb18/backup_manifest" "$OUT/pg18/backup_manifest"
cp "$W/bb18/$oid.tar" "$OUT/pg18/$oid.tar"

du -sh "$OUT"; find "$OUT" -type f | sort | xargs ls -l
