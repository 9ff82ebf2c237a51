"""Every catalogue language whose image is built (in OPD_IMAGES): hello world from a warm pool,
stdin, stderr and a non-zero exit, a program of the language's standard library (sorting the
words read from stdin), for compiled languages a compile error answered as such, and the same
program through the Piston door as a Piston client sends it.
CI builds bash, python, node and c; scripts/test-languages builds and tests all of them.

OPD_TEST_LANGS=a,b limits the run to those languages (each must be built)."""
import http.client
import json
import os
import subprocess
import unittest

from opdtest import IMAGES, OPD, SOURCE, Opd, free_port, pool, wait_for

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
    "dash": ('echo "hello world"',
             'cat; echo oops >&2; exit 3',
             None),
    "zsh": ('echo "hello world"',
            'cat; print -u2 oops; exit 3',
            None),
    "ksh": ('echo "hello world"',
            'cat; print -u2 oops; exit 3',
            None),
    "fish": ('echo "hello world"',
             'cat; echo oops >&2; exit 3',
             None),
    "tcl": ('puts "hello world"',
            'puts -nonewline [read stdin]\nputs stderr oops\nexit 3',
            None),
    "luajit": ('print("hello world")',
               'io.write(io.read("*a"))\nio.stderr:write("oops\\n")\nos.exit(3)',
               None),
    "scheme": ('(display "hello world")\n(newline)\n',
               '(use-modules (ice-9 textual-ports))\n'
               '(display (get-string-all (current-input-port)))\n'
               '(display "oops\\n" (current-error-port))\n(exit 3)\n',
               None),
    "racket": ('#lang racket/base\n(displayln "hello world")\n',
               '#lang racket/base\n(require racket/port)\n'
               '(void (write-string (port->string (current-input-port))))\n'
               '(eprintf "oops\\n")\n(exit 3)\n',
               None),
    "raku": ('say "hello world";',
             'print $*IN.slurp;\nnote "oops";\nexit 3;',
             None),
    "lisp": ('(write-line "hello world")\n',
             '(loop for line = (read-line *standard-input* nil) while line do (write-line line))\n'
             '(format *error-output* "oops~%")\n(sb-ext:exit :code 3)\n',
             None),
    "forth": ('.( hello world) cr\n',
              'create buf 4096 allot\n'
              ': copy begin buf 4096 stdin read-file throw dup while buf swap type repeat drop ;\n'
              'copy\ns" oops" stderr write-line throw\n3 (bye)\n',
              None),
    "erlang": ('%% escript: the first line is not read\nmain(_) -> io:format("hello world~n").\n',
               '%%\nmain(_) ->\n    copy(),\n    io:format(standard_error, "oops~n", []),\n    halt(3).\n\n'
               'copy() ->\n    case io:get_chars("", 4096) of\n        eof -> ok;\n'
               '        Data -> io:put_chars(Data), copy()\n    end.\n',
               None),
    "elixir": ('IO.puts("hello world")\n',
               'IO.write(IO.read(:stdio, :eof))\nIO.puts(:stderr, "oops")\nSystem.halt(3)\n',
               None),
    "rscript": ('cat("hello world\\n")\n',
                'x <- readLines(file("stdin"))\ncat(paste0(x, "\\n"), sep = "")\n'
                'write("oops", stderr())\nquit(status = 3)\n',
                None),
    "awk": ('BEGIN { print "hello world" }',
            '{ print }\nEND { print "oops" > "/dev/stderr"; exit 3 }',
            None),
    "jq": ('"hello world"',
           'inputs, ("oops\\n" | halt_error(3))',
           None),
    "sqlite3": ("SELECT 'hello world';\n",
                "CREATE TABLE t(x);\n.mode list\n.separator '' ''\n.import -ascii '|cat' t\nSELECT * FROM t;\n"
                ".output '|cat >&2'\n.print oops\n.output\n.exit 3\n",
                None),
    "coffeescript": ('console.log "hello world"',
                     "fs = require 'fs'\nprocess.stdout.write fs.readFileSync 0\n"
                     "console.error 'oops'\nprocess.exitCode = 3\n",
                     None),
    "typescript": ('console.log("hello world");\n',
                   'const fs = require("fs");\nprocess.stdout.write(fs.readFileSync(0));\n'
                   'console.error("oops");\nprocess.exitCode = 3;\n',
                   'const x: number = undeclared_name;\n'),
    "fortran": ('program main\n  print "(a)", "hello world"\nend program main\n',
                'program main\n  implicit none\n  character(len=4096) :: line\n  integer :: ios\n'
                '  do\n    read (*, "(a)", iostat=ios) line\n    if (ios /= 0) exit\n'
                '    write (*, "(a)") trim(line)\n  end do\n  write (0, "(a)") "oops"\n'
                '  call exit(3)\nend program main\n',
                'program main\n  implicit none\n  print *, undeclared_name\nend program main\n'),
    "d": ('import std.stdio;\n\nvoid main() { writeln("hello world"); }\n',
          'import std.stdio;\n\nint main()\n{\n    foreach (ubyte[] chunk; stdin.byChunk(4096))\n'
          '        stdout.rawWrite(chunk);\n    stderr.writeln("oops");\n    return 3;\n}\n',
          'void main() { undeclared_name(); }\n'),
    "pascal": ("program main;\nbegin\n  writeln('hello world');\nend.\n",
               "program main;\nvar s: string;\nbegin\n  while not eof(input) do\n  begin\n"
               "    readln(s);\n    writeln(s);\n  end;\n  writeln(StdErr, 'oops');\n  halt(3);\nend.\n",
               "program main;\nbegin\n  undeclared_name;\nend.\n"),
    "ada": ('with Ada.Text_IO;\n\nprocedure Main is\nbegin\n   Ada.Text_IO.Put_Line ("hello world");\n'
            'end Main;\n',
            'with Ada.Text_IO; use Ada.Text_IO;\nwith Ada.Command_Line;\n\nprocedure Main is\nbegin\n'
            '   while not End_Of_File loop\n      Put_Line (Get_Line);\n   end loop;\n'
            '   Put_Line (Standard_Error, "oops");\n   Ada.Command_Line.Set_Exit_Status (3);\n'
            'end Main;\n',
            'procedure Main is\nbegin\n   undeclared_name;\nend Main;\n'),
    "ocaml": ('let () = print_endline "hello world"\n',
              'let () =\n  let buf = Buffer.create 4096 in\n'
              '  (try\n     while true do\n       Buffer.add_channel buf stdin 1\n     done\n'
              '   with End_of_file -> ());\n  print_string (Buffer.contents buf);\n'
              '  prerr_endline "oops";\n  exit 3\n',
              'let () = undeclared_name ()\n'),
    "haskell": ('main :: IO ()\nmain = putStrLn "hello world"\n',
                'import System.Exit\nimport System.IO\n\nmain :: IO ()\nmain = do\n'
                '  s <- getContents\n  putStr s\n  hPutStrLn stderr "oops"\n'
                '  exitWith (ExitFailure 3)\n',
                'main :: IO ()\nmain = undeclared_name\n'),
    "cobol": ('IDENTIFICATION DIVISION.\nPROGRAM-ID. MAIN.\nPROCEDURE DIVISION.\n'
              '    DISPLAY "hello world".\n    STOP RUN.\n',
              'IDENTIFICATION DIVISION.\nPROGRAM-ID. MAIN.\nENVIRONMENT DIVISION.\n'
              'INPUT-OUTPUT SECTION.\nFILE-CONTROL.\n    SELECT IN-FILE ASSIGN TO KEYBOARD\n'
              '        ORGANIZATION IS LINE SEQUENTIAL.\nDATA DIVISION.\nFILE SECTION.\n'
              'FD IN-FILE.\n01 IN-LINE PIC X(4096).\nWORKING-STORAGE SECTION.\n'
              '01 EOF-FLAG PIC X VALUE "N".\nPROCEDURE DIVISION.\n    OPEN INPUT IN-FILE\n'
              '    PERFORM UNTIL EOF-FLAG = "Y"\n        READ IN-FILE\n'
              '            AT END MOVE "Y" TO EOF-FLAG\n'
              '            NOT AT END DISPLAY FUNCTION TRIM(IN-LINE TRAILING)\n'
              '        END-READ\n    END-PERFORM\n    CLOSE IN-FILE\n'
              '    DISPLAY "oops" UPON SYSERR\n    MOVE 3 TO RETURN-CODE\n    STOP RUN.\n',
              'IDENTIFICATION DIVISION.\nPROGRAM-ID. MAIN.\nPROCEDURE DIVISION.\n'
              '    DISPLAY undeclared-name.\n    STOP RUN.\n'),
    "csharp": ('using System;\n\nclass Program {\n    static void Main() {\n'
               '        Console.WriteLine("hello world");\n    }\n}\n',
               'using System;\n\nclass Program {\n    static int Main() {\n'
               '        Console.Write(Console.In.ReadToEnd());\n'
               '        Console.Error.WriteLine("oops");\n        return 3;\n    }\n}\n',
               'class Program {\n    static void Main() { undeclared_name(); }\n}\n'),
    "vala": ('void main () {\n    print ("hello world\\n");\n}\n',
             'int main () {\n    string? line;\n    while ((line = stdin.read_line ()) != null)\n'
             '        stdout.printf ("%s\\n", line);\n    stderr.printf ("oops\\n");\n    return 3;\n}\n',
             'void main () {\n    undeclared_name ();\n}\n'),
    "nim": ('echo "hello world"\n',
            'stdout.write(stdin.readAll())\nstderr.writeLine("oops")\nquit(3)\n',
            'undeclared_name()\n'),
    "nasm64": ("section .data\nmsg: db 'hello world', 10\nsection .text\nglobal _start\n_start:\n"
               "    mov rax, 1\n    mov rdi, 1\n    lea rsi, [rel msg]\n    mov rdx, 12\n    syscall\n"
               "    mov rax, 60\n    xor rdi, rdi\n    syscall\n",
               "section .bss\nbuf: resb 4096\nsection .data\noops: db 'oops', 10\nsection .text\n"
               "global _start\n_start:\n    xor rax, rax\n    xor rdi, rdi\n    lea rsi, [rel buf]\n"
               "    mov rdx, 4096\n    syscall\n    cmp rax, 0\n    jle done\n    mov rdx, rax\n"
               "    mov rax, 1\n    mov rdi, 1\n    lea rsi, [rel buf]\n    syscall\n    jmp _start\n"
               "done:\n    mov rax, 1\n    mov rdi, 2\n    lea rsi, [rel oops]\n    mov rdx, 5\n"
               "    syscall\n    mov rax, 60\n    mov rdi, 3\n    syscall\n",
               "section .text\nglobal _start\n_start:\n    jmp undeclared_name\n"),
    "groovy": ('println "hello world"\n',
               'print System.in.text\nSystem.out.flush()\nSystem.err.println "oops"\n'
               'System.exit(3)\n',
               None),
    "emacs": ('(princ "hello world\\n")\n',
              '(condition-case nil\n    (while t (princ (concat (read-from-minibuffer "") "\\n")))\n'
              '  (error nil))\n(princ "oops\\n" #\'external-debugging-output)\n(kill-emacs 3)\n',
              None),
    "clisp": ('(write-line "hello world")\n',
              '(loop for line = (read-line *standard-input* nil) while line do (write-line line))\n'
              '(format *error-output* "oops~%")\n(ext:exit 3)\n',
              None),

}

