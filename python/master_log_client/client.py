"""MasterLogClient and MasterLogResult over libmlog (ctypes).

Each logging call builds the message as print() would, converts metadata
as json.dumps() would, and hands the event to libmlog, which makes it safe
in the spool on local disk before the call returns (durability mode
MASTER_LOG_DURABILITY); spool-agent, a process of its own, sends it.
"""

import ctypes
import json
import numbers
import os
import platform
import socket
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Optional

from . import _lib
from ._version import __version__

SEVERITIES = {"debug": 1, "info": 2, "warn": 3, "error": 4, "fatal": 5}
BLOCK_NAME = "python_client"


@dataclass
class MasterLogResult:
    """What a call did.

    ok: the event is safe (in the spool, or accepted by the server);
    status_code: the server's HTTP status after a direct send
    (async_mode=False), None when no request was made; event_id: the
    server's id after a direct send, else the event's client_event_id;
    queued: the event sits in the spool for the agent; accepted: the spool
    or the server took it; error: a sentence, or None; dead_lettered
    (flush() only): events of this process the server rejected for good
    since the previous flush, moved to the dead letters (ok is then False).
    """

    ok: bool
    status_code: Optional[int] = None
    event_id: Optional[str] = None
    queued: bool = False
    accepted: bool = False
    error: Optional[str] = None
    dead_lettered: int = 0


def _result(r):
    return MasterLogResult(
        ok=bool(r.ok),
        status_code=r.status_code or None,
        event_id=r.event_id.decode("utf-8", "replace") or None,
        queued=bool(r.queued),
        accepted=bool(r.accepted),
        error=r.error.decode("utf-8", "replace") or None,
        dead_lettered=int(r.dead_lettered),
    )


def _failed(error):
    return MasterLogResult(ok=False, error=error)


# ---- settings: keyword -> (struct mlog_config field kind) ----

_SETTINGS = {
    "api_key": "str",
    "endpoint": "str",
    "batch_size": "int",
    "flush_interval_seconds": "seconds",
    "max_queue_size": "int",
    "drop_when_full": "switch",
    "queue_timeout_seconds": "seconds",
    "backpressure": "switch",
    "initial_send_seconds_per_log": "seconds",
    "max_enqueue_sleep_seconds": "seconds",
    "min_request_interval_seconds": "seconds",
    "async_mode": "switch",
    "spool_dir": "path",
    "durability": "str",
    "max_spool_bytes": "int",
    "spawn_agent": "switch",
    "ca_file": "path",
    "agent_idle_seconds": "seconds",
}


def _config(settings):
    """struct mlog_config from keyword settings (None: not set), and the
    bytes it points to (kept alive by the caller)."""
    cfg = _lib.Config()
    keep = []
    for name, value in settings.items():
        if value is None:
            continue
        kind = _SETTINGS[name]
        if kind in ("str", "path"):
            if kind == "path" and isinstance(value, os.PathLike):
                value = os.fspath(value)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, not {type(value).__name__}")
            if "\0" in value:
                raise ValueError(f"{name} contains a NUL character")
            b = value.encode("utf-8")
            keep.append(b)
            setattr(cfg, name, b)
        elif kind == "switch":
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, not {value!r}")
            setattr(cfg, name, _lib.ON if value else _lib.OFF)
        else:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a number, not {type(value).__name__}")
            if kind == "int" and not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be a whole number, got {value!r}")
            if value < 0:
                raise ValueError(f"{name} must be 0 or more, got {value!r}")
            if value == 0:
                value = _lib.NONE  # MLOG_NONE: zero (no limit for the size limits)
            setattr(cfg, name, int(value) if kind == "int" else float(value))
    return cfg, keep


# ---- the python_client block ----

_fqdn = None
_fqdn_lock = threading.Lock()
_fqdn_started = False


def _resolve_fqdn():
    global _fqdn
    try:
        name = socket.getfqdn()
    except Exception:  # the block goes without it, as "when available" says
        return
    _fqdn = name or None


def _start_fqdn():
    """Looks the FQDN up once per process in a daemon thread, so that no
    logging call waits for DNS; events before the answer have no fqdn."""
    global _fqdn_started
    with _fqdn_lock:
        if _fqdn_started:
            return
        _fqdn_started = True
    try:
        threading.Thread(target=_resolve_fqdn, name="master-log-fqdn", daemon=True).start()
    except RuntimeError:  # at interpreter shutdown
        pass


