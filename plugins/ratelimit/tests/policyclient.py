"""A small Postfix policy-protocol client for the ratelimit and senderlogin
tests: one persistent connection, one request at a time, as smtpd does.

    c = PolicyClient(port)            # or PolicyClient(unix='/path')
    c.ask(protocol_state='RCPT', sender='a@b', ...)  -> 'DUNNO'
    c.transaction(client_address=..., sasl_username=..., sender=...,
                  rcpts=[...], size=N) -> (rcpt_actions, eom_action)

Every read is bounded by a timeout; the caller closes the client."""

import itertools
import socket

_seq = itertools.count(1)


class PolicyClient:
    def __init__(self, port=None, unix=None, timeout=10):
        if unix:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(timeout)
            self.s.connect(unix)
        else:
            self.s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.buf = b''

    def ask(self, **attrs):
        req = {'request': 'smtpd_access_policy', 'protocol_name': 'ESMTP'}
        req.update(attrs)
        data = ''.join('%s=%s\n' % (k, v) for k, v in req.items()) + '\n'
        self.s.sendall(data.encode())
        while b'\n\n' not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError('policy server closed the connection')
            self.buf += chunk
        reply, self.buf = self.buf.split(b'\n\n', 1)
        for line in reply.decode().split('\n'):
            if line.startswith('action='):
                return line[7:]
        raise ValueError('no action in %r' % reply)

    def transaction(self, rcpts=('rcpt@example.org',), size=1000, sender='alice@example.net',
                    client_address='192.0.2.10', sasl_username='', **extra):
        inst = 'test.%d' % next(_seq)
        base = dict(client_address=client_address, client_name='unknown',
                    reverse_client_name='unknown', helo_name='client.example',
                    sender=sender, sasl_username=sasl_username, instance=inst)
        base.update(extra)
        out = []
        for r in rcpts:
            out.append(self.ask(protocol_state='RCPT', recipient=r, recipient_count='0',
                                size=str(size), **base))
        ok = [r for r, a in zip(rcpts, out) if not _refused(a)]
        if not ok:
            return out, None
        eom = self.ask(protocol_state='END-OF-MESSAGE',
                       recipient=ok[0] if len(ok) == 1 else '',
                       recipient_count=str(len(ok)), size=str(size), **base)
        return out, eom

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _refused(action):
    a = action.upper()
    return a[:1] in ('4', '5') or a.startswith(('REJECT', 'DEFER'))


refused = _refused


def start_policyd(tmp, name, settings, builddir, extra_argv=()):
    """Writes TMP/NAME.conf from the settings dict (plus policyd_listen on a
    free port and plugin_directory) and starts policyd -f on it (sifttest.Proc,
    stopped by PID). Returns (proc, port)."""
    import os
    import sifttest
    port = sifttest.free_port()
    conf = os.path.join(tmp, name + '.conf')
    s = {'plugin_directory': os.path.join(builddir, 'plugins'),
         'policyd_listen': 'inet:127.0.0.1:%d' % port}
    s.update(settings)
    with open(conf, 'w') as f:
        for k, v in s.items():
            f.write('%s = %s\n' % (k, v))
    p = sifttest.Proc([os.path.join(builddir, 'policyd', 'policyd'), '-f', '-c', conf]
                      + list(extra_argv), log=os.path.join(tmp, name + '.log'), port=port,
                      name=name)
    p.start()
    p.conf = conf
    return p, port
