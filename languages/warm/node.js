// op-agent's warm runner for Node.js: started in each restored clone after the clone's entropy
// was added to the kernel's generator ("warm": {"start": "clone"} in languages.json), so that
// the V8 Math.random state and OpenSSL's generator it seeds at start-up are the clone's own;
// never before a snapshot, whose clones would all share them. It waits on fd 3 for one program
// and becomes it.
//
// `node node.js` stands in for `node file args...`. `node node.js FRONT` stands in for a
// language that node runs through a program of its own (`coffee file args...`): FRONT is a
// module (languages/warm/coffee.js) loaded before the runner says ready, which loads that
// language's compiler and says how a program is run:
//   argv(req)   what process.argv is as the cold command starts: [node, script..., file, args...]
//   run()       runs the program that process.argv names, from the tick queue
//   fresh(req)  true when the cold command would not run as the runner does (optional)
//   forget(req) drops what a prime's run left behind (optional)
//   compile(req) a compiled language's compile command, req.compile, run in the runner's process
//               (`tsc ...`: languages/warm/typescript.js): its output on stdout and stderr, its
//               exit status returned; null to have the command run instead (optional: without
//               it, the command runs as a process of its own)
//
// Protocol with op-agent (fd 3 is a socketpair end): the runner writes "ready\n" once started;
// the agent writes one JSON line {"file", "argv", "cwd", "env"}; the runner becomes that program:
// same argv, cwd, environment, exit status, uncaught exception report as the cold command.
// A line with "prime": true is run with its output discarded (the agent reads and drops it) and
// its module forgotten, then "ready\n" again. A line with "compile" (the compile command of a
// compiled language) is compiled first: the compiler's output on stdout and stderr, then
// "done N\n" on fd 3 (N its exit status), then the run's line comes (the agent ends the runner
// when N is not 0); a prime's is compiled, then run when that succeeded.
// Once the program is over (node has run its 'exit' listeners) the runner writes "done N\n"
// (N the status node would exit with), closes fds 0-2 and waits to be killed: node's own exit,
// V8's heap torn down, is not on the answer's time (see reportEnd()).
'use strict';

const fs = require('fs');
const Module = require('module');
const threads = require('worker_threads');

// `node file args...`: the file is the main module.
const NODE = {
  argv: (req) => [process.execPath, req.file].concat(req.argv),
  run: Function.prototype.call.bind(Module.runMain, Module), // no frame of its own
  forget: (req) => delete Module._cache[req.file],
};
const front = process.argv.length > 2 ? require(process.argv[2]) : NODE;

function writeLine(text) {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) off += fs.writeSync(3, buf, off);
}

