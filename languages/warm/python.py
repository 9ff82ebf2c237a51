"""op-agent's warm runner for Python: started before the snapshot is taken, it imports the
standard modules programs commonly use and then waits on fd 3 for one program to run.

Protocol with op-agent (fd 3 is a socketpair end): the runner writes "ready\n" once warm; the
agent writes one JSON line {"file", "argv", "cwd", "env"}; the runner becomes that program:
same argv, cwd, environment, exit status and traceback as `python3 file args...`.
"""
import os
import sys

# What a cold interpreter would have to import for most snippets: paid once, before the snapshot.
import collections, datetime, decimal, fractions, functools, heapq, itertools, json, math  # noqa
import random, re, statistics, string, textwrap, time, typing, dataclasses, bisect  # noqa
import io, base64, hashlib, struct, copy, enum, operator, pathlib, traceback, runpy  # noqa


def main():
    ctl = os.fdopen(3, "r+b", buffering=0)
    ctl.write(b"ready\n")
    line = b""
    while not line.endswith(b"\n"):
        chunk = ctl.read(65536)
        if not chunk:
            os._exit(70)
        line += chunk
    ctl.close()
    req = json.loads(line)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    # State every clone shares from the snapshot is made its own before user code runs.
    random.seed()
    sys.argv = [os.path.basename(req["file"])] + req["argv"]
    sys.path.insert(0, req["cwd"])
    try:
        runpy.run_path(req["file"], run_name="__main__")
    except SystemExit:
        raise
    except BaseException as e:  # print it as python3 would, without this runner's frames
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != req["file"]:
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        sys.exit(1)  # a normal shutdown: buffered output is flushed, atexit handlers run


main()
