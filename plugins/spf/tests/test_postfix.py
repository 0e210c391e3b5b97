#!/usr/bin/python3
"""test_postfix.py - SPF through a private Postfix (tests/lib/sifttest.py):
check_policy_service after reject_unauth_destination points at policyd
with the spf plugin, filterd (spf plugin, spf_filterd_mode = header) is the
milter, and a local DNS server (127.0.0.1) serves the zone. The SMTP client
is 127.0.0.1, so:
  pass.example.test  v=spf1 ip4:127.0.0.1 -all -> delivered, Received-SPF:
                     pass on top, Authentication-Results spf=pass from
                     filterd reading policyd's header;
  fail.example.test  v=spf1 -all  -> 550 5.7.23 at RCPT, nothing delivered;
  soft.example.test  v=spf1 ~all  -> delivered with Received-SPF: softfail
                     on top (two recipients: one header);
and with spf_softfail_action = reject (a second policyd, Postfix reloaded)
the softfail is rejected at RCPT with 550 5.7.23. A second Postfix, whose
policyd trusts the client, hands filterd (default mode) a message whose
sender wrote a Received-SPF: pass at its top: filterd, which sees no
Received: of Postfix, checks instead (spf=fail) and adds its own header;
mail that sendmail(1) submits through non_smtpd_milters gets no SPF result
(its "client" is Postfix's stand-in localhost [127.0.0.1]).
Last, Postfix with conf/postfix/main.cf.snippet's check_policy_service as
shipped (its timeout) and a policyd with one worker, three senders whose
domain's DNS never answers, at once: each gets 450 4.7.24 SPF temperror
(spf_temperror_action), none Postfix's 451 4.3.5 after its timeout.
Prints "N passed, N failed".
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spfutil  # noqa: E402
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402


ZONE = {".": [spfutil.ROOT_SOA,
              {"name": "pass.example.test", "type": "TXT", "data": "v=spf1 ip4:127.0.0.1 -all"},
              {"name": "fail.example.test", "type": "TXT", "data": "v=spf1 -all"},
              {"name": "soft.example.test", "type": "TXT", "data": "v=spf1 ~all"}]}

MSG = "From: %s\r\nTo: bob@sift.test\r\nSubject: spf %s\r\n\r\nhello\r\n"

DEAD = {".": [spfutil.ROOT_SOA] + [{"name": "dead%d.example.test" % i, "type": "TIMEOUT"} for i in range(3)]}


def shipped_policy_service(port):
    """The check_policy_service of smtpd_recipient_restrictions in
    conf/postfix/main.cf.snippet, as shipped, pointed at `port`."""
    with open(os.path.join(sifttest.srcdir(), "conf", "postfix", "main.cf.snippet")) as f:
        text = f.read()
    block = text.split("smtpd_recipient_restrictions =", 1)[1]
    i = block.index("check_policy_service")
    depth, j = 0, block.index("{", i)
    while True:
        depth += {"{": 1, "}": -1}.get(block[j], 0)
        j += 1
        if depth == 0:
            break
    return " ".join(block[i:j].split()).replace("inet:127.0.0.1:8892", "inet:127.0.0.1:%d" % port)


def test_dead_dns():
    """Sender domains whose DNS never answers, through the shipped wiring:
    each RCPT gets the configured temperror action (DEFER_IF_PERMIT 4.7.24,
    450), not Postfix's "Policy service unavailable" after its timeout.
    With one worker the three evaluations (spf_dns_timeout, 5 s each) run in
    turn, so the last answer comes some 15 s after its request: within
    policyd_request_deadline (20 s), which the wiring's timeout must exceed."""
    srv = spfutil.dnsserver.DNSServer(DEAD).start()
    pd = spfutil.policyd({"dns_servers": "127.0.0.1:%d" % srv.port, "myhostname": "mx.sift.test",
                          "policyd_workers": "1"})
    pf = None
    try:
        pf = sifttest.Postfix(recipient_restrictions="reject_unauth_destination, " +
                              shipped_policy_service(pd.port))
        pf.start()
        results, took = [None] * 3, [0.0] * 3

        def send(i):
            t0 = time.time()
            try:
                results[i] = pf.send("a@dead%d.example.test" % i, ["bob@sift.test"],
                                     MSG % ("a@dead%d.example.test" % i, "dead"))
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = e
            took[i] = time.time() - t0

        ts = [threading.Thread(target=send, args=(i,)) for i in range(3)]
        for t in ts:
            t.start()
            time.sleep(0.2)
        for t in ts:
            t.join(120)
        for i, r in enumerate(results):
            ok = (not isinstance(r, Exception) and r is not None and r.rejected_at() == "rcpt"
                  and r.rcpts and r.rcpts[0][0] == 450 and "4.7.24" in r.rcpts[0][1]
                  and "SPF temperror for dead%d.example.test" % i in r.rcpts[0][1])
            check(ok, "DNS never answers (session %d of 3, one worker): 450 4.7.24 SPF temperror "
                  "through the shipped check_policy_service" % (i + 1), "%r after %.1fs" % (r, took[i]))
        # Postfix's second try hides a timeout from the SMTP client (it
        # gets the answer 10 s later, policyd having worked for nothing);
        # its log does not
        late = [l for l in pf.log().splitlines() if "problem talking to server" in l]
        check(not late, "Postfix never gave up waiting for policyd", "\n".join(late))
    except Exception as e:  # any harness failure is a test failure
        check(False, "dead DNS scenario", "%r\n%s" % (e, pf.log()[-3000:] if pf else ""))
    finally:
        sifttest.stop_all([srv, pd, pf])


