#!/usr/bin/env python3
"""imagetool.py: the parts of build-images that are easier in Python than in bash: reading the
language registry, resolving package closures to exact .deb files, ordering kernel modules from
modules.dep, and checking that a vmlinux is an ELF with a PVH entry note. No side effects except
where a subcommand says so; every subcommand prints plain lines for the shell to read."""

import hashlib
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import tempfile

def die(msg):
    print("imagetool: " + msg, file=sys.stderr)
    sys.exit(1)


def load_entries(registry):
    """The registry's entries by name, in registry order, each checked for what this recipe
    reads: name, packages, version_cmd, image."""
    with open(registry) as f:
        reg = json.load(f)
    langs = reg.get("languages")
    if not isinstance(langs, list):
        die(f"{registry}: no 'languages' array")
    by_name = {}
    for e in langs:
        name = e.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
            die(f"{registry}: bad language name {name!r}")
        pk = e.get("packages")
        if not isinstance(pk, list) or not all(isinstance(p, str) and p for p in pk):
            die(f"{registry}: language {name}: 'packages' must be a list of names")
        vc = e.get("version_cmd")
        if not isinstance(vc, list) or not vc or not all(isinstance(a, str) for a in vc):
            die(f"{registry}: language {name}: 'version_cmd' must be a non-empty argv list")
        g = e.get("image", name)
        if not isinstance(g, str) or len(g) > 32 or not re.fullmatch(r"[a-z0-9._-]+", g):
            die(f"{registry}: language {name}: 'image' must be a name ([a-z0-9._-]{{1,32}})")
        by_name[name] = e
    return by_name


def cmd_langs(registry, wanted):
    """Print one line per language: name<TAB>json-of-entry. wanted: comma list or empty (all)."""
    by_name = load_entries(registry)
    names = [n for n in wanted.split(",") if n] if wanted else list(by_name)
    for n in names:
        if n not in by_name:
            die(f"unknown language {n!r} (registry has: {', '.join(by_name)})")
        print(n + "\t" + json.dumps(by_name[n], sort_keys=True, separators=(",", ":")))


def image_groups(registry):
    """{group: [member names in registry order]}: a language's group is its "image" key, by
    default its own name. A group named after a language must hold that language, so that
    "image": "c" reads as "in c's image"."""
    by_name = load_entries(registry)
    groups = {}
    for name, e in by_name.items():
        groups.setdefault(e.get("image", name), []).append(name)
    for g, members in groups.items():
        if g in by_name and g not in members:
            die(f"{registry}: image {g!r} of {', '.join(members)} is named after language {g!r}, "
                f"which is not in it")
    return groups


def cmd_groups(registry, wanted):
    """Print group<TAB>member,member,... for every image group holding a wanted language (comma
    list, or empty: all), in registry order. Building one member builds its whole group."""
    groups = image_groups(registry)
    known = [m for members in groups.values() for m in members]
    want = [n for n in wanted.split(",") if n] if wanted else known
    for n in want:
        if n not in known:
            die(f"unknown language {n!r} (registry has: {', '.join(known)})")
    for g, members in groups.items():
        if any(m in want for m in members):
            print(g + "\t" + ",".join(members))


def cmd_group(registry, group, wants_out):
    """What build-images needs to build one image group, as bash assignments to source (values
    quoted with shlex): members=(...), packages=(...) (the union, in order), entries_sha256 (of
    the members' entries), setup_N and vcmd_N=(...) for member N. Writes the members'
    links and installs, checked for conflicts (merge_wants), to wants_out as
    kind<TAB>path<TAB>what lines."""
    import io
    from contextlib import redirect_stdout
    by_name = load_entries(registry)
    members = image_groups(registry).get(group)
    if not members:
        die(f"no image group {group!r}")
    packages, wants = [], []
    for m in members:
        e = by_name[m]
        packages += [p for p in e["packages"] if p not in packages]
        entry_json = json.dumps(e, sort_keys=True, separators=(",", ":"))
        for kind, fn in (("link", lambda: cmd_links(entry_json)),
                         ("install", lambda: cmd_installs(registry, entry_json))):
            buf = io.StringIO()
            with redirect_stdout(buf):
                fn()
            for line in buf.getvalue().splitlines():
                a, b = line.split("\t")
                # installs print src<TAB>dst, links path<TAB>target
                wants.append(f"{m}\t{kind}\t{b}\t{a}" if kind == "install" else
                             f"{m}\t{kind}\t{a}\t{b}")
    merged = merge_wants(wants)
    with open(wants_out, "w") as f:
        f.write("".join(line + "\n" for line in merged))
    entries = "".join(json.dumps(by_name[m], sort_keys=True, separators=(",", ":")) + "\n"
                      for m in members)
    q = shlex.quote
    print("members=(" + " ".join(q(m) for m in members) + ")")
    print("packages=(" + " ".join(q(p) for p in packages) + ")")
    print("entries_sha256=" + hashlib.sha256(entries.encode()).hexdigest())
    for i, m in enumerate(members):
        print(f"setup_{i}=" + q(by_name[m].get("setup") or ""))
        print(f"vcmd_{i}=(" + " ".join(q(a) for a in by_name[m]["version_cmd"]) + ")")


