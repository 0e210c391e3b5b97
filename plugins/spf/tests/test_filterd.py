#!/usr/bin/python3
"""test_filterd.py - the spf plugin in filterd's chain, through
`siftctl test --json` (the same chain filterd runs, without an MTA), with a
DNS server on 127.0.0.1 where fail.test fails every client.

Checks: with spf_filterd_mode = header our own Received-SPF (topmost,
above the first Received:, with our receiver=) is used as is - no DNS
check, symbol option "header" - and one below a Received: or with another
receiver= is not; in the default mode (header_or_check) every message is
checked (symbol option "check") whatever Received-SPF it carries, since a
sender can write one (Postfix shows milters none of its own Received:),
and a Received-SPF is inserted unless the topmost one says the same; every
result gives an SPF_<RESULT> symbol with its configured score and an
Authentication-Results header with our authserv-id and spf=;
spf_filterd_mode = header never checks; authenticated (originating)
messages are skipped; a DNS server that never answers gives
SPF_TEMPERROR within spf_dns_timeout, and the message is accepted.
Quoted values in our own header are read as such: headers written by
policyd (started here) for a sender whose quoted local part holds
"identity=helo; helo=paypal.com;" or a '(', and a HELO name that would
close that '(' and plant keys, give the Authentication-Results the real
identity, read from the header alone and with the MTA's MAIL FROM and HELO.
Prints "N passed, N failed".
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spfutil  # noqa: E402
import sifttest  # noqa: E402
from sifttest import check, done, siftctl_test, write_conf, plugin_directory  # noqa: E402


ZONE = {".": [spfutil.ROOT_SOA,
              {"name": "fail.test", "type": "TXT", "data": "v=spf1 -all"},
              {"name": "pass.test", "type": "TXT", "data": "v=spf1 ip4:192.0.2.0/24 -all"},
              {"name": "evil.test", "type": "TXT", "data": "v=spf1 ip4:198.51.100.0/24 -all"},
              {"name": "slow.test", "type": "TXT", "data": "v=spf1 include:dead.slow.test -all"},
              {"name": "dead.slow.test", "type": "TIMEOUT"}]}

OWN = ("Received-SPF: pass (mx.sift.test: domain of a@fail.test designates 198.51.100.1 as permitted sender)\n"
       " receiver=mx.sift.test; client-ip=198.51.100.1; envelope-from=\"a@fail.test\"; helo=h.test;\n"
       " identity=mailfrom;\n")
RECV = "Received: from h.test (h.test [198.51.100.1]) by mx.sift.test (Postfix) with ESMTP id 4X\n"
BODY = "From: a@fail.test\nTo: b@sift.test\nSubject: t\n\nhello\n"


def run(conf, msg, opts=(), helo="h.test", auth=None):
    args = ["--client", "198.51.100.1", "--from", "a@fail.test", "--to", "b@sift.test"]
    args += ["--helo", helo] if helo else []
    args += ["--auth", auth] if auth else []
    return siftctl_test(conf, msg, args, opts=opts)


def quoted_values(conf, srv):
    """Received-SPF headers written by policyd for senders and HELO names
    that need quoting, read back by filterd: the A-R names the identity
    that was checked, never a key planted in a quoted value."""
    pd = spfutil.policyd({"dns_servers": "127.0.0.1:%d" % srv.port, "dns_timeout": "2s",
                          "myhostname": "mx.sift.test"})
    try:
        c = spfutil.policy_client(pd.port)
        cases = [
            ('"x identity=helo; helo=paypal.com;"@evil.test', "h.evil.test", "smtp.mailfrom=evil.test"),
            ('"a(b"@evil.test', "h.evil.test", "smtp.mailfrom=evil.test"),
            # the HELO name closes the sender's '(' and plants keys after it
            ('"a(b"@evil.test', ") identity=helo; helo=paypal.com", "smtp.mailfrom=evil.test"),
            ('"x) helo=paypal.com; identity=helo; ("@evil.test', "h.evil.test", "smtp.mailfrom=evil.test"),
            ("", "evil.test", "smtp.helo=evil.test"),
        ]
        for n, (sender, helo, want) in enumerate(cases):
            a = c.ask(client_address="198.51.100.1", sender=sender, helo_name=helo, instance="q.%d" % n)
            check(a.startswith("PREPEND Received-SPF: pass "), "policyd passes %r / %r" % (sender, helo), a)
            rspf = "Received-SPF: " + a[len("PREPEND Received-SPF: "):] + "\n"
            for how, args in (("header alone", ["--helo", ""]), ("with MAIL FROM and HELO", ["--from", sender, "--helo", helo])):
                r = siftctl_test(conf, rspf + RECV + BODY,
                                 ["--client", "198.51.100.1", "--to", "b@sift.test"] + args,
                                 opts=["spf_filterd_mode=header"])
                check(sym(r) == ("SPF_PASS", -0.1, "header") and
                      hdr(r, "Authentication-Results") == ["auth.sift.test; spf=pass " + want],
                      "sender %r, HELO %r, %s: A-R %s" % (sender, helo, how, want), (rspf, r))
        c.close()
    finally:
        pd.stop()


def sym(r):
    s = r.get("symbols") or []
    return (s[0]["name"], s[0]["score"], s[0]["option"]) if s else None


def hdr(r, name):
    return [h["value"] for h in r.get("headers") or [] if h["name"] == name]


def main():
    srv = spfutil.dnsserver.DNSServer(ZONE).start()
    tmp = sifttest.scratch("sift-spf-filterd-")
    conf = write_conf(os.path.join(tmp, "filterd.conf"), {
        "plugin_directory": plugin_directory(), "inbound_plugins": "spf", "originating_plugins": "spf",
        "dns_servers": "127.0.0.1:%d" % srv.port, "dns_timeout": "2s", "myhostname": "mx.sift.test",
        "authserv_id": "auth.sift.test", "spf_score_fail": "3.5"})
    try:
        HM = ["spf_filterd_mode=header"]
        r = run(conf, OWN + RECV + BODY, opts=HM)
        check(sym(r) == ("SPF_PASS", -0.1, "header"), "filterd_mode=header: own Received-SPF used (no check)", r)
        check(hdr(r, "Authentication-Results") == ["auth.sift.test; spf=pass smtp.mailfrom=a@fail.test"],
              "Authentication-Results spf=pass", r)
        check(hdr(r, "Received-SPF") == [], "no second Received-SPF added", r)

        # header_or_check (the default) never takes the header's word: a
        # sender can write one, with Received: lines of its own below it
        r = run(conf, OWN + RECV + BODY)
        check(sym(r) == ("SPF_FAIL", 3.5, "check") and
              hdr(r, "Authentication-Results") == ["auth.sift.test; spf=fail smtp.mailfrom=a@fail.test"],
              "header_or_check: a Received-SPF: pass above a Received: is checked (fail)", r)

        r = run(conf, RECV + OWN + BODY)
        check(sym(r) == ("SPF_FAIL", 3.5, "check"), "Received-SPF below our Received: ignored, checked", r)
        rs = hdr(r, "Received-SPF")
        check(len(rs) == 1 and rs[0].startswith("fail (mx.sift.test: ") and "receiver=mx.sift.test;" in rs[0],
              "Received-SPF inserted after own check", r)
        check(hdr(r, "Authentication-Results") == ["auth.sift.test; spf=fail smtp.mailfrom=a@fail.test"],
              "Authentication-Results spf=fail", r)

        # No Received: below it (Postfix shows milters none of its own):
        # the sender may have written it, so it is checked; a header that
        # says the same as the check is not added twice
        r = run(conf, OWN + BODY)
        check(sym(r) == ("SPF_FAIL", 3.5, "check") and
              hdr(r, "Authentication-Results") == ["auth.sift.test; spf=fail smtp.mailfrom=a@fail.test"],
              "Received-SPF with no Received: below it: checked, not trusted", r)
        check(len(hdr(r, "Received-SPF")) == 1 and hdr(r, "Received-SPF")[0].startswith("fail (mx.sift.test: "),
              "our Received-SPF added above the unproven one", r)
        r = run(conf, OWN.replace("Received-SPF: pass", "Received-SPF: fail") + BODY)
        check(sym(r) == ("SPF_FAIL", 3.5, "check") and hdr(r, "Received-SPF") == [],
              "unproven header that agrees with the check: none added", r)
        r = run(conf, OWN + BODY, opts=HM)
        check(sym(r) == ("SPF_PASS", -0.1, "header"), "filterd_mode=header trusts the topmost header", r)

        r = run(conf, OWN.replace("receiver=mx.sift.test", "receiver=other.example") + RECV + BODY, opts=HM)
        check(sym(r) is None, "filterd_mode=header: Received-SPF of another receiver ignored", r)
        r = run(conf, RECV + OWN + BODY, opts=HM)
        check(sym(r) is None, "filterd_mode=header: Received-SPF below a Received: ignored", r)

        r = run(conf, RECV + BODY, opts=["spf_filterd_mode=header"])
        check(sym(r) is None and not hdr(r, "Authentication-Results"), "filterd_mode=header: no check", r)

        r = run(conf, OWN + RECV + BODY, opts=["spf_filterd_mode=check"])
        check(sym(r) == ("SPF_FAIL", 3.5, "check"), "filterd_mode=check ignores the header", r)

        for res, s in (("softfail", "SPF_SOFTFAIL"), ("neutral", "SPF_NEUTRAL"), ("none", "SPF_NONE"),
                       ("temperror", "SPF_TEMPERROR"), ("permerror", "SPF_PERMERROR")):
            r = run(conf, OWN.replace("Received-SPF: pass", "Received-SPF: " + res) + RECV + BODY, opts=HM)
            check(sym(r) is not None and sym(r)[0] == s and
                  hdr(r, "Authentication-Results") == ["auth.sift.test; spf=%s smtp.mailfrom=a@fail.test" % res],
                  "header result %s -> %s" % (res, s), r)

        r = run(conf, OWN.replace("Received-SPF: pass", "Received-SPF: permerror") + RECV + BODY,
                helo=None, auth="alice")
        check(r["action"] != "error" and not r.get("symbols"), "authenticated sender skipped", r)

        # an address literal as HELO, null sender: smtp.helo as a
        # quoted-string, not a made-up name
        r = siftctl_test(conf, RECV + BODY, ["--client", "198.51.100.1", "--from", "", "--to", "b@sift.test",
                                             "--helo", "[198.51.100.1]"])
        check(hdr(r, "Authentication-Results") == ['auth.sift.test; spf=none smtp.helo="[198.51.100.1]"'],
              "address literal HELO: smtp.helo quoted", r)

        # a DNS server that never answers: temperror within the bounds
        # (spf_dns_timeout per query, spf_timeout in all), never a hang
        t0 = time.monotonic()
        r = siftctl_test(conf, RECV + BODY, ["--client", "198.51.100.1", "--from", "a@slow.test", "--to", "b@sift.test",
                                             "--helo", "h.test"], opts=["spf_dns_timeout=1s", "spf_timeout=2s"])
        took = time.monotonic() - t0
        check(sym(r) == ("SPF_TEMPERROR", 0.0, "check") and r["action"] == "accept" and
              hdr(r, "Authentication-Results") == ["auth.sift.test; spf=temperror smtp.mailfrom=a@slow.test"],
              "dead DNS server: SPF_TEMPERROR, message accepted", r)
        check(took < 4, "dead DNS server: answered in %.1f s (spf_dns_timeout 1 s)" % took)

        quoted_values(conf, srv)
    finally:
        srv.stop()
    return done()


if __name__ == "__main__":
    sys.exit(main())
