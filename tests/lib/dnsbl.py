"""dnsbl.py - DNS block lists for the tests of the rbl plugin and of the spam
plugin's network rules, served by dnsserver.py on 127.0.0.1.

The lists carry the real zone names the stock SpamAssassin rules and
Postfix configurations name (zen.spamhaus.org, bl.spamcop.net,
list.dnswl.org, dbl.spamhaus.org, multi.uribl.com), so that a resolver
pointed at this server (dns_servers) makes the stock rules hit; the usual
127.0.0.x conventions hold (127.0.0.2 listed everywhere, with TXT records):

  client / relay       zen.spamhaus.org       others
  127.0.0.2            127.0.0.2 (SBL) + TXT  spamcop A+TXT, uribl black
  127.0.0.1            127.0.0.4 (XBL)        -              (the Postfix client)
  127.0.0.3            -                      list.dnswl.org 127.0.5.2 (allow, MED)
  127.0.0.5            127.0.0.10 (PBL)       list.dnswl.org 127.0.5.3 (allow, HI)
  192.0.2.66           127.0.0.2, 127.0.0.4   spamcop 127.0.0.2 + TXT
  198.51.100.7         127.0.0.11 (PBL)       -
  203.0.113.9          127.0.0.2              (name server of ns-listed.example)
  2001:db8::66         127.0.0.2              (by its 32 reversed nibbles)
  127.0.0.9            -                      parked.dnsbl.test 198.51.100.80
                                              (not a list answer: a hijacked list)

  dbl.spamhaus.org     dbl-listed.example -> 127.0.1.2 (URIBL_DBL_SPAM),
                       skipped-listed.example -> 127.0.1.3 (in uridnsbl_skip_domain)
  multi.uribl.com      uribl-listed.example -> 127.0.0.2 (URIBL_BLACK)
  ns-listed.example    NS ns1.ns-listed.example, A 203.0.113.9 (URIBL_SBL)

Two lists misbehave: every name under slow.dnsbl.test is answered
`ListServer.delay` seconds late (127.0.0.2 for anything), every name under
dead.dnsbl.test gets SERVFAIL.
"""

import ipaddress
import threading

import dns.message
import dns.rcode
import dns.rrset

from dnsserver import DNSServer

SLOW = 'slow.dnsbl.test'
PARKED = 'parked.dnsbl.test'
DEAD = 'dead.dnsbl.test'


def _rev(ip):
    if ':' in ip:
        return '.'.join(reversed(ipaddress.ip_address(ip).exploded.replace(':', '')))
    return '.'.join(reversed(ip.split('.')))


def zones():
    zen = []
    for ip, answers in (('127.0.0.2', ['127.0.0.2']), ('127.0.0.1', ['127.0.0.4']),
                        ('127.0.0.5', ['127.0.0.10']),
                        ('192.0.2.66', ['127.0.0.2', '127.0.0.4']), ('198.51.100.7', ['127.0.0.11']),
                        ('203.0.113.9', ['127.0.0.2']), ('2001:db8::66', ['127.0.0.2'])):
        for a in answers:
            zen.append({'name': _rev(ip), 'type': 'A', 'ttl': 60, 'data': a})
    zen.append({'name': _rev('127.0.0.2'), 'type': 'TXT', 'data': 'https://www.spamhaus.org/query/ip/127.0.0.2'})
    spamcop = []
    for ip in ('127.0.0.2', '192.0.2.66'):
        spamcop += [{'name': _rev(ip), 'type': 'A', 'data': '127.0.0.2'},
                    {'name': _rev(ip), 'type': 'TXT',
                     'data': 'Blocked - see https://www.spamcop.net/bl.shtml?%s' % ip}]
    dnswl = [{'name': _rev('127.0.0.3'), 'type': 'A', 'data': '127.0.5.2'},
             {'name': _rev('127.0.0.5'), 'type': 'A', 'data': '127.0.5.3'}]
    return {
        'zen.spamhaus.org': zen,
        'bl.spamcop.net': spamcop,
        'list.dnswl.org': dnswl,
        'dbl.spamhaus.org': [{'name': 'dbl-listed.example', 'type': 'A', 'data': '127.0.1.2'},
                             {'name': 'skipped-listed.example', 'type': 'A', 'data': '127.0.1.3'}],
        'multi.uribl.com': [{'name': 'uribl-listed.example', 'type': 'A', 'data': '127.0.0.2'},
                            {'name': _rev('127.0.0.2'), 'type': 'A', 'data': '127.0.0.2'}],
        'ns-listed.example': [{'name': '@', 'type': 'NS', 'data': 'ns1.ns-listed.example.'},
                              {'name': 'ns1', 'type': 'A', 'data': '203.0.113.9'},
                              {'name': 'www', 'type': 'A', 'data': '203.0.113.9'}],
        PARKED: [{'name': _rev('127.0.0.9'), 'type': 'A', 'data': '198.51.100.80'}],
        SLOW: [{'name': '@', 'type': 'A', 'data': '127.0.0.1'}],
        DEAD: [{'name': '@', 'type': 'A', 'data': '127.0.0.1'}],
    }


def _qname(wire):
    try:
        return str(dns.message.from_wire(wire).question[0].name).rstrip('.').lower()
    except Exception:  # noqa: BLE001 - a malformed query: the base class answers it
        return ''


class ListServer(DNSServer):
    """The test DNS server serving zones(), with the slow and the dead list."""

    delay = 3.0

    def __init__(self, **kw):
        super().__init__(zones(), **kw)

    def handle(self, wire, transport):
        name = _qname(wire)
        if name.endswith('.' + DEAD):
            q = dns.message.from_wire(wire)
            r = dns.message.make_response(q)
            r.set_rcode(dns.rcode.SERVFAIL)
            return r.to_wire()
        if name.endswith('.' + SLOW):
            q = dns.message.from_wire(wire)
            r = dns.message.make_response(q)
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, 'IN', 'A', '127.0.0.2'))
            return r.to_wire()
        return super().handle(wire, transport)

    def send_udp(self, out, addr):
        if _qname(out).endswith('.' + SLOW):
            threading.Timer(self.delay, self._late, args=(out, addr)).start()
        else:
            super().send_udp(out, addr)

    def _late(self, out, addr):
        try:
            self.udp.sendto(out, addr)
        except OSError:
            pass
