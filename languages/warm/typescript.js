// The TypeScript front end of op-agent's node runner (`node node.js typescript.js`, see node.js):
// it stands in for the compile command `tsc ARGS...` and then for `node main.js args...`.
//
// The compiler is the package's own lib/tsc.js (what /usr/bin/tsc runs), loaded as the runner
// starts, without the few lines at its end that run the command line of the process it is in.
// A compile line is run by the same `ts.executeCommandLine()` those lines call, with the compile
// command's arguments: so tsc's own code parses them, reads the files, reports the diagnostics
// (same text, on stdout) and writes main.js (--noEmitOnError as always), and its exit status is
// tsc's. The source files of declarations outside the working directory (TypeScript's lib
// .d.ts files, /usr/lib/op/typescript/node.d.ts) are kept once parsed, keyed by path, content
// and the options that shape a source file (TypeScript's own rule for reusing a source file in
// a new program), so a compile after the prime parses only the program's own files. The run is
// `node main.js`, as node.js runs a program without a front end.
'use strict';

const fs = require('fs');
const path = require('path');
const Module = require('module');

const TSC = '/usr/bin/tsc';
// /usr/bin/tsc links to the package's bin/tsc, which requires ../lib/tsc.js.
const TSC_JS = fs.realpathSync(
  path.join(path.dirname(fs.realpathSync(TSC)), '..', 'lib', 'tsc.js'));
// The catalogue's run command, `node main.js`, in the run's directory.
const RUN = 'main.js';
// A prime compiles its program twice, the second time only when the first took less than this:
// natively (TypeScript 4.8, node 18-20) a hello world's compiles took 2.6, 1.1, 0.4, 0.3 s, most
// of it checking the lib files, as V8 optimizes the checker; under TCG a compile takes minutes
// on a loaded machine, and the pool gives a prime 30 s plus limit.compile_timeout_ms_max.
const PRIME_ROUND_MS = 150000;

// What tsc.js does after its namespace is built: the deprecation log, the debug info, source
// maps under NODE_ENV=development (never here: NODE_* is run by a fresh node), stdout made
// blocking (here: node.js writes "done N" only once stdout is flushed), then the command line.
const TAIL = `// This file actually uses arguments passed on commandline and executes it
// enable deprecation logging
ts.Debug.loggingHost = {
    log: function (_level, s) {
        ts.sys.write("".concat(s || "").concat(ts.sys.newLine));
    }
};
if (ts.Debug.isDebugging) {
    ts.Debug.enableDebugInfo();
}
if (ts.sys.tryEnableSourceMapsForHost && /^development$/i.test(ts.sys.getEnvironmentVariable("NODE_ENV"))) {
    ts.sys.tryEnableSourceMapsForHost();
}
if (ts.sys.setBlocking) {
    ts.sys.setBlocking();
}
ts.executeCommandLine(ts.sys, ts.noop, ts.sys.args);
`;

// tsc.js as a module of its own, its end replaced by an export of its namespace; null when the
// file does not end as this front end knows (another TypeScript): every compile is then run by
// the compile command itself.
function loadTsc() {
  const src = fs.readFileSync(TSC_JS, 'utf8');
  const at = src.lastIndexOf(TAIL.split('\n')[0]);
  if (at < 0 || src.slice(at) !== TAIL) return null;
  const m = new Module(TSC_JS, null);
  m.filename = TSC_JS;
  m.paths = Module._nodeModulePaths(path.dirname(TSC_JS));
  m._compile(src.slice(0, at) + 'module.exports = ts;\n', TSC_JS);
  const ts = m.exports;
  ts.Debug.loggingHost = {
    log: (_level, s) => ts.sys.write(`${s || ''}${ts.sys.newLine}`),
  };
  if (ts.Debug.isDebugging) ts.Debug.enableDebugInfo();
  return ts;
}

const ts = loadTsc();
const SYS = ts && ts.sys;

// Parsed source files kept between compiles: key -> {text, file}.
const kept = new Map();

