"""Protocol v1 framing and the exec answer as Python values: no I/O here.

A frame is a 4-byte big-endian length, then that many bytes of UTF-8 JSON holding one object.
"""
import base64
import json
import struct

PROTO_VERSION = 1
HEADER = struct.Struct(">I")
# Answers may take 12 x limit.output_max + 64 KiB of JSON (docs/protocol.md, "Limits").
DEFAULT_MAX_FRAME = 64 << 20


def encode_frame(obj):
    """One request object as frame bytes."""
    payload = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return HEADER.pack(len(payload)) + payload


class FrameReader:
    """Feed bytes in, take whole frames (decoded objects) out."""

    def __init__(self, max_frame=DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def next(self):
        """The next whole frame as a dict, or None when more bytes are needed.
        ValueError when the peer sent something that is not a frame of one JSON object."""
        if len(self.buf) < HEADER.size:
            return None
        (n,) = HEADER.unpack_from(self.buf)
        if n > self.max_frame:
            raise ValueError(f"frame of {n} bytes is over this client's limit of "
                             f"{self.max_frame}")
        if len(self.buf) < HEADER.size + n:
            return None
        payload = bytes(self.buf[HEADER.size:HEADER.size + n])
        del self.buf[:HEADER.size + n]
        obj = json.loads(payload.decode("utf-8"))
        if not isinstance(obj, dict):
            raise ValueError("frame does not hold a JSON object")
        return obj


def get_bytes(obj, key):
    """The exact bytes of an output field: key_b64 when present, else the text as UTF-8."""
    b64 = obj.get(key + "_b64")
    if isinstance(b64, str):
        return base64.b64decode(b64, validate=True)
    text = obj.get(key)
    return text.encode("utf-8") if isinstance(text, str) else b""


def order_of(answer, out_len, err_len):
    """An answer's "output_order" as [(stream, nbytes)] (1: stdout, 2: stderr), or None when it
    has none (streamed output, an older agent) or one that does not add up to the bytes."""
    order = answer.get("output_order")
    if not isinstance(order, list):
        return None
    left = {1: out_len, 2: err_len}
    runs = []
    for run in order:
        if (not isinstance(run, list) or len(run) != 2 or run[0] not in (1, 2)
                or type(run[1]) is not int or not 0 < run[1] <= left[run[0]]):
            return None
        left[run[0]] -= run[1]
        runs.append((run[0], run[1]))
    return runs if left == {1: 0, 2: 0} else None


def interleave(order, out, err):
    """stdout's and stderr's bytes in the order given; stdout then stderr without one."""
    if order is None:
        return out + err
    at, parts = {1: 0, 2: 0}, []
    for stream, n in order:
        data = out if stream == 1 else err
        parts.append(data[at[stream]:at[stream] + n])
        at[stream] += n
    return b"".join(parts)


class Result:
    """The answer to an exec that ran (whatever the program's exit status).

    stdout, stderr: text (a lossy copy when the program printed bytes that are not UTF-8);
    stdout_bytes, stderr_bytes: the exact bytes; output_order: [(stream, nbytes)] as the guest
    read them (1: stdout, 2: stderr), None when the answer has none; output_bytes, output: both
    streams interleaved in that order (stdout then stderr without one), as a terminal shows
    them; exit_code, signal, timed_out, truncated,
    timings_ms, lang, mode, vm, snapshot, repl_ended as in the protocol; answer: the whole frame,
    with any field a newer opd adds (status, usage, ...).
    """

    def __init__(self, answer):
        self.answer = answer
        self.id = answer.get("id")
        self.stdout = answer.get("stdout", "")
        self.stderr = answer.get("stderr", "")
        self.stdout_bytes = get_bytes(answer, "stdout")
        self.stderr_bytes = get_bytes(answer, "stderr")
        self.output_order = order_of(answer, len(self.stdout_bytes), len(self.stderr_bytes))
        self.output_bytes = interleave(self.output_order, self.stdout_bytes, self.stderr_bytes)
        self.output = self.output_bytes.decode("utf-8", "replace")
        self.exit_code = answer.get("exit_code")
        self.signal = answer.get("signal")
        self.timed_out = bool(answer.get("timed_out"))
        self.truncated = bool(answer.get("truncated"))
        self.timings_ms = answer.get("timings_ms", {})
        self.lang = answer.get("lang")
        self.mode = answer.get("mode")
        self.vm = answer.get("vm")
        self.snapshot = answer.get("snapshot")
        self.streamed = bool(answer.get("streamed"))
        self.repl_ended = bool(answer.get("repl_ended"))
        self.status = answer.get("status")
        self.usage = answer.get("usage")
        # output_files read back: {name: bytes}, and {name: error} for those that could not be
        self.files = {}
        self.file_errors = {}
        for f in answer.get("files") or []:
            if isinstance(f.get("error"), str):
                self.file_errors[f.get("name")] = f["error"]
            else:
                self.files[f.get("name")] = get_bytes(f, "content")

    @property
    def success(self):
        """The program exited 0, in time, with its whole output."""
        return self.exit_code == 0 and not self.timed_out and not self.truncated

    def __getitem__(self, key):
        return self.answer[key]

    def get(self, key, default=None):
        return self.answer.get(key, default)

    def __repr__(self):
        return (f"Result(exit_code={self.exit_code!r}, signal={self.signal!r}, "
                f"timed_out={self.timed_out}, stdout={self.stdout[:60]!r}, "
                f"stderr={self.stderr[:60]!r})")


class Event:
    """One piece of output of a streaming exec: stream is "stdout" or "stderr", data the exact
    bytes, text the same as text (lossy when not UTF-8)."""

    __slots__ = ("stream", "data", "text")

    def __init__(self, frame):
        self.stream = frame.get("event")
        self.data = get_bytes(frame, "data")
        self.text = frame.get("data", "")

    def __repr__(self):
        return f"Event({self.stream}, {self.data!r})"
