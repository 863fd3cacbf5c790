"""Master Log client for Python over the durable spool (libmlog).

The same names, calls and environment as master-log-client 0.1.0; each
event is made safe in the spool on local disk before mlog() returns, and
spool-agent, a process of its own, delivers it.  python/README.md says
where the behaviour differs.
"""

import atexit
import os
import threading
import warnings

from ._version import __version__
from .client import MasterLogClient, MasterLogResult, shutdown_all, _failed

__all__ = [
    "MasterLogClient", "MasterLogResult", "configure", "debug", "error", "fatal", "flush",
    "info", "mlog", "shutdown", "warn", "__version__",
]

_lock = threading.RLock()
_default = None       # the process-wide client, made on first use
_settings = {}        # from configure()
_bad_settings = None  # why the default client cannot be made (a bad MASTER_LOG_* value)


def configure(api_key=None, endpoint=None, batch_size=None, flush_interval_seconds=None,
              max_queue_size=None, drop_when_full=None, queue_timeout_seconds=None,
              backpressure=None, initial_send_seconds_per_log=None,
              max_enqueue_sleep_seconds=None, min_request_interval_seconds=None,
              async_mode=None, spool_dir=None, durability=None, max_spool_bytes=None,
              spawn_agent=None, ca_file=None, agent_idle_seconds=None):
    """Sets the process-wide client's settings; they beat the MASTER_LOG_*
    environment.  A bad value raises ValueError or TypeError naming it, and
    the previous settings stay.  The previous client is shut down."""
    global _default, _settings, _bad_settings
    settings = dict(
        api_key=api_key, endpoint=endpoint, batch_size=batch_size,
        flush_interval_seconds=flush_interval_seconds, max_queue_size=max_queue_size,
        drop_when_full=drop_when_full, queue_timeout_seconds=queue_timeout_seconds,
        backpressure=backpressure, initial_send_seconds_per_log=initial_send_seconds_per_log,
        max_enqueue_sleep_seconds=max_enqueue_sleep_seconds,
        min_request_interval_seconds=min_request_interval_seconds, async_mode=async_mode,
        spool_dir=spool_dir, durability=durability, max_spool_bytes=max_spool_bytes,
        spawn_agent=spawn_agent, ca_file=ca_file, agent_idle_seconds=agent_idle_seconds)
    client = MasterLogClient(**settings)  # raises on a bad value
    with _lock:
        old, _default = _default, client
        _settings, _bad_settings = settings, None
    if old is not None:
        old.shutdown()


def _client():
    global _default, _bad_settings
    c = _default
    if c is not None:
        return c
    with _lock:
        if _default is None:
            try:
                _default = MasterLogClient(**_settings)
                _bad_settings = None
            except (ValueError, TypeError) as e:
                if _bad_settings is None:
                    warnings.warn(f"master_log_client: events are not logged: {e}",
                                  RuntimeWarning, stacklevel=3)
                _bad_settings = str(e)
                return None
        return _default


def mlog(*values, severity="info", title=None, tags=None, ttl_seconds=None, metadata=None,
         sep=" "):
    """Logs values joined with sep, like print(); the event is in the spool
    when it returns (result.ok)."""
    for _ in range(3):
        c = _client()
        if c is None:
            return _failed(_bad_settings)
        r = c.log(*values, severity=severity, title=title, tags=tags, ttl_seconds=ttl_seconds,
                  metadata=metadata, sep=sep)
        # a configure() or shutdown() in another thread closed the client
        # this call had picked: log through the one that replaces it
        if r.ok or not c.closed or c is _default:
            return r
    return r


def debug(*values, **kwargs):
    return mlog(*values, severity="debug", **kwargs)


def info(*values, **kwargs):
    return mlog(*values, severity="info", **kwargs)


def warn(*values, **kwargs):
    return mlog(*values, severity="warn", **kwargs)


def error(*values, **kwargs):
    return mlog(*values, severity="error", **kwargs)


def fatal(*values, **kwargs):
    return mlog(*values, severity="fatal", **kwargs)


def flush(timeout_seconds=10.0):
    """Waits until the server has acknowledged every event this process
    logged (spool-agent sends them), at most timeout_seconds."""
    c = _default
    if c is None:
        return MasterLogResult(ok=True)
    return c.flush(timeout_seconds)


def shutdown():
    """Ends the process-wide client (waits at most 2 s for the agent);
    logging again afterwards starts a new one."""
    global _default
    with _lock:
        c, _default = _default, None
    if c is not None:
        c.shutdown()


def _after_fork_in_child():
    global _lock
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown_all)
