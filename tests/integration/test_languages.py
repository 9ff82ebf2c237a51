"""Every catalogue language whose image is built (in OPD_IMAGES): hello world from a warm pool,
stdin, stderr and a non-zero exit, and for compiled languages a compile error answered as such.
CI builds bash, python, node and c; scripts/test-languages builds and tests all of them.

OPD_TEST_LANGS=a,b limits the run to those languages (each must be built)."""
import json
import os
import subprocess
import unittest

from opdtest import IMAGES, OPD, SOURCE, Opd, pool, wait_for

CATALOGUE = os.path.join(SOURCE, "languages", "languages.json")

# name: (hello world, a program that copies stdin to stdout, writes "oops" on stderr and exits
# 3, a program that does not compile or None)
PROGRAMS = {
    "bash": ('echo "hello world"',
             'cat; echo oops >&2; exit 3',
             None),
    "python": ('print("hello world")',
               'import sys\nsys.stdout.write(sys.stdin.read())\nprint("oops", file=sys.stderr)\n'
               'sys.exit(3)',
               None),
    "node": ('console.log("hello world");',
             'const fs = require("fs");\nprocess.stdout.write(fs.readFileSync(0));\n'
             'console.error("oops");\nprocess.exitCode = 3;',
             None),
    "ruby": ('puts "hello world"',
             'print $stdin.read\n$stderr.puts "oops"\nexit 3',
             None),
    "perl": ('print "hello world\\n";',
             'local $/; print <STDIN>; print STDERR "oops\\n"; exit 3;',
             None),
    "php": ('<?php echo "hello world\\n";',
            '<?php echo stream_get_contents(STDIN); fwrite(STDERR, "oops\\n"); exit(3);',
            None),
    "lua": ('print("hello world")',
            'io.write(io.read("a"))\nio.stderr:write("oops\\n")\nos.exit(3)',
            None),
    "c": ('#include <stdio.h>\nint main(void) { puts("hello world"); return 0; }\n',
          '#include <stdio.h>\nint main(void)\n{\n\tint c;\n\twhile ((c = getchar()) != EOF)\n'
          '\t\tputchar(c);\n\tfputs("oops\\n", stderr);\n\treturn 3;\n}\n',
          'int main(void) { return undeclared_name; }\n'),
    "cpp": ('#include <iostream>\nint main() { std::cout << "hello world" << std::endl; }\n',
            '#include <iostream>\nint main()\n{\n\tstd::cout << std::cin.rdbuf();\n'
            '\tstd::cerr << "oops" << std::endl;\n\treturn 3;\n}\n',
            'int main() { return undeclared_name; }\n'),
    "go": ('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello world") }\n',
           'package main\n\nimport (\n\t"fmt"\n\t"io"\n\t"os"\n)\n\nfunc main() {\n'
           '\tio.Copy(os.Stdout, os.Stdin)\n\tfmt.Fprintln(os.Stderr, "oops")\n\tos.Exit(3)\n}\n',
           'package main\n\nfunc main() { return undeclared_name }\n'),
    "rust": ('fn main() { println!("hello world"); }\n',
             'use std::io::{Read, Write};\n\nfn main() {\n    let mut s = String::new();\n'
             '    std::io::stdin().read_to_string(&mut s).unwrap();\n'
             '    std::io::stdout().write_all(s.as_bytes()).unwrap();\n'
             '    eprintln!("oops");\n    std::process::exit(3);\n}\n',
             'fn main() { undeclared_name(); }\n'),
    "java": ('public class Main {\n    public static void main(String[] a) {\n'
             '        System.out.println("hello world");\n    }\n}\n',
             'public class Main {\n    public static void main(String[] a) throws Exception {\n'
             '        System.out.write(System.in.readAllBytes());\n        System.out.flush();\n'
             '        System.err.println("oops");\n        System.exit(3);\n    }\n}\n',
             'public class Main {\n    public static void main(String[] a) { undeclared(); }\n}\n'),
}

