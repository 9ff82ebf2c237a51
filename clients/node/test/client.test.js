// opd-client's tests: the codec and error mapping on their own, then the client against the real
// opd (test/with-opd.py starts it on a private socket and sets OPD_SOCKET).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

import * as opd from "../index.js";

test("frames byte by byte", () => {
  const objs = [{ id: 1, ok: true, stdout: "é\n" }, { id: "x", ok: false }, {}];
  const data = Buffer.concat(objs.map(opd.encodeFrame));
  assert.equal(data.readUInt32BE(0), Buffer.byteLength(JSON.stringify(objs[0])));
  const r = new opd.FrameReader();
  const got = [];
  for (let i = 0; i < data.length; i++) {
    r.feed(data.subarray(i, i + 1));
    let f;
    while ((f = r.next()) !== null) got.push(f);
  }
  assert.deepEqual(got, objs);
});

test("frame limits", () => {
  let r = new opd.FrameReader(10);
  const h = Buffer.alloc(4);
  h.writeUInt32BE(11);
  r.feed(h);
  assert.throws(() => r.next(), opd.ProtocolError);
  r = new opd.FrameReader();
  h.writeUInt32BE(2);
  r.feed(Buffer.concat([h, Buffer.from("[]")]));
  assert.throws(() => r.next(), opd.ProtocolError);
});

test("bytes and results", () => {
  const res = new opd.Result({ stdout: "a\ufffdb", stdout_b64: "YQBi", stderr: "é", exit_code: 0,
    files: [{ name: "o", content: "\ufffd", content_b64: "/w==" }, { name: "n", error: "not_found" }] });
  assert.deepEqual(res.stdoutBytes, Buffer.from([0x61, 0, 0x62]));
  assert.deepEqual(res.stderrBytes, Buffer.from("é"));
  assert.deepEqual(res.files.o, Buffer.from([0xff]));
  assert.deepEqual(res.fileErrors, { n: "not_found" });
  assert.equal(res.success, true);
});

test("output order", () => {
  let res = new opd.Result({ stdout: "a\nc\n", stderr: "b\n", output_order: [[1, 2], [2, 2], [1, 2]] });
  assert.deepEqual(res.outputOrder, [[1, 2], [2, 2], [1, 2]]);
  assert.equal(res.output, "a\nb\nc\n");
  res = new opd.Result({ stdout: "é", stderr: "x", output_order: [[2, 1], [1, 2]] }); // bytes
  assert.equal(res.output, "xé");
  for (const order of [undefined, [[1, 2]], [[1, 1], [2, 1]], [[3, 1]], [[1, true], [2, 1]], "x"]) {
    res = new opd.Result({ stdout: "ab", stderr: "c", output_order: order });
    assert.equal(res.outputOrder, null, String(order));
    assert.equal(res.output, "abc");
  }
});

test("errors by code", () => {
  for (const [code, C, retry] of [["bad_request", opd.BadRequest, false],
    ["unknown_language", opd.UnknownLanguage, false], ["busy", opd.Busy, true],
    ["pool_exhausted", opd.PoolExhausted, true], ["timeout", opd.GuestTimeout, true],
    ["vm_failed", opd.VMFailed, true], ["shutting_down", opd.ShuttingDown, true],
    ["permission_denied", opd.PermissionDenied, false], ["internal_error", opd.InternalError, false],
    ["unavailable", opd.Unavailable, false],
    ["frame_too_large", opd.FrameTooLarge, false], ["unknown_op", opd.UnknownOp, false],
    ["not_found", opd.NotFound, false], ["quota_exceeded", opd.QuotaExceeded, false]]) {
    const e = opd.errorFromAnswer({ id: 7, ok: false, error: { code, message: "m" } });
    assert.ok(e instanceof C && e instanceof opd.OpdError && e instanceof Error, code);
    assert.deepEqual([e.code, e.retryable, e.id, e.message], [code, retry, 7, "m"]);
  }
  const e = opd.errorFromAnswer({ ok: false, error: { code: "new_code", message: "x" } });
  assert.ok(e instanceof opd.OpdError);
  assert.equal(e.code, "new_code");
});

