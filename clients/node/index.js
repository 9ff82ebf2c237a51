// opd-client: the connection to opd over its UNIX socket (protocol v1, docs/protocol.md): framed
// JSON requests pipelined by id, streaming execs as async iterators, interactive stdin, typed
// errors by code. Node's standard library only.
import net from "node:net";
import process from "node:process";

export const PROTO_VERSION = 1;
export const DEFAULT_SOCKET = "/run/opd/opd.sock";
// Answers may take 12 x limit.output_max + 64 KiB of JSON (docs/protocol.md, "Limits").
export const DEFAULT_MAX_FRAME = 64 << 20;

// ---- errors ----

/** An error answer from opd; the subclass is chosen by its code. */
export class OpdError extends Error {
  /** @type {string|null} */ static code = null;
  static retryable = false;
  /**
   * @param {string} message
   * @param {{code?: string|null, id?: any, answer?: object|null}} [opts]
   */
  constructor(message, { code = null, id = null, answer = null } = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code ?? new.target.code;
    this.retryable = new.target.retryable;
    this.id = id;
    this.answer = answer;
  }
}
const errorClass = (name, code, retryable = false) => {
  const C = class extends OpdError {};
  Object.defineProperty(C, "name", { value: name });
  C.code = code;
  C.retryable = retryable;
  return C;
};
export const BadRequest = errorClass("BadRequest", "bad_request");
export const FrameTooLarge = errorClass("FrameTooLarge", "frame_too_large");
export const UnknownOp = errorClass("UnknownOp", "unknown_op");
export const UnknownLanguage = errorClass("UnknownLanguage", "unknown_language");
export const PoolExhausted = errorClass("PoolExhausted", "pool_exhausted", true);
/** The guest did not answer in time (a program that merely ran long is a Result with timedOut). */
export const GuestTimeout = errorClass("GuestTimeout", "timeout", true);
export const VMFailed = errorClass("VMFailed", "vm_failed", true);
export const Busy = errorClass("Busy", "busy", true);
export const ShuttingDown = errorClass("ShuttingDown", "shutting_down", true);
export const PermissionDenied = errorClass("PermissionDenied", "permission_denied");
export const InternalError = errorClass("InternalError", "internal_error");
/** opd runs no untrusted code on this host (TCG without allow_tcg = yes in its configuration). */
export const Unavailable = errorClass("Unavailable", "unavailable");
/** No such session: closed, expired, or another user's. */
export const NotFound = errorClass("NotFound", "not_found");
/** A count the configuration bounds was reached (session.max, session.max_per_uid). */
export const QuotaExceeded = errorClass("QuotaExceeded", "quota_exceeded");
/** The connection ended before the answer (not an answer of opd's). */
export const ConnectionClosed = errorClass("ConnectionClosed", "connection_closed", true);
/** opd sent something that is not a frame of one JSON object. */
export const ProtocolError = errorClass("ProtocolError", "protocol_error");

const BY_CODE = Object.fromEntries(
  [BadRequest, FrameTooLarge, UnknownOp, UnknownLanguage, PoolExhausted, GuestTimeout, VMFailed,
    Busy, ShuttingDown, PermissionDenied, InternalError, Unavailable, NotFound, QuotaExceeded]
    .map((C) => [C.code, C]));

/** The OpdError (subclass) an error answer or stdin_error event stands for. */
export function errorFromAnswer(answer) {
  const e = answer?.error ?? {};
  const code = typeof e.code === "string" ? e.code : "internal_error";
  const C = BY_CODE[code] ?? OpdError;
  return new C(typeof e.message === "string" ? e.message : "(no message)",
    { code, id: answer?.id ?? null, answer });
}

// ---- frames ----

/** One object as frame bytes: a 4-byte big-endian length, then UTF-8 JSON. */
export function encodeFrame(obj) {
  const payload = Buffer.from(JSON.stringify(obj), "utf8");
  const header = Buffer.alloc(4);
  header.writeUInt32BE(payload.length);
  return Buffer.concat([header, payload]);
}

