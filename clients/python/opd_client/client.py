"""The connection to opd: one UNIX socket, reused across calls, with pipelined requests matched to
their answers by id, and streaming execs as iterators."""
import base64
import collections
import math
import os
import select
import socket

from .errors import (ConnectionClosed, NotFound, OpdError, ProtocolError, VMFailed,
                     error_from_answer)
from .protocol import DEFAULT_MAX_FRAME, Event, FrameReader, Result, encode_frame

DEFAULT_SOCKET = "/run/opd/opd.sock"


def file_entry(name, content):
    """A files[] entry: text as it is, bytes as base64 ("encoding": "base64")."""
    if isinstance(content, (bytes, bytearray)):
        return {"name": name, "content": base64.b64encode(content).decode("ascii"),
                "encoding": "base64"}
    return {"name": name, "content": content}


def session_exec_request(session, code, **kw):
    """The session_exec request for these arguments (see Session.run)."""
    req = exec_request(None, code, **kw)
    req["op"] = "session_exec"
    req["session"] = session
    del req["lang"]
    if code is None:  # "phase": "run": the program an earlier compile built
        del req["code"]
    return req


def exec_request(lang, code, stdin=None, args=None, env=None, files=None, timeout=None,
                 mode=None, **extra):
    """The exec request for these arguments (see Client.run)."""
    req = {"op": "exec", "lang": lang, "code": code}
    if stdin is not None:
        req["stdin"] = stdin.decode("utf-8") if isinstance(stdin, bytes) else stdin
    if args is not None:
        req["args"] = [str(a) for a in args]
    if env is not None:
        req["env"] = dict(env)
    if files is not None:
        if isinstance(files, dict):
            files = [file_entry(k, v) for k, v in files.items()]
        req["files"] = list(files)
    if timeout is not None:
        req["timeout_ms"] = max(1, math.ceil(timeout * 1000))
    if mode is not None:
        req["mode"] = mode
    req.update(extra)
    return req


class Execution:
    """A streaming exec in flight. Iterate to get its output as Event objects in the order opd
    sent them; when the iteration ends, .result holds the final Result (its stdout and stderr
    are empty: the output came as events). An error answer is raised from the iteration."""

    def __init__(self, client, id):
        self._client = client
        self.id = id
        self._events = collections.deque()
        self.result = None
        self.stdin_errors = []  # OpdError for each stdin frame opd refused (the exec goes on)

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self._events:
                return self._events.popleft()
            if self.result is not None:
                raise StopIteration
            answer = self._client._answers.pop(self.id, None)
            if answer is not None:
                self._client._streams.pop(self.id, None)
                if answer.get("ok") is not True:
                    raise error_from_answer(answer)
                self.result = Result(answer)
                raise StopIteration
            self._client._read_one()

    def send_stdin(self, data, eof=False):
        """Feed the program's standard input (the exec must have been started with
        stdin_stream=True): text, or bytes (sent as data_b64); eof=True closes it after data.
        opd does not answer a stdin frame it takes; one it refuses shows up in stdin_errors."""
        frame = {"op": "stdin", "id": self.id}
        if isinstance(data, (bytes, bytearray)):
            frame["data_b64"] = base64.b64encode(data).decode("ascii")
        else:
            frame["data"] = data
        if eof:
            frame["eof"] = True
        self._client._send(frame)

    def close_stdin(self):
        self.send_stdin("", eof=True)

    def wait(self):
        """Read the remaining events (returned as a list) and the result."""
        events = list(self)
        return events, self.result


