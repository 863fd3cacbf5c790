"""Shared pieces of the Python client's tests (tests/python/): the build's
programs, a clean environment, mlog-receiver and spool-agent as real
processes on 127.0.0.1, temporary directories that are removed."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

BUILD = Path(os.environ["SPOOL_TEST_BUILD_DIR"])
SOURCE = Path(os.environ["SPOOL_SOURCE_DIR"])
RECEIVER = os.environ["MLOG_RECEIVER"]
AGENT = os.environ["SPOOL_AGENT"]
SPOOLCTL = os.environ["SPOOLCTL"]
LIBMLOG = os.environ["MASTER_LOG_LIBMLOG"]
# the seed package's metadata, README included (a copy of
# ../shared/seeds/, which run.py compares it with when present)
SEED = SOURCE / "tests" / "python" / "seed" / "master-log-client-0.1.0-PKG-INFO.txt"


def clean_env(**extra):
    """The test's environment without any MASTER_LOG_* setting, with the
    build's libmlog, plus extra (None removes a variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASTER_LOG_")}
    env["MASTER_LOG_LIBMLOG"] = LIBMLOG
    env["MASTER_LOG_AGENT_IDLE_SECONDS"] = "3"
    env.pop("PYTHONPATH", None)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="mlog-python-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def wait_until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Receiver:
    """mlog-receiver on 127.0.0.1 storing what it accepts in a file."""

    def __init__(self, d, port=0, api_key=None, extra=()):
        self.out = d / "received.jsonl"
        portfile = d / "receiver.port"
        args = [RECEIVER, "--listen", "127.0.0.1", "--port", str(port),
                "--port-file", str(portfile), "--out", str(self.out)]
        if api_key:
            args += ["--api-key", api_key]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: portfile.exists() or self.proc.poll() is not None, 10,
                   "mlog-receiver to listen")
        if self.proc.poll() is not None:
            raise AssertionError(f"mlog-receiver failed: {self.proc.stderr.read().decode()}")
        self.port = int(portfile.read_text().split()[0])
        self.url = f"http://127.0.0.1:{self.port}"

    def events(self):
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def wait_events(self, n, timeout=30):
        return wait_until(lambda: len(self.events()) >= n and self.events(), timeout,
                          f"{n} events at the receiver (have {len(self.events())})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


@pytest.fixture
def receiver(workdir):
    r = Receiver(workdir, api_key="dev-key")
    yield r
    r.stop()


def spool_status(spool):
    out = subprocess.run([SPOOLCTL, "--spool", str(spool), "status", "--json"],
                         capture_output=True, text=True, env=clean_env())
    if out.returncode != 0:
        return {}
    return json.loads(out.stdout)


def spool_pending(spool):
    """The pending events of a spool as JSON objects, oldest first."""
    out = subprocess.run([SPOOLCTL, "--spool", str(spool), "peek", "-n", "100000", "--json"],
                         capture_output=True, text=True, env=clean_env(), check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def stop_agent(spool):
    """Stops the spool-agent holding the spool's lock (one the library
    started for this test's spool)."""
    if not Path(spool).exists():
        return
    end = time.monotonic() + 20
    while time.monotonic() < end:
        pid = spool_status(spool).get("agent_pid") or 0
        if not pid:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the agent of {spool} did not stop")


def run_python(code, env, cwd, python=sys.executable, timeout=60):
    return subprocess.run([python, "-c", code], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def seed_blocks():
    """The fenced code blocks of the original README: (heading, language,
    text), in order."""
    text = SEED.read_text(encoding="utf-8")
    blocks, heading = [], None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        m = re.match(r"^```(\w*)\s*$", line)
        if m:
            j = i + 1
            body = []
            while j < len(lines) and not lines[j].startswith("```"):
                body.append(lines[j])
                j += 1
            blocks.append((heading, m.group(1), "\n".join(body) + "\n"))
            i = j
        i += 1
    return blocks


@pytest.fixture(scope="session")
def venv():
    """A fresh virtual environment (Debian's python3-venv, with pip), one per
    pytest session: creating one takes seconds (ensurepip).  test_pip.py
    installs into it first (pip install ./python), test_readme.py after it
    (the README's pip install -e .)."""
    d = Path(tempfile.mkdtemp(prefix="mlog-python-venv-"))
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(d / "venv")], check=True,
                   capture_output=True)
    yield d / "venv"
    shutil.rmtree(d, ignore_errors=True)
