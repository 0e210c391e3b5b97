#!/usr/bin/python3
"""test_policy.py - the spf plugin in policyd: actions, per-transaction
caching, skipped clients, bad input and failures, and `siftctl spf check`.

A DNS server (tests/lib/dnsserver.py) on 127.0.0.1 serves a small zone; a
policyd per configuration variant is asked through the policy protocol.
Checks:
  * pass / neutral / none / softfail / permerror: PREPEND Received-SPF in
    RFC 7208 9.1 form (receiver=, client-ip=, envelope-from= quoted,
    helo=, identity=), once per transaction (instance), DUNNO for later
    recipients; one evaluation per instance (policyd log);
  * with the access plugin before or after spf: when the first
    recipient's reply is a refusal, a DEFER_IF_PERMIT or another PREPEND,
    the next recipient's reply carries Received-SPF, and only it;
  * fail: 550 5.7.23 with the exp= explanation, for every recipient;
  * temperror: DEFER_IF_PERMIT 4.7.24; null sender: HELO identity;
  * settings: fail -> prepend, softfail -> reject / defer, temperror ->
    prepend, permerror -> reject, helo_check;
  * skipped: SASL-authenticated, originating_networks, trusted clients;
  * include loops, more than 10 lookups, CNAME chains, a 20 KB TXT record
    (over TCP), a DNS server that never answers (bounded time, other
    clients served meanwhile; with one worker, a request waiting for it
    still answered within policyd_request_deadline of its arrival), garbage
    client addresses and senders;
  * the plugin's DNS cache read and replaced by 8 concurrent clients;
  * siftctl spf check prints the same result and header;
  * %{p}: a record with many %{p} (also past the 8 KB expansion limit)
    costs one PTR query and at most one address query per PTR name in
    the whole evaluation (DNS server's query log, TTL 0 so the resolver
    caches nothing), and gives the same validated name as a single %{p}.
Prints "N passed, N failed".
"""
import atexit
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spfutil  # noqa: E402
from sifttest import check, done, program  # noqa: E402


# %{p} for the client 203.0.113.5: five PTR names, of which only
# n3.other.test validates (the others point elsewhere). Nothing cached
# (TTL 0), so the query log shows every lookup of an evaluation.
P_CLIENT = "203.0.113.5"
P_PTR = "5.113.0.203.in-addr.arpa"
P_NAMES = ["n0.other.test", "n1.other.test", "n2.other.test", "n3.other.test", "p.pm.test"]
P_ZONE = [{"name": P_PTR, "type": "PTR", "ttl": 0, "data": n + "."} for n in P_NAMES] + [
    {"name": n, "type": "A", "ttl": 0, "data": P_CLIENT if n == "n3.other.test" else "192.0.2.200"}
    for n in P_NAMES] + [
    {"name": "other.test", "type": "TXT", "ttl": 0, "data": "v=spf1 exists:%{p}.ok.test -all"},
    {"name": "pmany.test", "type": "TXT", "ttl": 0,
     "data": "v=spf1 " + "a:%{p}.%{p}.%{p}.no.test " * 8 + "exists:%{p}.ok.test -all"},
    {"name": "n3.other.test.n3.other.test.n3.other.test.no.test", "type": "A", "ttl": 0, "data": "192.0.2.200"},
    {"name": "pover.test", "type": "TXT", "ttl": 0, "data": "v=spf1 exists:" + "%{p}" * 2000 + ".x.test -all"},
    {"name": "n3.other.test.ok.test", "type": "A", "ttl": 0, "data": "127.0.0.2"}]

