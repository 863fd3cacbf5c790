#!/usr/bin/env python3
"""check_layout.py BUILD_DIR -- the shape issue 11 promises, checked on the
build tree: libmlog exports only mlog_* and compiles no file of agent/;
libspool exports only spool_*; `meson install` installs exactly the three
public headers.  Prints one line per check and exits 1 on the first
failure."""
import json
import os
import subprocess
import sys

build = os.path.abspath(sys.argv[1])
failed = 0


def check(ok, what, detail=""):
    global failed
    print(("ok   " if ok else "FAIL ") + what + (": " + detail if detail and not ok else ""))
    if not ok:
        failed += 1


def introspect(what):
    out = subprocess.run(["meson", "introspect", what, build], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def exported(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDBRVW":
            names.append(parts[2].split("@")[0])
    return names


targets = introspect("--targets")
by_name = {}
for t in targets:
    if t["type"] == "shared library":
        by_name[t["name"]] = t

for lib, prefix in (("mlog", "mlog_"), ("spool", "spool_")):
    t = by_name.get(lib)
    check(t is not None, "lib%s is a shared library target" % lib)
    if t is None:
        continue
    path = t["filename"][0]
    names = exported(path)
    other = sorted(n for n in names if not n.startswith(prefix) and n != lib)
    check(len(names) > 0 and not other,
          "lib%s.so exports only %s* (%d symbols)" % (lib, prefix, len(names)),
          "also " + ", ".join(other[:20]))
    if lib == "mlog":
        bad = [n for n in names if any(w in n for w in ("drain", "backoff", "plugin"))]
        check(not bad, "libmlog.so exports no drain, backoff or plugin-loader symbol", ", ".join(bad))
        sources = []
        for src in t["target_sources"]:
            sources += src.get("sources", [])
        # static libraries linked in count too: libmlog's own sources and
        # the objects of the libraries it links are listed by the linker
        # command; the target's own sources must not come from agent/
        from_agent = [s for s in sources if "/agent/" in s]
        check(not from_agent, "libmlog compiles no file of agent/", ", ".join(from_agent))

# every static library libmlog links: none of their sources under agent/
static_from_agent = []
for t in targets:
    if t["type"] != "static library":
        continue
    srcs = []
    for src in t["target_sources"]:
        srcs += src.get("sources", [])
    if any("/agent/" in s for s in srcs):
        static_from_agent.append(t["name"])
mlog_link = by_name.get("mlog")
if mlog_link is not None:
    with open(os.path.join(build, "build.ninja")) as f:
        ninja = f.read()
    lib = os.path.relpath(mlog_link["filename"][0], build)
    line = [l for l in ninja.splitlines() if l.startswith("build " + lib + ":")]
    linked = line[0] if line else ""
    check(bool(line), "the link line of libmlog.so is in build.ninja")
    bad = [n for n in static_from_agent if n in linked]
    check(not bad, "libmlog links no library built from agent/", ", ".join(bad))

installed = introspect("--installed")
headers = sorted(os.path.relpath(dst, start=os.path.commonpath([dst for dst in installed.values()]))
                 for dst in installed.values() if dst.endswith(".h"))
names = sorted(os.path.basename(h) for h in headers)
check(names == ["mlog.h", "spool.h", "transport.h"],
      "meson install installs exactly spool.h, mlog.h and transport.h", ", ".join(names))

print("layout: %d check(s) failed" % failed if failed else "layout: all checks passed")
sys.exit(1 if failed else 0)
