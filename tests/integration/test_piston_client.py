"""The npm package piston-client (a Node.js client of Piston's API) against opd's Piston door: a
program written for Piston, given opd's URL as its server, lists the runtimes and runs bash,
python, javascript and c through the client's own calls, by language name and by alias, with
stdin and arguments, and finds what it looks at: stdout, stderr, exit code, language and
version. piston-client is pinned by tests/npm/package-lock.json and installed by
scripts/install-npm; tests/integration/piston-client.mjs makes the calls."""
import json
import os
import shutil
import subprocess
import unittest

from opdtest import NPM_DIR, Opd, free_port

NODE = shutil.which("node")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "piston-client.mjs")
# Piston's default run_timeout (3 s, what piston-client sends) is short for a node start under
# emulation on a busy machine: every run here asks for opd's limit.timeout_ms_max instead, and
# compiles for limit.compile_timeout_ms_max.
RUN = {"runTimeout": 60000}
COMPILE = {"compileTimeout": 120000, **RUN}
# Piston's names for opd's languages, where they differ
PISTON_NAME = {"node": "javascript", "cpp": "c++"}


class PistonClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not NODE or not os.path.isdir(os.path.join(NPM_DIR, "node_modules", "piston-client")):
            raise RuntimeError(f"node or piston-client under {NPM_DIR} missing: "
                               "run scripts/install-npm")
        cls.server = f"http://127.0.0.1:{free_port()}"
        cls.opd = Opd({"pool.size": "0", "piston.listen": cls.server[len("http://"):]})
        cls.langs = {g["name"]: g for g in cls.opd.call({"op": "status"})["languages"]
                     if g["available"] and g["enabled"]}
        for name in ("bash", "python", "node", "c"):
            assert name in cls.langs, f"no {name} image in the test images"

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def client(self, *calls, server=None):
        """What each call returned, made in order on one piston-client client."""
        p = subprocess.run([NODE, DRIVER, NPM_DIR, server or self.server],
                           input=json.dumps(list(calls)), capture_output=True, text=True,
                           timeout=900)
        self.assertEqual(p.returncode, 0, p.stderr)
        results = json.loads(p.stdout)
        self.assertEqual(len(results), len(calls))
        return results

    def version(self, name):
        return self.langs[name]["version"]

    def assert_ran(self, res, lang, stdout, code=0, stderr=""):
        """A run of opd's language lang as the user sees it: Piston's name for the language,
        the runtime's version, the program's streams and exit code."""
        self.assertEqual((res.get("language"), res.get("version")),
                         (PISTON_NAME.get(lang, lang), self.version(lang)), res)
        run = res["run"]
        self.assertEqual((run["stdout"], run["stderr"], run["code"], run["signal"]),
                         (stdout, stderr, code, None), res)
        self.assertEqual(run["output"], stdout + stderr)

    def test_runtimes(self):
        """runtimes(): every language opd serves, under Piston's name, with its version and
        aliases (opd's own name among them)."""
        (runtimes,) = self.client({"runtimes": []})
        got = {r["language"]: r for r in runtimes}
        self.assertEqual(len(got), len(runtimes))
        for name, g in self.langs.items():
            r = got[PISTON_NAME.get(name, name)]
            self.assertEqual(r["version"], g["version"])
            self.assertTrue(set(g["aliases"]) - {r["language"]} <= set(r["aliases"]), r)
            if name in PISTON_NAME:
                self.assertIn(name, r["aliases"])
        self.assertEqual(set(got), {PISTON_NAME.get(n, n) for n in self.langs})

    def test_execute_by_language_name(self):
        """execute(language, code, config), the client's usual call: it picks the version from
        runtimes() and sends its defaults (args "1", "2", "3", empty stdin) unless told."""
        bash, python, js = self.client(
            {"execute": ["bash", 'read line; echo "got $line"; echo "args: $*"; echo oops >&2; '
                         "exit 3", {"stdin": "typed\n", **RUN}]},
            {"execute": ["python", "import sys\nprint(sys.argv[1:])\nprint(input()[::-1])",
                         {"args": ["x y", "z"], "stdin": "abc\n", **RUN}]},
            {"execute": ["javascript", "console.log(process.argv.slice(2).join('|'));\n"
                         "console.error('to stderr');", RUN]})
        self.assert_ran(bash, "bash", "got typed\nargs: 1 2 3\n", code=3, stderr="oops\n")
        self.assertEqual(bash["run"]["status"], "RE")
        self.assert_ran(python, "python", "['x y', 'z']\ncba\n")
        self.assert_ran(js, "node", "1|2|3\n", stderr="to stderr\n")

    def test_aliases(self):
        """An alias with a version runs under the language's Piston name. Without a version the
        client finds none (it looks the alias up among runtimes' language names only) and sends
        none: opd answers as Piston does."""
        node_major = self.version("node").split(".")[0]
        no_version, node, js, sh = self.client(
            {"execute": ["py", "print('never')", RUN]},
            {"execute": ["node", "console.log(process.version)",
                         {"version": node_major + ".x", **RUN}]},
            {"execute": ["js", "console.log(40 + 2)", {"version": self.version("node"), **RUN}]},
            # the one-object form, with files as Piston takes them
            {"execute": [{"language": "sh", "version": "*",
                          "files": [{"name": "main.sh", "content": "cat data.txt; wc -c < data.txt"},
                                    {"name": "data.txt", "content": "from a second file\n"}],
                          "args": [], **RUN}]})
        self.assertEqual(no_version, {"message": "version is required as a string"})
        self.assert_ran(node, "node", f"v{self.version('node')}\n")
        self.assert_ran(js, "node", "42\n")
        self.assert_ran(sh, "bash", "from a second file\n19\n")

    def test_compiled_c(self):
        """c: a compile stage then the run, the program's stdin and arguments reaching it; a
        compile error ends with the compiler's message, and run holds the compile stage, as
        Piston answers when the run stage never started."""
        ok, broken = self.client(
            {"execute": ["c", "#include <stdio.h>\n"
                         "int main(int argc, char **argv) {\n"
                         "    char line[64];\n"
                         "    if (!fgets(line, sizeof line, stdin)) return 9;\n"
                         "    printf(\"%d %s %s\", argc, argv[argc - 1], line);\n"
                         "    return 5;\n"
                         "}\n", {"stdin": "from stdin\n", **COMPILE}]},
            {"execute": ["c", "int main(void) { return undeclared; }\n", COMPILE]})
        self.assert_ran(ok, "c", "4 3 from stdin\n", code=5)
        self.assertEqual((ok["compile"]["code"], ok["compile"]["stderr"]), (0, ""), ok)
        self.assertEqual((broken["language"], broken["version"]), ("c", self.version("c")))
        self.assertNotEqual(broken["compile"]["code"], 0, broken)
        self.assertIn("undeclared", broken["compile"]["stderr"])
        self.assertEqual(broken["run"], broken["compile"])

    def test_failures(self):
        """What the client hands back when a run cannot be done or does not end well: Piston's
        error message, the run's status, or the client's own { success: false } when no server
        answers."""
        unknown, bad_version, timed_out = self.client(
            {"execute": [{"language": "cobol", "version": "*", "files": [{"content": "x"}]}]},
            {"execute": ["python", "print(1)", {"version": "2.x", **RUN}]},
            {"execute": ["bash", "echo started; sleep 120", {"runTimeout": 1000}]})
        self.assertEqual(unknown, {"message": "cobol-* runtime is unknown"})
        self.assertEqual(bad_version, {"message": "python-2.x runtime is unknown"})
        self.assertIn("run", timed_out, timed_out)
        run = timed_out["run"]
        self.assertEqual((run["code"], run["signal"], run["status"]), (None, "SIGKILL", "TO"),
                         timed_out)
        (down,) = self.client({"runtimes": []}, server=f"http://127.0.0.1:{free_port()}")
        self.assertIs(down["success"], False)
        self.assertIn("ECONNREFUSED", down["error"])


if __name__ == "__main__":
    unittest.main()
