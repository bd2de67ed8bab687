#!/usr/bin/env python3
"""Extract the C block between <!-- example:begin/end --> in README.md into a file."""
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r"<!-- example:begin -->\s*```c\n(.*?)```\s*<!-- example:end -->", text, re.S)
if not m:
    sys.exit("README.md has no example block")
with open(sys.argv[2], "w", encoding="utf-8") as out:
    out.write("/* Generated from README.md by tools/readme_example.py. */\n")
    out.write(m.group(1))
