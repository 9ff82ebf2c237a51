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


def fs_type(path):
    """The type of the file system path is on (the longest mount point above it in
    /proc/self/mounts), e.g. "tmpfs", "ext4"; "" when unknown."""
    path, best, kind = os.path.realpath(path), "", ""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                _, mnt, typ = line.split()[:3]
                mnt = mnt.replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, kind = mnt, typ
    except OSError:
        pass
    return kind


def damon_state():
    """The host kernel's DAMON monitors that are on, described in a sentence ("" when none):
    DAMON samples memory by clearing pages' accessed bits, and its schemes may page memory
    out, so a process's first touches of pages after a pause can cost more where it runs."""
    root = "/sys/kernel/mm/damon/admin/kdamonds"
    found = []

    def read(*parts):
        try:
            with open(os.path.join(root, *parts)) as f:
                return f.read().strip()
        except OSError:
            return ""
    try:
        names = sorted(n for n in os.listdir(root) if n.isdigit())
    except OSError:
        return ""
    for k in names:
        if read(k, "state") != "on":
            continue
        for c in sorted(n for n in os.listdir(os.path.join(root, k, "contexts")) if n.isdigit()):
            ctx = (k, "contexts", c)
            ops = read(*ctx, "operations")
            sample = read(*ctx, "monitoring_attrs", "intervals", "sample_us")
            actions = []
            schemes = os.path.join(root, *ctx, "schemes")
            for s in sorted(n for n in os.listdir(schemes) if n.isdigit()):
                actions.append(read(*ctx, "schemes", s, "action"))
            what = f"kdamond {k}: {ops or '?'} monitoring"
            if sample.isdigit():
                what += f", a sample every {int(sample) / 1000:g} ms"
            if actions:
                what += ", schemes: " + ", ".join(a or "?" for a in actions)
            found.append(what)
    if not found:
        return ""
    return "The host kernel's DAMON is on (" + "; ".join(found) + ")."