class Session:
    """A session (Client.open_session()): one VM kept for you across runs; files its programs
    write in their working directory are there for the next run. One run at a time (another
    while one runs is refused with Busy). Closed by close(), by leaving a with block, or by opd
    when it has been idle for its idle timeout or reached its lifetime (then NotFound)."""

    def __init__(self, client, answer):
        self.client = client
        self.id = answer["session"]
        self.lang = answer.get("lang")
        self.info = answer  # session_open's answer: vm, mode, idle_timeout_ms, ...

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def submit(self, code, **kw):
        """Start a run in the session without waiting; its id for Client.result()."""
        return self.client.send(session_exec_request(self.id, code, **kw))

    def run(self, code, stdin=None, args=None, env=None, files=None, timeout=None, **extra):
        """Run code in the session's VM and return its Result (arguments as Client.run's, but
        no lang and no mode: the session's)."""
        return self.client.result(self.submit(code, stdin=stdin, args=args, env=env,
                                              files=files, timeout=timeout, **extra))

    def stream(self, code, stdin_stream=False, **kw):
        """A streaming run in the session (as Client.stream)."""
        req = session_exec_request(self.id, code, stream=True, **kw)
        if stdin_stream:
            req["stdin_stream"] = True
        id = self.client.send(req)
        ex = Execution(self.client, id)
        self.client._streams[id] = ex
        return ex

    def fork(self, count=1):
        """count new Sessions with this one's memory and files (the session must be idle); this
        one runs on. Each counts against your session quota."""
        answer = self.client.call({"op": "session_fork", "session": self.id, "count": count})
        return [Session(self.client, {"session": sid, "lang": self.lang})
                for sid in answer["forks"]]

    def pause(self):
        """Save the session to disk and free its VM (also kept across an opd restart); resume()
        brings it back under the same id. Returns opd's answer (disk_bytes, timings_ms)."""
        return self.client.call({"op": "session_pause", "session": self.id})

    def resume(self):
        """Restore a paused session; its files and memory are as they were at the pause."""
        return self.client.call({"op": "session_resume", "session": self.id})

    def close(self):
        """End the session (its VM is destroyed); a session already gone is no error."""
        try:
            self.client.close_session(self.id)
        except NotFound:
            pass