STDIN = "line one\nline two ünïcode\n"


def catalogue():
    with open(CATALOGUE) as f:
        return json.load(f)["languages"]


def built(name):
    return os.path.exists(os.path.join(IMAGES, name, "rootfs.ext4"))


def languages_under_test():
    langs = [e["name"] for e in catalogue() if built(e["name"])]
    only = os.environ.get("OPD_TEST_LANGS")
    if only:
        wanted = [n for n in only.split(",") if n]
        missing = [n for n in wanted if n not in langs]
        if missing:
            raise RuntimeError(f"OPD_TEST_LANGS names languages not built in {IMAGES}: {missing}")
        langs = wanted
    return langs


class Catalogue(unittest.TestCase):
    def test_every_language_has_test_programs(self):
        names = [e["name"] for e in catalogue()]
        self.assertEqual(sorted(names), sorted(PROGRAMS))
        for e in catalogue():
            compiled = "compile" in e
            self.assertEqual(compiled, PROGRAMS[e["name"]][2] is not None, e["name"])
            self.assertTrue(e.get("prime"), f"{e['name']}: no prime program")

    def test_check_config_reports_the_pools_and_refuses_over_budget(self):
        langs = languages_under_test()
        conf = {"images_dir": IMAGES, "languages": CATALOGUE, "pool.size": "2",
                "languages.enabled": ",".join(langs)}
        args = [OPD, "--check-config"] + [f"--set={k}={v}" for k, v in conf.items()]
        ok = subprocess.run(args, capture_output=True, text=True)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        lines = [l for l in ok.stdout.splitlines() if l.startswith("# pool ")]
        self.assertEqual(len(lines), len(catalogue()))
        total = int(ok.stdout.split("# pools: ")[1].split()[0])
        self.assertGreater(total, 0)
        over = subprocess.run(args + [f"--set=pool.memory_budget_mb={total - 1}"],
                              capture_output=True, text=True)
        self.assertEqual(over.returncode, 2, over.stdout + over.stderr)
        self.assertIn(f"pool.memory_budget_mb = {total - 1}", over.stderr)
        self.assertIn(f"would hold {total} MiB", over.stderr)
        fits = subprocess.run(args + [f"--set=pool.memory_budget_mb={total}"],
                              capture_output=True, text=True)
        self.assertEqual(fits.returncode, 0, fits.stderr)