STDIN = "line one\nline two ünïcode\n"

# name: a program that reads words, one a line, from stdin and prints them sorted, separated by
# spaces, with the language's standard library; None where the language has none to speak of
# (assembly)
SORT = {
    "bash": 'echo $(sort)',
    "dash": 'echo $(sort)',
    "zsh": 'echo $(sort)',
    "ksh": 'echo $(sort)',
    "fish": 'echo (sort)',
    "python": 'import sys\nprint(" ".join(sorted(sys.stdin.read().split())))',
    "node": 'const fs = require("fs");\n'
            'console.log(fs.readFileSync(0, "utf8").split(/\\s+/).filter(Boolean).sort().join(" "));',
    "ruby": 'puts $stdin.read.split.sort.join(" ")',
    "perl": 'my @w = sort split " ", join("", <STDIN>);\nprint "@w\\n";',
    "php": '<?php $w = preg_split("/\\s+/", trim(stream_get_contents(STDIN)));\nsort($w);\n'
           'echo implode(" ", $w), "\\n";',
    "lua": 'local t = {}\nfor w in io.read("a"):gmatch("%S+") do t[#t + 1] = w end\ntable.sort(t)\n'
           'print(table.concat(t, " "))',
    "luajit": 'local t = {}\nfor w in io.read("*a"):gmatch("%S+") do t[#t + 1] = w end\ntable.sort(t)\n'
              'print(table.concat(t, " "))',
    "c": '#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n'
         'static int cmp(const void *a, const void *b)\n{\n'
         '\treturn strcmp(*(char *const *)a, *(char *const *)b);\n}\n\nint main(void)\n{\n'
         '\tstatic char buf[64][64];\n\tchar *w[64];\n\tint n = 0;\n\n'
         '\twhile (n < 64 && scanf("%63s", buf[n]) == 1) {\n\t\tw[n] = buf[n];\n\t\tn++;\n\t}\n'
         '\tqsort(w, n, sizeof(*w), cmp);\n\tfor (int i = 0; i < n; i++)\n'
         '\t\tprintf("%s%s", w[i], i + 1 < n ? " " : "\\n");\n\treturn 0;\n}\n',
    "cpp": '#include <algorithm>\n#include <iostream>\n#include <string>\n#include <vector>\n\n'
           'int main()\n{\n\tstd::vector<std::string> w;\n\tstd::string s;\n'
           '\twhile (std::cin >> s)\n\t\tw.push_back(s);\n\tstd::sort(w.begin(), w.end());\n'
           '\tfor (size_t i = 0; i < w.size(); i++)\n'
           '\t\tstd::cout << w[i] << (i + 1 < w.size() ? " " : "\\n");\n}\n',
    "go": 'package main\n\nimport (\n\t"fmt"\n\t"io"\n\t"os"\n\t"sort"\n\t"strings"\n)\n\n'
          'func main() {\n\tb, _ := io.ReadAll(os.Stdin)\n\tw := strings.Fields(string(b))\n'
          '\tsort.Strings(w)\n\tfmt.Println(strings.Join(w, " "))\n}\n',
    "rust": 'use std::io::Read;\n\nfn main() {\n    let mut s = String::new();\n'
            '    std::io::stdin().read_to_string(&mut s).unwrap();\n'
            '    let mut w: Vec<&str> = s.split_whitespace().collect();\n    w.sort();\n'
            '    println!("{}", w.join(" "));\n}\n',
    "java": 'import java.util.*;\n\npublic class Main {\n'
            '    public static void main(String[] a) throws Exception {\n'
            '        String[] w = new String(System.in.readAllBytes()).trim().split("\\\\s+");\n'
            '        Arrays.sort(w);\n        System.out.println(String.join(" ", w));\n    }\n}\n',
    "tcl": 'puts [join [lsort [read stdin]] " "]',
    "scheme": '(use-modules (ice-9 textual-ports) (srfi srfi-1))\n'
              '(define words (remove string-null?\n'
              '  (string-split (get-string-all (current-input-port)) #\\newline)))\n'
              '(display (string-join (sort words string<?) " "))\n(newline)\n',
    "racket": '#lang racket/base\n(require racket/port racket/string)\n'
              '(displayln (string-join (sort (string-split (port->string (current-input-port)))\n'
              '                              string<?) " "))\n',
    "raku": 'say $*IN.slurp.words.sort.join(" ");',
    "lisp": '(let ((words (loop for line = (read-line *standard-input* nil) while line collect line)))\n'
            '  (format t "~{~a~^ ~}~%" (sort words #\'string<)))\n',
    "forth": None,
    "erlang": '%%\nmain(_) ->\n    Words = string:lexemes(read([]), " \\n"),\n'
              '    io:format("~s~n", [lists:join(" ", lists:sort(Words))]).\n\n'
              'read(Acc) ->\n    case io:get_line("") of\n        eof -> lists:append(lists:reverse(Acc));\n'
              '        L -> read([L | Acc])\n    end.\n',
    "elixir": 'IO.read(:stdio, :eof) |> String.split() |> Enum.sort() |> Enum.join(" ") |> IO.puts()\n',
    "rscript": 'x <- readLines(file("stdin"))\ncat(paste(sort(x), collapse = " "), "\\n", sep = "")\n',
    "awk": '{ w[NR] = $0 }\n'
           'END { n = asort(w); for (i = 1; i <= n; i++) printf "%s%s", w[i], (i < n ? " " : "\\n") }',
    "jq": '[inputs] | sort | join(" ")',
    "sqlite3": "CREATE TABLE w(x);\n.import -csv '|cat' w\n"
               "SELECT group_concat(x, ' ') FROM (SELECT x FROM w ORDER BY x);\n",
    "coffeescript": "fs = require 'fs'\n"
                    "console.log fs.readFileSync(0, 'utf8').split(/\\s+/).filter(Boolean).sort().join(' ')\n",
    "typescript": 'const fs = require("fs");\n'
                  'const w: string[] = fs.readFileSync(0, "utf8").split(/\\s+/)\n'
                  '    .filter((s: string) => s.length > 0);\nconsole.log(w.sort().join(" "));\n',
    "fortran": 'program main\n  implicit none\n  character(len=64) :: w(64), t\n'
               '  integer :: n, i, j, ios\n  n = 0\n  do\n    read (*, "(a)", iostat=ios) t\n'
               '    if (ios /= 0) exit\n    n = n + 1\n    w(n) = t\n  end do\n  do i = 2, n\n'
               '    t = w(i)\n    j = i - 1\n    do while (j >= 1)\n      if (llt(w(j), t)) exit\n'
               '      w(j + 1) = w(j)\n      j = j - 1\n    end do\n    w(j + 1) = t\n  end do\n'
               '  write (*, "(*(a,:,1x))") (trim(w(i)), i = 1, n)\nend program main\n',
    "d": 'import std.stdio, std.algorithm, std.array, std.string;\n\nvoid main()\n{\n'
         '    auto w = stdin.byLineCopy.map!(l => l.strip).filter!(l => l.length).array;\n'
         '    w.sort();\n    writeln(w.join(" "));\n}\n',
    "pascal": "program main;\n{$mode objfpc}\nuses Classes;\nvar\n  l: TStringList;\n  s: string;\n"
              "begin\n  l := TStringList.Create;\n  while not eof(input) do\n  begin\n"
              "    readln(s);\n    if s <> '' then\n      l.Add(s);\n  end;\n  l.Sort;\n"
              "  l.Delimiter := ' ';\n  writeln(l.DelimitedText);\nend.\n",
    "ada": 'with Ada.Text_IO; use Ada.Text_IO;\n'
           'with Ada.Strings.Unbounded; use Ada.Strings.Unbounded;\nwith Ada.Containers.Vectors;\n\n'
           'procedure Main is\n'
           '   package Vectors is new Ada.Containers.Vectors (Positive, Unbounded_String);\n'
           '   package Sorting is new Vectors.Generic_Sorting;\n   Words : Vectors.Vector;\n'
           '   Line : Unbounded_String;\nbegin\n   while not End_Of_File loop\n'
           '      Words.Append (To_Unbounded_String (Get_Line));\n   end loop;\n'
           '   Sorting.Sort (Words);\n   for I in Words.First_Index .. Words.Last_Index loop\n'
           '      Append (Line, Words (I));\n      if I < Words.Last_Index then\n'
           '         Append (Line, " ");\n      end if;\n   end loop;\n'
           '   Put_Line (To_String (Line));\nend Main;\n',
    "ocaml": 'let () =\n  let rec read acc =\n'
             '    match input_line stdin with l -> read (l :: acc) | exception End_of_file -> acc\n'
             '  in\n  print_endline (String.concat " " (List.sort compare (read [])))\n',
    "haskell": 'import Data.List (sort)\n\nmain :: IO ()\n'
               'main = getContents >>= putStrLn . unwords . sort . words\n',
    "cobol": None,
    "csharp": 'using System;\nusing System.Linq;\n\nclass Program {\n    static void Main() {\n'
              '        var w = Console.In.ReadToEnd().Split(new char[0],\n'
              '            StringSplitOptions.RemoveEmptyEntries);\n'
              '        Console.WriteLine(string.Join(" ", w.OrderBy(s => s, StringComparer.Ordinal)));\n'
              '    }\n}\n',
    "vala": 'int main () {\n    var words = new GenericArray<string> ();\n    string? line;\n'
            '    while ((line = stdin.read_line ()) != null)\n        words.add (line);\n'
            '    words.sort (strcmp);\n    var sb = new StringBuilder ();\n'
            '    for (int i = 0; i < words.length; i++) {\n        if (i > 0)\n'
            '            sb.append_c (\' \');\n        sb.append (words[i]);\n    }\n'
            '    print ("%s\\n", sb.str);\n    return 0;\n}\n',
    "nim": 'import std/[algorithm, strutils]\n\necho stdin.readAll().splitWhitespace().sorted().join(" ")\n',
    "nasm64": None,
    "groovy": 'println System.in.text.split().sort().join(" ")\n',
    "emacs": '(let (words)\n  (condition-case nil\n'
             '      (while t (push (read-from-minibuffer "") words))\n    (error nil))\n'
             '  (princ (concat (mapconcat #\'identity (sort words #\'string<) " ") "\\n")))\n',
    "clisp": '(let ((words (loop for line = (read-line *standard-input* nil) while line collect line)))\n'
             '  (format t "~{~a~^ ~}~%" (sort words #\'string<)))\n',
}
SORT_STDIN = "pear\napple\nfig\n"


