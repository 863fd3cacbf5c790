#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/ (small valid and edge
inputs).  Re-run after changing it; the files are committed, and each
corpus folder is left holding exactly what this script writes (files it no
longer makes are removed).  Needs only the standard library: msgpack is
encoded by the small packer below."""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


class Raw(bytes):
    """Bytes inserted as they are."""


class Bin(bytes):
    pass


class Ext:
    def __init__(self, t, data):
        self.t, self.data = t, data


def pack(o):
    if isinstance(o, Raw):
        return bytes(o)
    if o is None:
        return b"\xc0"
    if o is True:
        return b"\xc3"
    if o is False:
        return b"\xc2"
    if isinstance(o, int):
        if 0 <= o <= 0x7F:
            return bytes([o])
        if -32 <= o < 0:
            return struct.pack("b", o)
        if 0 <= o <= 0xFF:
            return b"\xcc" + struct.pack(">B", o)
        if 0 <= o <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", o)
        if 0 <= o <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", o)
        if 0 <= o:
            return b"\xcf" + struct.pack(">Q", o)
        if o >= -0x80:
            return b"\xd0" + struct.pack(">b", o)
        if o >= -0x8000:
            return b"\xd1" + struct.pack(">h", o)
        if o >= -0x80000000:
            return b"\xd2" + struct.pack(">i", o)
        return b"\xd3" + struct.pack(">q", o)
    if isinstance(o, float):
        return b"\xcb" + struct.pack(">d", o)
    if isinstance(o, Bin):
        n = len(o)
        return (b"\xc4" + bytes([n]) if n < 256 else b"\xc5" + struct.pack(">H", n)) + bytes(o)
    if isinstance(o, Ext):
        n = len(o.data)
        if n in (1, 2, 4, 8, 16):
            return bytes([{1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}[n], o.t & 0xFF]) + o.data
        return b"\xc7" + bytes([n, o.t & 0xFF]) + o.data
    if isinstance(o, str):
        o = o.encode("utf-8", "surrogatepass")
    if isinstance(o, bytes):  # a msgpack str holding these bytes
        n = len(o)
        if n < 32:
            return bytes([0xA0 | n]) + o
        if n < 256:
            return b"\xd9" + bytes([n]) + o
        return b"\xda" + struct.pack(">H", n) + o
    if isinstance(o, (list, tuple)):
        n = len(o)
        h = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
        return h + b"".join(pack(x) for x in o)
    if isinstance(o, dict) or isinstance(o, Pairs):
        items = list(o.items())
        n = len(items)
        h = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
        return h + b"".join(pack(k) + pack(v) for k, v in items)
    raise TypeError(type(o))


class Pairs:
    """A map with any keys, duplicates allowed."""

    def __init__(self, *kv):
        self.kv = kv

    def items(self):
        return self.kv


EVENT = {
    "client_event_id": "01HZX3K4W5Y6Z7A8B9C0D1E2F3",
    "timestamp": "2026-11-24T18:00:00.000000Z",
    "severity": "info",
    "message": "Telescope array online",
    "tags": ["dome", "weather"],
    "metadata": {"target": "M13", "duration_seconds": 18,
                 "c_client": {"host": "obs1", "pid": 4242, "spool_seq": 7}},
}


def nested(depth):
    o = 1
    for i in range(depth):
        o = [o] if i % 2 else {"k": o}
    return {"deep": o}


def msgpack_seeds():
    s = {}
    s["event"] = pack(EVENT)
    s["empty-map"] = pack({})
    s["title-ttl"] = pack({"message": "glint", "title": "Temporary", "ttl_seconds": 120,
                           "metadata": {"delivery": {"attempts": 3}}})
    s["scalars"] = pack({"nil": None, "t": True, "f": False, "u8": 200, "u16": 60000,
                         "u32": 4000000000, "u64": 2**64 - 1, "neg": -5, "i8": -100,
                         "i16": -30000, "i32": -2000000000, "i64": -2**63,
                         "f64": 0.1, "f64int": 3.0, "nan": float("nan"), "inf": float("inf"),
                         "f32": Raw(b"\xca\x3f\xc0\x00\x00"), "bin": Bin(b"\x00\xff\x10"),
                         "ext": Ext(5, b"abcd"), "ext3": Ext(-1, b"xyz")})
    s["bad-utf8"] = pack({"message": b"ok \xc3\xa9 \xff\xfe \xed\xa0\x80 \xf4\x90\x80\x80 \xe0\x80\x80 \xc3",
                          "ctl": b"\x00\x01\x1f\x7f\"\\\n\r\t\b\f"})
    s["non-string-keys"] = pack(Pairs((1, "int"), (None, "nil"), (Bin(b"k"), 1), (Raw(pack([1, 2])), "arr"),
                                      (Raw(pack({"a": 1})), "map"), (1.5, "float")))
    s["metadata-not-map"] = pack({"message": "x", "metadata": "oops"})
    s["cclient-not-map"] = pack({"message": "x", "metadata": {"c_client": [1, 2]}})
    s["dup-metadata"] = pack(Pairs(("metadata", {"a": 1}), ("metadata", {"b": 2})))
    s["deep-70"] = pack(nested(70))
    s["deep-63"] = pack(nested(63))
    s["long-str"] = pack({"message": "m" * 300, "s8": "x" * 40})
    s["map16"] = pack({f"k{i}": i for i in range(20)})
    # edge: malformed
    s["truncated"] = pack(EVENT)[:-3]
    s["trailing"] = pack({}) + b"\x00"
    s["not-map"] = pack([1, 2, 3])
    s["c1"] = b"\x81\xa1a\xc1"
    s["huge-count"] = b"\xdf\xff\xff\xff\xff\xc0"
    s["huge-str"] = b"\x81\xa1a\xdb\xff\xff\xff\xff"
    return s


def write(name, files):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f not in files:
            os.remove(os.path.join(d, f))
    for f, data in files.items():
        with open(os.path.join(d, f), "wb") as fh:
            fh.write(data)


def record_seeds(ms):
    import zlib
    out = dict(ms)
    for name in ("event", "empty-map", "truncated"):
        payload = ms[name]
        hdr = bytearray([1, 1, 0, 0, 0, 0, 0, 0]) + struct.pack("<q", 1700000000000000)
        crc = zlib.crc32(bytes(hdr[:4]) + bytes(hdr[8:16]) + payload)
        hdr[4:8] = struct.pack("<I", crc)
        out["stored-" + name] = bytes(hdr) + payload
        reason = b"422 rejected"
        dead = struct.pack("<iqH", 422, 1700000001000000, len(reason)) + b"\0\0" + reason + b"\0"
        out["dead-" + name] = dead + bytes(hdr) + payload
    out["short-header"] = b"\x01\x01\x00"
    return out


def http_seed(flags, count, status, retry_after, body):
    """fuzz_http.c's input: flags (1 http_single, 2 no answer, 4 a Location
    header), events - 1, status (big-endian), the Retry-After value behind
    its length, then the body."""
    r = retry_after.encode()
    b = body if isinstance(body, bytes) else body.encode()
    return bytes([flags, count - 1]) + struct.pack(">H", status) + bytes([len(r)]) + r + b


SINGLE, NO_ANSWER, LOCATION = 1, 2, 4


def http_seeds():
    r207 = ('{"results":[{"status":201,"id":"srv-1"},{"status":422,"detail":"bad title"},'
            '{"status":429},{"status":500,"detail":"oops"},{"status":409,"id":"dup"},'
            '{"status":"x"},{},{"status":405}]}')
    r207_odd = ('{"results":[{"status":200},{"status":401},{"status":404,"detail":"gone"},'
                '{"status":408},{"status":501},{"status":302},{"status":-1},{"status":201,"id":7}]}')
    return {
        "batch-200-empty": http_seed(0, 3, 200, "", ""),
        "batch-201": http_seed(0, 3, 201, "", '{"accepted":3,"ids":["a","b","c"]}'),
        "batch-202-not-json": http_seed(0, 2, 202, "", "queued"),
        "batch-207": http_seed(0, 8, 207, "", r207),
        "batch-207-odd": http_seed(0, 8, 207, "", r207_odd),
        "batch-207-short": http_seed(0, 4, 207, "", '{"results":[{"status":201}]}'),
        "batch-207-long": http_seed(0, 1, 207, "", '{"results":[{"status":201,"id":"' + "i" * 100 + '"},{"status":201}]}'),
        "batch-207-not-array": http_seed(0, 2, 207, "", '{"results":{"status":201}}'),
        "batch-207-bad-json": http_seed(0, 2, 207, "", '{"results":[{"status":201'),
        "batch-207-empty-one": http_seed(0, 1, 207, "", ""),
        "batch-400": http_seed(0, 5, 400, "", '{"detail":"message: field required"}'),
        "batch-400-one": http_seed(0, 1, 400, "", '{"detail":"message: field required"}'),
        "batch-422-one": http_seed(0, 1, 422, "", "not json\x01"),
        "batch-413": http_seed(0, 6, 413, "", ""),
        "batch-413-one": http_seed(0, 1, 413, "", '{"detail":"' + "d" * 300 + '"}'),
        "batch-404": http_seed(0, 3, 404, "", "not found"),
        "batch-405": http_seed(0, 1, 405, "", ""),
        "batch-501": http_seed(0, 2, 501, "", ""),
        "batch-401": http_seed(0, 2, 401, "", '{"detail":"bad key"}'),
        "batch-403": http_seed(0, 1, 403, "", ""),
        "batch-408": http_seed(0, 2, 408, "", ""),
        "batch-429-retry": http_seed(0, 2, 429, "30", '{"detail":"slow down"}'),
        "batch-503-date": http_seed(0, 2, 503, "Wed, 21 Oct 2015 07:28:00 GMT", "busy"),
        "batch-503-huge": http_seed(0, 2, 503, "1e999", ""),
        "batch-302": http_seed(LOCATION, 2, 302, "", ""),
        "batch-100": http_seed(0, 2, 100, "", ""),
        "batch-999": http_seed(0, 2, 999, "abc", ""),
        "batch-no-answer": http_seed(NO_ANSWER, 4, 0, "", ""),
        "single-200-id": http_seed(SINGLE, 1, 200, "", '{"id":"srv-9"}'),
        "single-200-dup": http_seed(SINGLE, 1, 200, "", '{"id":"srv-9","duplicate":true}'),
        "single-201": http_seed(SINGLE, 1, 201, "", '{"id":"srv-9","status":"created"}'),
        "single-204": http_seed(SINGLE, 1, 204, "", ""),
        "single-200-array": http_seed(SINGLE, 1, 200, "", "[1,2,3]"),
        "single-422": http_seed(SINGLE, 1, 422, "", '{"detail":"title too long"}'),
        "single-400-ctl": http_seed(SINGLE, 1, 400, "", "err\x01\x02\nline"),
        "single-413": http_seed(SINGLE, 1, 413, "", ""),
        "single-404": http_seed(SINGLE, 1, 404, "", ""),
        "single-501": http_seed(SINGLE, 1, 501, "", ""),
        "single-401": http_seed(SINGLE, 1, 401, "", '{"detail":"key fuzz-key-0123456789 refused"}'),
        "single-429": http_seed(SINGLE, 1, 429, "  120 ", ""),
        "single-500-ctl": http_seed(SINGLE, 1, 500, " \t", "err\x01\x02\nline"),
        "single-307": http_seed(SINGLE | LOCATION, 1, 307, "", ""),
        "single-no-answer": http_seed(SINGLE | NO_ANSWER, 1, 0, "", ""),
    }


def config_seeds():
    """The agent's keys at the top, the HTTP transports' in `http:`, the
    file transport's in `file:` (as sections, or with dotted names)."""
    return {
        "full.yaml": """spool: /var/tmp/fuzz-spool
transports: [http_batch, http_single, file]
plugin_dir: /tmp
batch_size: 50
max_batch_bytes: 1048576
max_in_flight: 4
flush_interval_seconds: 0.5
min_request_interval_seconds: 0
retry:
  initial_seconds: 1
  max_seconds: 60
  multiplier: 2.5
  jitter: off
  auth_seconds: 300
http:
  endpoint: http://127.0.0.1:8080/api/v1/logs/
  api_key: abcdefghijkl
  headers:
    X-Site: north
    X-Trace: "on"
  gzip: yes
  tls:
    verify: true
    ca_file: /etc/passwd
    client_cert: /etc/passwd
    client_key: /etc/passwd
  timeouts:
    connect_seconds: 5
    request_seconds: 30
  proxy: none
file:
  path: /var/tmp/fuzz-out.jsonl
max_age_seconds: 86400
delivery_metadata: true
recover_interval_seconds: 10
meta_interval_seconds: 1
log:
  level: debug
  target: syslog
""",
        "minimal.yaml": "http:\n  endpoint: https://log.example.org\n",
        "dotted.yaml": "http.endpoint: http://h/api/v1\nhttp.api_key: short\nhttp.tls.verify: false\nmax_in_flight: 64\n",
        "file-only.yaml": "transports: file\nfile:\n  path: /tmp/fuzz-out.jsonl\n",
        "file-dotted.yaml": "transports: [file, http_single]\nfile.path: /tmp/fuzz-out.jsonl\nhttp.endpoint: http://h:1\n",
        "file-no-path.yaml": "transports: [file]\nfile: {}\n",
        "no-endpoint.yaml": "transports: [http_single]\nhttp:\n  gzip: true\n",
        "both-keys.yaml": "http:\n  endpoint: http://h\n  api_key: abcdefghijkl\n  api_key_file: /etc/passwd\n",
        # 0400, owned by the reader, one line ("00000000"): a key file that loads
        "key-file.yaml": "http:\n  endpoint: http://h\n  api_key_file: /proc/self/personality\n",
        "key-file-mode.yaml": "http:\n  endpoint: http://h\n  api_key_file: /etc/passwd\n",
        "key-space.yaml": "http:\n  endpoint: http://h\n  api_key: \"abc def ghi\"\n",
        "key-bool.yaml": "http:\n  endpoint: http://h\n  api_key: yes\n",
        "cert-no-key.yaml": "http:\n  endpoint: http://h\n  tls: {client_cert: /etc/passwd}\n",
        "in-flight-65.yaml": "max_in_flight: 65\nhttp: {endpoint: 'http://h'}\n",
        "in-flight-quoted.yaml": "max_in_flight: \"4\"\nhttp: {endpoint: 'http://h'}\n",
        "timeout-range.yaml": "http:\n  endpoint: http://h\n  timeouts:\n    connect_seconds: 0\n    request_seconds: 1e9\n",
        "empty.yaml": "",
        "null.yaml": "~\n",
        "list.yaml": "- a\n- b\n",
        "two-docs.yaml": "http: {endpoint: 'http://h'}\n---\nbatch_size: 2\n",
        "unknown.yaml": "http:\n  endpoint: http://h\n  nope: 1\n",
        "unknown-section.yaml": "nats:\n  url: nats://h\n",
        "unknown-transport.yaml": "transports: [http_batch, nats]\nhttp: {endpoint: 'http://h'}\n",
        "path-transport.yaml": "transports: [./tx_test.so]\n",
        "plugin-dir.yaml": "plugin_dir: /tmp\ntransports: [tx_test]\n",
        "twice.yaml": "http:\n  endpoint: http://h\nhttp:\n  endpoint: http://g\n",
        "section-twice.yaml": "http:\n  endpoint: http://h\nmax_in_flight: 2\nhttp:\n  api_key: abcdefghijkl\n",
        "bad-int.yaml": "http.endpoint: http://h\nbatch_size: 1e3\n",
        "bad-header.yaml": "http:\n  endpoint: http://h\n  headers:\n    X-API-Key: k\n",
        "header-twice.yaml": "http:\n  endpoint: http://h\n  headers: {X-A: 1, x-a: 2}\n",
        "header-name.yaml": "http:\n  endpoint: http://h\n  headers: {\"X A\": 1}\n",
        "anchors.yaml": ("retry: &r {initial_seconds: 2}\nhttp:\n  endpoint: &e http://h:1\n  proxy: *e\n"
                         "  timeouts: {connect_seconds: &t 2, request_seconds: *t}\n"),
        "anchors-wrong.yaml": "retry: &r {initial_seconds: 2}\nhttp:\n  endpoint: http://h:1\n  timeouts: *r\n",
        "flow.yaml": "{http: {endpoint: 'http://[::1]:9/api/v1', gzip: on}, transports: [http_single], max_in_flight: 3, log: {level: warn}}\n",
        "bad-syntax.yaml": "http: {endpoint: [http://h\n",
        "section-scalar.yaml": "http: 5\n",
        "section-list.yaml": "file: [a]\ntransports: file\n",
        "bad-endpoint.yaml": "http:\n  endpoint: ftp://h/api/v1\n",
        "tags.yaml": "http:\n  endpoint: !!str http://h\nbatch_size: !!int 7\nhttp.gzip: !!bool true\n",
    }