test("exec request fields", () => {
  const req = opd.execRequest("py", "print(1)", {
    stdin: "in", args: [1, "b"], env: { A: "1" }, files: { "t.txt": "T", "b.bin": Buffer.from([0, 255]) },
    timeout: 2.5, compileTimeout: 1, cpuTimeMs: 100, memoryBytes: 1 << 26, maxProcesses: 8,
    outputMaxBytes: 10, fileSizeMaxBytes: 0, outputFiles: ["o"], mode: "cold", id: "x",
    extra: { new_field: true },
  });
  assert.deepEqual(req, {
    op: "exec", lang: "py", code: "print(1)", stdin: "in", args: ["1", "b"], env: { A: "1" },
    files: [{ name: "t.txt", content: "T" }, { name: "b.bin", content: "AP8=", encoding: "base64" }],
    timeout_ms: 2500, compile_timeout_ms: 1000, cpu_time_ms: 100, memory_bytes: 1 << 26,
    max_processes: 8, output_max_bytes: 10, file_size_max_bytes: 0, output_files: ["o"],
    mode: "cold", id: "x", new_field: true,
  });
  assert.throws(() => opd.execRequest("py", "", { nope: 1 }), TypeError);
});

test("session exec phases", () => {
  const sid = "0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b";
  assert.deepEqual(opd.sessionExecRequest(sid, "int main(void){}", { phase: "compile" }),
    { op: "session_exec", session: sid, code: "int main(void){}", phase: "compile" });
  assert.deepEqual(opd.sessionExecRequest(sid, null, { phase: "run", stdin: "1 2", args: [3] }),
    { op: "session_exec", session: sid, phase: "run", stdin: "1 2", args: ["3"] });
});

const socketPath = process.env.OPD_SOCKET;
const daemon = { skip: socketPath ? false : "no opd (run through test/with-opd.py)" };

test("run: every exec field against opd", daemon, async () => {
  const code = "import os, sys\n" +
    "print(open('data.txt').read(), sys.argv[1:], os.environ['GREETING'], input())\n" +
    "open('out.bin', 'wb').write(open('in.bin', 'rb').read()[::-1])\n" +
    "sys.stdout.flush()\n" +
    "sys.stdout.buffer.write(bytes([0, 255]))\n" +
    "sys.exit(3)";
  const res = await opd.run("py", code, {
    socketPath, stdin: "typed", args: ["-v"], env: { GREETING: "hi" },
    files: { "data.txt": "DATA", "in.bin": Buffer.from([1, 2, 255]) }, outputFiles: ["out.bin", "nope"],
    timeout: 60, cpuTimeMs: 30000, memoryBytes: 128 << 20, maxProcesses: 32,
    outputMaxBytes: 4096, fileSizeMaxBytes: 1 << 20, mode: "cold",
  });
  assert.ok(res instanceof opd.Result);
  assert.deepEqual(res.stdoutBytes, Buffer.concat([Buffer.from("DATA ['-v'] hi typed\n"), Buffer.from([0, 255])]));
  assert.deepEqual([res.exitCode, res.signal, res.timedOut, res.success, res.status],
    [3, null, false, false, "runtime_error"]);
  assert.deepEqual([res.lang, res.mode], ["python", "cold"]);
  assert.deepEqual(res.files["out.bin"], Buffer.from([255, 2, 1]));
  assert.deepEqual(res.fileErrors, { nope: "not_found" });
  assert.ok(res.timingsMs.total > 0);
  assert.ok(res.usage.wall_ms >= 0);
});

