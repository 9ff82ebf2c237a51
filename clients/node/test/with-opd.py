"""Start the real opd on a private socket (tests/integration/opdtest.py) with a python pool, run
the command given with OPD_SOCKET pointing at it, stop opd, exit with the command's status."""
import os
import subprocess
import sys

SOURCE = os.environ.get("OP_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))

from opdtest import Opd  # noqa: E402
from test_warm import create_snapshot, wait_serving  # noqa: E402

# A python pool: a session forks or pauses only a VM restored from a snapshot.
opd = Opd({"pool.sizes": "python=1", "pool.size": "0"})
try:
    wait_serving(opd, "python", create_snapshot(opd, "python"))
    rc = subprocess.call(sys.argv[1:], env={**os.environ, "OPD_SOCKET": opd.socket})
finally:
    opd.stop()
if rc != 0:
    print(opd.read_log()[-4000:], file=sys.stderr)
sys.exit(rc)
