#!/usr/bin/python3
"""Fault matrix: clients that misbehave on the daemons' sockets while mail
flows through a private Postfix wired to both daemons. One flow of
messages meets three faults at once:

  - 2,000 idle policy connections: opened to policyd before the flow
    (policyd_max_connections = 3000; the test raises RLIMIT_NOFILE, which
    the daemons inherit) and kept open, silent, throughout;
  - slow policy clients: three clients each send a request one byte a
    second; policyd_request_timeout (1 s) bounds each connection: policyd
    closes it without a reply and says so, and the client connects again
    (the flow lasts 4 s: 50 messages a second);
  - milter clients that disconnect mid-packet: every 0.2 s a raw client
    connects to filterd and closes after a packet cut short, in turn
    within the first packet's length, within the option negotiation and
    in the middle of a message (after MAIL, RCPT and a header, a body
    chunk cut short).

Every message is delivered exactly once, through both daemons (filterd's
header and policyd's PREPEND), with no 4xx at all: neither the idle
connections nor the slow ones hold up Postfix's requests, and a broken
milter client costs nothing but its own connection. The idle connections
are all still open at the end (none dropped), each slow one was closed by
policyd within the request timeout (logged: "request not complete"), and
filterd logged each cut packet ("closed in the middle of a packet").
"""

import os
import re
import resource
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import check, Flow, verify  # noqa: E402

IDLE = 2000
SLOW = 3
REQUEST_TIMEOUT = 1.0
MARK = [rb'^X-Fault-Policy: seen$', rb'^X-Fault-Filter: seen$']
REQUEST = (b'request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n'
           b'client_address=127.0.0.9\nsender=slow@example.test\nrecipient=user@sift.test\n\n')


def milter_pkt(cmd, data=b''):
    return struct.pack('>I', len(data) + 1) + cmd + data


def read_pkt(s):
    """One milter packet (command byte, data) from socket s."""
    buf = b''
    while len(buf) < 4 or len(buf) < 4 + struct.unpack('>I', buf[:4])[0]:
        got = s.recv(65536)
        if not got:
            raise OSError('closed by filterd')
        buf += got
    return buf[4:5], buf[5:]


def cut_session(port, kind):
    """One raw milter connection to filterd that ends with a packet cut
    short: 'length' (2 bytes of the first packet's length), 'optneg' (half
    the option negotiation), 'body' (a whole message up to a body chunk,
    then half of it). Of the protocol flags only SMFIP_HDR_LEADSPC is
    offered (as every MTA of milter protocol 6 does): filterd replies to
    each command."""
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    try:
        optneg = milter_pkt(b'O', struct.pack('>III', 6, 0x1ff, 0x100000))
        if kind == 'length':
            s.sendall(optneg[:2])
            return
        if kind == 'optneg':
            s.sendall(optneg[:9])
            return
        s.sendall(optneg)
        read_pkt(s)
        for cmd, data in ((b'C', b'client.example\x004' + struct.pack('>H', 4000) + b'127.0.0.1\0'),
                          (b'H', b'client.example\0'), (b'M', b'<cut@example.test>\0'),
                          (b'R', b'<user@sift.test>\0'), (b'L', b'Subject\0cut\0'), (b'N', b'')):
            s.sendall(milter_pkt(cmd, data))
            read_pkt(s)
        body = milter_pkt(b'B', b'x' * 1000)
        s.sendall(body[:600])
    finally:
        s.close()


class Misbehaving:
    """The three kinds of bad clients, run from threads until stop()."""

    def __init__(self, pd_port, fd_port):
        self.pd_port, self.fd_port = pd_port, fd_port
        self.stopping = threading.Event()
        self.idle = []
        self.slow_closed = []   # seconds each slow connection lasted
        self.slow_replied = 0   # replies a slow client got (must stay 0)
        self.cuts = {'length': 0, 'optneg': 0, 'body': 0}
        self.errors = []
        self.threads = []

    def open_idle(self, n):
        for _ in range(n):
            self.idle.append(socket.create_connection(('127.0.0.1', self.pd_port), timeout=10))

    def idle_open(self):
        """How many idle connections policyd has not closed."""
        alive = 0
        for s in self.idle:
            try:
                s.setblocking(False)
                if s.recv(1) != b'':
                    alive += 1  # (policyd never sends unasked)
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def _slow(self):
        while not self.stopping.is_set():
            t0 = time.monotonic()
            try:
                s = socket.create_connection(('127.0.0.1', self.pd_port), timeout=10)
            except OSError as e:
                self.errors.append('slow connect: %s' % e)
                time.sleep(0.5)
                continue
            s.settimeout(1.0)
            closed = False
            for i in range(len(REQUEST)):
                try:
                    s.sendall(REQUEST[i:i + 1])
                    got = s.recv(4096)
                except socket.timeout:
                    continue  # a second passed: the next byte
                except OSError:
                    closed = True
                    break
                if got:
                    self.slow_replied += 1
                closed = True  # b'' (closed) or an answer
                break
            s.close()
            if closed:
                self.slow_closed.append(time.monotonic() - t0)

    def _cut(self):
        kinds = list(self.cuts)
        i = 0
        while not self.stopping.is_set():
            kind = kinds[i % len(kinds)]
            try:
                cut_session(self.fd_port, kind)
                self.cuts[kind] += 1
            except OSError as e:
                self.errors.append('milter %s: %s' % (kind, e))
            i += 1
            self.stopping.wait(0.2)

    def start(self):
        for fn in [self._slow] * SLOW + [self._cut]:
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(30)
        for s in self.idle:
            s.close()


