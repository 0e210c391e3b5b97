"""spfutil.py - helpers shared by the spf plugin's tests: a policyd started
on a free 127.0.0.1 port (stopped by its PID), a policy client over one
persistent connection, and the conversion of the openspf test suites' zone
data (YAML) into tests/lib/dnsserver.py zones.

Zone conversion follows the suites' own driver: every name lives in one
root zone (so unknown names are NXDOMAIN), "SPF" records are also served
as TXT when the name has no TXT record, a TXT "NONE" means the name has no
such record, and a bare "TIMEOUT" entry makes every query type that has no
record listed before it time out (dnsserver's marker "except" list).
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

SRCDIR = os.environ.get("SIFT_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILDDIR = os.environ.get("SIFT_BUILDDIR") or os.path.join(SRCDIR, "build")
sys.path.insert(0, os.path.join(SRCDIR, "tests", "lib"))

import dnsserver  # noqa: E402

POLICYD = os.path.join(BUILDDIR, "policyd", "policyd")
FILTERD = os.path.join(BUILDDIR, "filterd", "filterd")
SIFTCTL = os.path.join(BUILDDIR, "tools", "siftctl")
PLUGINDIR = os.path.join(BUILDDIR, "plugins")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class Policyd:
    """policyd -f with the given settings, on a free port."""

    def __init__(self, settings, tmpdir=None):
        self.tmp = tmpdir or tempfile.mkdtemp(prefix="sift-spf-")
        self.port = free_port()
        self.conf = os.path.join(self.tmp, "policyd-%d.conf" % self.port)
        base = {
            "policyd_listen": "inet:127.0.0.1:%d" % self.port,
            "plugin_directory": PLUGINDIR,
            "inbound_plugins": "spf",
            "originating_plugins": "",
        }
        base.update(settings)
        with open(self.conf, "w") as f:
            for k, v in base.items():
                f.write("%s = %s\n" % (k, v))
        self.log = os.path.join(self.tmp, "policyd-%d.log" % self.port)
        self.proc = None

    def start(self):
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen([POLICYD, "-f", "-c", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        if not wait_port(self.port, self.proc):
            self.stop()
            raise RuntimeError("policyd did not start: " + self.log_text()[-2000:])
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class PolicyClient:
    """One persistent connection; ask() sends a request, returns the action."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def ask(self, **attrs):
        req = {"request": "smtpd_access_policy", "protocol_state": "RCPT",
               "protocol_name": "ESMTP", "client_name": "unknown",
               "reverse_client_name": "unknown", "recipient": "rcpt@sift.test",
               "queue_id": "", "size": "0", "sasl_username": "", "policy_context": ""}
        req.update(attrs)
        data = "".join("%s=%s\n" % (k, v) for k, v in req.items()) + "\n"
        self.sock.sendall(data.encode("utf-8", "surrogateescape"))
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("policyd closed the connection")
            self.buf += chunk
        reply, self.buf = self.buf.split(b"\n\n", 1)
        line = reply.decode("utf-8", "replace").split("\n")[0]
        if not line.startswith("action="):
            raise ValueError("bad reply: %r" % line)
        return line[len("action="):]

    def close(self):
        self.sock.close()


def parse_action(action):
    """(result, explanation) from a policyd reply with the default actions
    (fail: 550 5.7.23 reject; temperror: DEFER_IF_PERMIT; others: PREPEND
    Received-SPF) and spf_reject_text = %s."""
    if action.startswith("550 5.7.23 "):
        return "fail", action[len("550 5.7.23 "):]
    if action.startswith("DEFER_IF_PERMIT 4.7.24 "):
        return "temperror", None
    if action.startswith("PREPEND Received-SPF: "):
        return action[len("PREPEND Received-SPF: "):].split(" ", 1)[0], None
    return "?" + action, None


# ---- openspf suite zone data ------------------------------------------------

def _absolute(name):
    return name if name.endswith(".") else name + "."


ROOT_SOA = {"name": ".", "type": "SOA", "data": "ns.root.test. hostmaster.root.test. 1 3600 600 86400 60"}


def suite_zones(zonedata):
    """dnsserver zones ({".": [records]}) from a scenario's zonedata."""
    recs = [ROOT_SOA]
    for name, entries in zonedata.items():
        name = name.rstrip(".") or "."
        has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        seen_types = set()
        generated = []
        for e in entries:
            if e == "TIMEOUT":
                rec = {"name": _absolute(name), "type": "TIMEOUT"}
                if seen_types:
                    rec["except"] = sorted(seen_types)
                recs.append(rec)
                continue
            if not isinstance(e, dict):
                continue
            for t, v in e.items():
                if v == "NONE":
                    continue
                seen_types.add(t)
                if t in ("TXT", "SPF"):
                    if isinstance(v, list) and not v:
                        continue  # no character-strings at all: not servable
                    data = v
                    recs.append({"name": _absolute(name), "type": t, "data": data})
                    if t == "SPF" and not has_txt:
                        generated.append({"name": _absolute(name), "type": "TXT", "data": data})
                elif t == "MX":
                    pref, host = v
                    recs.append({"name": _absolute(name), "type": "MX",
                                 "data": "%d %s" % (pref, _absolute(host) if host else ".")})
                elif t in ("PTR", "CNAME"):
                    recs.append({"name": _absolute(name), "type": t, "data": _absolute(v)})
                else:
                    recs.append({"name": _absolute(name), "type": t, "data": v})
        recs.extend(generated)
    return {".": recs}
