#!/bin/sh
# Usage: setup.sh <dir> <base_port>
# Writes a single-node, 1-replica Swift + s3api config into <dir>.
# Ports: proxy=base, account=base+1, container=base+2, object=base+3, memcached=base+4
# (See /work/shared/docs/test-infrastructure.md section 3 for the measured facts behind this.)
set -eu
DIR=$(realpath -m "$1"); BASE=$2
# Swift drops privileges to `user =`; it must be whoever runs the servers (root in CI is fine for Swift).
USER_NAME=$(id -un)
mkdir -p "$DIR/devices/d1"
cat > "$DIR/swift.conf" <<CONF
[swift-hash]
swift_hash_path_suffix = pgark-test-suffix
swift_hash_path_prefix = pgark-test-prefix

[storage-policy:0]
name = Policy-0
default = yes
CONF
for spec in account:1 container:2 object:3; do
  name=${spec%%:*}; off=${spec##*:}
  cat > "$DIR/$name-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $((BASE + off))
workers = 0
user = $USER_NAME
swift_dir = $DIR
devices = $DIR/devices
mount_check = false
log_level = WARNING

[pipeline:main]
pipeline = $name-server

[app:$name-server]
use = egg:swift#$name
CONF
done
cat > "$DIR/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $BASE
workers = 0
user = $USER_NAME
swift_dir = $DIR
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$((BASE + 4))
CONF
for f in catch_errors gatekeeper proxy-logging:proxy_logging listing_formats copy slo dlo; do
  printf '\n[filter:%s]\nuse = egg:swift#%s\n' "${f%%:*}" "${f##*:}" >> "$DIR/proxy-server.conf"
done
# 1-replica rings: part_power=8, replicas=1, min_part_hours=1, one device per server.
/usr/bin/python3 - "$DIR" "$BASE" <<'PY'
import sys, os
from swift.common.ring import RingBuilder
d, base = sys.argv[1], int(sys.argv[2])
for name, off in (("account", 1), ("container", 2), ("object", 3)):
    b = RingBuilder(8, 1, 1)
    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1",
               "port": base + off, "device": "d1", "weight": 100})
    b.rebalance()
    b.get_ring().save(os.path.join(d, name + ".ring.gz"))
PY
echo "swift config written to $DIR (proxy port $BASE)"
