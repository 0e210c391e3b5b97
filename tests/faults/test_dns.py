#!/usr/bin/python3
"""Fault matrix: the DNS server policyd's spf plugin asks fails while mail
flows (the sender domain's SPF record has TTL 0, so every message asks).

  - DNS dead: the server is stopped (its port closed) for 5 s, then
    started again on the same port;
  - DNS slow: every answer delayed 2 s, past spf_dns_timeout (1 s), for
    3 s;
  - DNS SERVFAIL: every answer SERVFAIL for 2 s.

For each: the messages checked while DNS failed got 451 4.7.24 (SPF
temperror: spf_temperror_action = defer_if_permit) and arrived on the
retry, every message was delivered exactly once with Received-SPF: Pass
(none passed without an SPF result), policyd recovered by itself (same
process) and logged the temperror.
"""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import check, Flow, verify  # noqa: E402
from dnsserver import DNSServer  # noqa: E402

ZONES = {'example.test': [
    {'name': '@', 'type': 'TXT', 'ttl': 0, 'data': 'v=spf1 ip4:127.0.0.0/8 -all'},
    {'name': '@', 'type': 'A', 'ttl': 0, 'data': '127.0.0.1'}]}
MARK = rb'^Received-SPF: Pass '


class FaultDNS(DNSServer):
    """The test DNS server with a mode: 'ok', 'slow' (UDP answers sent
    `delay` seconds late, from a timer) or 'servfail'."""

    mode = 'ok'
    delay = 2.0

    def handle(self, wire, transport):
        if self.mode == 'servfail':
            import dns.message
            import dns.rcode
            q = dns.message.from_wire(wire)
            r = dns.message.make_response(q)
            r.set_rcode(dns.rcode.SERVFAIL)
            return r.to_wire()
        return super().handle(wire, transport)

    def send_udp(self, out, addr):
        if self.mode == 'slow':
            threading.Timer(self.delay, self._late, args=(out, addr)).start()
        else:
            super().send_udp(out, addr)

    def _late(self, out, addr):
        try:
            self.udp.sendto(out, addr)
        except OSError:
            pass


def run_case(env, pf, pd, name, fault, recover, hold):
    what = 'DNS ' + name
    mark = len(pd.log())
    flow = Flow(pf, 'dns-' + name).start()
    flow.wait_done(flow.n // 4)
    fault()
    time.sleep(hold)
    recover()
    flow.join()
    verify(flow, what, mark=MARK)
    replies = [x for v in flow.tempfails.values() for x in v]
    check(all(isinstance(x, tuple) and x[0] == 'rcpt' and x[1] and 400 <= x[1][0] < 500 and
              '4.7.24' in x[1][1] for x in replies),
          '%s: the 4xx were SPF temperror deferrals (4xx 4.7.24 at RCPT)' % what,
          [x for x in replies if not (isinstance(x, tuple) and x[1] and '4.7.24' in x[1][1])][:3])
    log = pd.log()[mark:]
    check(re.search(r'spf: .*temperror', log, re.I) is not None,
          '%s: policyd logged the SPF temperror' % what,
          '\n'.join(log.splitlines()[-8:]))
    check(pd.alive(), '%s: policyd still running (recovered by itself)' % what)


def main():
    env = faultlib.Env('dns', plugins=('spf',))
    dns = None
    try:
        dns = FaultDNS(ZONES).start()
        pd = env.daemon('policyd', 'policyd', {
            'inbound_plugins': 'spf',
            'dns_servers': '127.0.0.1:%d' % dns.port,
            'dns_timeout': '1s',
            'spf_dns_timeout': '1s',
        })
        pf = env.postfix(policy=pd.port)
        port = dns.port
        state = {'srv': dns}

        def dead():
            state['srv'].stop()

        def alive():
            state['srv'] = FaultDNS(ZONES, port=port).start()

        run_case(env, pf, pd, 'dead', dead, alive, 5)

        def slow():
            state['srv'].mode = 'slow'

        def ok():
            state['srv'].mode = 'ok'
        run_case(env, pf, pd, 'slow', slow, ok, 3)

        def servfail():
            state['srv'].mode = 'servfail'
        run_case(env, pf, pd, 'SERVFAIL', servfail, ok, 2)
        dns = state['srv']
    finally:
        env.stop()
        if dns is not None:
            dns.stop()
    return faultlib.sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
