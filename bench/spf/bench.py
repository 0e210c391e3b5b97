#!/usr/bin/python3
"""bench/spf/bench.py - policy requests/s with one SPF check per request:
policyd + spf plugin vs postfix-policyd-spf-python and
postfix-policyd-spf-perl (Debian packages), against the same DNS server,
measured in the same run.

    bench.py [--requests N] [--cold N] [--domains N]

Setup (all on loopback):
  * tests/lib/dnsserver.py on 127.0.0.77:53 serves DOMAINS + cold domains
    d<k>.bench.test: TXT "v=spf1 mx a:mail.d<k>.bench.test ip4:192.0.2.0/24
    -all", an MX and an A record; the client 192.0.2.10 passes after the
    mx and a terms (4 DNS queries per new domain).
  * policyd (SIFT_BUILDDIR) with inbound_plugins = spf, dns_servers =
    127.0.0.77:53.
  * the two baselines are spawn-style programs (stdin/stdout); each runs
    behind `socat TCP-LISTEN:PORT,fork EXEC:prog` (one process per
    connection, as Postfix's spawn(8)), in a private mount namespace whose
    /etc/resolv.conf says "nameserver 127.0.0.77" (unshare -m; the real
    file is not touched). Their default configuration is used (python:
    HELO check then MAIL FROM).
  * load: bench/policy-load (C, from SIFT_BUILDDIR, or built here with cc
    when the build tree has none) with -D: persistent connections, every
    request a new transaction (own instance): warm = senders cycling over
    DOMAINS already looked up, cold = every request a domain never queried
    before.
CPU per request: "server" is the server process's user+system time over
the requests (for the baselines socat's, with its children's time, which
the kernel only adds when socat reaps them: unreliable per run); "machine"
is the busy time of the whole machine (server, DNS server, load client)
over the requests, the fair comparison. RSS: policyd's, or the sum of the
per-connection processes. Needs root (port 53, unshare -m). On a shared
machine the figures vary from run to run: compare within one run.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("SIFT_SRCDIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BUILDDIR = os.environ.get("SIFT_BUILDDIR") or os.path.join(SRCDIR, "build")
sys.path.insert(0, os.path.join(SRCDIR, "tests", "lib"))
import dnsserver  # noqa: E402
import sifttest  # noqa: E402

DNS_IP = "127.0.0.77"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid, children=False):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    t = int(parts[11]) + int(parts[12])
    if children:
        t += int(parts[13]) + int(parts[14])
    return t / TICK


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_rss_kb(ppid):
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read().rsplit(")", 1)[1].split()
            if int(st[1]) == ppid:
                total += rss_kb(int(d))
        except (OSError, ValueError):
            pass
    return total


def zone(n):
    recs = [{"name": ".", "type": "SOA", "data": "ns.root.test. hostmaster.root.test. 1 3600 600 86400 60"}]
    for k in range(n):
        d = "d%d.bench.test" % k
        recs += [{"name": d, "type": "TXT", "data": "v=spf1 mx a:mail.%s ip4:192.0.2.0/24 -all" % d},
                 {"name": d, "type": "MX", "data": "10 mail.%s." % d},
                 {"name": "mail." + d, "type": "A", "data": "198.51.100.%d" % (k % 250 + 1)}]
    return {".": recs}


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=20):
    import socket
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def load(loader, port, conc, n, domains, offset):
    out = subprocess.run([loader, "-c", str(conc), "-n", str(n), "-D", str(domains), "-o", str(offset),
                          "inet:127.0.0.1:%d" % port], capture_output=True, text=True, timeout=1200)
    line = out.stdout.strip()
    f = line.split()
    rps = float(f[f.index("requests/s,") - 1])
    p50 = float(f[f.index("p50") + 1])
    p99 = float(f[f.index("p99") + 1])
    errors = int(f[f.index("errors") + 1].rstrip(","))
    passes = int(f[f.index("pass") + 1])
    done = int(f[2])
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors, "pass": passes, "n": done, "line": line}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=60000, help="warm requests for policyd")
    ap.add_argument("--baseline-requests", type=int, default=3000)
    ap.add_argument("--cold", type=int, default=2000, help="cold requests per run")
    ap.add_argument("--domains", type=int, default=1000, help="warm sender domains")
    ap.add_argument("--systems", default="policyd,python,perl")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sift-spf-bench-")
    loader = os.path.join(BUILDDIR, "bench", "policy-load")
    if not os.access(loader, os.X_OK):
        loader = os.path.join(tmp, "policy-load")
        subprocess.run(["cc", "-O2", "-o", loader, os.path.join(HERE, "..", "policy-load.c"), "-lpthread"],
                       check=True)
    ncold_sets = 6
    total_domains = args.domains + ncold_sets * args.cold
    print("zone: %d domains ..." % total_domains, flush=True)
    srv = dnsserver.DNSServer(zone(total_domains), host=DNS_IP, port=53).start()
    resolv = os.path.join(tmp, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver %s\noptions timeout:2 attempts:2\n" % DNS_IP)

    results = []
    cold_set = [0]

    def cold_offset():
        o = args.domains + cold_set[0] * args.cold
        cold_set[0] += 1
        return o

    def run_system(name, port, pid, children, warm_n):
        # warm-up: every warm domain once
        load(loader, port, 8, args.domains, args.domains, 0)
        for conc in (1, 8):
            rss_peak = [0]
            stop = threading.Event()

            def sampler():
                while not stop.is_set():
                    rss_peak[0] = max(rss_peak[0], children_rss_kb(pid) if children else rss_kb(pid))
                    time.sleep(0.2)
            for kind in ("warm", "cold"):
                n = warm_n if kind == "warm" else args.cold
                off = 0 if kind == "warm" else cold_offset()
                dom = args.domains if kind == "warm" else args.cold
                th = threading.Thread(target=sampler)
                stop.clear()
                th.start()
                c0 = cpu_seconds(pid, children)
                m0 = sifttest.machine_cpu()[0]
                r = load(loader, port, conc, n, dom, off)
                m1 = sifttest.machine_cpu()[0]
                time.sleep(0.5)  # let socat reap its children
                c1 = cpu_seconds(pid, children)
                r["mcpu_ms"] = (m1 - m0) * 1000.0 / max(r["n"], 1)
                stop.set()
                th.join()
                r.update(system=name, conc=conc, kind=kind, cpu_ms=(c1 - c0) * 1000.0 / max(r["n"], 1),
                         rss_mb=rss_peak[0] / 1024.0)
                results.append(r)
                print("%-8s c=%d %-4s %8.0f req/s  p50 %.3f ms  p99 %.3f ms  cpu %.3f ms/req  rss %.1f MB  "
                      "machine cpu %.3f ms/req  errors %d  pass %d/%d" % (
                          name, conc, kind, r["rps"], r["p50"], r["p99"], r["cpu_ms"], r["rss_mb"], r["mcpu_ms"],
                          r["errors"], r["pass"], r["n"]), flush=True)

    procs = []
    try:
        systems = args.systems.split(",")
        # policyd + spf
        port = free_port()
        conf = os.path.join(tmp, "policyd.conf")
        with open(conf, "w") as f:
            f.write("policyd_listen = inet:127.0.0.1:%d\npolicyd_user = root\nplugin_directory = %s/plugins\n"
                    "inbound_plugins = spf\noriginating_plugins =\ndns_servers = %s:53\n"
                    "dns_timeout = 5s\npolicyd_workers = 16\nmyhostname = mx.bench.test\n"
                    % (port, BUILDDIR, DNS_IP))
        log = open(os.path.join(tmp, "policyd.log"), "w")
        p = subprocess.Popen([os.path.join(BUILDDIR, "policyd", "policyd"), "-f", "-c", conf], stdout=log,
                             stderr=subprocess.STDOUT)
        procs.append(p)
        if not wait_port(port):
            raise RuntimeError("policyd did not start")
        if "policyd" in systems:
            run_system("policyd", port, p.pid, False, args.requests)
        p.terminate()
        p.wait(10)

        for name, prog in (("python", "/usr/bin/policyd-spf"), ("perl", "/usr/sbin/postfix-policyd-spf-perl")):
            if name not in systems:
                continue
            port = free_port()
            cmd = ("mount --bind %s /etc/resolv.conf && exec socat TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr "
                   "EXEC:%s" % (resolv, port, prog))
            log = open(os.path.join(tmp, name + ".log"), "w")
            p = subprocess.Popen(["unshare", "-m", "sh", "-c", cmd], stdout=log, stderr=subprocess.STDOUT)
            procs.append(p)
            if not wait_port(port):
                raise RuntimeError("%s did not start" % name)
            run_system(name, port, p.pid, True, args.baseline_requests)
            p.terminate()
            p.wait(10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        srv.stop()

    print("\n| system | conc | cache | req/s | p50 ms | p99 ms | server CPU ms/req | machine CPU ms/req "
          "| RSS MB | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print("| %s | %d | %s | %.0f | %.3f | %.3f | %.3f | %.3f | %.1f | %d |" % (
            r["system"], r["conc"], r["kind"], r["rps"], r["p50"], r["p99"], r["cpu_ms"], r["mcpu_ms"],
            r["rss_mb"], r["errors"]))
    best = {}
    for r in results:
        if r["system"] != "policyd" and r["kind"] == "warm":
            best[r["conc"]] = max(best.get(r["conc"], 0), r["rps"])
    for r in results:
        if r["system"] == "policyd" and r["kind"] == "warm" and best.get(r["conc"]):
            print("policyd warm c=%d: %.1fx the faster baseline" % (r["conc"], r["rps"] / best[r["conc"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
