#!/usr/bin/python3
"""The agent's Prometheus endpoint during a real drain.

A spool of N events, the real mlog-receiver answering each request after
--latency-ms, the real spool-agent with metrics_listen on 127.0.0.1 (port 0:
the agent logs the port it bound).  curl fetches /metrics again and again
while the agent drains; each answer is parsed with prometheus_client's own
parser (Debian's python3-prometheus-client).  The acked counter must be seen
at values strictly between 0 and N (moving), then at N; pending falls to 0;
the latency histogram counts every request, its buckets cumulative and each
above the receiver's latency; requests in flight is seen above 0.
`spoolctl status --prometheus` parses too and agrees once the drain is done.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("SKIP: no prometheus_client (apt-get install python3-prometheus-client)")
    sys.exit(77)

MLOG = os.environ["MLOG"]
AGENT = os.environ["SPOOL_AGENT"]
RECEIVER = os.environ["MLOG_RECEIVER"]
SPOOLCTL = os.environ["SPOOLCTL"]
N = 400
BATCH = 20
LATENCY_MS = 40


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def parse(text):
    """{name: {labels-tuple: value}} and {family: type}, by the real parser."""
    values, types = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            values.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return values, types


def one(values, name):
    if name not in values:
        fail("no sample %s" % name)
    return values[name][()]


def curl(url, *extra):
    r = subprocess.run(["curl", "-sS", "--max-time", "5", *extra, url],
                       capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def main():
    if not shutil.which("curl"):
        print("SKIP: no curl")
        return 77
    tmp = tempfile.mkdtemp(prefix="metrics-test.")
    procs = []
    try:
        spool = os.path.join(tmp, "spool")
        env = dict(os.environ, MASTER_LOG_SPOOL_DIR=spool)
        for k in list(env):
            if k.startswith("MASTER_LOG_") and k != "MASTER_LOG_SPOOL_DIR":
                del env[k]
        lines = "".join("metric event %d\n" % i for i in range(N))
        subprocess.run([MLOG, "-"], input=lines, text=True, env=env, check=True)

        portfile = os.path.join(tmp, "port")
        rx = subprocess.Popen([RECEIVER, "--listen", "127.0.0.1", "--port", "0",
                               "--port-file", portfile, "--latency-ms", str(LATENCY_MS)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(rx)
        for _ in range(100):
            if os.path.exists(portfile) and open(portfile).read().strip():
                break
            time.sleep(0.05)
        port = open(portfile).read().split()[0]

        conf = os.path.join(tmp, "agent.yaml")
        with open(conf, "w") as f:
            f.write("spool: %s\nhttp:\n  endpoint: http://127.0.0.1:%s\n"
                    "batch_size: %d\nmax_batch_size: %d\nmax_in_flight: 2\n"
                    "flush_interval_seconds: 0.2\nmetrics_listen: 127.0.0.1:0\n"
                    % (spool, port, BATCH, BATCH))
        log = os.path.join(tmp, "agent.log")
        agent = subprocess.Popen([AGENT, "-c", conf], stdout=subprocess.DEVNULL,
                                 stderr=open(log, "w"), env=env)
        procs.append(agent)
        url = None
        for _ in range(200):
            m = re.search(r"metrics: serving (http://127\.0\.0\.1:\d+/metrics)", open(log).read())
            if m:
                url = m.group(1)
                break
            time.sleep(0.02)
        if not url:
            fail("the agent did not say where it serves metrics: " + open(log).read())

        acked_seen, pending_seen, in_flight_max = [], [], 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rc, body, err = curl(url)
            if rc != 0:
                fail("curl %s: %s" % (url, err))
            values, types = parse(body)
            acked = one(values, "master_log_spool_events_acked_total")
            acked_seen.append(acked)
            pending_seen.append(one(values, "master_log_spool_events_pending"))
            in_flight_max = max(in_flight_max, one(values, "master_log_agent_requests_in_flight"))
            if acked >= N:
                break
            time.sleep(0.02)
        moving = sorted({a for a in acked_seen if 0 < a < N})
        if acked_seen[-1] != N:
            fail("acked_total ended at %s, not %d" % (acked_seen[-1], N))
        if len(moving) < 2:
            fail("acked_total was not seen moving during the drain: %s" % sorted(set(acked_seen)))
        if acked_seen != sorted(acked_seen):
            fail("acked_total went down: %s" % acked_seen)
        if in_flight_max < 1:
            fail("no request ever seen in flight")

        # settled: the last answer's figures, read again
        rc, body, _ = curl(url)
        values, types = parse(body)
        expect_types = {
            "master_log_spool_events_appended": "counter",
            "master_log_spool_events_acked": "counter",
            "master_log_spool_events_dead_lettered": "counter",
            "master_log_spool_events_evicted": "counter",
            "master_log_spool_events_dropped": "counter",
            "master_log_spool_events_corrupt": "counter",
            "master_log_spool_events_torn": "counter",
            "master_log_spool_events_pending": "gauge",
            "master_log_spool_pending_bytes": "gauge",
            "master_log_spool_oldest_event_age_seconds": "gauge",
            "master_log_agent_requests_in_flight": "gauge",
            "master_log_agent_request_duration_seconds": "histogram",
        }
        for name, t in expect_types.items():
            if types.get(name) != t:
                fail("family %s: type %s, expected %s" % (name, types.get(name), t))
        if one(values, "master_log_spool_events_appended_total") != N:
            fail("appended_total is not %d" % N)
        if one(values, "master_log_spool_events_pending") != 0:
            fail("events still pending")
        if one(values, "master_log_spool_pending_bytes") != 0:
            fail("pending bytes left")
        if one(values, "master_log_spool_oldest_event_age_seconds") != 0:
            fail("an oldest event age with nothing pending")
        if max(pending_seen) <= 0 or pending_seen[0] <= pending_seen[-1]:
            fail("pending did not fall: %s" % pending_seen)
        buckets = values["master_log_agent_request_duration_seconds_bucket"]
        by_le = sorted(((float(dict(k)["le"]), v) for k, v in buckets.items()))
        counts = [v for _, v in by_le]
        if counts != sorted(counts):
            fail("histogram buckets not cumulative: %s" % by_le)
        count = one(values, "master_log_agent_request_duration_seconds_count")
        if by_le[-1][0] != float("inf") or by_le[-1][1] != count:
            fail("+Inf bucket %s differs from the count %s" % (by_le[-1], count))
        if count < N // BATCH:
            fail("%s requests counted, at least %d made" % (count, N // BATCH))
        below = sum(v for le, v in by_le if le < LATENCY_MS / 1000.0)
        if below:
            fail("%s requests faster than the receiver's %d ms latency" % (below, LATENCY_MS))
        total = one(values, "master_log_agent_request_duration_seconds_sum")
        if total < count * LATENCY_MS / 1000.0:
            fail("latency sum %.3f s below %d requests x %d ms" % (total, count, LATENCY_MS))

        # only /metrics, only GET
        rc, body, _ = curl(url.replace("/metrics", "/other"), "-o", "/dev/null", "-w", "%{http_code}")
        if body != "404":
            fail("/other answered %s" % body)
        rc, body, _ = curl(url, "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}")
        if body != "405":
            fail("POST answered %s" % body)

        # spoolctl's exposition: parsed by the same parser, the same figures
        r = subprocess.run([SPOOLCTL, "--spool", spool, "status", "--prometheus"],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            fail("spoolctl status --prometheus: %s" % r.stderr)
        svalues, stypes = parse(r.stdout)
        for name in ("master_log_spool_events_appended_total", "master_log_spool_events_acked_total",
                     "master_log_spool_events_pending", "master_log_spool_pending_bytes",
                     "master_log_spool_events_dead_lettered_total"):
            if one(svalues, name) != one(values, name):
                fail("%s: spoolctl %s, agent %s" % (name, one(svalues, name), one(values, name)))
        for fam, t in stypes.items():
            if expect_types.get(fam, t) != t:
                fail("spoolctl family %s has type %s" % (fam, t))

        agent.send_signal(signal.SIGTERM)
        if agent.wait(timeout=30) != 0:
            fail("agent exit status %s: %s" % (agent.returncode, open(log).read()[-2000:]))
        print("ok: acked_total seen at %d values while draining %d events; %d requests timed; "
              "max %d in flight" % (len(moving), N, count, in_flight_max))
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
