#!/bin/sh
# Usage: stop.sh <dir> [--keep]
# Stops the processes recorded by start.sh (by PID: Swift calls setsid(), so they are not in our
# process group) and removes <dir> (objects are plain files and grow quickly) unless --keep.
set -u
DIR=$(realpath -m "$1")
if [ -f "$DIR/pids" ]; then
  PIDS=$(cat "$DIR/pids")
  # shellcheck disable=SC2086
  kill $PIDS 2>/dev/null || true
  i=0
  for p in $PIDS; do
    while kill -0 "$p" 2>/dev/null; do
      i=$((i + 1)); [ $i -gt 50 ] && { kill -9 "$p" 2>/dev/null || true; break; }
      sleep 0.1
    done
  done
  rm -f "$DIR/pids"
fi
if [ "${2:-}" != "--keep" ]; then
  rm -rf "$DIR"
fi
