#!/usr/bin/python3
"""test_filterd.py - the spf plugin in filterd's chain, through
`siftctl test --json` (the same chain filterd runs, without an MTA), with a
DNS server on 127.0.0.1 where fail.test fails every client.

Checks: our own Received-SPF (topmost, above the first Received:, with our
receiver=) is used as is - no DNS check, symbol option "header"; a
Received-SPF below the first Received: (added before our MTA: forged) or
with another receiver= is ignored and SPF is checked (symbol option
"check", a Received-SPF is inserted); every result gives an SPF_<RESULT>
symbol with its configured score and an Authentication-Results header with
our authserv-id and spf=; spf_filterd_mode = header never checks;
authenticated (originating) messages are skipped.
Prints "N passed, N failed".
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spfutil  # noqa: E402
import sifttest  # noqa: E402
from sifttest import check, done, siftctl_test, write_conf, plugin_directory  # noqa: E402


ZONE = {".": [spfutil.ROOT_SOA,
              {"name": "fail.test", "type": "TXT", "data": "v=spf1 -all"},
              {"name": "pass.test", "type": "TXT", "data": "v=spf1 ip4:192.0.2.0/24 -all"}]}

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
        r = run(conf, OWN + RECV + BODY)
        check(sym(r) == ("SPF_PASS", -0.1, "header"), "own Received-SPF used (no check)", r)
        check(hdr(r, "Authentication-Results") == ["auth.sift.test; spf=pass smtp.mailfrom=a@fail.test"],
              "Authentication-Results spf=pass", r)
        check(hdr(r, "Received-SPF") == [], "no second Received-SPF added", r)

        r = run(conf, RECV + OWN + BODY)
        check(sym(r) == ("SPF_FAIL", 3.5, "check"), "Received-SPF below our Received: ignored, checked", r)
        rs = hdr(r, "Received-SPF")
        check(len(rs) == 1 and rs[0].startswith("fail (mx.sift.test: ") and "receiver=mx.sift.test;" in rs[0],
              "Received-SPF inserted after own check", r)
        check(hdr(r, "Authentication-Results") == ["auth.sift.test; spf=fail smtp.mailfrom=a@fail.test"],
              "Authentication-Results spf=fail", r)

        r = run(conf, OWN.replace("receiver=mx.sift.test", "receiver=other.example") + RECV + BODY)
        check(sym(r) == ("SPF_FAIL", 3.5, "check"), "Received-SPF of another receiver ignored", r)

        r = run(conf, RECV + BODY, opts=["spf_filterd_mode=header"])
        check(sym(r) is None and not hdr(r, "Authentication-Results"), "filterd_mode=header: no check", r)

        r = run(conf, OWN + RECV + BODY, opts=["spf_filterd_mode=check"])
        check(sym(r) == ("SPF_FAIL", 3.5, "check"), "filterd_mode=check ignores the header", r)

        for res, s in (("softfail", "SPF_SOFTFAIL"), ("neutral", "SPF_NEUTRAL"), ("none", "SPF_NONE"),
                       ("temperror", "SPF_TEMPERROR"), ("permerror", "SPF_PERMERROR")):
            r = run(conf, OWN.replace("Received-SPF: pass", "Received-SPF: " + res) + RECV + BODY)
            check(sym(r) is not None and sym(r)[0] == s and
                  hdr(r, "Authentication-Results") == ["auth.sift.test; spf=%s smtp.mailfrom=a@fail.test" % res],
                  "header result %s -> %s" % (res, s), r)

        r = run(conf, OWN.replace("Received-SPF: pass", "Received-SPF: permerror") + RECV + BODY,
                helo=None, auth="alice")
        check(r["action"] != "error" and not r.get("symbols"), "authenticated sender skipped", r)
    finally:
        srv.stop()
    return done()


if __name__ == "__main__":
    sys.exit(main())