/** Feed bytes in, take whole frames (decoded objects) out. */
export class FrameReader {
  constructor(maxFrame = DEFAULT_MAX_FRAME) {
    this.maxFrame = maxFrame;
    this.buf = Buffer.alloc(0);
  }

  feed(data) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : Buffer.from(data);
  }

  /** The next whole frame, or null when more bytes are needed; throws ProtocolError. */
  next() {
    if (this.buf.length < 4) return null;
    const n = this.buf.readUInt32BE(0);
    if (n > this.maxFrame)
      throw new ProtocolError(`frame of ${n} bytes is over this client's limit of ${this.maxFrame}`);
    if (this.buf.length < 4 + n) return null;
    const payload = this.buf.subarray(4, 4 + n);
    this.buf = this.buf.subarray(4 + n);
    let obj;
    try {
      obj = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
    } catch (e) {
      throw new ProtocolError(`bad frame from opd: ${e.message}`);
    }
    if (obj === null || typeof obj !== "object" || Array.isArray(obj))
      throw new ProtocolError("frame does not hold a JSON object");
    return obj;
  }
}

/** The exact bytes of an output field: key_b64 when present, else the text as UTF-8. */
export function getBytes(obj, key) {
  const b64 = obj?.[key + "_b64"];
  if (typeof b64 === "string") return Buffer.from(b64, "base64");
  const text = obj?.[key];
  return Buffer.from(typeof text === "string" ? text : "", "utf8");
}

/** An answer's "output_order" as [[stream, nbytes], ...] (1: stdout, 2: stderr), or null when it
 * has none (streamed output, an older agent) or one that does not add up to the bytes. */
export function orderOf(answer, outLen, errLen) {
  const order = answer?.output_order;
  if (!Array.isArray(order)) return null;
  const left = { 1: outLen, 2: errLen };
  for (const run of order) {
    if (!Array.isArray(run) || run.length !== 2 || (run[0] !== 1 && run[0] !== 2) ||
        !Number.isInteger(run[1]) || run[1] < 1 || run[1] > left[run[0]]) return null;
    left[run[0]] -= run[1];
  }
  return left[1] === 0 && left[2] === 0 ? order.map(([s, n]) => [s, n]) : null;
}

/** stdout's and stderr's bytes in the order given; stdout then stderr without one. */
export function interleave(order, out, err) {
  if (order === null) return Buffer.concat([out, err]);
  const at = { 1: 0, 2: 0 };
  return Buffer.concat(order.map(([s, n]) => {
    const data = s === 1 ? out : err;
    at[s] += n;
    return data.subarray(at[s] - n, at[s]);
  }));
}

// ---- exec ----

/** A files[] entry: a string as text, bytes (Buffer, Uint8Array) as base64. */
export function fileEntry(name, content) {
  if (typeof content === "string") return { name, content };
  return { name, content: Buffer.from(content).toString("base64"), encoding: "base64" };
}

const EXEC_FIELDS = {
  timeout: (v) => ["timeout_ms", Math.max(1, Math.ceil(v * 1000))],
  compileTimeout: (v) => ["compile_timeout_ms", Math.max(1, Math.ceil(v * 1000))],
  cpuTimeMs: (v) => ["cpu_time_ms", v],
  memoryBytes: (v) => ["memory_bytes", v],
  maxProcesses: (v) => ["max_processes", v],
  outputMaxBytes: (v) => ["output_max_bytes", v],
  fileSizeMaxBytes: (v) => ["file_size_max_bytes", v],
  outputFiles: (v) => ["output_files", [...v]],
  mode: (v) => ["mode", v],
  args: (v) => ["args", v.map(String)],
  env: (v) => ["env", { ...v }],
  stdin: (v) => ["stdin", typeof v === "string" ? v : Buffer.from(v).toString("utf8")],
  files: (v) => ["files", Array.isArray(v) ? [...v]
    : Object.entries(v).map(([k, c]) => fileEntry(k, c))],
  stream: (v) => ["stream", v],
  stdinStream: (v) => ["stdin_stream", v],
  phase: (v) => ["phase", v],
  id: (v) => ["id", v],
  extra: null,
};

