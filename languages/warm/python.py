"""op-agent's warm runner for Python: started before the snapshot is taken, it imports the
standard modules programs commonly use and then waits on fd 3 for one program to run.

Protocol with op-agent (fd 3 is a socketpair end): the runner writes "ready\n" once warm; the
agent writes one JSON line {"file", "argv", "cwd", "env"}; the runner becomes that program:
same argv, cwd, environment, exit status and traceback as `python3 file args...`. A line with
"prime": true is run with its output discarded and its effects undone, then "ready\n" again.
The program does not see fd 3 (it is free, as in `python3 file`): the runner keeps the line on
another fd, closed on exec. Once the program is over, the runner writes "done N\n" on it (N:
the exit status), closes fds 0-2 and waits to be killed, so that the answer does not wait for
the exit of a process this size; with threads still running it exits instead, as before.

A line with "repl": true makes the runner a session's interpreter instead: each line (this one
and every later one) is one call, sent with three fds (SCM_RIGHTS: the call's stdin, stdout,
stderr). The file's code runs in the same globals as the calls before it, like a notebook cell;
the runner then writes "done N\n" (N: 0, or 1 after an uncaught exception, whose traceback went
to stderr) and waits for the next call. SystemExit (exit(), sys.exit()) ends the interpreter
with its status, as it would end python3: the session's interpreter is gone then.
"""
import os
import sys

# What a cold interpreter would have to import for most snippets: paid once, before the snapshot.
import collections, datetime, decimal, fractions, functools, heapq, itertools, json, math  # noqa
import random, re, statistics, string, textwrap, time, typing, dataclasses, bisect  # noqa
import io, base64, hashlib, struct, copy, enum, operator, pathlib, traceback, runpy  # noqa
import atexit, threading, platform, subprocess, shutil, tempfile, glob, csv, contextlib  # noqa
import urllib.parse, array, queue, uuid, unicodedata, locale, signal, errno, stat  # noqa
import socket, builtins, types, importlib.util, marshal  # noqa


def read_line(ctl):
    """One JSON line from fd 3, and the fds that came with it."""
    line, fds = b"", []
    while not line.endswith(b"\n"):
        chunk, got, _, _ = socket.recv_fds(ctl, 65536, 3)
        fds += got
        if not chunk:
            os._exit(70)
        line += chunk
    return json.loads(line), fds


def exit_status(e):
    """The status python3 exits with for SystemExit e (printing a non-integer code)."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    print(e.code, file=sys.stderr)
    return 1


def main_code(path):
    """The file's code object, as python3 would run it: source, or compiled code (a file that
    starts with the magic number of this Python's .pyc files)."""
    with io.open_code(path) as f:
        data = f.read()
    if data[:4] == importlib.util.MAGIC_NUMBER:
        return marshal.loads(data[16:])
    return compile(data, path, "exec")


def run(req):
    """Run the program as the module __main__ (a new one, in sys.modules from then on: the
    program's atexit handlers and threads see it too, as in python3; sys.argv[0] as the cold
    command's, "main.py"); return its exit status as python3 would report it."""
    path = req["file"]
    sys.argv = [os.path.basename(path)] + req["argv"]
    sys.path.insert(0, req["cwd"])
    try:
        mod = types.ModuleType("__main__")
        mod.__dict__.update(__file__=path, __cached__=None, __loader__=None, __package__="",
                            __spec__=None, __builtins__=builtins)
        sys.modules["__main__"] = mod
        exec(main_code(path), mod.__dict__)
        return 0
    except SystemExit as e:
        return exit_status(e)
    except BaseException as e:  # print it as python3 would, without this runner's frames
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != req["file"]:
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        return 1


def report(done, status):
    """Tell the agent the program's exit status on done's fd, close fds 0-2 (the agent's end of
    the run) and wait to be killed: the agent answers first, and this process's exit costs the
    answer nothing. done: (fd, its fstat, the pid that may report). Only from that process (a
    child the program forked returns through here too), while the fd is still the runner's (the
    program may have closed it and opened another file there) and no thread of the program
    runs on; else it returns, and the caller exits."""
    fd, st, pid = done
    if os.getpid() != pid or threading.active_count() != 1:
        return
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return
        os.write(fd, b"done %d\n" % status)
        os.closerange(0, 3)
        while True:
            signal.pause()
    except BaseException:
        pass


def clear_globals(g):
    """Set a module's globals to None as python3 does as it exits (names with one leading
    underscore first, then the others but __builtins__): what only they held is freed as its
    name lets go of it, so its __del__ runs and a file left open is flushed and closed."""
    if not isinstance(g, dict):
        return
    for underscore in (True, False):
        for name in list(g):
            if not isinstance(name, str) or name == "__builtins__" or g.get(name) is None:
                continue
            if not underscore or (name[:1] == "_" and name[1:2] != "_"):
                g[name] = None