function readLine() {
  const chunks = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    let n;
    try {
      n = fs.readSync(3, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === 'EINTR') continue;
      throw e;
    }
    if (n === 0) process.exit(70); // the agent went away
    chunks.push(Buffer.from(buf.subarray(0, n)));
    if (buf[n - 1] === 0x0a) break;
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function setEnv(env) {
  for (const k of Object.keys(process.env)) delete process.env[k];
  Object.assign(process.env, env);
}

// What the cold command would have been started with, from the request.
function enter(req) {
  process.chdir(req.cwd);
  setEnv(req.env);
  process.argv = front.argv(req);
  // The global module paths come from HOME and NODE_PATH, read at start-up.
  Module._initPaths();
}

// Settings node reads only as it starts (NODE_OPTIONS, ...): a program given any of them is run
// by a node of its own, as it would have been without a runner; so is one the front end says
// the cold command would run otherwise. After enter(req).
function needsFreshNode(req) {
  const env = Object.keys(req.env);
  if (env.some((k) => k.startsWith('NODE_') || k.startsWith('UV_'))) return true;
  return front.fresh ? front.fresh(req) : false;
}

// The compile command as a process of its own, on the runner's stdout and stderr, without stdin
// (the run's is on fd 0). After enter(req).
function compileFresh(req) {
  const { spawnSync } = require('child_process');
  const r = spawnSync(req.compile[0], req.compile.slice(1),
    { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) {
    process.stderr.write(`${req.compile[0]}: ${r.error.message}\n`);
    return 127;
  }
  return r.status === null ? 128 + require('os').constants.signals[r.signal] : r.status;
}

// A line's compile command, in its directory and environment: its exit status.
function compile(req) {
  enter(req);
  const status = front.compile && !needsFreshNode(req) ? front.compile(req) : null;
  return status === null ? compileFresh(req) : status;
}

function runFresh() {
  const { spawnSync } = require('child_process');
  const r = spawnSync(process.execPath, process.argv.slice(1), { stdio: 'inherit' });
  if (r.signal) {
    process.removeAllListeners(r.signal);
    process.kill(process.pid, r.signal);
  }
  process.exit(r.status === null ? 1 : r.status);
}

// Run a program of op-agent's the way a user's runs (module loader, compile, console streams on
// the same pipes), then put the process back: this warms the emulator's translation cache and
// V8's lazily compiled functions, and nothing of the program stays reachable.
function prime(req) {
  const saved = { cwd: process.cwd(), env: { ...process.env }, argv: process.argv.slice() };
  try {
    enter(req);
    if (!req.compile || compile(req) === 0) front.run();
  } catch (e) {
    // ours, and its output is dropped anyway: the runner stays usable
  } finally {
    if (front.forget) front.forget(req);
    for (const k of Object.keys(Module._pathCache)) delete Module._pathCache[k];
    process.exitCode = undefined;
    process.chdir(saved.cwd);
    setEnv(saved.env);
    process.argv = saved.argv;
    Module._initPaths();
  }
}

// After a prime or a compile, once what it wrote has left the process (a pipe may have taken
// only part).
function whenFlushed(then) {
  const pending = [process.stdout, process.stderr].some((s) => s.writableLength > 0);
  if (pending) setTimeout(whenFlushed, 1, then);
  else then();
}

function serve() {
  writeLine('ready\n');
  const req = readLine();
  if (req.prime) {
    prime(req);
    whenFlushed(serve);
    return;
  }
  if (req.compile) {
    const status = compile(req);
    // What the compiler wrote is the compile's: in the pipes before "done".
    whenFlushed(() => {
      writeLine(`done ${status}\n`);
      start(readLine());
    });
    return;
  }
  start(req);
}

// The program's end, told on fd 3 once node has run the program's 'exit' listeners: "done N"
// with the status node would exit with, fds 0-2 closed (its output is written: stdout and
// stderr are pipes, which node writes synchronously), then the runner waits to be killed. Not
// told, and node exits as it would, when the end is not a plain one:
// - an uncaught exception or rejection: node prints its report after the 'exit' listeners;
// - a Worker still running: node would stop it as it exits, it must not run on;
// - fd 3 is no longer the runner's line (the program closed it and opened something there);
// - 'exit' emitted by the program itself (node sets process._exiting before it emits);
// - process.emit wrapped by the program (its wrapper goes on after this one returns).
// The line stays at fd 3 for the program: node opens a dozen descriptors of its own from 3 up
// as it starts, so under `node file` too the numbers a program gets start well above 3.
function reportEnd() {
  const line = fs.fstatSync(3);
  let fatal = false;
  let workers = 0;
  process.on('uncaughtExceptionMonitor', () => { fatal = true; });
  const Worker = threads.Worker;
  threads.Worker = class extends Worker {
    constructor(...args) {
      super(...args);
      workers++;
      this.once('exit', () => workers--);
    }
  };
  const emit = process.emit;
  let told = false;
  process.emit = function wrapper(name, code) {
    const ret = Reflect.apply(emit, this, arguments);
    if (name !== 'exit' || told || !process._exiting || fatal || workers > 0) return ret;
    // A wrapper the program put around this one runs on once it returns.
    if (process.emit !== wrapper) return ret;
    told = true;
    try {
      const now = fs.fstatSync(3);
      if (now.dev !== line.dev || now.ino !== line.ino) return ret;
      // What node exits with: the code it emitted, or what a listener set since.
      const status = (process.exitCode !== undefined ? process.exitCode : code) | 0;
      writeLine(`done ${status & 255}\n`);
      for (const fd of [0, 1, 2]) fs.closeSync(fd);
      fs.readSync(3, Buffer.alloc(1), 0, 1, null); // until the agent kills the runner
    } catch (e) {
      // the line is gone: node exits as it would have
    }
    return ret;
  };
}

function start(req) {
  enter(req);
  if (needsFreshNode(req)) {
    fs.closeSync(3);
    runFresh();
    return;
  }
  reportEnd();
  delete Module._cache[__filename];
  // From the tick queue, so that no frame of this file is under the program's: an uncaught
  // exception is reported, and ends the process with 1, as node reports a main module's.
  process.nextTick(front.run);
}

serve();