/**
 * The exec request for these options (see Client.run). Options named in camelCase map to the
 * protocol's fields; `extra` is merged in as is (fields a newer opd accepts).
 */
export function execRequest(lang, code, opts = {}) {
  const req = { op: "exec", lang };
  if (code !== null && code !== undefined) req.code = code;
  for (const [k, v] of Object.entries(opts)) {
    if (v === undefined || v === null || k === "extra") continue;
    const f = EXEC_FIELDS[k];
    if (!f) throw new TypeError(`unknown exec option ${k} (use extra: {...} for raw fields)`);
    const [key, value] = f(v);
    req[key] = value;
  }
  Object.assign(req, opts.extra ?? {});
  return req;
}

/** The session_exec request for these options (as execRequest, without lang and mode). */
export function sessionExecRequest(session, code, opts = {}) {
  if (opts.mode !== undefined) throw new TypeError("a session's runs take no mode: its VM runs them");
  const req = execRequest(undefined, code, opts);
  req.op = "session_exec";
  req.session = session;
  delete req.lang;
  return req;
}

/**
 * A session (Client.openSession()): one VM kept across runs; files its programs write in their
 * working directory are there for the next run. One run at a time (another is refused Busy).
 * opd ends it on close(), after its idle timeout, or at its lifetime (then NotFound).
 */
export class Session {
  constructor(client, answer) {
    this.client = client;
    this.id = answer.session;
    this.lang = answer.lang;
    this.info = answer;
  }

  /** Run code in the session's VM (opts as Client.run's, without mode). */
  async run(code, opts = {}) {
    return new Result(await this.client.call(sessionExecRequest(this.id, code, opts)));
  }

  /** A streaming run in the session (as Client.stream). */
  async stream(code, opts = {}) {
    const req = sessionExecRequest(this.id, code, { ...opts, stream: true });
    const id = req.id ?? this.client._nextId++;
    req.id = id;
    const ex = new Execution(this.client, id);
    await this.client._send(req, ex);
    return ex;
  }

  /**
   * count new Sessions with this one's memory and files (the session must be idle); this one
   * runs on. Each counts against your session quota.
   */
  async fork(count = 1) {
    const answer = await this.client.call({ op: "session_fork", session: this.id, count });
    return answer.forks.map((sid) => new Session(this.client, { session: sid, lang: this.lang }));
  }

  /**
   * Save the session to disk and free its VM (kept across an opd restart too); resume() brings
   * it back under the same id. Resolves with opd's answer (disk_bytes, timings_ms).
   */
  async pause() {
    return this.client.call({ op: "session_pause", session: this.id });
  }

  /** Restore a paused session: its files and memory are as they were at the pause. */
  async resume() {
    return this.client.call({ op: "session_resume", session: this.id });
  }

  /** End the session (its VM is destroyed); one already gone is no error. */
  async close() {
    try {
      await this.client.call({ op: "session_close", session: this.id });
    } catch (e) {
      if (!(e instanceof NotFound)) throw e;
    }
  }
}

