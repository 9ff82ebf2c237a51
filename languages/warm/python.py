"""op-agent's warm runner for Python: started before the snapshot is taken, it imports the
standard modules programs commonly use and then waits on fd 3 for one program to run.

Protocol with op-agent (fd 3 is a socketpair end): the runner writes "ready\n" once warm; the
agent writes one JSON line {"file", "argv", "cwd", "env"}; the runner becomes that program:
same argv, cwd, environment, exit status and traceback as `python3 file args...`. A line with
"prime": true is run with its output discarded and its effects undone, then "ready\n" again.
"""
import os
import sys

# What a cold interpreter would have to import for most snippets: paid once, before the snapshot.
import collections, datetime, decimal, fractions, functools, heapq, itertools, json, math  # noqa
import random, re, statistics, string, textwrap, time, typing, dataclasses, bisect  # noqa
import io, base64, hashlib, struct, copy, enum, operator, pathlib, traceback, runpy  # noqa
import atexit, threading, platform, subprocess, shutil, tempfile, glob, csv, contextlib  # noqa
import urllib.parse, array, queue, uuid, unicodedata, locale, signal, errno, stat  # noqa


def read_line(ctl):
    line = b""
    while not line.endswith(b"\n"):
        chunk = ctl.read(65536)
        if not chunk:
            os._exit(70)
        line += chunk
    return json.loads(line)


def exit_status(e):
    """The status python3 exits with for SystemExit e (printing a non-integer code)."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    print(e.code, file=sys.stderr)
    return 1


def run(req):
    """Run the program; return its exit status as python3 would report it."""
    sys.argv = [os.path.basename(req["file"])] + req["argv"]
    sys.path.insert(0, req["cwd"])
    try:
        runpy.run_path(req["file"], run_name="__main__")
        return 0
    except SystemExit as e:
        return exit_status(e)
    except BaseException as e:  # print it as python3 would, without this runner's frames
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != req["file"]:
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        return 1


def shutdown(status):
    """What the interpreter does at exit that a program can observe (wait for its threads, run
    its atexit handlers, flush its output), without tearing down every module: the VM is
    thrown away next."""
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
    except SystemExit as e:
        status = exit_status(e)
    except BaseException:
        traceback.print_exc()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            status = status or 120
    os._exit(status)


def prime(req):
    """Run a program of op-agent's through the same path as a user's, output discarded, all
    process state put back: this warms the emulator's translation cache, not Python's state."""
    saved = (os.getcwd(), dict(os.environ), list(sys.argv), list(sys.path))
    out, err = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        os.chdir(req["cwd"])
        os.environ.update(req["env"])
        random.seed()
        run(req)
        # the way out too: a process that flushes, exits and is reaped
        pid = os.fork()
        if pid == 0:
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (out, err, null):
            os.close(fd)
        cwd, env, sys.argv[:], sys.path[:] = saved
        atexit._clear()  # the runner's own imports register none
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)


def main():
    ctl = os.fdopen(3, "r+b", buffering=0)
    ctl.write(b"ready\n")
    req = read_line(ctl)
    while req.get("prime"):
        prime(req)
        ctl.write(b"ready\n")
        req = read_line(ctl)
    ctl.close()
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    # State every clone shares from the snapshot is made its own before user code runs.
    random.seed()
    shutdown(run(req))


main()
