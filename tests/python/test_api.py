"""The Python API's behaviour (python/README.md) against a real spool on
disk, read back with spoolctl, and the real mlog-receiver and spool-agent
over 127.0.0.1 where an event must travel.  Each case runs in a Python
process of its own (the package from python/ of this checkout, the build's
libmlog)."""

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import SOURCE, Receiver, clean_env, spool_pending, spool_status, stop_agent


def py(workdir, code, **env):
    e = clean_env(PYTHONPATH=SOURCE / "python", MASTER_LOG_SPOOL_DIR=workdir / "spool", **env)
    return subprocess.run([sys.executable, "-c", code], env=e, cwd=workdir,
                          capture_output=True, text=True, timeout=60)


def ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_print_like_fields_and_block_in_the_spool(workdir):
    ok(py(workdir, """
from master_log_client import mlog, debug, info, warn, error, fatal, MasterLogClient
assert mlog("Captured frame", 42, "for", "M31", None, 1.5, tags=["imaging"]).ok
assert mlog("a", "b", sep="--").ok
assert mlog("a", "b", sep=None).ok
assert mlog().ok
assert debug("d").ok and info("i").ok and warn("w").ok and error("e").ok and fatal("f").ok
r = mlog("all", title="T", severity="ERROR", tags=("x", "y"), ttl_seconds=120,
         metadata={"s": "M13", "n": 18, "f": 0.5, "b": True, "z": None, "l": [1, "two"],
                   "d": {"k": [None]}, 7: "int key", "u": "\\u00e9\\u2603"})
assert r.ok and r.queued and r.accepted and r.status_code is None and r.error is None, r
assert len(r.event_id) == 26
c = MasterLogClient()
assert c.warn("obj", metadata={"q": 1}).ok and c.log("obj2", severity="debug").ok
c.shutdown()
assert not c.info("after").ok
""", MASTER_LOG_SPAWN_AGENT="false", MASTER_LOG_DURABILITY="sync"))
    ev = spool_pending(workdir / "spool")
    msgs = [(e["message"], e["severity"]) for e in ev]
    assert msgs == [("Captured frame 42 for M31 None 1.5", "info"), ("a--b", "info"),
                    ("a b", "info"), ("", "info"), ("d", "debug"), ("i", "info"),
                    ("w", "warn"), ("e", "error"), ("f", "fatal"), ("all", "error"),
                    ("obj", "warn"), ("obj2", "debug")]
    all_ = ev[9]
    assert all_["title"] == "T" and all_["tags"] == ["x", "y"] and all_["ttl_seconds"] == 120
    meta = dict(all_["metadata"])
    block = meta.pop("python_client")
    meta.pop("c_client")
    assert meta == {"s": "M13", "n": 18, "f": 0.5, "b": True, "z": None, "l": [1, "two"],
                    "d": {"k": [None]}, "7": "int key", "u": "\u00e9\u2603"}
    assert block["cwd"] == str(workdir) and block["process_name"] == "MainProcess"
    assert block["python_version"] == "%d.%d.%d" % sys.version_info[:3]
    assert block["library_version"] == "0.1.0" and isinstance(block["pid"], int)
    assert all(e["metadata"]["python_client"]["pid"] == block["pid"] for e in ev)
    assert "c_client" not in ev[0]["metadata"] or set(ev[0]["metadata"]["c_client"]) == {
        "spool_seq"}


