#!/usr/bin/env python3
"""Writes the C program of an scdoc page's EXAMPLES section (its first
literal block) to OUT, so that meson compiles it: a page's example that no
longer builds against the installed headers fails the build."""
import re
import sys

page, out = sys.argv[1], sys.argv[2]
text = open(page, encoding="utf-8").read()
m = re.search(r"^# EXAMPLES\n(.*?)^# ", text, re.S | re.M)
block = re.search(r"^```\n(.*?)^```", m.group(1), re.S | re.M) if m else None
if not block:
    sys.exit("%s: no literal block in EXAMPLES" % page)
# scdoc writes \\ as one backslash
code = block.group(1).replace("\\\\", "\\")
with open(out, "w", encoding="utf-8") as f:
    f.write("/* generated from %s (EXAMPLES) */\n" % page.split("/")[-1] + code)