test("pipelining, errors, ops on one connection", daemon, async () => {
  const c = new opd.Client({ socketPath });
  try {
    const slow = c.run("bash", "sleep 1; echo slow", { timeout: 60 });
    const stuck = c.run("bash", "sleep 30", { timeout: 1 });
    const small = c.run("bash", "head -c 100 /dev/zero | tr '\\0' x", { outputMaxBytes: 10, timeout: 60 });
    assert.equal((await c.ping()).pong, true); // answered while the execs run
    const [rSlow, rStuck, rSmall] = await Promise.all([slow, stuck, small]);
    assert.deepEqual([rSlow.stdout, rSlow.exitCode, rSlow.success], ["slow\n", 0, true]);
    assert.deepEqual([rStuck.timedOut, rStuck.exitCode], [true, null]);
    assert.deepEqual([rSmall.truncated, rSmall.status], [true, "output_limit"]);
    await assert.rejects(c.run("cobol", "x"), (e) => e instanceof opd.UnknownLanguage &&
      e.message.includes("python") && !e.retryable);
    await assert.rejects(c.run("python", "x", { extra: { no_such_field: 1 } }),
      (e) => e instanceof opd.BadRequest && e.message.includes("no_such_field"));
    await assert.rejects(c.run("bash", "x", { compileTimeout: 1 }), opd.BadRequest);
    await assert.rejects(c.call({ op: "frobnicate" }), opd.UnknownOp);
    assert.ok((await c.metrics()).includes("opd_exec_requests_total"));
    assert.ok((await c.status()).languages.some((l) => l.name === "bash"));
    assert.equal(c.connections, 1); // the connection survived every error
  } finally {
    c.close();
  }
});

test("stream: events as an async iterator, then the result", daemon, async () => {
  const c = new opd.Client({ socketPath });
  try {
    const ex = await c.stream("bash",
      "for i in $(seq 1 20); do echo out$i; echo err$i >&2; done; printf '\\377' >&2; exit 4",
      { timeout: 60 });
    const events = [];
    for await (const e of ex) events.push(e);
    const join = (s) => Buffer.concat(events.filter((e) => e.stream === s).map((e) => e.data));
    assert.equal(join("stdout").toString(), Array.from({ length: 20 }, (_, i) => `out${i + 1}\n`).join(""));
    assert.deepEqual(join("stderr"), Buffer.concat([
      Buffer.from(Array.from({ length: 20 }, (_, i) => `err${i + 1}\n`).join("")), Buffer.from([255])]));
    assert.deepEqual([ex.result.streamed, ex.result.stdout, ex.result.exitCode], [true, "", 4]);
  } finally {
    c.close();
  }
});

test("interactive stdin", daemon, async () => {
  const c = new opd.Client({ socketPath });
  try {
    const ex = await c.stream("python", "import sys\nprint('ready', flush=True)\n" +
      "for line in sys.stdin.buffer:\n    print('got', line.strip().hex(), flush=True)\nprint('bye')\n",
    { stdinStream: true, timeout: 60 });
    let seen = Buffer.alloc(0);
    const it = ex[Symbol.asyncIterator]();
    const until = async (text) => {
      while (!seen.includes(text)) {
        const { value, done } = await it.next();
        assert.ok(!done, `ended before ${text}`);
        assert.equal(value.stream, "stdout");
        seen = Buffer.concat([seen, value.data]);
      }
      assert.equal(ex.result, null); // still running
    };
    await until("ready\n");
    ex.sendStdin("one\n");
    await until("got 6f6e65\n");
    ex.sendStdin(Buffer.from([0, 255, 10]), { eof: true });
    for (;;) {
      const { value, done } = await it.next();
      if (done) break;
      seen = Buffer.concat([seen, value.data]);
    }
    assert.equal(seen.toString("latin1"), "ready\ngot 6f6e65\ngot 00ff\nbye\n");
    assert.deepEqual([ex.result.exitCode, ex.stdinErrors], [0, []]);
    ex.sendStdin("late\n"); // its exec is over: refused as an event nobody waits for
    assert.equal((await c.ping()).pong, true);
  } finally {
    c.close();
  }
});

