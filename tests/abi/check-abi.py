#!/usr/bin/python3
"""ABI guard: compare a built shared object with its checked-in abidw baseline.

    check-abi.py --baseline abi/libzorch.so.1.xml --lib build/lib/libzorch.so.1 \
                 --headers-dir include/zorch --headers-dir build/include/zorch
    check-abi.py --baseline X --lib L --headers-dir D ... --write
                 (write the baseline instead: see docs/abi.md)

abidiff's exit status is a bit set: 1 error, 2 usage error, 4 ABI change,
8 incompatible change.  Bit 8 only covers removed symbols, though: abidiff
reports a reordered struct or a changed parameter type with bit 4 alone.  So
with bit 4 this script reads abidiff's leaf-change report and accepts only
the changes that keep old binaries working:

  - added functions and variables (new symbols, new version nodes)
  - a struct that grew at its end (a slot appended to a versioned struct or
    a vtable: "type size changed from A to B" with B > A, and every data
    member insertion at an offset >= A)
  - enumerators added to an enum

Anything else (a removed symbol, a member that moved or changed type, a
parameter or return type that changed, a struct that shrank) fails, with
abidiff's report and what to do.  A compatible change passes but is printed,
with how to refresh the baseline.

The library must carry DWARF (-g): without it abidiff sees only symbols.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

ABIDW_FLAGS = ["--drop-private-types", "--short-locs", "--no-comp-dir-path",
               "--no-corpus-path", "--no-elf-needed"]

NEUTRAL = [
    re.compile(r"^Leaf changes summary: "),
    re.compile(r"^Changed leaf types summary: "),
    re.compile(r"^Removed/Changed/Added functions summary: 0 Removed, 0 Changed, \d+ Added"),
    re.compile(r"^Removed/Changed/Added variables summary: 0 Removed, 0 Changed, \d+ Added"),
    re.compile(r"^Function symbols changes summary: 0 Removed, \d+ Added"),
    re.compile(r"^Variable symbols changes summary: 0 Removed, \d+ Added"),
    re.compile(r"^\d+ Added (function|variable)s?( symbols? not referenced by debug info)?:$"),
    re.compile(r"^\[A\] "),
    re.compile(r"^'(struct|union|enum|typedef|class) [^']+' changed:$"),
    re.compile(r"^type size hasn't changed$"),
    re.compile(r"^\d+ enumerator insertions?:$"),
    re.compile(r"^'[^']+' value '-?\d+'$"),
]
SIZE = re.compile(r"^type size changed from (\d+) to (\d+) \(in bits\)$")
INSERTIONS = re.compile(r"^\d+ data member insertions?:$")
INSERTED = re.compile(r"^'[^']*', at offset (\d+) \(in bits\)$")


def incompatible_lines(report):
    """The lines of an abidiff -l report that are not a compatible addition."""
    bad = []
    old_size = None   # of the type being described
    in_insertions = False
    for raw in report.splitlines():
        line = raw.strip()
        if not line:
            continue
        if re.match(r"^'(struct|union|enum|typedef|class) ", line):
            old_size, in_insertions = None, False
        m = SIZE.match(line)
        if m:
            old_size = int(m.group(1))
            if int(m.group(2)) <= old_size:
                bad.append(raw + "   <- shrank")
            continue
        if INSERTIONS.match(line):
            in_insertions = True
            continue
        m = INSERTED.match(line)
        if m and in_insertions:
            if old_size is None or int(m.group(1)) < old_size:
                bad.append(raw + "   <- inserted before the old end")
            continue
        in_insertions = False
        if any(p.match(line) for p in NEUTRAL):
            continue
        bad.append(raw)
    return bad


def has_debug_info(lib):
    out = subprocess.run(["readelf", "-S", "-W", lib], capture_output=True, text=True)
    return ".debug_info" in out.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--headers-dir", action="append", default=[])
    ap.add_argument("--write", action="store_true", help="write the baseline from --lib")
    ap.add_argument("--refresh-hint", default="scripts/abi-baseline BUILD_DIR")
    a = ap.parse_args()

    for tool in ("abidw", "abidiff", "readelf"):
        if not shutil.which(tool):
            print(f"FAIL: {tool} is not installed (Debian: abigail-tools, binutils; "
                  "scripts/setup installs them)")
            return 1
    if not os.path.exists(a.lib):
        print(f"FAIL: {a.lib} does not exist (not built?)")
        return 1
    if not has_debug_info(a.lib):
        print(f"FAIL: {a.lib} has no DWARF (.debug_info): abidiff needs -g to see types. "
              "Configure the build with -Ddebug=true (meson's default buildtype "
              "debugoptimized has it).")
        return 1
    hd = []
    for d in a.headers_dir:
        hd += ["--headers-dir", d]

    if a.write:
        tmp = a.baseline + ".tmp"
        subprocess.run(["abidw", *hd, *ABIDW_FLAGS, "--out-file", tmp, a.lib], check=True)
        os.replace(tmp, a.baseline)
        print(f"wrote {a.baseline} from {a.lib}")
        return 0

    if not os.path.exists(a.baseline):
        print(f"FAIL: no baseline {a.baseline}; write one with {a.refresh_hint}")
        return 1
    hd2 = []
    for d in a.headers_dir:
        hd2 += ["--headers-dir2", d]
    cmd = ["abidiff", "-l", "--no-show-locs", *hd2, a.baseline, a.lib]
    r = subprocess.run(cmd, capture_output=True, text=True)
    report = r.stdout + r.stderr
    name = os.path.basename(a.baseline)
    if r.returncode & 3:
        print(f"FAIL: abidiff could not compare (exit {r.returncode}): {' '.join(cmd)}")
        print(report)
        return 1
    if r.returncode == 0:
        print(f"ok: {os.path.basename(a.lib)} has the ABI of {name}")
        return 0
    bad = incompatible_lines(report)
    if r.returncode & 8 or bad:
        print(f"FAIL: incompatible ABI change against {a.baseline} "
              f"(abidiff exit {r.returncode}"
              f"{', bit 8: symbols removed or changed incompatibly' if r.returncode & 8 else ''}).")
        if bad:
            print("Not a compatible addition:")
            for line in bad:
                print("    " + line.strip())
        print("abidiff's report:")
        print(report)
        print("Old binaries (programs, plugins) would break. Restore the old layout or "
              "symbols; only append members at the end of versioned structs and add new "
              "functions in a new version node of lib/libzorch.map. A deliberate break needs "
              "a new SONAME / plugin ABI major (docs/abi.md).")
        return 1
    print(f"ok: compatible ABI change against {name} (abidiff exit {r.returncode}: "
          "additions only):")
    print(report)
    print(f"Old binaries keep working. When this change is released, refresh the baseline "
          f"with `{a.refresh_hint}` and commit it (docs/abi.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
