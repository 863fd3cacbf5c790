"""Per-call overhead of master_log_client.mlog() from Python, beside a bare
Python function call taking the same arguments and the C call it makes
(mlog_client_send(), by mlog-call-bench), measured in the same run.

Each case logs the same event ("Captured frame", 42, "for", "M31",
tags=["imaging"]; and again with metadata={"target": "M13",
"duration_seconds": 18}) into a spool in commit durability (the default),
with no agent and no endpoint, on disk (--dir, default /var/tmp), after a
warm-up, in --bursts bursts of --burst calls with a 50 ms pause between
them, so that the 4 MiB commit ring never fills (the figure is the call's
cost, not the disk's: the disk's limits are spool-bench's); each figure is
the median burst's time per call, wall and CPU time of the calling thread
(the call's own cost, whatever else the machine runs: the ratios to quote
on a shared machine).  Prints one JSON object per case and a summary with
the ratios: python mlog / bare python call, and python mlog / C call.

Usage: bench.py --libmlog PATH --c-bench PATH [--bursts N] [--burst N] [--dir DIR]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def bare(*values, severity="info", title=None, tags=None, ttl_seconds=None, metadata=None,
         sep=" "):
    return None


def per_call(fn, bursts, n, *args, **kwargs):
    """Median over bursts of (wall ns, calling thread's CPU ns) per call."""
    for _ in range(n // 10):
        fn(*args, **kwargs)
    wall, cpu = [], []
    for _ in range(bursts):
        time.sleep(0.05)
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(n):
            fn(*args, **kwargs)
        wall.append((time.perf_counter() - t0) / n * 1e9)
        cpu.append((time.thread_time() - c0) / n * 1e9)
    return statistics.median(wall), statistics.median(cpu)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--libmlog", required=True)
    ap.add_argument("--c-bench", required=True)
    ap.add_argument("--bursts", type=int, default=21)
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--source", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="mlog-python-bench-", dir=a.dir)
    try:
        os.environ["MASTER_LOG_LIBMLOG"] = a.libmlog
        sys.path.insert(0, os.path.join(a.source, "python"))
        from master_log_client import MasterLogClient

        n, bursts = a.burst, a.bursts
        results = {}
        for meta in (False, True):
            kw = {"tags": ["imaging"]}
            if meta:
                kw["metadata"] = {"target": "M13", "duration_seconds": 18}
            suffix = "-metadata" if meta else ""
            results["python-bare-call" + suffix] = per_call(
                bare, bursts, n, "Captured frame", 42, "for", "M31", **kw)
            c = MasterLogClient(spool_dir=os.path.join(root, "py" + suffix),
                                durability="commit", spawn_agent=False)
            r = c.log("Captured frame", 42, "for", "M31", **kw)
            assert r.ok, r.error
            results["python-mlog" + suffix] = per_call(
                c.log, bursts, n, "Captured frame", 42, "for", "M31", **kw)
            c.shutdown()
            out = subprocess.run([a.c_bench, os.path.join(root, "c" + suffix), str(bursts), str(n)] +
                                 (["metadata"] if meta else []),
                                 capture_output=True, text=True, check=True)
            j = json.loads(out.stdout)
            results["c-mlog_client_send" + suffix] = (j["ns_per_call"], j["cpu_ns_per_call"])
        for k, v in results.items():
            print(json.dumps({"case": k, "events": n * bursts, "ns_per_call": round(v[0], 1),
                              "cpu_ns_per_call": round(v[1], 1)}))
        summary = {"case": "summary"}
        for suffix in ("", "-metadata"):
            py = results["python-mlog" + suffix]
            bare_ = results["python-bare-call" + suffix]
            c = results["c-mlog_client_send" + suffix]
            for i, what in ((1, "cpu"), (0, "wall")):
                summary[f"{what}_mlog_over_bare_call{suffix}"] = round(py[i] / bare_[i], 1)
                summary[f"{what}_mlog_over_c_call{suffix}"] = round(py[i] / c[i], 2)
                summary[f"{what}_python_added_ns{suffix}"] = round(py[i] - c[i], 1)
        print(json.dumps(summary))
    finally:
        shutil.rmtree(root, ignore_errors=True)


main()
