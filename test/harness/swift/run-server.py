#!/usr/bin/python3
# Usage: /usr/bin/python3 run-server.py <dir> <account|container|object|proxy>
# Runs one Swift WSGI server in the foreground (workers = 0), logging to stderr.
# /usr/bin/python3 on purpose: a pyenv python3 earlier on PATH does not see Debian's python3-swift.
import sys
from swift.common import utils, wsgi

swift_dir, name = sys.argv[1], sys.argv[2]
utils.set_swift_dir(swift_dir)              # read <dir>/swift.conf, not /etc/swift
wsgi.capture_stdio = lambda *a, **kw: None  # keep stderr instead of syslog
sys.exit(wsgi.run_wsgi(f"{swift_dir}/{name}-server.conf", f"{name}-server",
                       verbose=True))