def fds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE + 2000
    if hard != resource.RLIM_INFINITY and hard < want:
        hard = want  # root may raise the hard limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    env = faultlib.Env('conns', plugins=('testplug', 'access'))
    bad = None
    try:
        rcpts = env.path('policy-rcpts')
        with open(rcpts, 'w') as f:
            f.write('user@sift.test\tPREPEND X-Fault-Policy: seen\n')
        fd = env.daemon('filterd', 'filterd', {'inbound_plugins': 'testplug',
                                               'testplug_header': 'X-Fault-Filter: seen'})
        pd = env.daemon('policyd', 'policyd', {
            'inbound_plugins': 'access', 'access_recipient_map': 'texthash:' + rcpts,
            'policyd_max_connections': str(IDLE + 1000),
            'policyd_request_timeout': '%ds' % REQUEST_TIMEOUT})
        pf = env.postfix(milter=fd.port, policy=pd.port)
        what = 'misbehaving clients'
        fmark, pmark = len(fd.log()), len(pd.log())
        bad = Misbehaving(pd.port, fd.port)
        rss0 = pd.rss()[0]
        bad.open_idle(IDLE)
        time.sleep(0.5)
        pd_fds, rss_idle = fds(pd.pid), pd.rss()[0]
        check(pd_fds >= IDLE, '%s: policyd holds the %d idle connections (%d fds)' %
              (what, IDLE, pd_fds))
        bad.start()
        # 50 messages a second: the flow lasts 4 s, a few request timeouts
        flow = Flow(pf, 'conns', pace=0.08).start()
        flow.join()
        open_idle = bad.idle_open()
        bad.stop()
        verify(flow, what, mark=MARK, min_tempfails=0)
        check(not flow.tempfails, '%s: no message answered 4xx' % what,
              list(flow.tempfails.items())[:3])
        check(open_idle == IDLE, '%s: all %d idle policy connections still open (%d)' %
              (what, IDLE, open_idle))
        check(len(bad.slow_closed) >= 2 * SLOW and bad.slow_replied == 0 and
              max(bad.slow_closed) < REQUEST_TIMEOUT + 2.5,
              '%s: each slow policy client closed by policyd, unanswered, within %.1f s '
              '(%d closed, longest %.1f s)' % (what, REQUEST_TIMEOUT + 2.5, len(bad.slow_closed),
                                                max(bad.slow_closed or [0])))
        plog, flog = pd.log()[pmark:], fd.log()[fmark:]
        n_slow = len(re.findall(r'request not complete after \d+ ms; closing', plog))
        check(n_slow >= len(bad.slow_closed),
              '%s: policyd logged each slow connection it closed (%d lines)' % (what, n_slow),
              plog[-800:])
        check('too many connections' not in plog, '%s: policyd refused no connection' % what)
        n_cut = len(re.findall(r'closed in the middle of a packet', flog))
        check(all(bad.cuts.values()) and not bad.errors and
              n_cut >= sum(bad.cuts.values()) - 1,
              '%s: filterd logged every cut milter packet (%r, %d lines)' % (what, bad.cuts, n_cut),
              (bad.errors[:3], flog[-800:]))
        check(re.search(r'closed in the middle of a packet \(\d+ of \d+ bytes\); the message in '
                        r'progress is dropped', flog) is not None,
              '%s: the cut inside a message aborted it' % what, flog[-800:])
        check(fd.alive() and pd.alive(), '%s: both daemons still running' % what)
        print('# policyd: %d fds with the idle connections; RSS %.1f MB before, %.1f MB with them'
              % (pd_fds, rss0 / 1024, rss_idle / 1024), flush=True)
    finally:
        if bad is not None:
            bad.stop()
        env.stop()
    return faultlib.sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
