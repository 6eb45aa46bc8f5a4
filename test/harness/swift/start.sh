#!/bin/sh
# Usage: start.sh <dir> <base_port>   (run setup.sh first)
# Starts memcached + 4 Swift servers in the background, writes <dir>/pids,
# waits until the proxy answers GET /info with 200.
# memcached is required: tempauth keeps its tokens there.
set -eu
DIR=$(realpath -m "$1"); BASE=$2; HERE=$(dirname "$(realpath "$0")")
: > "$DIR/pids"
memcached -l 127.0.0.1 -p $((BASE + 4)) -U 0 -m 64 -u "$(id -un)" > "$DIR/memcached.log" 2>&1 &
echo $! >> "$DIR/pids"
for s in account container object proxy; do
  /usr/bin/python3 "$HERE/run-server.py" "$DIR" $s > "$DIR/$s.log" 2>&1 &
  echo $! >> "$DIR/pids"
done
i=0
until [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$BASE/info)" = 200 ]; do
  i=$((i + 1))
  if [ $i -gt 300 ]; then
    echo "swift proxy did not come up on port $BASE; logs in $DIR/*.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "swift s3api up on http://127.0.0.1:$BASE pids: $(tr '\n' ' ' < "$DIR/pids")"
