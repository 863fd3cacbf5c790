"""Finding and loading libmlog, and its C types (include/spool/mlog.h).

Where the library comes from, in this order (python/README.md, "Finding
libmlog"):

1. ``MASTER_LOG_LIBMLOG``: the path of ``libmlog.so.0``, or a directory
   holding it (a lib directory, or a build directory with
   ``libspool/client/libmlog.so.0``).  When set, nothing else is tried.
2. The build tree of the checkout this package sits in
   (``<checkout>/build/libspool/client/libmlog.so.0``), when the package is
   used from ``python/`` of a checkout (``pip install -e``, ``PYTHONPATH``).
3. ``libmlog.so.0`` through the system's dynamic loader (an installed
   libmlog: ``/usr/lib``, ``/usr/local/lib`` after ``ldconfig``, or
   ``LD_LIBRARY_PATH``).
"""

import ctypes
import os
from pathlib import Path

SONAME = "libmlog.so.0"
SPOOL_SONAME = "libspool.so.0"

ERROR_MAX = 256
EVENT_ID_MAX = 80
BLOCK_NAME_MAX = 128
EXIT_WAIT_SECONDS = 2.0  # MLOG_EXIT_WAIT_SECONDS

# enum mlog_switch
UNSET, OFF, ON = 0, 1, 2
# MLOG_NONE: "zero" in a number field of struct mlog_config
NONE = -1


class Result(ctypes.Structure):
    _fields_ = [
        ("ok", ctypes.c_bool),
        ("status_code", ctypes.c_int),
        ("event_id", ctypes.c_char * EVENT_ID_MAX),
        ("queued", ctypes.c_bool),
        ("accepted", ctypes.c_bool),
        ("error", ctypes.c_char * ERROR_MAX),
        # in the tail padding of the first layout (mlog.h)
        ("dead_lettered", ctypes.c_uint16),
    ]


class Opts(ctypes.Structure):
    _fields_ = [
        ("severity", ctypes.c_int),
        ("title", ctypes.c_char_p),
        ("tags", ctypes.POINTER(ctypes.c_char_p)),
        ("ttl_seconds", ctypes.c_int64),
        ("metadata_json", ctypes.c_char_p),
        ("metadata", ctypes.c_void_p),
        ("nmetadata", ctypes.c_size_t),
    ]


class Config(ctypes.Structure):
    _fields_ = [
        ("api_key", ctypes.c_char_p),
        ("endpoint", ctypes.c_char_p),
        ("batch_size", ctypes.c_long),
        ("flush_interval_seconds", ctypes.c_double),
        ("max_queue_size", ctypes.c_long),
        ("drop_when_full", ctypes.c_int),
        ("queue_timeout_seconds", ctypes.c_double),
        ("backpressure", ctypes.c_int),
        ("initial_send_seconds_per_log", ctypes.c_double),
        ("max_enqueue_sleep_seconds", ctypes.c_double),
        ("min_request_interval_seconds", ctypes.c_double),
        ("async_mode", ctypes.c_int),
        ("spool_dir", ctypes.c_char_p),
        ("durability", ctypes.c_char_p),
        ("max_spool_bytes", ctypes.c_int64),
        ("spawn_agent", ctypes.c_int),
        ("ca_file", ctypes.c_char_p),
        ("agent_idle_seconds", ctypes.c_double),
    ]


def _candidates():
    """(how it was found, path or soname) in the order tried."""
    env = os.environ.get("MASTER_LOG_LIBMLOG")
    if env:
        p = Path(env)
        if p.is_dir():
            for sub in (p / SONAME, p / "libspool" / "client" / SONAME):
                if sub.exists():
                    return [("MASTER_LOG_LIBMLOG", str(sub))]
            return [("MASTER_LOG_LIBMLOG", str(p / SONAME))]
        return [("MASTER_LOG_LIBMLOG", str(p))]
    found = []
    checkout = Path(__file__).resolve().parent.parent.parent
    if (checkout / "meson.build").exists() and (checkout / "python").is_dir():
        lib = checkout / "build" / "libspool" / "client" / SONAME
        if lib.exists():
            found.append(("the build tree", str(lib)))
    found.append(("the dynamic loader", SONAME))
    return found


def _load():
    tried = []
    for how, where in _candidates():
        try:
            if os.sep in where:
                # libspool beside it first (an install moved with --destdir
                # has no ld.so.cache entry); the build tree's libmlog finds
                # its own through its RUNPATH
                sibling = Path(where).parent / SPOOL_SONAME
                if sibling.exists():
                    ctypes.CDLL(str(sibling), mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(where), where
        except OSError as e:
            tried.append(f"{how}: {e}")
    raise ImportError(
        "master_log_client: cannot load libmlog (the Master Log spool's client "
        "library): " + "; ".join(tried) + ". Install master-log-spool, or set "
        "MASTER_LOG_LIBMLOG to the path of libmlog.so.0 (in a build tree: "
        "BUILD/libspool/client/libmlog.so.0)")


lib, path = _load()

lib.mlog_client_new.argtypes = [ctypes.POINTER(Config), ctypes.POINTER(ctypes.c_void_p),
                                ctypes.c_char_p, ctypes.c_size_t]
lib.mlog_client_new.restype = ctypes.c_int
lib.mlog_client_send.argtypes = [ctypes.c_void_p, ctypes.POINTER(Opts), ctypes.c_char_p,
                                 ctypes.c_size_t]
lib.mlog_client_send.restype = Result
lib.mlog_client_flush.argtypes = [ctypes.c_void_p, ctypes.c_double]
lib.mlog_client_flush.restype = Result
lib.mlog_client_free.argtypes = [ctypes.c_void_p]
lib.mlog_client_free.restype = None
try:
    lib.mlog_client_set_block.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_char_p, ctypes.c_size_t]
    lib.mlog_client_set_block.restype = ctypes.c_int
except AttributeError:
    raise ImportError(
        f"master_log_client: {path} has no mlog_client_set_block(): this libmlog is older "
        "than the Python client needs (master-log-spool with issue 16)") from None
