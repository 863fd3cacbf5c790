#!/usr/bin/env python3
"""nats-bench.py — the nats transport and mlog-relay (issue 14), every
figure beside the plain HTTP path measured in the same run:

  agent-http   spool -> mlog-receiver (http_batch, max_in_flight 4): the
               yardstick
  agent-nats   the same spool -> a 3-node JetStream cluster, R3 stream, file
               storage (nats.so, max_in_flight 4)
  relay-1      that stream -> mlog-receiver through one mlog-relay
  relay-2      the same through two mlog-relay processes on one consumer

Events/s (wall clock from start to the last event acknowledged) and, for
the agent, its CPU seconds (user + system, from wait4) per million events;
for agent-nats also the three nats-servers' CPU seconds (from /proc).
All servers on 127.0.0.1 in a temporary folder, removed at the end.

nats-bench.py [--json] [--quick] [--events N] [--dir DIR]
Needs $SPOOL_AGENT, $MLOG_RECEIVER, $MLOG_RELAY, $AGENT_BENCH (its
--fill-only makes the spool: ~400-byte events), $NATS_PLUGIN_DIR, and
nats-server.  Exit 77 when nats-server is missing, 1 when a case fails.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def die(msg):
    print(f"nats-bench: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            die(f"a server exited (status {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    die(f"nothing listens on {port}")


def js_api(port, subject, body, timeout=3):
    """One JetStream API request over the plain NATS protocol; None when
    no answer came in time (JetStream still electing its leaders)."""
    try:
        return js_api_once(port, subject, body, timeout)
    except OSError:
        return None


def js_api_once(port, subject, body, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout)
    s.recv(4096)
    data = json.dumps(body).encode()
    s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.bench 1\r\n'
              + b"PUB %s _INBOX.bench %d\r\n" % (subject.encode(), len(data)) + data + b"\r\n")
    buf = b""
    end = time.time() + timeout
    while time.time() < end:
        buf += s.recv(65536)
        if b"MSG _INBOX.bench" in buf:
            head, _, rest = buf.partition(b"MSG _INBOX.bench")
            line, _, rest = rest.partition(b"\r\n")
            n = int(line.split()[-1])
            while len(rest) < n:
                rest += s.recv(65536)
            s.close()
            return json.loads(rest[:n])
        if b"PING" in buf:
            s.sendall(b"PONG\r\n")
    s.close()
    return None


def proc_cpu(pids):
    """CPU seconds (user + system) used so far by running processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
        except OSError:
            pass
    return total