def test_bad_arguments_raise_naming_them(workdir):
    out = ok(py(workdir, """
import math
from master_log_client import mlog, configure, MasterLogClient
cases = [
    lambda: mlog("x", metadata={"ok": 1, "s": {1, 2}}),
    lambda: mlog("x", metadata={"f": math.nan}),
    lambda: mlog("x", metadata={(1, 2): 3}),
    lambda: mlog("x", metadata=[1]),
    lambda: mlog("x", severity="loud"),
    lambda: mlog("x", tags=["a", 2]),
    lambda: mlog("x", tags="ab"),
    lambda: mlog("x", ttl_seconds=0),
    lambda: mlog("x", ttl_seconds=1.5),
    lambda: mlog("x", title="a\\0b"),
    lambda: mlog("x", sep=1),
    lambda: configure(batch_size="ten"),
    lambda: configure(batch_size=-1),
    lambda: configure(batch_size=10**6),
    lambda: configure(durability="fast"),
    lambda: configure(endpoint="ftp://x"),
    lambda: MasterLogClient(flush_interval_seconds=True),
]
for f in cases:
    try:
        f()
    except (TypeError, ValueError) as e:
        print(type(e).__name__, e)
    else:
        print("NO ERROR")
r = mlog("still works")
assert r.ok, r
r = mlog("x", metadata={"python_client": 1})
print("RESULT", r.ok, r.queued, r.error)
r = mlog("x", metadata={"big": 2**64})
print("RESULT", r.ok, r.queued, r.error)
""", MASTER_LOG_SPAWN_AGENT="false"))
    lines = out.splitlines()
    want = [
        "TypeError metadata['s']: Object of type set is not JSON serializable",
        "ValueError metadata['f']: Out of range float values are not JSON compliant",
        "TypeError metadata[(1, 2)]: keys must be str, int, float, bool or None, not tuple",
        "TypeError metadata must be a dict, not list",
        "ValueError severity must be one of debug, info, warn, error, fatal; got 'loud'",
        "TypeError tags[1] must be a string, not int",
        "TypeError tags must be a list of strings, not a single string",
        "ValueError ttl_seconds must be > 0, got 0",
        "TypeError ttl_seconds must be a whole number of seconds, not 1.5",
        "ValueError title contains a NUL character: 'a\\x00b'",
        "TypeError sep must be None or a string, not int",
        "TypeError batch_size must be a number, not str",
        "ValueError batch_size must be 0 or more, got -1",
        "ValueError batch_size: expected a whole number from 1 to 100000, got '1000000'",
        "ValueError durability: expected sync, commit or buffered, got 'fast'",
    ]
    assert lines[:len(want)] == want, lines
    assert lines[len(want)].startswith("ValueError endpoint: "), lines
    assert lines[len(want) + 1] == \
        "TypeError flush_interval_seconds must be a number, not bool", lines
    assert lines[-2].startswith("RESULT False False metadata_json: the key 'python_client' is "
                                "the client's own block"), lines
    assert lines[-1].startswith("RESULT False False metadata_json: not valid JSON"), lines
    assert [e["message"] for e in spool_pending(workdir / "spool")] == ["still works"]


def test_bad_environment_value_is_named_in_every_result(workdir):
    out = ok(py(workdir, """
import warnings
warnings.simplefilter("error")
from master_log_client import mlog, info, configure
try:
    mlog("x")
except RuntimeWarning as w:
    print("WARNING", w)
warnings.simplefilter("ignore")
r = info("y")
print(r.ok, r.error)
configure(batch_size=5)   # configure beats the environment
print(mlog("z").ok)
""", MASTER_LOG_BATCH_SIZE="ten", MASTER_LOG_SPAWN_AGENT="false"))
    msg = ("environment variable MASTER_LOG_BATCH_SIZE: expected a whole number from 1 to "
           "100000, got 'ten'")
    assert out.splitlines() == [
        f"WARNING master_log_client: events are not logged: {msg}", f"False {msg}", "True"]


def test_fork_child_gets_a_fresh_client(workdir):
    out = ok(py(workdir, """
import os
from master_log_client import mlog
assert mlog("parent before").ok
pid = os.fork()
if pid == 0:
    r = mlog("child")
    os._exit(0 if r.ok else 1)
_, status = os.waitpid(pid, 0)
assert status == 0
assert mlog("parent after").ok
print(os.getpid(), pid)
""", MASTER_LOG_SPAWN_AGENT="false"))
    parent, child = map(int, out.split())
    ev = {e["message"]: e["metadata"]["python_client"]["pid"]
          for e in spool_pending(workdir / "spool")}
    assert ev == {"parent before": parent, "child": child, "parent after": parent}


def test_direct_send_returns_the_servers_answer(workdir, receiver):
    out = ok(py(workdir, f"""
from master_log_client import MasterLogClient
c = MasterLogClient(api_key="dev-key", endpoint="{receiver.url}", async_mode=False)
r = c.info("Synchronous log send", tags=["debugging"])
print(r.ok, r.status_code, r.event_id, r.queued, r.accepted, r.error)
bad = MasterLogClient(api_key="wrong", endpoint="{receiver.url}", async_mode=False,
                      spawn_agent=False)
r = bad.info("refused key")
print(r.ok, r.status_code, r.queued, r.error)
""", MASTER_LOG_SPAWN_AGENT="false"))
    first, second = out.splitlines()
    ok_, status, event_id, queued, accepted, error = first.split(" ", 5)
    assert (ok_, status, queued, accepted, error) == ("True", "201", "False", "True", "None")
    assert event_id.startswith("ev-")
    got = receiver.events()
    assert len(got) == 1 and got[0]["message"] == "Synchronous log send"
    assert got[0]["metadata"]["python_client"]["process_name"] == "MainProcess"
    assert "c_client" not in got[0]["metadata"]  # a direct send has no spool_seq
    # 401: kept in the spool for the agent, not lost
    assert second.startswith("True 401 True not sent directly"), second
    assert [e["message"] for e in spool_pending(workdir / "spool")] == ["refused key"]


