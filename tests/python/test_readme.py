"""Every code block of the original master-log-client README
(a copy in tests/python/seed/ of ../shared/seeds/), extracted at test time and run as written, against the
real mlog-receiver on 127.0.0.1:8000 (the endpoint the blocks name; run.py
puts this file in a private network namespace) with the API key it checks,
and the real spool-agent the library starts.

- The shell blocks of "Environment" are run by bash; the MASTER_LOG_*
  variables they export are the environment of the Python blocks (a first
  round with the Environment block alone, a second with the optional
  controls too).
- "Install For Local Use" is run with bash in python/ of this checkout,
  inside a virtual environment (the one test_pip.py, run first in the same
  session, made fresh) (`python` is the venv's); the Python
  blocks then run with that venv's interpreter.
- For each Python block, the events it must produce are read from the
  block's own text (its calls to mlog/debug/info/warn/error/fatal and
  client methods, their arguments evaluated with the block's literal
  assignments), and every one must reach the receiver with exactly those
  fields and the python_client block.
"""

import ast
import json
import os
import re
import subprocess

import pytest

from conftest import LIBMLOG, SOURCE, Receiver, clean_env, seed_blocks, stop_agent

LOG_CALLS = {"mlog": None, "debug": "debug", "info": "info", "warn": "warn",
             "error": "error", "fatal": "fatal"}


def expected_events(code):
    """The events a block logs, from its text: [{message, severity, ...}]."""
    tree = ast.parse(code)
    names = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            try:
                names[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass

    def value(n):
        if isinstance(n, ast.Name) and n.id in names:
            return names[n.id]
        return ast.literal_eval(n)

    events = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) \
            else None
        if fname not in LOG_CALLS:
            continue
        kw = {k.arg: value(k.value) for k in node.keywords}
        sep = kw.pop("sep", " ")
        ev = {"message": sep.join(str(value(a)) for a in node.args),
              "severity": LOG_CALLS[fname] or kw.pop("severity", "info")}
        kw.pop("severity", None)
        ev.update(kw)
        events.append(ev)
    return events


def check_event(got, want, cwd):
    for k, v in want.items():
        assert got.get(k) == v if k != "metadata" else True, (k, got, want)
    for k in ("title", "tags", "ttl_seconds"):
        if k not in want:
            assert k not in got, (k, got)
    meta = dict(got.get("metadata", {}))
    block = meta.pop("python_client")
    assert set(block) >= {"hostname", "pid", "process_name", "cwd", "python_version",
                          "library_version"}, block
    assert set(block) <= {"hostname", "fqdn", "pid", "process_name", "cwd", "python_version",
                          "library_version"}, block
    assert isinstance(block["pid"], int) and block["cwd"] == str(cwd)
    assert block["library_version"] == "0.1.0" and block["process_name"] == "MainProcess"
    meta.pop("c_client", None)  # spool_seq, added by the agent to spooled events
    assert meta == want.get("metadata", {}), (meta, want)
    assert re.fullmatch(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", got["client_event_id"])


def key(e):
    return json.dumps({k: e.get(k) for k in ("message", "severity", "title", "tags")},
                      sort_keys=True)


def bash_exports(block, env):
    """Runs a shell block with bash and returns the MASTER_LOG_* variables
    it leaves exported."""
    env = {k: v for k, v in env.items() if not k.startswith("MASTER_LOG_")}
    out = subprocess.run(["bash", "-c", block + "\nenv -0"], env=env, capture_output=True,
                         check=True)
    pairs = [p.split(b"=", 1) for p in out.stdout.split(b"\0") if b"=" in p]
    return {k.decode(): v.decode() for k, v in pairs if k.startswith(b"MASTER_LOG_")}


def test_every_readme_block_runs_as_written(workdir, venv):
    blocks = seed_blocks()
    env_blocks = [b for h, lang, b in blocks if lang == "bash" and "export MASTER_LOG_" in b]
    install = [b for h, lang, b in blocks if lang == "bash" and "pip install" in b]
    python_blocks = [(h, b) for h, lang, b in blocks if lang == "python"]
    assert len(env_blocks) == 2 and len(install) == 1 and len(python_blocks) == 7, blocks
    receiver = Receiver(workdir, port=8000, api_key="dev-key")
    try:
        # the install block, in python/ of this checkout, in a virtual
        # environment (the session's: test_pip.py ran first in it)
        base = clean_env(PATH=f"{venv}/bin:{os.environ['PATH']}", VIRTUAL_ENV=venv,
                         MASTER_LOG_AGENT_IDLE_SECONDS=3)
        r = subprocess.run(["bash", "-c", install[0]], cwd=SOURCE / "python", env=base,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        python = str(venv / "bin" / "python")
        where = subprocess.run([python, "-c", "import master_log_client, sys; "
                                "print(master_log_client.__file__)"], env=base, cwd=workdir,
                               capture_output=True, text=True, check=True).stdout
        assert where.startswith(str(SOURCE / "python")), where  # the editable install

        env1 = bash_exports(env_blocks[0], base)
        assert env1 == {"MASTER_LOG_API_KEY": "dev-key",
                        "MASTER_LOG_ENDPOINT": "http://127.0.0.1:8000"}
        env2 = bash_exports(env_blocks[0] + env_blocks[1], base)
        assert len(env2) == 11, env2
        seen = 0
        for round_no, exported in enumerate((env1, env2), 1):
            spool = workdir / f"spool-{round_no}"
            env = dict(base, MASTER_LOG_SPOOL_DIR=str(spool), MASTER_LOG_LIBMLOG=LIBMLOG,
                       **exported)
            cwd = workdir / f"cwd-{round_no}"
            cwd.mkdir()
            try:
                for heading, code in python_blocks:
                    want = expected_events(code)
                    assert want, heading
                    r = subprocess.run([python, "-c", code], env=env, cwd=cwd,
                                       capture_output=True, text=True, timeout=60)
                    assert r.returncode == 0, (heading, r.stdout, r.stderr)
                    assert r.stdout == "" and r.stderr == "", (heading, r.stdout, r.stderr)
                    got = receiver.wait_events(seen + len(want), timeout=30)[seen:]
                    assert len(got) == len(want), (heading, got)
                    for g, w in zip(sorted(got, key=key), sorted(want, key=key)):
                        check_event(g, w, cwd)
                    seen += len(want)
            finally:
                stop_agent(spool)
        # nothing more arrived than the blocks logged, and nothing twice
        events = receiver.events()
        assert len(events) == seen
        assert len({e["client_event_id"] for e in events}) == seen
    finally:
        receiver.stop()


def test_expected_events_reads_the_blocks():
    """The reading of a block's calls that the test above relies on."""
    got = expected_events('from x import mlog\nframe_id = 42\ntarget = "M31"\n'
                          'mlog("Captured frame", frame_id, "for", target, tags=["imaging"])\n'
                          'warn("w", metadata={"a": 1.5}, sep="-")\n'
                          'client.fatal("f", title="t")\n')
    assert got == [
        {"message": "Captured frame 42 for M31", "severity": "info", "tags": ["imaging"]},
        {"message": "w", "severity": "warn", "metadata": {"a": 1.5}},
        {"message": "f", "severity": "fatal", "title": "t"},
    ]
