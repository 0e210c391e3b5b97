"""spfutil.py - helpers shared by the spf plugin's tests: a policyd with the
spf plugin started on a free 127.0.0.1 port (sifttest.start_daemon, stopped
by its PID), a policy client with the attributes smtpd sends at RCPT, and
the conversion of the openspf test suites' zone data (YAML) into
tests/lib/dnsserver.py zones.

Zone conversion follows the suites' own driver: every name lives in one
root zone (so unknown names are NXDOMAIN), "SPF" records are also served
as TXT when the name has no TXT record, a TXT "NONE" means the name has no
such record, and a bare "TIMEOUT" entry makes every query type that has no
record listed before it time out (dnsserver's marker "except" list).
"""

import itertools
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "lib"))

import dnsserver  # noqa: E402
import sifttest  # noqa: E402

_names = itertools.count(1)

# What smtpd sends at RCPT besides the attributes a test sets.
RCPT_DEFAULTS = {"protocol_state": "RCPT", "client_name": "unknown", "reverse_client_name": "unknown",
                 "recipient": "rcpt@sift.test", "queue_id": "", "size": "0", "sasl_username": "",
                 "policy_context": ""}


def policyd(settings, tmpdir=None):
    """A started policyd (sifttest.Proc, .port, .conf) with the spf plugin
    inbound only, plus `settings`; its files in tmpdir (default: a new
    temporary directory, .tmp)."""
    tmp = tmpdir or sifttest.scratch("sift-spf-")
    p = sifttest.start_daemon("policyd", tmp, dict({"inbound_plugins": "spf", "originating_plugins": ""},
                                                   **settings), name="policyd-%d" % next(_names))
    p.tmp = tmp
    return p


def policy_client(port, timeout=30):
    """A sifttest.PolicyClient sending RCPT_DEFAULTS with every request."""
    return sifttest.PolicyClient(port, timeout=timeout, defaults=RCPT_DEFAULTS)


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