def test_exit_is_bounded_with_the_server_down_and_the_events_arrive_later(workdir):
    """The library starts an agent, which cannot reach the server: the
    program still exits within the bound (2 s past its work), and the
    events are delivered once a server listens."""
    probe = Receiver(workdir, api_key="dev-key")  # a port, then nobody on it
    url = probe.url
    probe.stop()
    probe.out.unlink(missing_ok=True)
    t0 = time.monotonic()
    ok(py(workdir, """
from master_log_client import mlog
for i in range(20):
    assert mlog("offline", i).ok
""", MASTER_LOG_ENDPOINT=url, MASTER_LOG_API_KEY="dev-key"))
    took = time.monotonic() - t0
    spool = workdir / "spool"
    try:
        # the 2 s exit bound, plus at most 5 s for the agent's start
        # (MLOG_SPAWN_WAIT_SECONDS) and the interpreter: not a speed
        # figure, a hang on the network would take 30 s and more
        assert took < 12, took
        assert spool_status(spool).get("agent_running"), "the library started no agent"
        assert len(spool_pending(spool)) == 20
    finally:
        stop_agent(spool)
    port = int(url.rsplit(":", 1)[1])
    r = Receiver(workdir, port=port, api_key="dev-key")
    try:
        out = ok(py(workdir, "from master_log_client import flush, mlog\n"
                    "assert mlog('online').ok\nr = flush(20)\nprint(r.ok, r.error)",
                    MASTER_LOG_ENDPOINT=url, MASTER_LOG_API_KEY="dev-key"))
        assert out == "True None\n"
        got = sorted(e["message"] for e in r.wait_events(21))
        assert got == sorted([f"offline {i}" for i in range(20)] + ["online"])
    finally:
        stop_agent(spool)
        r.stop()


def test_flush_counts_dead_letters(workdir):
    """flush() after events the server rejects for good: ok False and
    dead_lettered counts this process's rejected events (libmlog's
    mlog_result.dead_lettered, read through the ctypes layout)."""
    r = Receiver(workdir, api_key="dev-key", extra=["--reject-word", "poison"])
    spool = workdir / "spool"
    try:
        out = ok(py(workdir, "from master_log_client import flush, mlog\n"
                    "for m in ('good 1', 'poison 1', 'good 2', 'poison 2', 'poison 3'):\n"
                    "    assert mlog(m).ok\n"
                    "r = flush(20)\nprint(r.ok, r.dead_lettered)",
                    MASTER_LOG_ENDPOINT=r.url, MASTER_LOG_API_KEY="dev-key"))
        assert out == "False 3\n", out
        got = sorted(e["message"] for e in r.wait_events(2))
        assert got == ["good 1", "good 2"]
    finally:
        stop_agent(spool)
        r.stop()


def test_shutdown_while_threads_log(workdir):
    """shutdown() from one thread while four others log: no crash, and
    exactly the calls that reported ok are in the spool, and the others
    say the client was shut down.  (The wait for calls inside libmlog that
    shutdown() makes is not proven by this test: without it, neither the
    plain nor the ASan build hit the window in two runs each.)"""
    out = ok(py(workdir, """
import threading, time
from master_log_client import MasterLogClient
c = MasterLogClient()
oks = []
def worker(k):
    for i in range(100000):
        r = c.info("t", k, i)
        if not r.ok:
            assert r.error == "this MasterLogClient was shut down", r.error
            return
        oks.append((k, i))
ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
for t in ts:
    t.start()
time.sleep(0.3)
c.shutdown()
for t in ts:
    t.join()
print(len(oks))
""", MASTER_LOG_SPAWN_AGENT="false"))
    n = int(out)
    assert 0 < n < 400000
    assert len(spool_pending(workdir / "spool")) == n


def test_configure_while_threads_log_loses_no_call(workdir):
    """configure() replaces the process-wide client while four threads log
    through mlog(): every call reports ok and is in the spool."""
    out = ok(py(workdir, """
import threading
from master_log_client import configure, mlog
n = [0, 0, 0, 0]
def worker(k):
    for i in range(300):
        r = mlog("c", k, i)
        assert r.ok, r.error
        n[k] += 1
ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
for t in ts:
    t.start()
for _ in range(5):
    configure(batch_size=50)
for t in ts:
    t.join()
print(sum(n))
""", MASTER_LOG_SPAWN_AGENT="false"))
    assert out == "1200\n"
    got = sorted(e["message"] for e in spool_pending(workdir / "spool"))
    assert got == sorted(f"c {k} {i}" for k in range(4) for i in range(300))