/** The answer to an exec that ran, whatever the program's exit status. */
export class Result {
  constructor(answer) {
    this.answer = answer;
    this.id = answer.id ?? null;
    this.stdout = answer.stdout ?? "";
    this.stderr = answer.stderr ?? "";
    this.stdoutBytes = getBytes(answer, "stdout");
    this.stderrBytes = getBytes(answer, "stderr");
    /** [[stream, nbytes], ...] as the guest read them (1: stdout, 2: stderr), or null */
    this.outputOrder = orderOf(answer, this.stdoutBytes.length, this.stderrBytes.length);
    /** both streams interleaved in that order (stdout then stderr without one) */
    this.outputBytes = interleave(this.outputOrder, this.stdoutBytes, this.stderrBytes);
    this.output = this.outputBytes.toString("utf8");
    this.exitCode = answer.exit_code ?? null;
    this.signal = answer.signal ?? null;
    this.timedOut = Boolean(answer.timed_out);
    this.truncated = Boolean(answer.truncated);
    this.status = answer.status ?? null;
    this.usage = answer.usage ?? null;
    this.timingsMs = answer.timings_ms ?? {};
    this.lang = answer.lang ?? null;
    this.mode = answer.mode ?? null;
    this.vm = answer.vm ?? null;
    this.snapshot = answer.snapshot ?? null;
    this.streamed = Boolean(answer.streamed);
    /** a repl session's run: its interpreter (and the session) ended */
    this.replEnded = Boolean(answer.repl_ended);
    this.compile = answer.compile ?? null;
    /** output_files read back: {name: Buffer} for the found ones */
    this.files = {};
    /** output_files that could not be read: {name: "not_found" | ...} */
    this.fileErrors = {};
    for (const f of answer.files ?? []) {
      if (typeof f.error === "string") this.fileErrors[f.name] = f.error;
      else this.files[f.name] = getBytes(f, "content");
    }
  }

  /** The program exited 0, in time, with its whole output. */
  get success() {
    return this.exitCode === 0 && !this.timedOut && !this.truncated;
  }
}

/** One piece of output of a streaming exec. */
export class Event {
  constructor(frame) {
    this.stream = frame.event;
    this.data = getBytes(frame, "data");
    this.text = frame.data ?? "";
  }
}

/**
 * A streaming exec in flight: `for await (const ev of execution)` yields its output Events in
 * the order opd sent them; afterwards `.result` holds the Result (an error answer is thrown
 * from the iteration). With stdinStream, sendStdin() feeds the program's standard input.
 */
export class Execution {
  constructor(client, id) {
    this.client = client;
    this.id = id;
    this.result = null;
    /** @type {OpdError[]} stdin frames opd refused (the exec goes on) */
    this.stdinErrors = [];
    this._events = [];
    this._error = null;
    this._wake = null;
    this._done = false;
  }

  _push(ev) {
    this._events.push(ev);
    this._notify();
  }

  _finish(answer) {
    if (answer.ok === true) this.result = new Result(answer);
    else this._error = errorFromAnswer(answer);
    this._done = true;
    this._notify();
  }

  _fail(err) {
    this._error = err;
    this._done = true;
    this._notify();
  }

  _notify() {
    const w = this._wake;
    this._wake = null;
    if (w) w();
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this._events.length) {
        yield this._events.shift();
        continue;
      }
      if (this._done) {
        if (this._error) throw this._error;
        return;
      }
      await new Promise((resolve) => { this._wake = resolve; });
    }
  }

  /** Text or bytes for the program's stdin (bytes go as data_b64); eof closes it after. */
  sendStdin(data, { eof = false } = {}) {
    const frame = { op: "stdin", id: this.id };
    if (typeof data === "string") frame.data = data;
    else frame.data_b64 = Buffer.from(data).toString("base64");
    if (eof) frame.eof = true;
    this.client._write(frame);
  }

  closeStdin() {
    this.client._write({ op: "stdin", id: this.id, eof: true });
  }

  /** The remaining events and the result. */
  async wait() {
    const events = [];
    for await (const e of this) events.push(e);
    return { events, result: this.result };
  }
}

/**
 * A connection to opd. socketPath: opd's socket (default $OPD_SOCKET, else /run/opd/opd.sock).
 * The connection opens on first use and is reused; requests are pipelined, matched to their
 * answers by id. After opd closed it, the next request opens a new one.
 */
