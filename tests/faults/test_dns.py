#!/usr/bin/python3
"""Fault matrix: the DNS server policyd's spf plugin asks fails while mail
flows (the sender domain's SPF record has TTL 0, so every message asks).

  - DNS dead: the server is stopped (its port closed) for 5 s, then
    started again on the same port;
  - DNS slow: every answer delayed 2 s, past spf_dns_timeout (1 s), for
    3 s;
  - DNS SERVFAIL: every answer SERVFAIL for 2 s;
  - DNS truncated: every UDP answer truncated (TC set, no records) for
    the whole flow; TCP answers in full.

For the first three: the messages checked while DNS failed got 451 4.7.24 (SPF
temperror: spf_temperror_action = defer_if_permit) and arrived on the
retry, every message was delivered exactly once with Received-SPF: Pass
(none passed without an SPF result), policyd recovered by itself (same
process) and logged the temperror. Truncated: the resolver asked again
over TCP every time, and no message got a 4xx or a temperror.
"""

import os
import re
import sys
import threading

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
    `delay` seconds late, from a timer), 'servfail' or 'truncated' (UDP
    answers empty with TC set; TCP ones whole)."""

    mode = 'ok'
    delay = 2.0

    def handle(self, wire, transport):
        if self.mode == 'truncated' and transport == 'udp':
            import dns.flags
            import dns.message
            import dns.rdatatype
            q = dns.message.from_wire(wire)
            r = dns.message.make_response(q)
            r.flags |= dns.flags.AA | dns.flags.TC
            with self._log_lock:
                self.log.append((q.question[0].name.to_text(omit_final_dot=True).lower(),
                                 dns.rdatatype.to_text(q.question[0].rdtype), transport))
            return r.to_wire()
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


def run_case(pf, pd, name, fault, recover, hold):
    what = 'DNS ' + name
    flow, log = faultlib.fault_case(pf, pd, 'dns-' + name, fault, recover, hold, MARK, what)
    faultlib.check_replies(flow, what, 'rcpt', None, '4.7.24')
    check(re.search(r'spf: .*temperror', log, re.I) is not None,
          '%s: policyd logged the SPF temperror' % what,
          '\n'.join(log.splitlines()[-8:]))
    check(pd.alive(), '%s: policyd still running (recovered by itself)' % what)


def truncated(pf, pd, srv):
    """Every UDP answer truncated (TC, no records) while the flow runs:
    the resolver asks again over TCP, and no message notices."""
    what = 'DNS truncated UDP'
    mark = len(pd.log())
    srv.log.clear()
    srv.mode = 'truncated'
    flow = Flow(pf, 'dns-truncated').start()
    flow.join()
    srv.mode = 'ok'
    verify(flow, what, mark=MARK, min_tempfails=0)
    check(not flow.tempfails, '%s: no message answered 4xx (TCP fallback)' % what,
          list(flow.tempfails.items())[:3])
    asked = [tr for q, t, tr in list(srv.log) if (q, t) == ('example.test', 'TXT')]
    n_udp, n_tcp = asked.count('udp'), asked.count('tcp')
    # UDP never carried a record, so every SPF result came over TCP (policyd
    # asks once for messages checked at the same moment; under load the
    # resolver may send a UDP query twice)
    check(n_udp >= 1 and n_tcp >= flow.n // 10,
          '%s: the SPF lookups truncated over UDP asked again over TCP (%d UDP, %d TCP)'
          % (what, n_udp, n_tcp))
    log = pd.log()[mark:]
    check(not re.search(r'temperror|dns: ', log, re.I), '%s: policyd logged no DNS error' % what,
          '\n'.join(log.splitlines()[-8:]))
    check(pd.alive(), '%s: policyd still running' % what)


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

        run_case(pf, pd, 'dead', dead, alive, 5)

        def slow():
            state['srv'].mode = 'slow'

        def ok():
            state['srv'].mode = 'ok'
        run_case(pf, pd, 'slow', slow, ok, 3)

        def servfail():
            state['srv'].mode = 'servfail'
        run_case(pf, pd, 'SERVFAIL', servfail, ok, 2)
        dns = state['srv']
        truncated(pf, pd, dns)
    finally:
        env.stop()
        if dns is not None:
            dns.stop()
    return faultlib.sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