def merge_wants(lines):
    """lang<TAB>kind<TAB>path<TAB>what lines, kind "link" (what: its target) or "install" (what:
    the source file), of an image group's members, as kind<TAB>path<TAB>what once per path. Two
    members that want different things at one path (another link target, a file of other
    content, a link and a file) are an error naming both."""
    seen, out = {}, []
    for line in lines:
        lang, kind, dst, what = line.rstrip("\n").split("\t")
        if kind == "install":
            with open(what, "rb") as src:
                ident = (kind, src.read())
            shown = f"a copy of {what}"
        else:
            ident = (kind, what)
            shown = f"a link to {what}"
        if dst not in seen:
            seen[dst] = (lang, ident, shown)
            out.append(f"{kind}\t{dst}\t{what}")
        elif seen[dst][1] != ident:
            other, _, oshown = seen[dst]
            die(f"image group conflict at {dst}: {other} wants {oshown}, {lang} wants {shown}")
    return out


def cmd_merge(path):
    """merge_wants() over the lines of a file."""
    with open(path) as f:
        for line in merge_wants(f):
            print(line)


def cmd_lang_field(entry_json, field):
    """Print a field of a registry entry: lists one item per line (NUL-free)."""
    v = json.loads(entry_json).get(field)
    if isinstance(v, list):
        for x in v:
            print(x)
    elif v is not None:
        print(v)


def cmd_installs(registry, entry_json):
    """Print src<TAB>dst for every file the entry asks to have copied into its image: the
    "install" object of the entry and of its "warm" object, {"path/in/registry/dir": "/abs/dst"}.
    Sources are resolved against the registry file's directory and must stay inside it."""
    entry = json.loads(entry_json)
    base = os.path.dirname(os.path.abspath(registry))
    maps = [entry.get("install"), (entry.get("warm") or {}).get("install")]
    for m in maps:
        if m is None:
            continue
        if not isinstance(m, dict):
            die(f"language {entry['name']}: 'install' must be an object")
        for src, dst in sorted(m.items()):
            full = os.path.realpath(os.path.join(base, src))
            if not full.startswith(base + os.sep) or not os.path.isfile(full):
                die(f"language {entry['name']}: install source {src!r} is not a file under {base}")
            if not isinstance(dst, str) or not dst.startswith("/") or ".." in dst.split("/"):
                die(f"language {entry['name']}: install destination {dst!r} must be absolute")
            print(f"{full}\t{dst}")


def cmd_links(entry_json):
    """Print path<TAB>target for every symbolic link the entry asks for ("links": {"/usr/bin/php":
    "php8.2"}): what update-alternatives would have made in a maintainer script this recipe does
    not run."""
    entry = json.loads(entry_json)
    links = entry.get("links") or {}
    if not isinstance(links, dict):
        die(f"language {entry['name']}: 'links' must be an object")
    for path, target in sorted(links.items()):
        if not path.startswith("/") or ".." in path.split("/") or not isinstance(target, str) \
                or not target or "\t" in target or "\n" in target:
            die(f"language {entry['name']}: link {path!r} -> {target!r} is not valid")
        print(f"{path}\t{target}")


def apt_closure(pkgs):
    """The packages apt itself would install for pkgs on an empty system, hard dependencies only:
    apt's resolver picks one alternative of each "a | b" (apt-cache depends --recurse would take
    all of them, and mime-support's alternative alone drags in 55 MB of Perl). Returns
    {name: (version, arch)} as apt chose them for an empty system: a package the host has
    installed from elsewhere (another repository, a newer version) does not leak in."""
    with tempfile.NamedTemporaryFile(prefix="imagetool-status.") as status:
        out = subprocess.run(["apt-get", "-s", "-q", "-o", f"Dir::State::status={status.name}",
                              "-o", "APT::Install-Recommends=false",
                              "-o", "APT::Install-Suggests=false", "install"] + pkgs,
                             check=True, capture_output=True, text=True).stdout
    chosen = {}
    for line in out.splitlines():
        m = re.match(r"Inst (\S+) \((\S+) .*\[(\S+)\]\)", line)
        if m:
            chosen[m.group(1).split(":")[0]] = (m.group(2), m.group(3))
    if not chosen:
        die("apt-get -s installed nothing for: " + " ".join(pkgs))
    return chosen


def deb_filename(pkg, ver, arch):
    # The name `apt-get download` gives a file: the epoch's colon is URL-encoded.
    return f"{pkg}_{ver.replace(':', '%3a')}_{arch}.deb"