test("session: files kept between runs, gone once closed", daemon, async () => {
  const c = new opd.Client({ socketPath });
  try {
    const s = await c.openSession("python", { idleTimeout: 600, timeout: 60 });
    assert.match(s.id, /^[0-9a-f-]{36}$/);
    assert.deepEqual(s.info.limits, { timeout_ms: 60000 });
    let r = await s.run("open('kept.txt', 'w').write('kept')\nprint('one')");
    assert.deepEqual([r.stdout, r.mode], ["one\n", "session"]);
    r = await s.run("print(open('kept.txt').read())");
    assert.equal(r.stdout, "kept\n");
    assert.deepEqual((await c.sessions()).map((x) => x.session), [s.id]);
    await s.close();
    await assert.rejects(s.run("print(1)"), opd.NotFound);
    await s.close(); // already gone: no error
  } finally {
    c.close();
  }
});

test("session: repl keeps the interpreter's globals", daemon, async () => {
  const c = new opd.Client({ socketPath });
  try {
    const s = await c.openSession("python", { repl: true });
    assert.equal(s.info.repl, true);
    await s.run("x = 6");
    let r = await s.run("print(x * 7)");
    assert.deepEqual([r.stdout, r.replEnded], ["42\n", false]);
    r = await s.run("exit(2)");
    assert.deepEqual([r.exitCode, r.replEnded], [2, true]);
    await assert.rejects(s.run("print(x)"), opd.NotFound);
  } finally {
    c.close();
  }
});

test("session: fork, pause, resume", daemon, async () => {
  const c = new opd.Client({ socketPath });
  const opened = [];
  try {
    const s = await c.openSession("python", { idleTimeout: 600 });
    opened.push(s);
    await s.run("open('n.txt', 'w').write('parent')");
    const [f] = await s.fork(1);
    opened.push(f);
    assert.match(f.id, /^[0-9a-f-]{36}$/);
    assert.notEqual(f.id, s.id);
    await f.run("open('n.txt', 'w').write('fork')");
    assert.equal((await s.run("print(open('n.txt').read())")).stdout, "parent\n");
    assert.equal((await f.run("print(open('n.txt').read())")).stdout, "fork\n");
    const p = await f.pause();
    assert.deepEqual([p.session, p.state], [f.id, "paused"]);
    assert.ok(p.disk_bytes > 0);
    await assert.rejects(f.run("print(1)"), opd.Busy);
    const r = await f.resume();
    assert.deepEqual([r.session, r.state], [f.id, "idle"]);
    assert.equal((await f.run("print(open('n.txt').read())")).stdout, "fork\n");
  } finally {
    for (const s of opened) await s.close();
    c.close();
  }
});

test("batch", daemon, async () => {
  const c = new opd.Client({ socketPath });
  try {
    const seen = [];
    const b = await c.batch([
      { lang: "bash", code: "echo one", timeout: 60 },
      { lang: "bash", code: "exit 3", id: "three" },
      { lang: "cobol", code: "x" },
    ], { onResult: (r) => seen.push(r) });
    assert.deepEqual([b.count, b.ok, b.failed], [3, 1, 2]);
    assert.equal(b.results[0].stdout, "one\n");
    assert.deepEqual([b.results[1].id, b.results[1].exitCode], ["three", 3]);
    assert.ok(b.results[2] instanceof opd.UnknownLanguage);
    assert.equal(seen.length, 3);
  } finally {
    c.close();
  }
});

test("no daemon", async () => {
  await assert.rejects(opd.run("bash", "true", { socketPath: "/nonexistent/opd.sock" }),
    (e) => e.code === "ENOENT");
});

test("package: npm packs the module, its types and README", { skip: (() => {
  try { execFileSync("npm", ["--version"], { stdio: "ignore" }); return false; } catch { return "no npm"; }
})() }, () => {
  const dir = fileURLToPath(new URL("..", import.meta.url));
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--offline"], { cwd: dir, encoding: "utf8" });
  const files = JSON.parse(out)[0].files.map((f) => f.path).sort();
  assert.deepEqual(files, ["README.md", "index.d.ts", "index.js", "package.json"]);
});