RACE_DOMAINS = 300
BIG = "v=spf1 " + " ".join("ip4:198.18.%d.%d" % (i // 250, i % 250) for i in range(1200)) + " ip4:192.0.2.0/24 -all"
ZONE = {".": [spfutil.ROOT_SOA] + [
    {"name": "pass.test", "type": "TXT", "data": "v=spf1 ip4:192.0.2.0/24 -all"},
    {"name": "fail.test", "type": "TXT", "data": "v=spf1 ip4:192.0.2.0/24 -all exp=why.fail.test"},
    {"name": "why.fail.test", "type": "TXT", "data": "%{i} may not send for %{d}"},
    {"name": "soft.test", "type": "TXT", "data": "v=spf1 ip4:192.0.2.0/24 ~all"},
    {"name": "neutral.test", "type": "TXT", "data": "v=spf1 ?all"},
    {"name": "none.test", "type": "A", "data": "192.0.2.1"},
    {"name": "perm.test", "type": "TXT", "data": "v=spf1 ip4:192.0.2.0/33 -all"},
    {"name": "loop.test", "type": "TXT", "data": "v=spf1 include:loop2.test -all"},
    {"name": "loop2.test", "type": "TXT", "data": "v=spf1 include:loop.test -all"},
    {"name": "many.test", "type": "TXT", "data": "v=spf1 " + " ".join("a:h%d.many.test" % i for i in range(12)) + " -all"},
] + [{"name": "h%d.many.test" % i, "type": "A", "data": "198.51.100.%d" % i} for i in range(12)] + [
    {"name": "cname.test", "type": "CNAME", "data": "c2.test."},
    {"name": "c2.test", "type": "CNAME", "data": "c3.test."},
    {"name": "c3.test", "type": "TXT", "data": "v=spf1 a:mx.c3.test -all"},
    {"name": "mx.c3.test", "type": "A", "data": "192.0.2.9"},
    {"name": "big.test", "type": "TXT", "data": BIG},
    {"name": "slow.test", "type": "TIMEOUT"},
    {"name": "helo.test", "type": "TXT", "data": "v=spf1 a -all"},
    {"name": "helo.test", "type": "A", "data": "192.0.2.44"},
    {"name": "badhelo.test", "type": "TXT", "data": "v=spf1 -all"},
] + P_ZONE + [r for k in range(RACE_DOMAINS) for r in (
    {"name": "d%d.race.test" % k, "type": "TXT", "data": "v=spf1 a:mail.d%d.race.test ip4:192.0.2.0/24 -all" % k},
    {"name": "mail.d%d.race.test" % k, "type": "A", "data": "198.51.100.%d" % (k % 250 + 1)})]}

seq = [0]


def inst():
    seq[0] += 1
    return "t.%d" % seq[0]


def ask(c, ip, sender, helo="mx.client.test", **kw):
    attrs = dict(client_address=ip, sender=sender, helo_name=helo, instance=kw.pop("instance", None) or inst())
    attrs.update(kw)
    return c.ask(**attrs)


def main():
    srv = spfutil.dnsserver.DNSServer(ZONE).start()
    base = {"dns_servers": "127.0.0.1:%d" % srv.port, "dns_timeout": "1s",
            "myhostname": "mx.sift.test", "spf_timeout": "3s", "spf_dns_timeout": "1s",
            "originating_networks": "cidr:" + write_cidr()}
    daemons = []
    try:
        pd = spfutil.policyd(base)
        daemons.append(pd)
        c = spfutil.policy_client(pd.port)

        # pass, with the header form, once per instance
        i = inst()
        a = ask(c, "192.0.2.10", "alice@pass.test", instance=i)
        check(a.startswith("PREPEND Received-SPF: pass (mx.sift.test: domain of alice@pass.test designates "
                           "192.0.2.10 as permitted sender)"), "pass: PREPEND Received-SPF pass", a)
        for kv in ("receiver=mx.sift.test;", "client-ip=192.0.2.10;", 'envelope-from="alice@pass.test";',
                   "helo=mx.client.test;", "identity=mailfrom;"):
            check(kv in a, "pass header has " + kv, a)
        a2 = ask(c, "192.0.2.10", "alice@pass.test", instance=i, recipient="other@sift.test")
        check(a2 == "DUNNO", "second RCPT of the transaction: DUNNO (header prepended once)", a2)
        a3 = ask(c, "192.0.2.10", "alice@pass.test", instance=i, protocol_state="DATA")
        check(a3 == "DUNNO", "DATA stage: DUNNO", a3)

        # fail: rejected for every recipient, with the explanation
        i = inst()
        a = ask(c, "198.51.100.7", "bob@fail.test", instance=i)
        check(a == "550 5.7.23 SPF fail: 198.51.100.7 may not send for fail.test", "fail: 550 5.7.23 + exp", a)
        a = ask(c, "198.51.100.7", "bob@fail.test", instance=i, recipient="x2@sift.test")
        check(a.startswith("550 5.7.23 "), "fail: second recipient rejected too", a)
        time.sleep(0.2)
        n_eval = pd.log().count("spf: fail identity=mailfrom domain=fail.test")
        check(n_eval == 1, "one evaluation per transaction (instance)", n_eval)

        a = ask(c, "198.51.100.7", "bob@soft.test")
        check(a.startswith("PREPEND Received-SPF: softfail "), "softfail: prepend only (default)", a)
        a = ask(c, "198.51.100.7", "bob@neutral.test")
        check(a.startswith("PREPEND Received-SPF: neutral "), "neutral: prepend", a)
        a = ask(c, "198.51.100.7", "bob@none.test")
        check(a.startswith("PREPEND Received-SPF: none "), "none: prepend", a)
        a = ask(c, "198.51.100.7", "bob@perm.test")
        check(a.startswith("PREPEND Received-SPF: permerror ") and "problem=" in a, "permerror: prepend with problem=", a)
        a = ask(c, "198.51.100.7", "bob@loop.test")
        check(a.startswith("PREPEND Received-SPF: permerror "), "include loop: permerror", a)
        a = ask(c, "198.51.100.200", "bob@many.test")
        check(a.startswith("PREPEND Received-SPF: permerror ") and "more than 10" in a,
              "more than 10 DNS-querying terms: permerror", a)
        a = ask(c, "192.0.2.9", "bob@cname.test")
        check(a.startswith("PREPEND Received-SPF: pass "), "CNAME chain: pass", a)
        a = ask(c, "192.0.2.99", "bob@big.test")
        check(a.startswith("PREPEND Received-SPF: pass "), "20 KB TXT record over TCP: pass", a)
        a = ask(c, "192.0.2.44", "", helo="helo.test")
        check(a.startswith("PREPEND Received-SPF: pass ") and "identity=helo;" in a and "envelope-from" not in a,
              "null sender: HELO identity", a)

        # temperror within the bound, while another client is served
        res = {}

        def slow():
            t0 = time.time()
            c2 = spfutil.policy_client(pd.port)
            res["a"] = ask(c2, "192.0.2.10", "x@slow.test")
            res["t"] = time.time() - t0
            c2.close()
        th = threading.Thread(target=slow)
        th.start()
        time.sleep(0.2)
        t0 = time.time()
        a = ask(c, "192.0.2.10", "alice@pass.test")
        fast = time.time() - t0
        th.join(30)
        check(a.startswith("PREPEND Received-SPF: pass ") and fast < 0.5,
              "other clients served while a lookup hangs (%.3fs)" % fast, a)
        check(res.get("a", "").startswith("DEFER_IF_PERMIT 4.7.24 "), "never-answering DNS: DEFER_IF_PERMIT 4.7.24",
              res.get("a"))
        check(res.get("a", "").startswith("DEFER_IF_PERMIT 4.7.24 SPF temperror for ") and "fail" not in res.get("a", ""),
              "temperror is worded as a temporary error, not a fail", res.get("a"))
        check(res.get("t", 99) < 2.5, "temperror within spf_dns_timeout (%.1fs)" % res.get("t", 99))
        deadline_from_arrival(base, daemons)

        # skipped clients
        a = ask(c, "198.51.100.7", "bob@fail.test", sasl_username="bob", sasl_method="PLAIN")
        check(a == "DUNNO", "SASL-authenticated client skipped", a)
        a = ask(c, "10.1.2.3", "bob@fail.test")
        check(a == "DUNNO", "originating_networks client skipped", a)

        # garbage
        a = ask(c, "not-an-ip", "bob@fail.test")
        check(a == "DUNNO", "unparsable client address: DUNNO", a)
        a = ask(c, "198.51.100.7", "weird\"(x)\\@fail.test")
        check(a.startswith("550 5.7.23 "), "odd sender characters handled", a)
        a = ask(c, "198.51.100.7", "a@" + "x" * 300 + ".test")
        check(a.startswith("PREPEND Received-SPF: none "), "over-long domain: none", a)
        # an identity longer than the evaluator holds is none, not a
        # truncated address (which lost its '@' and crashed policyd)
        a = ask(c, "198.51.100.7", "a" * 600 + "@fail.test")
        check(a.startswith("PREPEND Received-SPF: none (mx.sift.test: identity too long to be an address)"),
              "over-long sender: none", a[:100])
        a = ask(c, "198.51.100.7", "", helo=("x" * 60 + ".") * 9 + "fail.test")
        check(a.startswith("PREPEND Received-SPF: none (mx.sift.test: identity too long to be an address)"),
              "over-long HELO: none", a[:100])
        check(pd.alive(), "policyd alive after bad input")
        c.close()

        # settings
        pd2 = spfutil.policyd(dict(base, spf_fail_action="prepend", spf_softfail_action="reject",
                                   spf_temperror_action="prepend", spf_permerror_action="reject",
                                   spf_trusted_clients="inline:{ 198.51.100.77=OK }"))
        daemons.append(pd2)
        c = spfutil.policy_client(pd2.port)
        a = ask(c, "198.51.100.7", "bob@fail.test")
        check(a.startswith("PREPEND Received-SPF: fail "), "fail_action=prepend", a)
        a = ask(c, "198.51.100.7", "bob@soft.test")
        check(a.startswith("550 5.7.23 "), "softfail_action=reject: 550 5.7.23", a)
        a = ask(c, "198.51.100.7", "bob@perm.test")
        check(a.startswith("550 5.7.24 "), "permerror_action=reject: 550 5.7.24", a)
        a = ask(c, "198.51.100.77", "bob@soft.test")
        check(a == "DUNNO", "trusted_clients skipped", a)
        c.close()
        pd3 = spfutil.policyd(dict(base, spf_softfail_action="defer", spf_temperror_action="defer",
                                   spf_helo_check="yes"))
        daemons.append(pd3)
        c = spfutil.policy_client(pd3.port)
        a = ask(c, "198.51.100.7", "bob@soft.test")
        check(a.startswith("451 4.7.23 "), "softfail_action=defer: 451 4.7.23", a)
        a = ask(c, "192.0.2.10", "alice@pass.test", helo="badhelo.test")
        check(a.startswith("550 5.7.23 "), "helo_check=yes: a HELO fail decides", a)
        a = ask(c, "192.0.2.44", "alice@pass.test", helo="helo.test")
        check(a.startswith("PREPEND Received-SPF: pass ") and "identity=mailfrom" in a,
              "helo_check=yes: MAIL FROM when HELO does not fail", a)
        c.close()

        p_macro(pd, srv)
        once_per_transaction(base, daemons)
        cache_race(base, daemons)

        # siftctl spf check: same code and resolver
        out = subprocess.run([program("siftctl"), "-c", pd.conf, "spf", "check", "198.51.100.7", "bob@fail.test",
                              "mx.client.test"], capture_output=True, text=True, timeout=30)
        check(out.returncode == 0 and "result: fail" in out.stdout and
              "explanation: 198.51.100.7 may not send for fail.test" in out.stdout and
              "header: Received-SPF: fail (mx.sift.test: " in out.stdout and
              "action: 550 5.7.23 " in out.stdout, "siftctl spf check", out.stdout + out.stderr)
        out = subprocess.run([program("siftctl"), "-c", pd.conf, "spf", "check", "bogus", "bob@fail.test"],
                             capture_output=True, text=True, timeout=30)
        check(out.returncode == 2, "siftctl spf check rejects a bad address", out.returncode)
    finally:
        for d in daemons:
            d.stop()
        srv.stop()
    return done()


def p_macro(pd, srv):
    """%{p} is looked up once per evaluation, whatever the number of %{p}
    in the record, and stops with the expansion once it is over 8 KB."""
    def queries(sender):
        srv.log.clear()
        with spfutil.policy_client(pd.port) as c:
            a = ask(c, P_CLIENT, sender)
        log = list(srv.log)
        ptr = sum(1 for name, t, _ in log if t == "PTR")
        addr = sum(1 for name, t, _ in log if t == "A" and name in P_NAMES)
        return a, ptr, addr, sum(1 for name, t, _ in log if t != "TXT")

    a, ptr, addr, n = queries("a@other.test")
    check(a.startswith("PREPEND Received-SPF: pass ") and 'mechanism="exists:%{p}.ok.test"' in a,
          "one %{p}: the validated name (n3.other.test)", a)
    check(ptr == 1 and addr <= len(P_NAMES), "one %{p}: one PTR query, a query per name at most", (ptr, addr))
    a, ptr, addr, n = queries("a@pmany.test")
    check(a.startswith("PREPEND Received-SPF: pass ") and 'mechanism="exists:%{p}.ok.test"' in a,
          "25 %{p}: the same validated name", a)
    check(ptr == 1 and addr <= len(P_NAMES), "25 %{p}: one PTR query, " + str(addr) + " address queries",
          (ptr, addr, n))
    a, ptr, addr, n = queries("a@pover.test")
    check(a.startswith("PREPEND Received-SPF: permerror ") and "too long" in a,
          "2000 %{p} in one name: permerror, expansion too long", a)
    check(ptr <= 1 and addr <= len(P_NAMES) and n <= 1 + len(P_NAMES),
          "2000 %{p}: at most one PTR query (" + str(n) + " queries besides TXT)", (ptr, addr, n))


def deadline_from_arrival(base, daemons):
    """policyd_request_deadline counts from when the request arrived, the
    wait for a free worker included (the client's timeout runs from
    there too): with one worker, two requests at once for a domain whose
    DNS never answers both get their temperror within the deadline, the
    second one not a whole deadline later."""
    pd = spfutil.policyd(dict(base, policyd_workers="1", policyd_request_deadline="3s",
                              spf_timeout="10s", spf_dns_timeout="5s", dns_timeout="5s"))
    daemons.append(pd)
    res = {}

    def one(k):
        c = spfutil.policy_client(pd.port)
        t0 = time.time()
        res[k] = (ask(c, "192.0.2.10", "x%d@slow.test" % k), time.time() - t0)
        c.close()
    ts = [threading.Thread(target=one, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
        time.sleep(0.1)
    for t in ts:
        t.join(30)
    for k in range(2):
        a, took = res.get(k, ("", 99))
        check(a.startswith("DEFER_IF_PERMIT 4.7.24 SPF temperror for slow.test") and took < 3.6,
              "one worker, two requests, DNS never answers: request %d answered temperror within "
              "policyd_request_deadline (3 s) of its arrival" % (k + 1), "%r after %.2fs" % (a, took))


def once_per_transaction(base, daemons):
    """Postfix takes one action a reply: when the reply that would carry
    Received-SPF is another plugin's refusal of that recipient, its
    DEFER_IF_PERMIT or an annotation given before it, the header goes with
    the next recipient's reply, and once."""
    rmap = ("inline:{ { refused@sift.test = REJECT no such user }, "
            "{ later@sift.test = DEFER_IF_PERMIT 4.7.1 try later }, "
            "{ noted@sift.test = PREPEND X-Noted: yes } }")
    for order in ("spf access", "access spf"):
        pd = spfutil.policyd(dict(base, inbound_plugins=order, access_recipient_map=rmap))
        daemons.append(pd)
        with spfutil.policy_client(pd.port) as c:
            firsts = [("later@sift.test", "DEFER_IF_PERMIT 4.7.1 try later")]
            # a refusal by access after spf (access first ends the chain
            # before spf runs); X-Noted given before the header wins
            if order == "spf access":
                firsts.append(("refused@sift.test", "REJECT no such user"))
            else:
                firsts.append(("noted@sift.test", "PREPEND X-Noted: yes"))
            for first, want in firsts:
                i = inst()
                what = "%s, first recipient %s" % (order, first)
                a = ask(c, "192.0.2.10", "alice@pass.test", instance=i, recipient=first)
                check(a == want, "%s: its own reply" % what, a)
                a = ask(c, "192.0.2.10", "alice@pass.test", instance=i, recipient="ok1@sift.test")
                check(a.startswith("PREPEND Received-SPF: pass (mx.sift.test: domain of alice@pass.test "),
                      "%s: the next recipient's reply carries Received-SPF" % what, a)
                a = ask(c, "192.0.2.10", "alice@pass.test", instance=i, recipient="ok2@sift.test")
                check(a == "DUNNO", "%s: not sent twice" % what, a)
                a = ask(c, "192.0.2.10", "alice@pass.test", instance=i, recipient=first)
                check(a == want, "%s: asked again, its own reply" % what, a)
                a = ask(c, "192.0.2.10", "alice@pass.test", instance=i, recipient="ok3@sift.test")
                check(a == "DUNNO", "%s: still not sent twice" % what, a)
            # a new transaction gets its own header
            a = ask(c, "192.0.2.10", "alice@pass.test", recipient="ok1@sift.test")
            check(a.startswith("PREPEND Received-SPF: pass "), "%s: a new transaction, its header" % order, a)


def cache_race(base, daemons):
    """Concurrent evaluations over the 600 names of RACE_DOMAINS domains,
    through the shared resolver's cache. The configuration sets the retired
    spf_dns_cache_size: it still loads, with a warning naming it."""
    pd = spfutil.policyd(dict(base, spf_dns_cache_size="7"))
    daemons.append(pd)
    answers, errors = [], []
    end = time.monotonic() + 4

    def client(t):
        try:
            with spfutil.policy_client(pd.port) as c:
                k = t
                while time.monotonic() < end:
                    answers.append(ask(c, "192.0.2.10", "u@d%d.race.test" % (k % RACE_DOMAINS)))
                    k += 7
        except Exception as e:  # noqa: BLE001 - reported as the check's detail
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = [a for a in answers if not a.startswith("PREPEND Received-SPF: pass ")]
    print("# 8 clients: %d answers in 4 s" % len(answers), flush=True)
    check(not errors and not bad and len(answers) > 500 and pd.alive(),
          "8 clients, 600 names: every answer a pass, policyd alive",
          (errors[:3], bad[:3], len(answers), pd.log_tail(20)))
    check("spf_dns_cache_size is no longer used and is ignored" in pd.log(),
          "the retired spf_dns_cache_size loads, with a warning", pd.log_tail(20))


def write_cidr():
    import tempfile
    fd, path = tempfile.mkstemp(prefix="sift-spf-", suffix=".cidr")
    os.write(fd, b"10.0.0.0/8 OK\n")
    os.close(fd)
    atexit.register(os.unlink, path)
    return path


if __name__ == "__main__":
    sys.exit(main())
