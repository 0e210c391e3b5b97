#!/usr/bin/python3
"""conformance.py - the openspf RFC 7208 and RFC 4408 test suites (394 tests)
against policyd with the spf plugin, through the policy protocol.

For each scenario of tests/data/rfc7208-tests.yml and rfc4408-tests.yml the
scenario's zone data is served by tests/lib/dnsserver.py on 127.0.0.1 (one
root zone: unknown names are NXDOMAIN; see spfutil.suite_zones) and a fresh
policyd (so that no cached answer of another scenario leaks in) is asked
one RCPT request per test (client_address = host, sender = mailfrom,
helo_name = helo), several at a time. The reply gives the result: a 550
5.7.23 reject is "fail" (its text is the explanation, spf_reject_text = %s,
spf_default_explanation = DEFAULT as the suites expect), DEFER_IF_PERMIT
4.7.24 is "temperror", and every other result is the first word of the
PREPEND Received-SPF header. A test passes when the result is one of the
expected ones and, where the suite gives one, the explanation is equal.

Prints one line per failure, "N passed, N failed", and exits 1 on any
failure or when the suites hold other than EXPECTED (394) tests (a test that
vanishes from the data is a failure too). With test names as arguments only
those run, and each of them must be found and pass.
"""
import concurrent.futures
import itertools
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spfutil  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SUITES = ["rfc7208-tests.yml", "rfc4408-tests.yml"]
EXPECTED = 394
counter = itertools.count(1)


def run_test(port, name, t):
    c = spfutil.policy_client(port)
    try:
        action = c.ask(client_address=t["host"], sender=t.get("mailfrom", ""),
                       helo_name=t.get("helo", ""), instance="conf.%d" % next(counter))
    finally:
        c.close()
    result, exp = spfutil.parse_action(action)
    want = t["result"] if isinstance(t["result"], list) else [t["result"]]
    ok = result in want
    if ok and "explanation" in t and exp != t["explanation"]:
        ok = False
    return ok, "%s: want %s%s, got %s" % (
        name, "/".join(want), " exp=%r" % t["explanation"] if "explanation" in t else "", action)


def main():
    only = set(sys.argv[1:])
    passed = failed = 0
    srv = dnsserver.DNSServer(spfutil.suite_zones({})).start()
    try:
        for suite in SUITES:
            with open(os.path.join(DATA, suite), "rb") as f:
                scenarios = list(yaml.safe_load_all(f))
            for sc in scenarios:
                tests = [(n, t) for n, t in sc["tests"].items() if not only or n in only]
                if not tests:
                    continue
                srv.set_zones(spfutil.suite_zones(sc.get("zonedata", {})))
                with spfutil.policyd({
                    "dns_servers": "127.0.0.1:%d" % srv.port,
                    "dns_timeout": "1s",
                    "spf_dns_timeout": "1s",
                    "spf_default_explanation": "DEFAULT",
                    "spf_reject_text": "%s",
                    "spf_receiver": "receiver.sift.test",
                    "policyd_workers": "8",
                }) as pd:
                    with concurrent.futures.ThreadPoolExecutor(8) as ex:
                        futs = [ex.submit(run_test, pd.port, n, t) for n, t in tests]
                        for (n, _), fu in zip(tests, futs):
                            try:
                                ok, detail = fu.result()
                            except Exception as e:  # a broken connection is a failure
                                ok, detail = False, "%s: %r" % (n, e)
                            if os.environ.get("SPF_VERBOSE"):
                                print("%s %s" % ("ok  " if ok else "FAIL", detail))
                            if ok:
                                passed += 1
                            else:
                                failed += 1
                                print("FAIL %s [%s / %s]" % (detail, suite, sc["description"]))
                    if not pd.alive():
                        failed += 1
                        print("FAIL policyd died in scenario %s" % sc["description"])
    finally:
        srv.stop()
    expected = len(only) if only else EXPECTED
    print("spf conformance: %d of %d tests passed (required: all of %d)" % (
        passed, passed + failed, expected))
    if passed + failed != expected:
        print("FAIL %d tests ran, not %d" % (passed + failed, expected))
        failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


dnsserver = spfutil.dnsserver
if __name__ == "__main__":
    sys.exit(main())