def rx_stat(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.load(r).get(name, 0)


class Bench:
    def __init__(self, root, events):
        self.root = root
        self.n = events
        self.procs = []
        self.agent = os.environ.get("SPOOL_AGENT")
        self.receiver = os.environ.get("MLOG_RECEIVER")
        self.relay = os.environ.get("MLOG_RELAY")
        self.filler = os.environ.get("AGENT_BENCH")
        self.plugins = os.environ.get("NATS_PLUGIN_DIR")
        for k, v in (("SPOOL_AGENT", self.agent), ("MLOG_RECEIVER", self.receiver), ("MLOG_RELAY", self.relay),
                     ("AGENT_BENCH", self.filler), ("NATS_PLUGIN_DIR", self.plugins)):
            if not v:
                die(f"${k} is not set")
        self.server = next((p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server",
                                        shutil.which("nats-server") or "") if p and os.access(p, os.X_OK)), None)

    def spawn(self, argv, log):
        p = subprocess.Popen(argv, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def receiver_start(self, tag):
        pf = os.path.join(self.root, f"rx-{tag}.port")
        p = self.spawn([self.receiver, "--port", "0", "--port-file", pf], os.path.join(self.root, f"rx-{tag}.log"))
        end = time.time() + 10
        while not os.path.exists(pf):
            if time.time() > end:
                die("mlog-receiver did not start")
            time.sleep(0.02)
        port = int(open(pf).read().split()[0])
        return p, port

    def cluster_start(self):
        nodes = [(free_port(), free_port()) for _ in range(3)]
        for i, (port, cport) in enumerate(nodes):
            d = os.path.join(self.root, f"n{i + 1}")
            os.mkdir(d)
            routes = ", ".join(f"nats://127.0.0.1:{c}" for k, (_, c) in enumerate(nodes) if k != i)
            with open(os.path.join(d, "server.conf"), "w") as f:
                f.write(f"server_name: n{i + 1}\nlisten: 127.0.0.1:{port}\n"
                        f"jetstream {{ store_dir: \"{d}/js\", max_file_store: 4GB }}\n"
                        f"cluster {{ name: bench, listen: 127.0.0.1:{cport}, routes: [{routes}] }}\n")
            p = self.spawn([self.server, "-c", os.path.join(d, "server.conf")], os.path.join(d, "server.log"))
            self.node_procs = getattr(self, "node_procs", []) + [p]
        for (port, _), p in zip(nodes, self.node_procs):
            wait_port(port, p)
        self.urls = [f"nats://127.0.0.1:{p}" for p, _ in nodes]
        self.nats_port = nodes[0][0]
        end = time.time() + 60
        while True:
            r = js_api(self.nats_port, "$JS.API.STREAM.CREATE.LOGS",
                       {"name": "LOGS", "subjects": ["logs.>"], "storage": "file", "num_replicas": 3,
                        "duplicate_window": 600 * 10**9})
            if r and "error" not in r:
                break
            if time.time() > end:
                die(f"cannot create the stream: {r}")
            time.sleep(0.5)

    def run_agent(self, spool, config):
        t0 = time.time()
        p = subprocess.Popen([self.agent, "-c", config, "--once"], stdout=subprocess.DEVNULL,
                             stderr=open(config + ".log", "ab"))
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - t0
        if p.returncode != 0:
            die(f"spool-agent --once exited {p.returncode} (log {config}.log)")
        return wall, ru.ru_utime + ru.ru_stime

    def case_agent_http(self, spool):
        rx, port = self.receiver_start("agent")
        cfg = os.path.join(self.root, "agent-http.yaml")
        with open(cfg, "w") as f:
            f.write(f"spool: {spool}\nhttp:\n  endpoint: http://127.0.0.1:{port}\n  gzip: false\n"
                    "batch_size: 1000\nmax_batch_size: 1000\nmax_in_flight: 4\nlog:\n  level: warning\n")
        wall, cpu = self.run_agent(spool, cfg)
        got = rx_stat(port, "unique_ids")
        rx.kill()
        rx.wait()
        if got != self.n:
            die(f"agent-http: the receiver holds {got} of {self.n}")
        return wall, cpu

    def case_agent_nats(self, spool):
        cfg = os.path.join(self.root, "agent-nats.yaml")
        with open(cfg, "w") as f:
            f.write(f"spool: {spool}\nplugin_dir: {self.plugins}\ntransports: [nats]\n"
                    "batch_size: 1000\nmax_batch_size: 1000\nmax_in_flight: 4\nlog:\n  level: warning\n"
                    f"nats:\n  stream: LOGS\n  subject: logs.{{hostname}}\n  servers: [{', '.join(self.urls)}]\n")
        servers0 = proc_cpu([p.pid for p in self.node_procs])
        wall, cpu = self.run_agent(spool, cfg)
        self.servers_cpu = proc_cpu([p.pid for p in self.node_procs]) - servers0
        info = js_api(self.nats_port, "$JS.API.STREAM.INFO.LOGS", {})
        if not info or info["state"]["messages"] != self.n:
            die(f"agent-nats: the stream holds {info and info['state']['messages']} of {self.n}")
        return wall, cpu

    def case_relay(self, relays):
        rx, port = self.receiver_start(f"relay{relays}")
        cfg = os.path.join(self.root, f"relay{relays}.yaml")
        with open(cfg, "w") as f:
            f.write(f"http:\n  endpoint: http://127.0.0.1:{port}\n  gzip: false\n"
                    "batch_size: 500\nmax_batch_size: 500\nmax_in_flight: 4\nlog:\n  level: warning\n"
                    f"nats:\n  stream: LOGS\n  servers: [{', '.join(self.urls)}]\n"
                    f"relay:\n  consumer: BENCH{relays}\n  max_ack_pending: 100000\n")
        t0 = time.time()
        ps = [self.spawn([self.relay, "-c", cfg], cfg + f".{i}.log") for i in range(relays)]
        end = t0 + 600
        while rx_stat(port, "unique_ids") < self.n:
            if time.time() > end or any(p.poll() is not None for p in ps):
                die(f"relay-{relays}: the receiver holds {rx_stat(port, 'unique_ids')} of {self.n}")
            time.sleep(0.02)
        wall = time.time() - t0
        for p in ps:
            p.send_signal(signal.SIGTERM)
        for p in ps:
            p.wait(60)
        rx.kill()
        rx.wait()
        return wall


def main():
    args = sys.argv[1:]
    as_json = "--json" in args
    events = 20000 if "--quick" in args else 100000
    if "--events" in args:
        events = int(args[args.index("--events") + 1])
    base = args[args.index("--dir") + 1] if "--dir" in args else "/var/tmp"
    root = tempfile.mkdtemp(prefix="nats-bench-", dir=base)
    b = Bench(root, events)
    if not b.server:
        print("nats-bench: nats-server not found: skipped", file=sys.stderr)
        shutil.rmtree(root)
        sys.exit(77)
    try:
        spool_a = os.path.join(root, "spool-http")
        spool_b = os.path.join(root, "spool-nats")
        subprocess.run([b.filler, "--events", str(events), "--fill-only", spool_a], check=True,
                       stdout=subprocess.DEVNULL)
        shutil.copytree(spool_a, spool_b)
        http_wall, http_cpu = b.case_agent_http(spool_a)
        b.cluster_start()
        nats_wall, nats_cpu = b.case_agent_nats(spool_b)
        r1 = b.case_relay(1)
        r2 = b.case_relay(2)
    finally:
        b.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    n = events
    rows = [
        {"case": "agent-http", "events": n, "events_per_s": n / http_wall, "agent_cpu_s_per_million": http_cpu / n * 1e6,
         "ratio_to_agent_http": 1.0},
        {"case": "agent-nats-r3", "events": n, "events_per_s": n / nats_wall,
         "agent_cpu_s_per_million": nats_cpu / n * 1e6, "ratio_to_agent_http": http_wall / nats_wall,
         "cpu_ratio_to_agent_http": nats_cpu / http_cpu if http_cpu else None,
         "nats_servers_cpu_s_per_million": b.servers_cpu / n * 1e6},
        {"case": "relay-1", "events": n, "events_per_s": n / r1, "ratio_to_agent_http": http_wall / r1},
        {"case": "relay-2", "events": n, "events_per_s": n / r2, "ratio_to_agent_http": http_wall / r2,
         "ratio_to_relay_1": r1 / r2},
    ]
    if as_json:
        print(json.dumps({"bench": "nats", "cases": rows}, indent=2))
    else:
        print(f"{'case':<16}{'events/s':>12}{'agent CPU-s/M':>15}{'× agent-http':>14}")
        for r in rows:
            cpu = r.get("agent_cpu_s_per_million")
            print(f"{r['case']:<16}{r['events_per_s']:>12.0f}{(f'{cpu:.2f}' if cpu else ''):>15}"
                  f"{r['ratio_to_agent_http']:>14.2f}")
        print(f"(the three nats-servers used {rows[1]['nats_servers_cpu_s_per_million']:.1f} CPU-s per million "
              f"events in agent-nats-r3; {os.cpu_count()} CPUs here)")


if __name__ == "__main__":
    main()