// The compiler host tsc makes for a compile: its getSourceFile keeps the source files of
// declarations outside the working directory, and gives one back while the file's text and
// the options are the same. A program takes a source file as it is (TypeScript reuses them so
// in watch mode and in its language service: its checker merges their symbols into tables of
// its own, cloning what it merges).
function keepSourceFiles() {
  const createHost = ts.createCompilerHostWorker;
  ts.createCompilerHostWorker = function (options, setParentNodes, system) {
    const host = createHost.apply(this, arguments);
    const getSourceFile = host.getSourceFile;
    const shape = JSON.stringify(ts.sourceFileAffectingCompilerOptions.map(
      (o) => ts.getCompilerOptionValue(options, o)));
    const cwd = path.join(process.cwd(), path.sep);
    host.getSourceFile = function (fileName, languageVersionOrOptions, onError, createNew) {
      if (createNew || !fileName.endsWith('.d.ts') || fileName.startsWith(cwd) ||
          !path.isAbsolute(fileName))
        return getSourceFile.apply(this, arguments);
      const v = typeof languageVersionOrOptions === 'object' ? languageVersionOrOptions
        : { languageVersion: languageVersionOrOptions };
      const key = JSON.stringify([fileName, shape, v.languageVersion, v.impliedNodeFormat,
        !!setParentNodes]);
      let text;
      try {
        text = host.readFile(fileName);
      } catch (e) {
        return getSourceFile.apply(this, arguments); // it reports the error
      }
      const k = kept.get(key);
      if (k && text !== undefined && k.text === text) return k.file;
      const file = getSourceFile.apply(this, arguments);
      if (file) kept.set(key, { text: file.text, file });
      return file;
    };
    return host;
  };
}
if (ts) keepSourceFiles();

// Variables tsc.js reads as it loads (TS_ETW_MODULE_PATH, the TSC_WATCH* settings, a debugger's
// VSCODE_INSPECTOR_OPTIONS): the loaded compiler has the runner's.
function envAtLoad(env) {
  return Object.keys(env).some((k) => k.startsWith('TS_') || k.startsWith('TSC_') ||
    k === 'VSCODE_INSPECTOR_OPTIONS');
}

// Modes the runner does not run in its process: --build, --watch (tsc keeps running), and the
// profiles and traces of the compiler's own process.
function ownProcess(args) {
  if (args.length && /^--?(b|build)$/i.test(args[0])) return true;
  const o = ts.parseCommandLine(args, (p) => SYS.readFile(p)).options;
  return !!(o.watch || o.generateCpuProfile || o.generateTrace);
}

// One compile, in the request's directory and environment (node.js's enter()). tsc writes
// everything on stdout; it is kept until tsc is done, so that a compiler that throws (a crash of
// `tsc`, reported by node as an uncaught exception) leaves nothing behind, and the compile
// command runs it instead, for `tsc`'s own report. The exit status, or null for that case.
function compileOnce(req) {
  const args = req.compile.slice(1);
  const out = [];
  let status;
  const sys = Object.assign({}, SYS, {
    args,
    write: (s) => out.push(s),
    // tsc's own memoizes the first directory it is asked for
    getCurrentDirectory: () => process.cwd(),
    exit: (code) => {
      if (status === undefined) status = code;
    },
  });
  ts.setSys(sys);
  try {
    ts.executeCommandLine(sys, ts.noop, args);
  } catch (e) {
    status = undefined;
  } finally {
    ts.setSys(SYS);
  }
  if (status === undefined) return null;
  if (out.length) process.stdout.write(out.join(''));
  return status;
}

module.exports = {
  argv: (req) => [process.execPath, path.join(req.cwd, RUN)].concat(req.argv),
  run: Function.prototype.call.bind(Module.runMain, Module), // as node.js's: no frame of its own
  forget: (req) => delete Module._cache[path.join(req.cwd, RUN)],
  // A compile the runner's tsc would not run as `tsc` does: the compile command runs it. The run
  // (`node main.js`) is node.js's to judge.
  fresh: (req) => !!req.compile &&
    (!ts || envAtLoad(req.env) || ownProcess(req.compile.slice(1))),
  // A prime's program is compiled twice (PRIME_ROUND_MS): V8 has then optimized the checker's
  // hot paths (each compile checks TypeScript's lib files again, as tsc does).
  compile: (req) => {
    const t0 = performance.now();
    const status = compileOnce(req);
    if (!req.prime || performance.now() - t0 >= PRIME_ROUND_MS) return status;
    return compileOnce(req);
  },
};

delete require.cache[__filename]; // as `node main.js`, whose module cache holds only its own
