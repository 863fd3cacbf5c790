#!/usr/bin/env python3
"""The man pages against the real commands (man/meson.build, man_checks).

Each argument after the options is one check:

  help:PAGE:COMMAND[:SUB...]  The long options `COMMAND --help` prints (and
      `COMMAND SUB --help` for each SUB) are exactly the long options on the
      term lines of PAGE's OPTIONS and COMMANDS sections; `COMMAND --version`
      prints "NAME (PROJECT) VERSION" and exits 0.
  keys:PAGE[!TITLE...]:COMMAND[:ARG...]  The keys `COMMAND [ARG...]
      --help-config` lists (ARGs such as -c:FILE add the keys of the file's
      loaded transports), each with its "(type, default ..., env ...)", are
      exactly the term lines of PAGE's sections whose title holds KEYS, with
      the same parenthesis, but for the sections named by !TITLE: those of a
      transport this row does not load (its keys are checked by a row that
      does); every variable it names appears in the ENVIRONMENT section of
      COMMAND's own page (its name and a section number, in --pages).
  source:FILE[,FILE...]:COMMAND[:SUB...]  Every long option the option
      parsers in the C FILEs accept (getopt_long rows {"name", ..._argument}
      and strcmp(arg, "--name") tests) appears in `COMMAND --help` (or in
      `COMMAND SUB --help`): an option added to the code but not to --help
      fails here, and one not in the page fails the help: check.
  page:NAME:PATH  `man -l --warnings` renders PATH at 80 columns with nothing
      on standard error, and the page has NAME, SYNOPSIS or DESCRIPTION.

A term line is a line at the section's base indent (7 columns) followed by
a line indented deeper: the "*--opt* _ARG_" line of an scdoc entry whose
description is indented with a tab.  Exit 0 when all hold, 1 when any does
not, 77 when man or groff is missing.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
KEY_ROW = re.compile(r"^([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*) \((.*)\)$")
SOURCE_OPTION = re.compile(r'\{\s*"([a-z][a-z0-9-]*)",\s*(?:no|required|optional)_argument'
                           r'|strcmp\([^,()]+,\s*"--([a-z][a-z0-9-]*)"\)')
ENV_NAME = re.compile(r"\benv ([A-Z][A-Z0-9_]*)")

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def run(argv):
    env = dict(os.environ, LC_ALL="C")
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                       timeout=30)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def render(path, width):
    """The page as man shows it: (exit status, text, standard error)."""
    env = dict(os.environ, LC_ALL="C", MANWIDTH=str(width), MANPAGER="cat", PAGER="cat")
    env.pop("MAN_KEEP_FORMATTING", None)
    p = subprocess.run(["man", "-l", "--warnings", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=30)
    text = p.stdout.decode("utf-8", "replace")
    text = re.sub(r".\x08", "", text)  # overstrike, should a man-db keep it
    return p.returncode, text, p.stderr.decode("utf-8", "replace")


def sections(text):
    """{TITLE: [lines]} of a rendered page (a title starts in column 0)."""
    out, cur = {}, None
    for line in text.split("\n"):
        if line and not line[0].isspace():
            cur = line.strip()
            out.setdefault(cur, [])
        elif cur is not None:
            out[cur].append(line)
    return out


def indent(line):
    return len(line) - len(line.lstrip(" "))


def term_lines(lines):
    """The lines at the section's indent (7 columns, or less: a subsection
    title) followed by deeper ones; not those inside a description."""
    terms = []
    for i, line in enumerate(lines):
        base = indent(line)
        if not line.strip() or base > 7:
            continue
        nxt = next((l for l in lines[i + 1:] if l.strip()), "")
        if indent(nxt) > base:
            terms.append(line.strip())
    return terms


def page_path(pages, name):
    path = os.path.join(pages, name)
    if not os.path.exists(path):
        fail("%s: not built (looked for %s)" % (name, path))
        return None
    return path


def check_help(pages, page, command, subs, project, version):
    path = page_path(pages, page)
    help_opts = help_options(command, subs)
    name = os.path.basename(command)
    rc, out, err = run([command, "--version"])
    want = re.compile(r"^%s \(%s\) %s\b" % (re.escape(name), re.escape(project), re.escape(version)))
    if rc != 0 or not want.match(out):
        fail("%s --version: exit status %d, printed %r; expected \"%s (%s) %s...\" and 0"
             % (name, rc, out.strip(), name, project, version))
    if not path:
        return
    rc, text, err = render(path, 200)
    secs = sections(text)
    page_opts = set()
    for title in ("OPTIONS", "COMMANDS"):
        for t in term_lines(secs.get(title, [])):
            page_opts |= set(OPTION.findall(t))
    if not page_opts:
        fail("%s: no option found on the term lines of OPTIONS or COMMANDS" % page)
    for o in sorted(help_opts - page_opts):
        fail("%s: `%s --help` lists %s, the page's OPTIONS/COMMANDS do not" % (page, name, o))
    for o in sorted(page_opts - help_opts):
        fail("%s: the page lists %s, `%s --help` does not" % (page, o, name))
    print("ok: %s and %s --help%s: %d options" % (page, name, " (and %d commands)" % len(subs)
                                                     if subs else "", len(help_opts)))


def check_keys(pages, page, command, args):
    page, *skipped = page.split("!")
    path = page_path(pages, page)
    rc, out, err = run([command] + args + ["--help-config"])
    if rc != 0:
        fail("%s --help-config: exit status %d (%s)" % (command, rc, err.strip()))
    listed = {}
    for line in out.split("\n"):
        m = KEY_ROW.match(line)
        if m:
            listed[m.group(1)] = m.group(2)
    if not listed:
        fail("%s --help-config: no key found" % command)
    # every variable a key reads is in the command's own page, ENVIRONMENT
    name = os.path.basename(command)
    own = [f for f in sorted(os.listdir(pages)) if re.fullmatch(re.escape(name) + r"\.\d", f)]
    if own:
        rc, text, err = render(os.path.join(pages, own[0]), 200)
        env_text = "\n".join(sections(text).get("ENVIRONMENT", []))
        for var in sorted({v for d in listed.values() for v in ENV_NAME.findall(d)}):
            if not re.search(r"\b%s\b" % var, env_text):
                fail("%s: ENVIRONMENT does not name %s, which --help-config lists" % (own[0], var))
    else:
        fail("%s: no page of its own in %s" % (name, pages))
    if not path:
        return
    rc, text, err = render(path, 200)
    documented = {}
    secs = sections(text)
    for title in skipped:
        if title not in secs:
            fail("%s: no section %r to leave out" % (page, title))
    for title, lines in secs.items():
        if "KEYS" not in title or title in skipped:
            continue
        for t in term_lines(lines):
            m = KEY_ROW.match(t)
            if not m:
                fail("%s: a term line of %s is not \"key (type, ...)\": %r" % (page, title, t))
                continue
            if m.group(1) in documented:
                fail("%s: key %s documented twice" % (page, m.group(1)))
            documented[m.group(1)] = m.group(2)
    for k in sorted(set(listed) - set(documented)):
        fail("%s: key %s (%s) from --help-config is not documented" % (page, k, listed[k]))
    for k in sorted(set(documented) - set(listed)):
        fail("%s: key %s is documented but --help-config does not list it" % (page, k))
    for k in sorted(set(listed) & set(documented)):
        if listed[k] != documented[k]:
            fail("%s: key %s: the page says (%s), --help-config says (%s)"
                 % (page, k, documented[k], listed[k]))
    print("ok: %s and %s%s --help-config: %d keys%s"
          % (page, name, "".join(" " + a for a in args), len(listed),
             "".join(" (not %s)" % t for t in skipped)))


def help_options(command, subs):
    opts = set()
    for argv in [[command, "--help"]] + [[command, s, "--help"] for s in subs]:
        rc, out, err = run(argv)
        if rc != 0:
            fail("%s: exit status %d (%s)" % (" ".join(argv), rc, err.strip()))
        opts |= set(OPTION.findall(out))
    return opts


def check_source(files, command, subs):
    in_code = set()
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for m in SOURCE_OPTION.finditer(fh.read()):
                in_code.add("--" + (m.group(1) or m.group(2)))
    if not in_code:
        fail("%s: no long option found in %s" % (command, ", ".join(files)))
    listed = help_options(command, subs)
    name = os.path.basename(command)
    for o in sorted(in_code - listed):
        fail("%s accepts %s (%s), but its --help does not list it"
             % (name, o, ", ".join(os.path.basename(f) for f in files)))
    print("ok: %s: the %d long options of its parsers are in --help" % (name, len(in_code)))


def check_page(name, path):
    rc, text, err = render(path, 80)
    if rc != 0 or err.strip():
        fail("%s: man -l --warnings: exit status %d: %s" % (name, rc, err.strip()))
    secs = sections(text)
    for want in ("NAME", "DESCRIPTION"):
        if want not in secs:
            fail("%s: no %s section" % (name, want))
    for line in text.split("\n"):
        if len(line) > 80:
            fail("%s: a line of %d columns at MANWIDTH=80: %r" % (name, len(line), line))
            break
    print("ok: %s renders (%d lines)" % (name, text.count("\n")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--pages", required=True, help="the folder of the built pages")
    ap.add_argument("checks", nargs="+")
    a = ap.parse_args()
    for tool in ("man", "groff"):
        if not shutil.which(tool):
            print("SKIP: %s is not installed (man-db, groff-base)" % tool)
            return 77
    for c in a.checks:
        kind, _, rest = c.partition(":")
        parts = rest.split(":")
        if kind == "help" and len(parts) >= 2:
            check_help(a.pages, parts[0], parts[1], parts[2:], a.project, a.version)
        elif kind == "keys" and len(parts) >= 2:
            check_keys(a.pages, parts[0], parts[1], parts[2:])
        elif kind == "source" and len(parts) >= 2:
            check_source(parts[0].split(","), parts[1], parts[2:])
        elif kind == "page" and len(parts) == 2:
            check_page(parts[0], parts[1])
        else:
            fail("bad check %r" % c)
    if failures:
        print("%d problem(s)" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