def finalize_program(known):
    """Free the program's globals as python3 does as it exits: the main module's, then those of
    the modules its own files define (under its directory), the last imported first. known:
    names in sys.modules before the program ran, none of them its own (the runner's hundreds
    are not looked at again: the set difference below is one pass in C, and the walk in import
    order only happens when the program imported something). Not with a thread of the program
    still running (python3 stops those first); not the standard library's modules, whose order
    of teardown is python3's."""
    if threading.active_count() != 1:
        return
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    new = sys.modules.keys() - known
    own = []
    if new and isinstance(path, str):
        here = os.path.dirname(path) + os.sep
        own = [m for k, m in reversed(sys.modules.items()) if k in new and
               m is not main and isinstance(getattr(m, "__file__", None), str) and
               m.__file__.startswith(here)]
    for m in [main] + own:
        clear_globals(getattr(m, "__dict__", None))


def shutdown(status, done=None, known=frozenset()):
    """What the interpreter does at exit that a program can observe (wait for its threads, run
    its atexit handlers, free the program's globals, flush its output), without tearing down
    every module: the VM is thrown away next. done: what report() needs to report the status
    before exiting; known: see finalize_program()."""
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
        finalize_program(known)
    except SystemExit as e:
        status = exit_status(e)
    except BaseException:
        traceback.print_exc()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            status = status or 120
    if done:
        report(done, status)
    os._exit(status)


def set_environ(env):
    """os.environ, and the C environment under it, become env in its order: what
    os.environ.clear() and update() make, without clear()'s walk through popitem() (a quarter
    of the work: under emulation every bytecode counts). Through the mapping's own dict of
    encoded names where this Python has one."""
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):
        os.environ.clear()
        os.environ.update(env)
        return
    for k in data:
        os.unsetenv(k)
    data.clear()
    for k, v in env.items():
        os.environ[k] = v


def prime(req):
    """Run a program of op-agent's through the same path as a user's, output discarded, all
    process state put back: this warms the emulator's translation cache, not Python's state."""
    saved = (os.getcwd(), dict(os.environ), list(sys.argv), list(sys.path),
             sys.modules["__main__"])
    out, err = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        os.chdir(req["cwd"])
        set_environ(req["env"])
        random.seed()
        known = frozenset(sys.modules)
        run(req)
        # the way out too: a process that ends as the program's does (its threads, its atexit
        # handlers, its globals, its streams flushed), reports, is killed and reaped
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            shutdown(0, (w, os.fstat(w), os.getpid()), known)
        os.close(w)
        os.read(r, 16)
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (out, err, null):
            os.close(fd)
        cwd, env, sys.argv[:], sys.path[:], sys.modules["__main__"] = saved
        atexit._clear()  # the runner's own imports register none
        os.chdir(cwd)
        set_environ(env)


def set_streams(fds):
    """The call's stdin, stdout, stderr as fds 0-2, and new sys.std* objects on them (no byte
    of an earlier call's buffers is left in them)."""
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
        os.close(fd)
    enc, errs = sys.__stdout__.encoding, sys.__stdout__.errors
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                 encoding=enc, errors=errs)
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                  encoding=enc, errors=errs)
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                  encoding=enc, errors="backslashreplace", line_buffering=True)


def end_streams():
    """The call is over: its output flushed, fds 0-2 pointed at /dev/null (so that the agent
    sees the end of the call's pipes, and a thread the call left writes nowhere)."""
    for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            f.flush()
        except Exception:
            pass
    null = os.open(os.devnull, os.O_RDWR)
    for i in range(3):
        os.dup2(null, i)
    os.close(null)


def reap():
    """Children of an earlier call, killed by the agent after it: reaped before the next."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def cell(req, env):
    """Run one call's file in the session's globals: 0, or 1 after an uncaught exception. A
    SystemExit ends the interpreter with its status."""
    path = req["file"]
    sys.argv = [os.path.basename(path)] + req["argv"]
    set_environ(req["env"])
    os.chdir(req["cwd"])
    try:
        with open(path, "rb") as f:
            source = f.read()
        env["__file__"] = path
        exec(compile(source, path, "exec"), env)
        return 0
    except SystemExit as e:
        shutdown(exit_status(e))
    except BaseException as e:  # as python3 prints it, without this runner's frames
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != path:
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        return 1


def repl(ctl, req, fds):
    """Serve a session's calls, one per line, in one module's globals, until SystemExit."""
    main_mod = types.ModuleType("__main__")
    main_mod.__builtins__ = builtins
    sys.modules["__main__"] = main_mod
    sys.path.insert(0, req["cwd"])
    random.seed()
    while True:
        if len(fds) != 3:
            os._exit(70)
        reap()
        if req.get("reseed"):
            random.seed()  # a fork's copy of the interpreter draws its own numbers
        set_streams(fds)
        status = cell(req, main_mod.__dict__)
        end_streams()
        ctl.sendall(b"done %d\n" % status)
        req, fds = read_line(ctl)


def main():
    ctl = socket.socket(fileno=3)
    # made before the wait: not the program's time
    line = os.dup(3)  # not inheritable: the program's children do not get it
    done = (line, os.fstat(line), os.getpid())
    ctl.sendall(b"ready\n")
    req, fds = read_line(ctl)
    while req.get("prime"):
        prime(req)
        ctl.sendall(b"ready\n")
        req, fds = read_line(ctl)
    if req.get("repl"):
        os.close(line)
        repl(ctl, req, fds)
    ctl.close()
    os.chdir(req["cwd"])
    set_environ(req["env"])
    # State every clone shares from the snapshot is made its own before user code runs.
    random.seed()
    known = frozenset(sys.modules)
    shutdown(run(req), done, known)


main()