class Languages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.langs = languages_under_test()
        # One paused clone per language; every request waits for it (see run_code).
        cls.opd = Opd({"pool.size": "1", "max_vms": "4", "languages.enabled": ",".join(cls.langs),
                       "pool.fallback_cold": "no"})
        cls.versions = {}
        for lang in cls.langs:
            a = cls.opd.call({"op": "snapshot", "action": "create", "lang": lang, "id": "s"},
                             timeout=900)
            assert a["ok"], (lang, a, cls.opd.read_log()[-3000:])
            cls.versions[lang] = a["version"]

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def wait_pool(self, lang):
        """Until a primed clone of the current snapshot is paused in the pool; a pool scaled
        to no standing clone (more languages than max_vms) restores one for the request, in
        the slot of an idle clone of another language."""
        wait_for(lambda: (lambda p: p["snapshot"] == self.versions[lang] and (
            p["standing"] == 0 or (p["ready"] >= 1 and p["restoring"] == 0)))(pool(self.opd, lang)),
            600, lambda: f"a primed {lang} clone: {pool(self.opd, lang)}", step=0.2)

    def run_code(self, lang, code, **kw):
        # Each request on a primed clone (mode warm, once the pool refilled): the product's
        # path, and no cold compile racing a deadline. The largest time limits: under TCG a
        # JVM or V8 start takes seconds, g++ or javac tens; a test does not depend on timing.
        self.wait_pool(lang)
        req = {"op": "exec", "lang": lang, "code": code, "id": lang, "timeout_ms": 60000,
               "mode": "warm"}
        if PROGRAMS[lang][2] is not None:  # g++, rustc, javac take tens of seconds under TCG
            req["compile_timeout_ms"] = 120000
        req.update(kw)
        a = self.opd.call(req, timeout=600)
        self.assertTrue(a["ok"], (lang, a))
        self.assertEqual(a["lang"], lang)
        return a

    def test_hello_world_warm(self):
        for lang in self.langs:
            with self.subTest(lang=lang):
                a = self.run_code(lang, PROGRAMS[lang][0])
                self.assertEqual(a["mode"], "warm")
                self.assertEqual(a["stdout"], "hello world\n")
                self.assertEqual(a["stderr"], "")
                self.assertEqual(a["exit_code"], 0)
                self.assertNotEqual(a.get("status"), "compile_error")
                self.assertEqual("compile" in a, PROGRAMS[lang][2] is not None)
                if "compile" in a:
                    self.assertEqual(a["compile"]["exit_code"], 0, a["compile"])

    def test_stdin_stderr_exit_code(self):
        for lang in self.langs:
            with self.subTest(lang=lang):
                a = self.run_code(lang, PROGRAMS[lang][1], stdin=STDIN)
                self.assertEqual(a["stdout"], STDIN)
                self.assertEqual(a["stderr"], "oops\n")
                self.assertEqual(a["exit_code"], 3)
                self.assertIsNone(a["signal"])
                self.assertFalse(a["timed_out"])

    def test_compile_error(self):
        for lang in self.langs:
            bad = PROGRAMS[lang][2]
            if bad is None:
                continue
            with self.subTest(lang=lang):
                a = self.run_code(lang, bad)
                self.assertEqual(a["status"], "compile_error")
                c = a["compile"]
                self.assertNotEqual(c["exit_code"], 0)
                self.assertIn("undeclared", c["stderr"] + c["stdout"])
                self.assertFalse(c["timed_out"])
                # the program did not run
                self.assertEqual((a["stdout"], a["stderr"], a["exit_code"]), ("", "", None))

    def test_compile_timeout_and_limits(self):
        compiled = [l for l in self.langs if PROGRAMS[l][2] is not None]
        interpreted = [l for l in self.langs if PROGRAMS[l][2] is None]
        if interpreted:
            a = self.opd.call({"op": "exec", "lang": interpreted[0], "code": "x",
                               "compile_timeout_ms": 1000, "id": 1})
            self.assertEqual(a["error"]["code"], "bad_request", a)
            self.assertIn("not a compiled language", a["error"]["message"])
        if not compiled:
            return
        lang = compiled[0]
        a = self.opd.call({"op": "exec", "lang": lang, "code": PROGRAMS[lang][0],
                           "compile_timeout_ms": 10 ** 9, "id": 2})
        self.assertEqual(a["error"]["code"], "bad_request", a)
        self.assertIn("compile_timeout_ms", a["error"]["message"])
        # 1 ms: the compiler is stopped; an answer, not a daemon error
        a = self.run_code(lang, PROGRAMS[lang][0], compile_timeout_ms=1)
        self.assertEqual(a["status"], "compile_error")
        self.assertTrue(a["compile"]["timed_out"], a["compile"])
        self.assertIsNone(a["exit_code"])

    def test_status_lists_versions_and_unknown_language_lists_them(self):
        st = self.opd.call({"op": "status"})
        by_name = {l["name"]: l for l in st["languages"]}
        for lang in self.langs:
            with open(os.path.join(IMAGES, lang, "version")) as f:
                self.assertEqual(by_name[lang]["version"], f.read().strip())
            self.assertTrue(by_name[lang]["available"])
            self.assertEqual(by_name[lang]["compiled"], PROGRAMS[lang][2] is not None)
        a = self.opd.call({"op": "exec", "lang": "cobol", "code": "x", "id": 3})
        self.assertEqual(a["error"]["code"], "unknown_language")
        for lang in self.langs:
            self.assertIn(lang, a["error"]["message"])


if __name__ == "__main__":
    unittest.main()
