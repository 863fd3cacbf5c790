"""`pip install ./python` into a fresh virtual environment (offline: the
build backend is in python/_build and needs nothing), then the original
README's "Simple Usage" block, run as written with MASTER_LOG_API_KEY and
MASTER_LOG_ENDPOINT set, against the build tree's libmlog and against an
install of the project (`meson install --destdir`); both events reach
mlog-receiver with their fields, sent by the spool-agent of the libmlog in
use."""

import glob
import os
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, SOURCE, clean_env, seed_blocks, spool_status, stop_agent


def simple_usage():
    blocks = [b for h, lang, b in seed_blocks() if h == "Simple Usage" and lang == "python"]
    assert len(blocks) == 1
    return blocks[0]


def run_block(python, env, cwd, receiver, spool):
    code = simple_usage()
    before = len(receiver.events())
    r = subprocess.run([python, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr
    events = receiver.wait_events(before + 2, timeout=30)[before:]
    assert len(events) == 2
    by_msg = {e["message"]: e for e in events}
    a = by_msg["Telescope array online"]
    assert a["severity"] == "info" and "tags" not in a
    b = by_msg["Dome slit wind threshold approaching"]
    assert b["severity"] == "warn" and b["tags"] == ["dome", "weather"]
    for e in events:
        assert e["metadata"]["python_client"]["cwd"] == str(cwd)
    # the agent that sent them is the one beside the libmlog in use
    pid = spool_status(spool).get("agent_pid")
    agent_exe = os.readlink(f"/proc/{pid}/exe") if pid else None
    stop_agent(spool)
    return agent_exe


def test_pip_install_then_simple_usage(workdir, receiver, venv):
    python = str(venv / "bin" / "python")
    r = subprocess.run([python, "-m", "pip", "install", "--no-index", "./python"],
                       cwd=SOURCE, capture_output=True, text=True,
                       env=clean_env(PIP_NO_INPUT="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    where = subprocess.run([python, "-c", "import master_log_client; "
                            "print(master_log_client.__file__)"], cwd=workdir,
                           capture_output=True, text=True, check=True,
                           env=clean_env()).stdout
    assert where.startswith(str(venv)), where  # the installed copy, not the checkout's
    cwd = workdir / "app"
    cwd.mkdir()
    readme_env = dict(MASTER_LOG_API_KEY="dev-key", MASTER_LOG_ENDPOINT=receiver.url)

    # 1. from the build tree
    spool = workdir / "spool-build"
    agent = run_block(python, clean_env(MASTER_LOG_SPOOL_DIR=spool, **readme_env), cwd,
                      receiver, spool)
    assert agent and agent.startswith(str(BUILD)), agent

    # 2. from an install (meson install --destdir), found through the loader
    dest = workdir / "dest"
    r = subprocess.run(["meson", "install", "-C", str(BUILD), "--destdir", str(dest),
                        "--no-rebuild", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    libs = glob.glob(f"{dest}/**/libmlog.so.0", recursive=True)
    assert len(libs) == 1, libs
    libdir = str(Path(libs[0]).parent)
    bindir = str(Path(glob.glob(f"{dest}/**/bin/spool-agent", recursive=True)[0]).parent)
    env = clean_env(MASTER_LOG_SPOOL_DIR=workdir / "spool-install", MASTER_LOG_LIBMLOG=None,
                    LD_LIBRARY_PATH=libdir, PATH=f"{bindir}:{os.environ['PATH']}",
                    **readme_env)
    loaded = subprocess.run([python, "-c", "from master_log_client import _lib; print(_lib.path)"],
                            cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "libmlog.so.0"  # through the dynamic loader: LD_LIBRARY_PATH
    maps_check = ("from master_log_client import _lib\n"
                  "print([l.split()[-1] for l in open('/proc/self/maps') "
                  "if 'libmlog.so' in l][0])")
    mapped = subprocess.run([python, "-c", maps_check], cwd=cwd, env=env, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert mapped.startswith(str(dest)), mapped
    agent = run_block(python, env, cwd, receiver, workdir / "spool-install")
    assert agent and agent.startswith(str(dest)), agent
