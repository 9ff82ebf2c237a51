// The CoffeeScript front end of op-agent's node runner (`node node.js coffee.js`, see node.js):
// it stands in for `coffee file args...`. The compiler (lexer, parser, code generator, most of
// what `coffee` takes to start) and its `.coffee` require hook are loaded as the runner starts;
// a program is run by the same `command.run()` that /usr/bin/coffee calls, on the same
// process.argv, so that its options, the compile error report, the report of an error thrown as
// the program runs (its stack, exit 1), `require.main`, `__filename` and `process.argv`
// (['coffee', file, args...]) are those of `coffee`.
'use strict';

const fs = require('fs');
const path = require('path');

const COFFEE = '/usr/bin/coffee';
// /usr/bin/coffee links to the package's bin/coffee, which loads ../lib/coffeescript/command.
const LIB = path.join(path.dirname(fs.realpathSync(COFFEE)), '..', 'lib', 'coffeescript');
const COMMAND = require.resolve(path.join(LIB, 'command'));
// Where bin/coffee looks first for a copy of its own, in the working directory.
const LOCAL = [
  'node_modules/coffeescript/lib/coffeescript',
  'node_modules/coffeescript/lib/coffee-script',
  'node_modules/coffee-script/lib/coffee-script',
];

const command = require(COMMAND);
require(path.join(LIB, 'register'));

// The runner's module, into which CoffeeScript.run compiles the program as `coffee` does into
// bin/coffee's (require.main of the compiler's modules).
const MAIN = require.main;
const SAVED = { filename: MAIN.filename, paths: MAIN.paths, exports: MAIN.exports };

module.exports = {
  argv: (req) => [process.execPath, COFFEE, req.file].concat(req.argv),
  // A working directory with a coffeescript of its own: `coffee` runs that one.
  fresh: (req) => LOCAL.some((p) => fs.existsSync(path.join(req.cwd, p))),
  // What bin/coffee calls. From the tick queue, it is the last frame of a stack under the
  // program, where `coffee` has bin/coffee's.
  run: command.run,
  // After a prime: the main module is the runner's again, and command.js, which keeps the
  // files it ran and the options it parsed, is loaded anew (the compiler's modules stay).
  forget: () => {
    delete require.cache[COMMAND];
    module.exports.run = require(COMMAND).run;
    MAIN.filename = SAVED.filename;
    MAIN.paths = SAVED.paths;
    MAIN.exports = SAVED.exports;
    delete MAIN.options;
  },
};