export class Client {
  constructor({ socketPath, maxFrame = DEFAULT_MAX_FRAME } = {}) {
    this.socketPath = socketPath || process.env.OPD_SOCKET || DEFAULT_SOCKET;
    this.maxFrame = maxFrame;
    this.connections = 0;
    this._sock = null;
    this._connecting = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject} or Execution (streaming)
    this._batches = new Map(); // member id -> callback of a batch in flight
  }

  async _connect() {
    if (this._sock) return;
    if (!this._connecting) {
      this._connecting = new Promise((resolve, reject) => {
        const s = net.createConnection(this.socketPath);
        const reader = new FrameReader(this.maxFrame);
        s.once("connect", () => {
          this._sock = s;
          this.connections++;
          resolve();
        });
        s.once("error", (e) => {
          if (this._sock !== s) reject(e);
        });
        s.on("data", (d) => {
          reader.feed(d);
          try {
            let f;
            while ((f = reader.next()) !== null) this._dispatch(f);
          } catch (e) {
            this._closed(s, e instanceof OpdError ? e : new ProtocolError(String(e)));
            s.destroy();
          }
        });
        s.on("close", () => this._closed(s, new ConnectionClosed(
          "connection closed by opd before the answer")));
      }).finally(() => { this._connecting = null; });
    }
    await this._connecting;
  }

  _closed(s, err) {
    if (this._sock !== s) return;
    this._sock = null;
    const pending = [...this._pending.values()];
    this._pending.clear();
    this._batches.clear();
    for (const p of pending) {
      if (p instanceof Execution) p._fail(err);
      else p.reject(err);
    }
  }

  _dispatch(frame) {
    const id = frame.id ?? null;
    if (!("ok" in frame) && typeof frame.event === "string") {
      const ex = this._pending.get(id);
      if (ex instanceof Execution) {
        if (frame.event === "stdin_error") ex.stdinErrors.push(errorFromAnswer(frame));
        else ex._push(new Event(frame));
      }
      return;
    }
    if (id === null && frame.ok === false) {
      // about the connection, not one request (frame_too_large...): every waiter learns it
      const err = errorFromAnswer(frame);
      for (const p of this._pending.values()) {
        if (p instanceof Execution) p._fail(err);
        else p.reject(err);
      }
      this._pending.clear();
      return;
    }
    const member = this._batches.get(id);
    if (member) {
      this._batches.delete(id);
      member(frame);
      return;
    }
    const p = this._pending.get(id);
    if (!p) return;
    this._pending.delete(id);
    if (p instanceof Execution) p._finish(frame);
    else p.resolve(frame);
  }

  _write(obj) {
    if (!this._sock) throw new ConnectionClosed("not connected");
    this._sock.write(encodeFrame(obj));
  }

  /** Close the connection; requests in flight fail with ConnectionClosed. */
  close() {
    const s = this._sock;
    if (s) {
      this._closed(s, new ConnectionClosed("closed by the client"));
      s.destroy();
    }
  }

  async _send(request, waiter) {
    const req = { ...request };
    if (req.id === undefined || req.id === null) req.id = this._nextId++;
    if (this._pending.has(req.id)) throw new Error(`id ${req.id} is already in flight`);
    await this._connect();
    const w = waiter ?? (() => {
      let resolve, reject;
      const promise = new Promise((a, b) => { resolve = a; reject = b; });
      return { resolve, reject, promise };
    })();
    this._pending.set(req.id, w);
    try {
      this._write(req);
    } catch (e) {
      this._pending.delete(req.id);
      throw e;
    }
    return { id: req.id, waiter: w };
  }

  /** Send one request and resolve with its raw answer; an error answer rejects (OpdError). */
  async call(request) {
    const { waiter } = await this._send(request);
    const answer = await waiter.promise;
    if (answer.ok !== true) throw errorFromAnswer(answer);
    return answer;
  }

  /**
   * Run code and resolve with its Result. opts: stdin, args, env, files ({name: string or
   * bytes} or entries), timeout and compileTimeout (seconds), cpuTimeMs, memoryBytes,
   * maxProcesses, outputMaxBytes, fileSizeMaxBytes, outputFiles (names), mode ("auto",
   * "warm", "cold"), id, extra (raw fields). Calls may overlap: they share the connection.
   */
  async run(lang, code, opts = {}) {
    return new Result(await this.call(execRequest(lang, code, opts)));
  }

  /**
   * Start a streaming exec and resolve with its Execution (iterate it for output events).
   * opts as for run(), plus stdinStream: true to keep the program's stdin open.
   */
  async stream(lang, code, opts = {}) {
    const req = execRequest(lang, code, { ...opts, stream: true });
    const id = req.id ?? this._nextId++;
    req.id = id;
    const ex = new Execution(this, id);
    await this._send(req, ex);
    return ex;
  }

  /**
   * Several execs in one exec_batch frame, run in parallel as opd allows. requests: objects
   * with lang, code and the options of run(), each with an id or given "1", "2", ...;
   * onResult (optional) is called with each member's Result or OpdError as it comes. Resolves
   * with {results: [Result or OpdError, in the order given], count, ok, failed}.
   */
  async batch(requests, { onResult } = {}) {
    const members = requests.map((r, i) => {
      const { lang, code, ...opts } = r;
      const req = execRequest(lang, code, opts);
      delete req.op;
      if (req.id === undefined) req.id = String(i + 1);
      return req;
    });
    const results = new Array(members.length);
    const index = new Map(members.map((m, i) => [m.id, i]));
    for (const m of members) {
      if (this._batches.has(m.id)) throw new Error(`id ${m.id} is already in flight`);
    }
    await this._connect();
    for (const m of members) {
      this._batches.set(m.id, (frame) => {
        const res = frame.ok === true ? new Result(frame) : errorFromAnswer(frame);
        results[index.get(m.id)] = res;
        if (onResult) onResult(res);
      });
    }
    let answer;
    try {
      answer = await this.call({ op: "exec_batch", requests: members });
    } finally {
      for (const m of members) this._batches.delete(m.id);
    }
    return { results, ...answer.batch };
  }

  /**
   * Open a session in lang and resolve with its Session. opts: idleTimeout and lifetime
   * (seconds; opd's defaults when left out), timeout, cpuTimeMs, memoryBytes, maxProcesses,
   * outputMaxBytes, fileSizeMaxBytes: the default of each run in the session; repl: true keeps
   * one interpreter across the session's runs, each run's code in the globals the runs before
   * it left (python; a Result with replEnded true ended it, and the session with it).
   */
  async openSession(lang, { idleTimeout, lifetime, repl, ...limits } = {}) {
    const req = execRequest(lang, null, limits);
    req.op = "session_open";
    if (repl) req.repl = true;
    if (idleTimeout !== undefined) req.idle_timeout_ms = Math.max(1, Math.ceil(idleTimeout * 1000));
    if (lifetime !== undefined) req.max_lifetime_ms = Math.max(1, Math.ceil(lifetime * 1000));
    return new Session(this, await this.call(req));
  }

  /** Your open sessions (administrators: everyone's). */
  async sessions() { return (await this.call({ op: "session_list" })).sessions; }

  ping() { return this.call({ op: "ping" }); }

  status() { return this.call({ op: "status" }); }

  /** Prometheus text. */
  async metrics() { return (await this.call({ op: "metrics" })).text; }

  /** Administrators: opd reads its configuration again. */
  reload() { return this.call({ op: "reload" }); }

  /**
   * Administrators: the snapshot op. action: "create", "list", "reload", "verify", "sync";
   * lang where the action takes one.
   */
  snapshot(action, lang) {
    const req = { op: "snapshot", action };
    if (lang) req.lang = lang;
    return this.call(req);
  }
}

/** One exec on a connection of its own. */
export async function run(lang, code, { socketPath, ...opts } = {}) {
  const c = new Client({ socketPath });
  try {
    return await c.run(lang, code, opts);
  } finally {
    c.close();
  }
}