def catalogue():
    with open(CATALOGUE) as f:
        return json.load(f)["languages"]


def compile_timeout(name):
    """The language's default compile deadline in the catalogue."""
    e = next(e for e in catalogue() if e["name"] == name)
    return e["compile"].get("timeout_ms", 30000)


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
        self.assertEqual(sorted(names), sorted(SORT))
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
        # The catalogue's compile deadlines (ghc, tsc and gnatmake take minutes under TCG on a
        # loaded machine) stand: the limit is raised from its default of 120 s to the largest.
        cls.door = free_port()
        cls.opd = Opd({"pool.size": "1", "max_vms": "4", "languages.enabled": ",".join(cls.langs),
                       "pool.fallback_cold": "no", "limit.compile_timeout_ms_max": "600000",
                       "piston.listen": f"127.0.0.1:{cls.door}"})
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
            req["compile_timeout_ms"] = max(120000, compile_timeout(lang))
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

    def test_standard_library(self):
        for lang in self.langs:
            if SORT[lang] is None:
                continue
            with self.subTest(lang=lang):
                a = self.run_code(lang, SORT[lang], stdin=SORT_STDIN)
                self.assertEqual((a["stdout"], a["stderr"], a["exit_code"]),
                                 ("apple fig pear\n", "", 0), a)

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

    def piston(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.door, timeout=900)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def test_through_the_piston_door(self):
        """As a Piston client finds and runs each language: listed by GET /api/v2/runtimes
        under Piston's name with its image's version, and its standard-library program (hello
        world where it has none) run by POST /api/v2/execute."""
        status, runtimes = self.piston("GET", "/api/v2/runtimes")
        self.assertEqual(status, 200, runtimes)
        by_name = {r["language"]: r for r in runtimes}
        entries = {e["name"]: e for e in catalogue()}
        for lang in self.langs:
            with self.subTest(lang=lang):
                name = entries[lang].get("piston", lang)
                with open(os.path.join(IMAGES, lang, "version")) as f:
                    self.assertEqual(by_name[name]["version"], f.read().strip())
                self.assertIn(lang, [name] + by_name[name]["aliases"])
                program, stdin, want = ((SORT[lang], SORT_STDIN, "apple fig pear\n")
                                        if SORT[lang] else (PROGRAMS[lang][0], "", "hello world\n"))
                req = {"language": name, "version": "*", "files": [{"content": program}],
                       "stdin": stdin, "run_timeout": 60000}
                compiled = PROGRAMS[lang][2] is not None
                if compiled:
                    req["compile_timeout"] = max(120000, compile_timeout(lang))
                self.wait_pool(lang)
                status, a = self.piston("POST", "/api/v2/execute", req)
                self.assertEqual(status, 200, a)
                self.assertEqual((a["language"], a["version"]), (name, by_name[name]["version"]))
                self.assertEqual((a["run"]["stdout"], a["run"]["stderr"], a["run"]["code"]),
                                 (want, "", 0), a)
                self.assertEqual("compile" in a, compiled, a)
                if compiled:
                    self.assertEqual(a["compile"]["code"], 0, a["compile"])

    def test_status_lists_versions_and_unknown_language_lists_them(self):
        st = self.opd.call({"op": "status"})
        by_name = {l["name"]: l for l in st["languages"]}
        for lang in self.langs:
            with open(os.path.join(IMAGES, lang, "version")) as f:
                self.assertEqual(by_name[lang]["version"], f.read().strip())
            self.assertTrue(by_name[lang]["available"])
            self.assertEqual(by_name[lang]["compiled"], PROGRAMS[lang][2] is not None)
        a = self.opd.call({"op": "exec", "lang": "intercal", "code": "x", "id": 3})
        self.assertEqual(a["error"]["code"], "unknown_language")
        for lang in self.langs:
            self.assertIn(lang, a["error"]["message"])


if __name__ == "__main__":
    unittest.main()