def endpoint_seeds():
    urls = [
        "http://127.0.0.1:8080", "https://log.example.org/", "http://h/api/v1",
        "http://h/api/v1/logs", "http://h/api/v1/logs/batch/", "HTTPS://user:pw@host:443/base/api/v1",
        "http://[::1]:9/", "http://[]/", "http://h:0", "http://h:65536", "http://h:99999999999999999999",
        "ftp://h", "http:/h", "http://", "http://h/x?y", "http://h/#f", "http://h /", "http://h//api/v1",
        "http://a@b@c/", "http://h:/", "", "://", "http://h\x00tail",
    ]
    return {f"url-{i:02d}": u.encode() for i, u in enumerate(urls)}


def bug_nested_container_keys(levels=40):
    """The reproducer of the bug in fuzz_keyguard.h: map keys that are maps,
    nested `levels` deep; the JSON output doubles with every level."""
    return b"\x81" * levels + b"\xc0" + b"\xc0" * levels


def main():
    ms = msgpack_seeds()
    ms["bug-nested-container-keys"] = bug_nested_container_keys()
    write("json", ms)
    write("record", record_seeds(ms))
    write("http", http_seeds())
    write("config", {k: v.encode() for k, v in config_seeds().items()})
    write("endpoint", endpoint_seeds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