class Client:
    """A connection to opd.

    socket_path: opd's socket (default $OPD_SOCKET, else /run/opd/opd.sock). timeout: seconds
    any single wait on the socket may take (None: wait as long as opd takes; opd has its own
    deadlines). The connection is opened on first use and reused; when opd closed it while
    nothing was in flight, the next call opens a new one. Not thread-safe: use one Client per
    thread.
    """

    def __init__(self, socket_path=None, timeout=None, max_frame=DEFAULT_MAX_FRAME):
        self.socket_path = socket_path or os.environ.get("OPD_SOCKET") or DEFAULT_SOCKET
        self.timeout = timeout
        self.max_frame = max_frame
        self._sock = None
        self._reader = None
        self._next_id = 1
        self._answers = {}  # id -> answer frame received and not yet taken
        self._streams = {}  # id -> Execution of a streaming exec in flight
        self._pending = set()  # ids sent and not yet answered
        self.connections = 0  # connections opened so far

    # ---- connection ----

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._sock:
            self._sock.close()
        self._sock = None
        self._pending.clear()
        self._streams.clear()

    def _connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.socket_path)
        except OSError:
            s.close()
            raise
        self._sock = s
        self._reader = FrameReader(self.max_frame)
        self.connections += 1

    def _peer_closed(self):
        # poll first: a socket with a timeout waits for data before any recv, MSG_DONTWAIT or
        # not, so a bare peek would block an idle connection for the whole timeout.
        try:
            if not select.select([self._sock], [], [], 0)[0]:
                return False
            return self._sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send(self, obj):
        if self._sock and not self._pending and self._peer_closed():
            self.close()  # opd closed an idle connection (a restart, say): open a new one
        if not self._sock:
            self._connect()
        try:
            self._sock.sendall(encode_frame(obj))
        except OSError as e:
            self.close()
            raise ConnectionClosed(f"cannot send to opd: {e}") from e

    def _read_one(self):
        """Read until one more frame has been sorted in."""
        if not self._sock:
            raise ConnectionClosed("not connected: the answer was lost with the connection")
        while True:
            try:
                frame = self._reader.next()
            except (ValueError, UnicodeDecodeError) as e:
                self.close()
                raise ProtocolError(f"bad frame from opd: {e}") from e
            if frame is not None:
                self._dispatch(frame)
                return
            try:
                data = self._sock.recv(1 << 16)
            except socket.timeout:
                raise
            except OSError as e:
                data = b""
                err = e
            else:
                err = None
            if not data:
                self.close()
                raise ConnectionClosed("connection closed by opd before the answer"
                                       + (f" ({err})" if err else ""))
            self._reader.feed(data)

    def _dispatch(self, frame):
        id = frame.get("id")
        if "ok" not in frame and isinstance(frame.get("event"), str):
            stream = self._streams.get(id)
            if stream is None:
                return
            if frame["event"] == "stdin_error":
                stream.stdin_errors.append(error_from_answer(frame))
            else:
                stream._events.append(Event(frame))
            return
        if id is None and frame.get("ok") is False:
            # Not about one request (frame_too_large, or a frame opd could not read): it
            # concerns the connection, which opd may close next.
            raise error_from_answer(frame)
        self._pending.discard(id)
        self._answers[id] = frame

    # ---- requests ----

    def send(self, request):
        """Send one request without waiting (pipelining); returns its id. An id is assigned
        when the request has none. Take the answer with answer(id)."""
        request = dict(request)
        if request.get("id") is None:
            request["id"] = self._next_id
            self._next_id += 1
        if request["id"] in self._pending:
            raise ValueError(f"id {request['id']!r} is already in flight on this connection")
        self._send(request)
        self._pending.add(request["id"])
        return request["id"]

    def answer(self, id):
        """The raw answer (a dict) to the request sent with this id, in whatever order opd
        answers; an error answer is raised as its OpdError subclass."""
        while id not in self._answers:
            if id not in self._pending:
                raise KeyError(f"no request with id {id!r} is in flight")
            self._read_one()
        answer = self._answers.pop(id)
        if answer.get("ok") is not True:
            raise error_from_answer(answer)
        return answer

    def call(self, request):
        """Send one request and wait for its answer."""
        return self.answer(self.send(request))

    def submit(self, lang, code, **kw):
        """Start an exec (same arguments as run) without waiting; returns its id for
        result(). Several may be in flight on the connection at once."""
        return self.send(exec_request(lang, code, **kw))

    def result(self, id):
        """The Result of an exec started with submit()."""
        return Result(self.answer(id))

    def run(self, lang, code, stdin=None, args=None, env=None, files=None, timeout=None,
            mode=None, **extra):
        """Run code in a fresh VM and return its Result.

        stdin: text for the program's standard input; args: extra command-line arguments;
        env: {NAME: value}; files: {name: content} or [{"name", "content", ...}]; timeout:
        seconds of wall-clock time in the guest (timeout_ms); mode: "auto", "warm" or "cold";
        any other keyword is sent as a request field as is (fields newer opds accept).
        """
        return self.result(self.submit(lang, code, stdin=stdin, args=args, env=env,
                                       files=files, timeout=timeout, mode=mode, **extra))

    def stream(self, lang, code, stdin_stream=False, **kw):
        """Start a streaming exec ("stream": true) and return its Execution: iterate it for
        output events as they arrive. stdin_stream=True keeps the program's stdin open for
        Execution.send_stdin()."""
        req = exec_request(lang, code, stream=True, **kw)
        if stdin_stream:
            req["stdin_stream"] = True
        id = self.send(req)
        ex = Execution(self, id)
        self._streams[id] = ex
        return ex

    def batch(self, requests):
        """Several execs in one exec_batch frame, run in parallel as opd allows. requests: dicts
        of exec fields ("lang", "code", "cpu_time_ms", ...), each with an "id" or given "1",
        "2", .... Returns (results, summary): per request in the order given its Result or
        OpdError, and the batch's {"count", "ok", "failed"}."""
        members = []
        for i, r in enumerate(requests):
            m = {k: v for k, v in r.items() if k != "op"}
            m.setdefault("id", str(i + 1))
            members.append(m)
        bid = self.send({"op": "exec_batch", "requests": members})
        for m in members:
            self._pending.add(m["id"])
        try:
            summary = self.answer(bid)
        except OpdError:
            for m in members:
                self._pending.discard(m["id"])
            raise
        results = []
        for m in members:  # every member's answer came before the batch's
            a = self._answers.pop(m["id"], None)
            self._pending.discard(m["id"])
            if a is None:
                raise ProtocolError(f"opd answered batch {bid!r} before member {m['id']!r}")
            results.append(Result(a) if a.get("ok") is True else error_from_answer(a))
        return results, summary["batch"]

    def open_session(self, lang, idle_timeout=None, lifetime=None, timeout=None, repl=False,
                     **limits):
        """Open a session in lang and return it (a Session). idle_timeout, lifetime: seconds
        (opd's session.idle_timeout_ms and session.lifetime_ms when None); timeout and limits
        (cpu_time_ms, memory_bytes, max_processes, output_max_bytes, file_size_max_bytes): the
        default of each run in the session. repl=True: one interpreter is kept across the
        session's runs, each run's code executed in the globals the runs before it left (python;
        a run whose Result has repl_ended True ended the interpreter, and the session with it)."""
        req = {"op": "session_open", "lang": lang}
        if repl:
            req["repl"] = True
        if idle_timeout is not None:
            req["idle_timeout_ms"] = max(1, math.ceil(idle_timeout * 1000))
        if lifetime is not None:
            req["max_lifetime_ms"] = max(1, math.ceil(lifetime * 1000))
        if timeout is not None:
            req["timeout_ms"] = max(1, math.ceil(timeout * 1000))
        req.update(limits)
        return Session(self, self.call(req))

    def run_cases(self, lang, code, cases, files=None, timeout=None, round_size=None, **limits):
        """Compile once, run many: code (a compiled language's program) is compiled once in a
        session, then each case runs in its own fork of that session (a fresh copy of the
        compiled VM: what one case writes, no other sees). cases: dicts of run fields ("stdin",
        "args", "env", "files", "timeout_ms", limits, ...). Returns (compile, results): the
        compile step's Result, and per case in the order given its Result or OpdError; results
        is empty when the compile failed (compile.status == "compile_error"). The cases run in
        rounds of round_size forks (default: all at once), each round's forks closed before the
        next: a round may not exceed session.fork_max, and its forks count against your session
        quota while they run."""
        cases = list(cases)
        size = round_size or len(cases) or 1
        results = []
        with self.open_session(lang, timeout=timeout, **limits) as s:
            compiled = s.run(code, files=files, phase="compile")
            if compiled.status == "compile_error":
                return compiled, []
            for at in range(0, len(cases), size):
                results += self._run_round(s, cases[at:at + size])
        return compiled, results

    def _run_round(self, compiled, cases):
        forks = compiled.fork(len(cases))
        try:
            ids = []
            for f, case in zip(forks, cases):
                req = {k: v for k, v in case.items() if k not in ("op", "id", "session")}
                req.update({"op": "session_exec", "session": f.id, "phase": "run"})
                ids.append(self.send(req))
            results = []
            for id in ids:
                try:
                    results.append(self.result(id))
                except OpdError as e:
                    results.append(e)
            # a fork that could not be restored (the fork's "failed"): its case did not run
            for _ in cases[len(forks):]:
                results.append(VMFailed("this case's fork of the compiled session could not be "
                                        "restored; the case did not run"))
            return results
        finally:
            for f in forks:
                f.close()

    def sessions(self):
        """Your open sessions as dicts (administrators: everyone's)."""
        return self.call({"op": "session_list"})["sessions"]

    def close_session(self, session_id):
        return self.call({"op": "session_close", "session": session_id})

    def reload(self):
        """Administrators: opd reads its configuration again."""
        return self.call({"op": "reload"})

    def snapshot(self, action, lang=None):
        """Administrators: the snapshot op ("create", "list", "reload", "verify", "sync")."""
        req = {"op": "snapshot", "action": action}
        if lang:
            req["lang"] = lang
        return self.call(req)

    def ping(self):
        return self.call({"op": "ping"})

    def status(self):
        return self.call({"op": "status"})

    def metrics(self):
        """Prometheus text."""
        return self.call({"op": "metrics"})["text"]


def run(lang, code, socket_path=None, **kw):
    """One exec on a connection of its own: run("python", "print(1)", stdin=..., timeout=2)."""
    with Client(socket_path) as c:
        return c.run(lang, code, **kw)


__all__ = ["Client", "Execution", "Session", "OpdError", "run", "exec_request",
           "session_exec_request"]