def _process_name():
    mp = sys.modules.get("multiprocessing")
    if mp is not None:
        try:
            return mp.current_process().name
        except Exception:
            pass
    return "MainProcess"


def _block(pid, cwd, fqdn):
    b = {"hostname": socket.gethostname()}
    if fqdn:
        b["fqdn"] = fqdn
    b.update(pid=pid, process_name=_process_name(), cwd=cwd,
             python_version=platform.python_version(), library_version=__version__)
    return json.dumps(b)


# ---- argument conversion ----

def _text(name, value):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError(f"{name} contains a NUL character: {value!r}")
    return value.encode("utf-8", "surrogatepass")


def _metadata_json(metadata):
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    try:
        return json.dumps(metadata, allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as e:
        # name the entry json.dumps stumbled on
        for k, v in metadata.items():
            try:
                json.dumps({k: v}, allow_nan=False)
            except (TypeError, ValueError) as inner:
                raise type(e)(f"metadata[{k!r}]: {inner}") from None
        raise type(e)(f"metadata: {e}") from None


# every client still open, for the exit handler
_live = weakref.WeakSet()
_live_lock = threading.Lock()


class MasterLogClient:
    """A client with its own settings.  Keyword arguments beat the
    MASTER_LOG_* environment, which beats the defaults; a bad value raises
    ValueError (or TypeError) naming it."""

    def __init__(self, api_key=None, endpoint=None, batch_size=None,
                 flush_interval_seconds=None, max_queue_size=None, drop_when_full=None,
                 queue_timeout_seconds=None, backpressure=None,
                 initial_send_seconds_per_log=None, max_enqueue_sleep_seconds=None,
                 min_request_interval_seconds=None, async_mode=None, spool_dir=None,
                 durability=None, max_spool_bytes=None, spawn_agent=None, ca_file=None,
                 agent_idle_seconds=None):
        self._c = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0  # calls inside libmlog: shutdown() waits for them
        cfg, _keep = _config(dict(
            api_key=api_key, endpoint=endpoint, batch_size=batch_size,
            flush_interval_seconds=flush_interval_seconds, max_queue_size=max_queue_size,
            drop_when_full=drop_when_full, queue_timeout_seconds=queue_timeout_seconds,
            backpressure=backpressure,
            initial_send_seconds_per_log=initial_send_seconds_per_log,
            max_enqueue_sleep_seconds=max_enqueue_sleep_seconds,
            min_request_interval_seconds=min_request_interval_seconds,
            async_mode=async_mode, spool_dir=spool_dir, durability=durability,
            max_spool_bytes=max_spool_bytes, spawn_agent=spawn_agent, ca_file=ca_file,
            agent_idle_seconds=agent_idle_seconds))
        c = ctypes.c_void_p()
        err = ctypes.create_string_buffer(_lib.ERROR_MAX)
        rc = _lib.lib.mlog_client_new(ctypes.byref(cfg), ctypes.byref(c), err, _lib.ERROR_MAX)
        if rc != 0:
            msg = err.value.decode("utf-8", "replace")
            raise ValueError(msg.replace("mlog_configure: ", "", 1))
        self._c = c
        self._block_pid = None
        self._block_cwd = None
        self._block_fqdn = None
        _start_fqdn()
        with _live_lock:
            _live.add(self)

    # -- the python_client block, set again when the pid, cwd or fqdn changed

    def _refresh_block(self):
        pid = os.getpid()
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = ""
        fqdn = _fqdn
        if pid == self._block_pid and cwd == self._block_cwd and fqdn == self._block_fqdn:
            return
        err = ctypes.create_string_buffer(_lib.ERROR_MAX)
        rc = _lib.lib.mlog_client_set_block(self._c, BLOCK_NAME.encode(),
                                            _block(pid, cwd, fqdn).encode("utf-8",
                                                                          "surrogatepass"),
                                            err, _lib.ERROR_MAX)
        if rc != 0:
            raise RuntimeError(err.value.decode("utf-8", "replace"))
        self._block_pid, self._block_cwd, self._block_fqdn = pid, cwd, fqdn

    def log(self, *values, severity="info", title=None, tags=None, ttl_seconds=None,
            metadata=None, sep=" "):
        """Logs values joined with sep, as print() joins them."""
        if sep is None:
            sep = " "
        elif not isinstance(sep, str):
            raise TypeError(f"sep must be None or a string, not {type(sep).__name__}")
        message = sep.join(v if isinstance(v, str) else str(v) for v in values)
        opts = _lib.Opts()
        if not isinstance(severity, str):
            raise TypeError(f"severity must be a string, not {type(severity).__name__}")
        sev = SEVERITIES.get(severity.lower())
        if sev is None:
            raise ValueError(f"severity must be one of debug, info, warn, error, fatal; "
                             f"got {severity!r}")
        opts.severity = sev
        if title is not None:
            opts.title = _text("title", title)
        if tags is not None:
            if isinstance(tags, (str, bytes)):
                raise TypeError("tags must be a list of strings, not a single string")
            items = list(tags)
            arr = (ctypes.c_char_p * (len(items) + 1))()
            for i, t in enumerate(items):
                arr[i] = _text(f"tags[{i}]", t)
            opts.tags = arr
        if ttl_seconds is not None:
            if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, numbers.Integral):
                raise TypeError(f"ttl_seconds must be a whole number of seconds, "
                                f"not {ttl_seconds!r}")
            if ttl_seconds <= 0 or ttl_seconds >= 1 << 63:
                raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds!r}")
            opts.ttl_seconds = int(ttl_seconds)
        if metadata is not None:
            opts.metadata_json = _metadata_json(metadata)
        msg = message.encode("utf-8", "surrogatepass")
        with self._lock:
            if self._c is None:
                return _failed("this MasterLogClient was shut down")
            self._refresh_block()
            c = self._c
            self._busy += 1
        try:
            return _result(_lib.lib.mlog_client_send(c, ctypes.byref(opts), msg, len(msg)))
        finally:
            self._done()

    def _done(self):
        with self._lock:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    mlog = log

    @property
    def closed(self):
        """True once shutdown() ran."""
        return self._c is None

    def debug(self, *values, **kwargs):
        return self.log(*values, severity="debug", **kwargs)

    def info(self, *values, **kwargs):
        return self.log(*values, severity="info", **kwargs)

    def warn(self, *values, **kwargs):
        return self.log(*values, severity="warn", **kwargs)

    def error(self, *values, **kwargs):
        return self.log(*values, severity="error", **kwargs)

    def fatal(self, *values, **kwargs):
        return self.log(*values, severity="fatal", **kwargs)

    def flush(self, timeout_seconds=10.0):
        """Waits until the server has acknowledged (through spool-agent)
        every event this process logged before the call, at most
        timeout_seconds; ok False with the reason otherwise."""
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, numbers.Real):
            raise TypeError(f"timeout_seconds must be a number, not {timeout_seconds!r}")
        with self._lock:
            c = self._c
            if c is None:
                return MasterLogResult(ok=True)
            self._busy += 1
        try:
            return _result(_lib.lib.mlog_client_flush(c, float(timeout_seconds)))
        finally:
            self._done()

    def shutdown(self):
        """Waits for calls under way in other threads, commits, wakes the
        agent and waits at most 2 s for it (MLOG_EXIT_WAIT_SECONDS), then
        closes the spool.  Later calls on this client return ok False."""
        with self._lock:
            c, self._c = self._c, None
            # calls under way in other threads end first (libmlog frees c)
            while c is not None and self._busy:
                self._idle.wait()
        if c is not None:
            with _live_lock:
                _live.discard(self)
            _lib.lib.mlog_client_free(c)

    def close(self):
        self.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def __del__(self):
        try:
            self.shutdown()
        except Exception:
            pass

    def _after_fork_in_child(self):
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0  # the parent's other threads are not in the child


def _after_fork_in_child():
    global _fqdn_lock, _live_lock
    _fqdn_lock = threading.Lock()
    _live_lock = threading.Lock()
    for c in list(_live):
        c._after_fork_in_child()


def shutdown_all():
    """The exit handler: every client still open, each with its bound."""
    for c in list(_live):
        c.shutdown()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