def main():
    if os.geteuid() != 0:
        check(False, "test_postfix: needs root for a private Postfix")
        return done()
    srv = spfutil.dnsserver.DNSServer(ZONE).start()
    common = {"dns_servers": "127.0.0.1:%d" % srv.port, "dns_timeout": "2s", "myhostname": "mx.sift.test"}
    pd = spfutil.policyd(dict(common))
    pd2 = spfutil.policyd(dict(common, spf_softfail_action="reject"), tmpdir=pd.tmp)
    pd3 = spfutil.policyd(dict(common, spf_trusted_clients="inline:{ 127.0.0.1=OK }"), tmpdir=pd.tmp)
    fd = pf = fd2 = pf2 = None
    try:
        # filterd in its default mode (header_or_check), behind a policyd
        # that trusts the client
        fd2 = sifttest.start_daemon("filterd", pd.tmp, {
            "inbound_plugins": "spf", "originating_plugins": "", "myhostname": "mx.sift.test",
            "authserv_id": "mx.sift.test", "dns_servers": common["dns_servers"]}, name="filterd-check")
        pf2 = sifttest.Postfix(policy="inet:127.0.0.1:%d" % pd3.port, milters=["inet:127.0.0.1:%d" % fd2.port],
                               main={"non_smtpd_milters": "$smtpd_milters"})
        pf2.start()
        fd = sifttest.start_daemon("filterd", pd.tmp, {
            "inbound_plugins": "spf", "originating_plugins": "", "myhostname": "mx.sift.test",
            "authserv_id": "mx.sift.test", "spf_filterd_mode": "header"})
        pf = sifttest.Postfix(policy="inet:127.0.0.1:%d" % pd.port, milters=["inet:127.0.0.1:%d" % fd.port])
        pf.start()

        r = pf.send("alice@pass.example.test", ["bob@sift.test"], MSG % ("alice@pass.example.test", "pass"))
        check(r.accepted, "pass: accepted", r)
        m = pf.wait_delivered(1)[-1]
        names = [n.lower() for n in m.msg.keys()] if hasattr(m, "msg") else []
        rspf = m.headers("Received-SPF")
        check(len(rspf) == 1 and rspf[0].strip().startswith("pass (mx.sift.test: ")
              and 'envelope-from="alice@pass.example.test"' in rspf[0], "pass: Received-SPF: pass", rspf)
        if names:
            check(names.index("received-spf") < names.index("received"),
                  "Received-SPF above our Received:", names[:6])
        ar = [h for h in m.headers("Authentication-Results") if "spf=" in h]
        check(len(ar) == 1 and "spf=pass smtp.mailfrom=alice@pass.example.test" in ar[0],
              "filterd read policyd's header: Authentication-Results spf=pass", m.header_block())

        # a sender's forged Received-SPF: pass on top of its message, for a
        # client policyd does not check (trusted there): filterd, which
        # does not see Postfix's Received:, must not take it as ours
        forged = ("Received-SPF: pass (mx.sift.test: forged) receiver=mx.sift.test; client-ip=127.0.0.1;"
                  " envelope-from=\"mallory@fail.example.test\"; helo=h.test; identity=mailfrom;\r\n")
        r = pf2.send("mallory@fail.example.test", ["bob@sift.test"],
                     forged + MSG % ("mallory@fail.example.test", "forged"))
        check(r.accepted, "trusted client: accepted without an SPF check in policyd", r)
        m = [x for x in pf2.wait_delivered(1) if "spf forged" in (x.header("Subject") or "")]
        ar = [h for h in m[0].headers("Authentication-Results") if "spf=" in h] if m else []
        rspf = m[0].headers("Received-SPF") if m else []
        check(len(ar) == 1 and "spf=fail smtp.mailfrom=mallory@fail.example.test" in ar[0],
              "forged Received-SPF: pass not trusted, filterd checked: spf=fail", m[0].header_block() if m else m)
        check(len(rspf) == 2 and rspf[0].strip().startswith("fail (mx.sift.test: "),
              "filterd's Received-SPF: fail above the forged one", rspf)

        # mail from sendmail(1) through non_smtpd_milters: no SMTP client,
        # so no SPF result (checked, 127.0.0.1 would fail our own domain)
        out = subprocess.run(["/usr/sbin/sendmail", "-f", "cron@fail.example.test", "bob@sift.test"],
                             input=(MSG % ("cron@fail.example.test", "local")).encode(),
                             env=dict(os.environ, MAIL_CONFIG=pf2.config_dir), capture_output=True, timeout=60)
        check(out.returncode == 0, "sendmail(1) submission accepted", out)
        m = [x for x in pf2.wait_delivered(2) if "spf local" in (x.header("Subject") or "")]
        check(len(m) == 1 and not m[0].headers("Received-SPF") and
              not [h for h in m[0].headers("Authentication-Results") if "spf=" in h],
              "sendmail(1) mail: no Received-SPF, no spf= (not an SMTP client)", m[0].header_block() if m else m)

        r = pf.send("mallory@fail.example.test", ["bob@sift.test"], MSG % ("mallory@fail.example.test", "fail"))
        check(r.rejected_at() == "rcpt" and r.rcpts and r.rcpts[0][0] == 550 and "5.7.23" in r.rcpts[0][1],
              "fail: 550 5.7.23 at RCPT", r)

        r = pf.send("eve@soft.example.test", ["bob@sift.test", "carol@sift.test"],
                    MSG % ("eve@soft.example.test", "soft"))
        check(r.accepted, "softfail: accepted (prepend only)", r)
        msgs = pf.wait_delivered(3)
        soft = [x for x in msgs if "spf soft" in (x.header("Subject") or "")]
        check(len(soft) == 2 and all(len(x.headers("Received-SPF")) == 1 and
                                     x.headers("Received-SPF")[0].strip().startswith("softfail ") for x in soft),
              "softfail: one Received-SPF: softfail per copy", [x.header_block() for x in soft])

        pf.set_main(smtpd_recipient_restrictions="reject_unauth_destination, check_policy_service "
                    "inet:127.0.0.1:%d" % pd2.port)
        pf.reload()
        r = pf.send("eve@soft.example.test", ["bob@sift.test"], MSG % ("eve@soft.example.test", "soft2"))
        check(r.rejected_at() == "rcpt" and r.rcpts and r.rcpts[0][0] == 550 and "5.7.23" in r.rcpts[0][1],
              "softfail_action=reject: 550 5.7.23 at RCPT", r)
    except Exception as e:  # any harness failure is a test failure
        check(False, "postfix scenario", "%r\n%s" % (e, pf.log()[-3000:] if pf else ""))
    finally:
        sifttest.stop_all([srv, pd, pd2, pd3, fd, pf, fd2, pf2])
    test_dead_dns()
    return done()


if __name__ == "__main__":
    sys.exit(main())
