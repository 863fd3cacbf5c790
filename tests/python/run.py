"""Runs one pytest file of tests/python/ for `meson test` (suite python).

Exit 77 (skipped) with a sentence when the test cannot run here: pytest
missing.  The original README's blocks come from tests/python/seed/, a
copy of ../shared/seeds/ checked against it when that is present.  test_readme.py runs inside a private network
namespace (`unshare -rn`, loopback only) so that mlog-receiver can listen
on 127.0.0.1:8000, the address the README's blocks name; without one it
needs that port free on the machine.  In an AddressSanitizer build the
Python processes get libasan preloaded (ctypes loads an ASan-built
libmlog) and leak detection off (the interpreter's own allocations).
"""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def main():
    tests = sys.argv[1:]
    try:
        import pytest  # noqa: F401
    except ImportError:
        skip(f"{sys.executable} has no pytest (Debian: python3-pytest)")
    source = Path(os.environ["SPOOL_SOURCE_DIR"])
    # the tests read the copy in tests/python/seed/, so that they run in any
    # clone; where the original (../shared/seeds/) is beside the clone, the
    # copy must be that file unchanged
    name = "master-log-client-0.1.0-PKG-INFO.txt"
    copy = HERE / "seed" / name
    original = source.parent / "shared" / "seeds" / name
    if original.exists() and original.read_bytes() != copy.read_bytes():
        print(f"FAIL: {copy} differs from the original README at {original}")
        sys.exit(1)
    env = dict(os.environ)
    if "address" in env.get("SPOOL_SANITIZE", ""):
        asan = env.get("SPOOL_LIBASAN", "")
        if not asan or not Path(asan).exists():
            skip("ASan build, and libasan was not found to preload into python3")
        env["LD_PRELOAD"] = asan
        opts = [o for o in env.get("ASAN_OPTIONS", "").split(":") if o and
                not o.startswith("detect_leaks")]
        env["ASAN_OPTIONS"] = ":".join(opts + ["detect_leaks=0"])
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
           ] + [str(HERE / t) for t in tests]
    if "test_readme.py" in tests:
        unshare, ip = shutil.which("unshare"), shutil.which("ip") or "/usr/sbin/ip"
        probe = subprocess.run([unshare or "unshare", "-rn", ip, "link", "set", "lo", "up"],
                               capture_output=True) if unshare else None
        if probe is not None and probe.returncode == 0:
            cmd = [unshare, "-rn", "sh", "-c", f'"{ip}" link set lo up && exec "$@"',
                   "sh"] + cmd
        else:
            s = socket.socket()
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", 8000))
            except OSError as e:
                skip(f"no private network namespace (unshare -rn) and 127.0.0.1:8000, "
                     f"the README's endpoint, is taken: {e}")
            finally:
                s.close()
    os.chdir(HERE)
    sys.exit(subprocess.run(cmd, env=env).returncode)


main()