def cmd_resolve(pkgs, closure=True):
    """Print pkg<TAB>version<TAB>arch<TAB>deb-filename for the hard-dependency closure of pkgs
    (or for pkgs alone), using the candidate versions of the host's apt lists. Sorted, so that
    it can be hashed."""
    if closure:
        for p, (ver, arch) in sorted(apt_closure(pkgs).items()):
            print(f"{p}\t{ver}\t{arch}\t{deb_filename(p, ver, arch)}")
        return
    names = sorted(set(pkgs))
    out = subprocess.run(["apt-cache", "show", "--no-all-versions"] + names, check=True,
                         capture_output=True, text=True).stdout
    found = {}
    for stanza in out.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            m = re.match(r"([A-Za-z-]+): (.*)", line)
            if m:
                fields[m.group(1)] = m.group(2)
        if "Package" in fields and fields["Package"] not in found:
            found[fields["Package"]] = (fields["Version"], fields["Architecture"])
    missing = [n for n in names if n.split(":")[0] not in found]
    if missing:
        die("no candidate version for: " + " ".join(missing) + " (apt-get update?)")
    for n in names:
        p = n.split(":")[0]
        ver, arch = found[p]
        print(f"{p}\t{ver}\t{arch}\t{deb_filename(p, ver, arch)}")


def cmd_modules(moddir, names):
    """Print the relative paths (kernel/...) of names and their dependencies, in load order,
    from moddir/modules.dep. Module names match with '-' and '_' treated alike."""
    deps = {}
    path_of = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            mod, _, rest = line.partition(":")
            mod = mod.strip()
            if not mod:
                continue
            deps[mod] = rest.split()
            base = os.path.basename(mod)
            base = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", base).replace("-", "_")
            path_of[base] = mod
    order, seen = [], set()

    def visit(mod, stack):
        if mod in seen:
            return
        if mod in stack:
            die(f"dependency loop at {mod}")
        for d in deps.get(mod, []):
            visit(d, stack | {mod})
        seen.add(mod)
        order.append(mod)

    builtin = set()
    bpath = os.path.join(moddir, "modules.builtin")
    if os.path.exists(bpath):
        with open(bpath) as f:
            for line in f:
                b = os.path.basename(line.strip())
                builtin.add(re.sub(r"\.ko$", "", b).replace("-", "_"))
    for n in names:
        key = n.replace("-", "_")
        if key in path_of:
            visit(path_of[key], frozenset())
        elif key in builtin:
            print(f"imagetool: module {n} is built into this kernel", file=sys.stderr)
        else:
            die(f"module {n} not found in {moddir}/modules.dep")
    for m in order:
        print(m)


MODULE_SIG_MAGIC = b"~Module signature appended~\n"


def cmd_strip_sig(paths):
    """Remove the appended signature from each module file, in place. The guest kernel then
    skips the RSA check of every module it loads (measurably slow under TCG); it only taints
    itself, since it does not enforce signatures without Secure Boot lockdown."""
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        if not data.endswith(MODULE_SIG_MAGIC):
            continue
        # struct module_signature (12 bytes, sig_len big-endian last) precedes the magic.
        end = len(data) - len(MODULE_SIG_MAGIC)
        sig_len, = struct.unpack_from(">I", data, end - 4)
        cut = end - 12 - sig_len
        if cut <= 0:
            die(f"{p}: bad module signature trailer")
        with open(p, "wb") as f:
            f.write(data[:cut])


def cmd_check_pvh(path):
    """Exit 0 if path is an x86-64 ELF with a Xen PHYS32_ENTRY note (PVH boot entry)."""
    XEN_ELFNOTE_PHYS32_ENTRY = 18
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        die(f"{path}: not a 64-bit little-endian ELF")
    e_phoff, = struct.unpack_from("<Q", data, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(e_phnum):
        off = e_phoff + i * e_phentsize
        p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from("<IIQQQQ", data, off)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            name = data[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            desc_off = pos + 12 + ((namesz + 3) & ~3)
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                entry, = struct.unpack_from("<I", data, desc_off)
                print(f"PVH entry 0x{entry:x}")
                return
            pos = desc_off + ((descsz + 3) & ~3)
    die(f"{path}: no PVH (Xen PHYS32_ENTRY) note")


def main():
    if len(sys.argv) < 2:
        die("usage: imagetool.py langs|groups|group|merge|field|installs|links|resolve|pin|modules|strip-sig|check-pvh ...")
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "langs":
        cmd_langs(args[0], args[1] if len(args) > 1 else "")
    elif cmd == "groups":
        cmd_groups(args[0], args[1] if len(args) > 1 else "")
    elif cmd == "group":
        cmd_group(args[0], args[1], args[2])
    elif cmd == "merge":
        cmd_merge(args[0])
    elif cmd == "field":
        cmd_lang_field(args[0], args[1])
    elif cmd == "links":
        cmd_links(args[0])
    elif cmd == "installs":
        cmd_installs(args[0], args[1])
    elif cmd == "resolve":
        cmd_resolve(args)
    elif cmd == "pin":
        cmd_resolve(args, closure=False)
    elif cmd == "modules":
        cmd_modules(args[0], args[1:])
    elif cmd == "strip-sig":
        cmd_strip_sig(args)
    elif cmd == "check-pvh":
        cmd_check_pvh(args[0])
    else:
        die(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    main()
