#!/usr/bin/python3
"""test_dns.py - runs the resolver tests (build/tests/test_dns) against the
test DNS server (tests/lib/dnsserver.py), started in-process on 127.0.0.1
with a free port and the zone that tests/unit/test_dns.c expects.

Also checks the server itself with dnspython (NXDOMAIN vs NODATA, TC over
UDP, malformed input) and that the 2000-byte TXT record reached the
resolver over TCP. Exit status: that of test_dns (77 = skipped when the
binary is missing), or 1 if a check here failed.

Environment: SIFT_BUILDDIR (default: ../../build next to this file).
"""

import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

from dnsserver import DNSServer  # noqa: E402

ZONES = {
    "sift.test": [
        {"name": "a", "type": "A", "ttl": 300, "data": "192.0.2.1"},
        {"name": "a", "type": "A", "ttl": 300, "data": "192.0.2.2"},
        {"name": "a6", "type": "AAAA", "data": "2001:db8::1"},
        {"name": "txt", "type": "TXT", "data": ["v=spf1 ", "ip4:192.0.2.0/24 ", "-all"]},
        {"name": "big", "type": "TXT", "data": "0123456789" * 200},
        {"name": "@", "type": "MX", "data": "10 mx1.sift.test"},
        {"name": "sift.test", "type": "MX", "data": "20 mx2.sift.test"},
        {"name": "cname", "type": "CNAME", "data": "a.sift.test"},
        {"name": "slow", "type": "TIMEOUT"},
        {"name": "fail", "type": "SERVFAIL"},
    ] + [{"name": "t%d" % i, "type": "A", "data": "10.0.0.%d" % i} for i in range(64)]
      + [{"name": "fill%d" % i, "type": "TXT", "data": ["%03d" % (i % 1000) + "f" * 247] * 14}
         for i in range(3000)]
      + [{"name": "hang%d" % i, "type": "TIMEOUT"} for i in range(300)],
    "2.0.192.in-addr.arpa": [
        {"name": "1.2.0.192.in-addr.arpa", "type": "PTR", "data": "a.sift.test"},
    ],
}

failures = 0


def check(cond, what):
    global failures
    if cond:
        print("ok: " + what)
    else:
        failures += 1
        print("FAILED: " + what)


def self_test(srv):
    def q(name, rtype, tcp=False, **kw):
        m = dns.message.make_query(name, rtype, **kw)
        fn = dns.query.tcp if tcp else dns.query.udp
        return fn(m, "127.0.0.1", port=srv.port, timeout=2)

    r = q("nope.sift.test", "A")
    check(r.rcode() == dns.rcode.NXDOMAIN and len(r.authority) == 1, "server: NXDOMAIN + SOA")
    r = q("a.sift.test", "MX")
    check(r.rcode() == dns.rcode.NOERROR and not r.answer and len(r.authority) == 1,
          "server: NODATA + SOA")
    r = q("big.sift.test", "TXT")
    check(bool(r.flags & dns.flags.TC) and not r.answer, "server: TC on UDP")
    r = q("big.sift.test", "TXT", tcp=True)
    check(len(b"".join(r.answer[0][0].strings)) == 2000, "server: 2000-byte TXT on TCP")
    r = q("cname.sift.test", "A")
    check(len(r.answer) == 2, "server: CNAME chain in the answer")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff", ("127.0.0.1", srv.port))
    try:
        reply = s.recv(512)
        check(reply[3] & 0x0F == dns.rcode.FORMERR, "server: FORMERR on garbage")
    except socket.timeout:
        check(False, "server: FORMERR on garbage")
    s.sendto(b"\x07", ("127.0.0.1", srv.port))
    s.close()
    r = q("t3.sift.test", "A")
    check(r.rcode() == dns.rcode.NOERROR and len(r.answer) == 1, "server: alive after garbage")


def main():
    builddir = os.environ.get("SIFT_BUILDDIR") or os.path.join(HERE, "..", "..", "build")
    binary = os.path.join(builddir, "tests", "test_dns")
    if not os.path.exists(binary):
        print("%s not built: skipped" % binary)
        return 77
    with DNSServer(ZONES) as srv:
        self_test(srv)
        srv.log.clear()
        env = dict(os.environ, SIFT_DNS_SERVER="127.0.0.1:%d" % srv.port)
        print("running %s with SIFT_DNS_SERVER=%s" % (binary, env["SIFT_DNS_SERVER"]),
              flush=True)
        p = subprocess.run([binary], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=240)
        sys.stdout.write(p.stdout.decode(errors="replace"))
        big = [t for (n, ty, t) in srv.log if n == "big.sift.test" and ty == "TXT"]
        check("tcp" in big, "resolver retried big.sift.test over TCP (%s)" % big)
    rc = p.returncode
    if rc == 0 and failures:
        rc = 1
    print("test_dns exit status %d, %d failure(s) here" % (p.returncode, failures))
    return rc


if __name__ == "__main__":
    sys.exit(main())
