"""A Python process SIGKILLed right after 1,000 mlog() calls returned:
spool-agent, started afterwards against mlog-receiver on 127.0.0.1,
delivers all 1,000, each once.  Default durability (commit: the events sit
in the process's ring file when it dies) and sync."""

import signal
import subprocess
import sys
import time

import pytest

from conftest import AGENT, SOURCE, Receiver, clean_env, stop_agent

N = 1000

CHILD = f"""
import sys
from master_log_client import mlog
for i in range({N}):
    r = mlog("kill test", i, metadata={{"i": i}})
    if not r.ok:
        sys.exit("mlog failed: " + str(r.error))
sys.stdout.write("logged\\n")
sys.stdout.flush()
import time
time.sleep(120)
"""


@pytest.mark.parametrize("durability", ["commit", "sync"])
def test_sigkill_after_1000_calls_loses_nothing(workdir, durability):
    spool = workdir / "spool"
    # no endpoint: no agent runs while the program logs, so every event is
    # still in the spool (or its ring) at the kill
    env = clean_env(MASTER_LOG_SPOOL_DIR=spool, PYTHONPATH=SOURCE / "python",
                    MASTER_LOG_DURABILITY=None if durability == "commit" else durability)
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, cwd=workdir,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    child.wait()
    err = child.stderr.read()
    child.stdout.close()
    child.stderr.close()
    assert line == "logged\n", err
    assert child.returncode == -signal.SIGKILL

    receiver = Receiver(workdir, api_key="dev-key")
    agent = subprocess.Popen([AGENT, "--spool", str(spool), "--endpoint", receiver.url],
                             env=clean_env(MASTER_LOG_API_KEY="dev-key"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        events = receiver.wait_events(N, timeout=60)
        time.sleep(0.3)  # a duplicate would arrive now
        events = receiver.events()
        got = sorted(e["metadata"]["i"] for e in events)
        assert got == list(range(N)), f"{len(events)} events, missing " \
            f"{sorted(set(range(N)) - set(got))[:10]}"
        for e in events:
            assert e["message"] == f"kill test {e['metadata']['i']}"
            assert e["metadata"]["python_client"]["pid"] == child.pid
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(20)
        agent.stderr.close()
        receiver.stop()
        stop_agent(spool)
