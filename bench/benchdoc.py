"""benchdoc: each program in bench/ owns one section of docs/benchmarks.md.

A section sits between `<!-- bench/NAME: begin -->` and `<!-- bench/NAME: end -->`; a run
replaces its own section and leaves the others as they are. A section not yet in the file is
appended.
"""
import os

HEADER = ("# Benchmarks\n\n"
          "Every section below is written by the program in `bench/` that its markers name, from "
          "one run of it on the machine it describes; a rerun replaces only its own section. "
          "Times are as a client sees them unless a section says otherwise.\n")


def markers(name):
    return f"<!-- bench/{name}: begin -->", f"<!-- bench/{name}: end -->"


def write_section(path, name, lines):
    """Put lines (without markers) as section `name` of the Markdown file at path."""
    begin, end = markers(name)
    section = "\n".join([begin, *lines, end])
    text = open(path).read() if os.path.exists(path) else HEADER
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)
    return section
