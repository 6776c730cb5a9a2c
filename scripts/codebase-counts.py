#!/usr/bin/env python3
"""Counts for issue-style codebase reviews: per crate, the source lines inside `unsafe { }`
blocks (`unsafe fn` bodies are not counted: the workspace denies `unsafe_op_in_unsafe_fn`, so
their unsafe operations sit in blocks too), the number of blocks of 20 lines or more and the
longest, `unsafe fn` count, and each `src/` file's header length (leading `//!` lines).

Usage: scripts/codebase-counts.py [--headers] [CRATE ...]   (default: every crate's src/)
Strings, chars and comments are skipped when matching braces; `unsafe impl` is not a block.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = ["common", "slab-classic", "slub", "preload", "harness"]


def strip(src):
    """Source with comments, strings and char literals blanked (newlines kept)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j): depth += 1; j += 2
                elif src.startswith("*/", j): depth -= 1; j += 2
                else: j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j])); i = j
        elif re.match(r'r#*"', src[i:i + 8]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'r(#*)"', src[i:]); close = '"' + m.group(1)
            j = src.find(close, i + len(m.group(0)))
            j = n if j < 0 else j + len(close)
            out.append(re.sub(r"[^\n]", " ", src[i:j])); i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j])); i = j
        elif c == "'":
            m = re.match(r"'(\\.|\\x..|\\u\{[0-9a-fA-F]+\}|[^\\'])'", src[i:])
            if m:
                out.append(" " * len(m.group(0))); i += len(m.group(0))
            else:
                out.append(c); i += 1  # a lifetime
        else:
            out.append(c); i += 1
    return "".join(out)


def unsafe_blocks(code):
    """(first_line, last_line) of every outermost `unsafe {` block."""
    blocks = []
    for m in re.finditer(r"\bunsafe\s*\{", code):
        start = m.end() - 1
        if blocks and code.count("\n", 0, start) + 1 <= blocks[-1][1] and start < blocks[-1][2]:
            continue  # nested inside the previous block
        depth, j = 0, start
        while j < len(code):
            if code[j] == "{": depth += 1
            elif code[j] == "}":
                depth -= 1
                if depth == 0: break
            j += 1
        blocks.append((code.count("\n", 0, m.start()) + 1, code.count("\n", 0, j) + 1, j))
    return [(a, b) for a, b, _ in blocks]


def crate_counts(crate):
    src = os.path.join(ROOT, crate, "src")
    total = inside = fns = 0
    long_blocks, longest, headers = [], (0, ""), []
    for dirpath, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith(".rs"): continue
            path = os.path.join(dirpath, f)
            text = open(path, encoding="utf-8").read()
            code = strip(text)
            lines = text.count("\n")
            total += lines
            covered = set()
            for a, b in unsafe_blocks(code):
                covered.update(range(a, b + 1))
                size = b - a + 1
                rel = os.path.relpath(path, ROOT)
                if size >= 20: long_blocks.append((size, f"{rel}:{a}"))
                if size > longest[0]: longest = (size, f"{rel}:{a}")
            inside += len(covered)
            fns += len(re.findall(r"\bunsafe\s+(?:extern\s+\"C\"\s+)?fn\b", code))
            head = 0
            for line in text.splitlines():
                if line.startswith("//!"): head += 1
                elif line.strip() == "" and head == 0: continue
                else: break
            headers.append((head, os.path.relpath(path, ROOT)))
    return total, inside, fns, sorted(long_blocks, reverse=True), longest, headers


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_headers = "--headers" in sys.argv
    print(f"{'crate':14} {'lines':>6} {'in unsafe':>9} {'share':>6} {'blocks>=20':>10} {'longest':>8} {'unsafe fn':>9}")
    for crate in args or CRATES:
        total, inside, fns, longs, longest, headers = crate_counts(crate)
        share = 100.0 * inside / total if total else 0.0
        print(f"{crate:14} {total:6} {inside:9} {share:5.1f}% {len(longs):10} {longest[0]:8} {fns:9}  {longest[1]}")
        for size, where in longs[:10]:
            print(f"    {size:4} lines  {where}")
        if show_headers:
            for head, path in sorted(headers, reverse=True):
                if head: print(f"    header {head:4}  {path}")


if __name__ == "__main__":
    main()
