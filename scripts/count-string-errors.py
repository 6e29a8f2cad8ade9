#!/usr/bin/env python3
"""Counts the function signatures in src/ (outside #[cfg(test)] modules) that return
Result<_, String>, directly or through a module alias `type Result<T> = Result<T, String>`
(its own or imported from the module that defines it), per top-level module, at a git
revision: the measure of issue 19's item 4 (errors become strings early).

Usage: scripts/count-string-errors.py [REV]   (default HEAD)
"""
import collections
import re
import subprocess
import sys

ALIAS = re.compile(r"type (Result|R)<T> = (std::result::)?Result<T, String>;")


def show(rev, path):
    r = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return r.stdout


def count(rev):
    files = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "src"], capture_output=True, text=True
    ).stdout.split()
    per = {}
    for f in files:
        if not f.endswith(".rs"):
            continue
        s = show(rev, f)
        cut = s.find("#[cfg(test)]")
        if cut >= 0:
            s = s[:cut]
        alias = bool(ALIAS.search(s))
        for m in re.finditer(r"use (super|crate::[\w:]+)::\{?([^;]*)\}?;", s):
            if not re.search(r"\bResult\b", m.group(2)):
                continue
            d = f.rsplit("/", 1)[0]
            if m.group(1) == "super":
                base = d if not f.endswith("mod.rs") else d.rsplit("/", 1)[0]
                cands = [base + "/mod.rs", base + ".rs"]
            else:
                path = "src/" + m.group(1)[len("crate::"):].replace("::", "/")
                cands = [path + "/mod.rs", path + ".rs"]
            if any(ALIAS.search(show(rev, c)) for c in cands):
                alias = True
        n = 0
        for m in re.finditer(r"\bfn\s+\w+[^{;]*", s):
            sig = m.group(0)
            if "->" not in sig:
                continue
            ret = sig.split("->", 1)[1]
            if re.search(r"Result<.*,\s*String>", ret):
                n += 1
            elif alias and re.match(r"\s*(Result|R)<[^,]*>\s*$", ret):
                n += 1
        if n:
            per[f] = n
    return per


def main():
    rev = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
    per = count(rev)
    by = collections.Counter()
    for f, n in per.items():
        by[f.split("/")[1].removesuffix(".rs")] += n
    print(f"{sum(per.values())} signatures return Result<_, String> at {rev}")
    for module, n in by.most_common():
        print(f"{n:5} {module}")


if __name__ == "__main__":
    main()
