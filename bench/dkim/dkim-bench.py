#!/usr/bin/python3
"""DKIM through Postfix: filterd's dkim plugin side by side with the OpenDKIM
milter (Debian package `opendkim`), on the same corpus (bench/corpus.py),
the same keys and the same private Postfix, over inet and unix sockets;
plus signatures per second on one core outside Postfix (sigrate.c).

Rows (each at concurrency 1 and 8, persistent SMTP sessions, Postfix hands
mail to discard(8); bench/postfix-bench.py's load generator):
    postfix alone                       baseline, measured in the same run
    floor                               filterd with no plugin: Postfix's own
                                        cost of a milter plus filterd's
    sift|opendkim  sign rsa-2048        originating (milter_macro_daemon_name
    sift|opendkim  sign ed25519         = ORIGINATING), From domain example.test
    sift|opendkim  verify               inbound; the corpus is pre-signed with
                                        dkimpy (rsa-2048), keys cached
Columns: msg/s, p50/p99 latency, filter CPU per message (user+system time
of the filter process over the level / messages), filter RSS max.

Keys for verification come from a real DNS server on 127.0.0.1 for filterd
(dns_servers) and from OpenDKIM's TestPublicKeys file for opendkim (Debian's
libopendkim uses the system resolver, which cannot be pointed at a port);
both verify every signature.

Run as root: /usr/bin/python3 bench/dkim/dkim-bench.py [--count 1000]
"""

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'tests', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..'))
import sifttest  # noqa: E402
import corpus  # noqa: E402
import dnsserver  # noqa: E402

spec = importlib.util.spec_from_file_location('pfbench', os.path.join(HERE, '..', 'postfix-bench.py'))
pfbench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pfbench)

DOMAIN = 'example.test'


def cpu_ticks(pid):
    with open('/proc/%d/stat' % pid) as f:
        parts = f.read().rsplit(')', 1)[1].split()
    return int(parts[11]) + int(parts[12])  # utime + stime (all threads)


def genkeys(root, builddir):
    out = {}
    for sel, typ in (('rsa', 'rsa'), ('ed', 'ed25519')):
        txt = subprocess.run([os.path.join(builddir, 'tools', 'siftctl'), 'dkim', 'genkey', '-d', DOMAIN, '-s',
                              sel, '-t', typ, '-D', root], check=True, stdout=subprocess.PIPE, text=True).stdout
        out[sel] = (os.path.join(root, '%s.%s.key' % (DOMAIN, sel)),
                    ''.join(re.findall(r'"([^"]*)"', txt.splitlines()[-1])))
    return out


def presign(msgs, key, sel='rsa'):
    import dkim
    res = []
    for m in msgs:
        sig = dkim.sign(m.data, sel.encode(), DOMAIN.encode(), key, canonicalize=(b'relaxed', b'simple'))
        res.append(m._replace(data=sig + m.data))
    return res


def filterd_proc(root, builddir, listen, wait, dns_port, keys, mode, opts=()):
    conf = os.path.join(root, 'filterd-%s.conf' % mode)
    plugins = '' if mode == 'floor' else 'dkim'
    with open(os.path.join(root, 'keytable'), 'w') as f:
        f.write('rsa %s:rsa:%s\ned %s:ed:%s\n' % (DOMAIN, keys['rsa'][0], DOMAIN, keys['ed'][0]))
    with open(conf, 'w') as f:
        f.write('filterd_listen = %s\nfilterd_user = root\nfilterd_socket_group = postfix\n'
                'plugin_directory = %s/plugins\ninbound_plugins = %s\noriginating_plugins = %s\n'
                'dns_servers = 127.0.0.1:%d\nauthserv_id = mx.sift.test\n'
                'dkim_key_table = texthash:%s/keytable\n'
                'dkim_signing_table = inline:{ %s=%s }\n' % (
                    listen, builddir, plugins, plugins, dns_port, root, DOMAIN, 'ed' if mode == 'sign-ed' else 'rsa'))
    argv = [os.path.join(builddir, 'filterd', 'filterd'), '-f', '-c', conf]
    for o in opts:
        argv += ['-o', o]
    return sifttest.Proc(argv, log=os.path.join(root, 'filterd-%s.log' % mode), umask=0, **wait)


def opendkim_proc(root, listen, wait, keys, mode):
    conf = os.path.join(root, 'opendkim-%s.conf' % mode)
    pub = os.path.join(root, 'pubkeys')
    with open(pub, 'w') as f:
        for sel in ('rsa', 'ed'):
            f.write('%s._domainkey.%s %s\n' % (sel, DOMAIN, keys[sel][1]))
    sel = 'ed' if mode == 'sign-ed' else 'rsa'
    sock = listen.replace('unix:', 'local:') if listen.startswith('unix:') else \
        'inet:%s@127.0.0.1' % listen.rsplit(':', 1)[1]
    with open(conf, 'w') as f:
        f.write('Syslog no\nMode %s\nSocket %s\nUMask 000\nDomain %s\nSelector %s\nKeyFile %s\n'
                'SignatureAlgorithm %s\nCanonicalization relaxed/simple\nRequireSafeKeys no\n'
                'TestPublicKeys %s\nInternalHosts 127.0.0.1\nAuthservID mx.sift.test\n'
                'OversignHeaders From,To,Cc,Subject,Date,Reply-To,Content-Type,MIME-Version\n'
                'SignatureTTL 864000\nUserID root\nPidFile %s/opendkim.pid\n' % (
                    's' if mode.startswith('sign') else 'v', sock, DOMAIN, sel, keys[sel][0],
                    'ed25519-sha256' if sel == 'ed' else 'rsa-sha256', pub, root))
    return sifttest.Proc(['/usr/sbin/opendkim', '-f', '-x', conf], log=os.path.join(root, 'opendkim.log'),
                         umask=0, **wait)


def run_row(a, root, name, filt, mode, msgs, results):
    for conc in a.levels:
        main = {}
        pfkw = {}
        proc = None
        if filt:
            if a.socket == 'unix':
                sock = os.path.join(root, '%s.sock' % filt)
                if os.path.exists(sock):
                    os.unlink(sock)
                listen, wait = 'unix:' + sock, {'unix': sock}
            else:
                port = sifttest.free_port()
                listen, wait = 'inet:127.0.0.1:%d' % port, {'port': port}
            proc = filterd_proc(root, a.builddir, listen, wait, a.dns.port, a.keys, mode, a.filterd_opts) if filt == 'sift' else \
                opendkim_proc(root, listen, wait, a.keys, mode)
            proc.start()
            pfkw['milters'] = [listen]
        if mode.startswith('sign'):
            main['milter_macro_daemon_name'] = 'ORIGINATING'
        pf = sifttest.Postfix(root=os.path.join(root, 'pf-%s-%s-%d' % (name.replace(' ', '_'), a.socket, conc)),
                              delivery='discard', main=main, keep=False, **pfkw)
        try:
            pf.start()
            pfbench.measure(pf.port, msgs, conc, max(a.warmup, conc), 'thread')
            pfbench.wait_drained(pf)
            c0 = cpu_ticks(proc.pid) if proc else 0
            with pfbench.RssSampler(proc.pid if proc else None) as rs:
                row = pfbench.measure(pf.port, msgs, conc, a.count, 'thread')
            c1 = cpu_ticks(proc.pid) if proc else 0
            pfbench.wait_drained(pf)
            row['cpu_ms_per_msg'] = (c1 - c0) * 1000.0 / os.sysconf('SC_CLK_TCK') / max(1, row['accepted']) \
                if proc else None
            row['rss_max_kb'] = rs.max_rss or None
            row['name'] = name
            row['socket'] = a.socket if filt else '-'
            results.append(row)
            print('%-26s %-5s c=%d: %7.1f msg/s p50 %6.1f ms p99 %6.1f ms cpu %s ms/msg errors %d' % (
                name, row['socket'], conc, row['msg_per_s'], row['p50_ms'], row['p99_ms'],
                '%.2f' % row['cpu_ms_per_msg'] if row['cpu_ms_per_msg'] is not None else '-', row['errors']),
                file=sys.stderr)
            if row['errors']:
                print('  first error: %s' % row['first_error'], file=sys.stderr)
        finally:
            pf.cleanup()
            if proc:
                proc.stop()


def sigrate(a, root, msgs):
    exe = os.path.join(root, 'sigrate')
    flags = subprocess.run(['pkg-config', '--cflags', '--libs', 'opendkim'], check=True, stdout=subprocess.PIPE,
                           text=True).stdout.split()
    dk = os.path.join(HERE, '..', '..', 'plugins', 'dkim')
    subprocess.run(['cc', '-O2', '-I', dk, '-o', exe, os.path.join(HERE, 'sigrate.c'), os.path.join(dk, 'dkimsign.c')]
                   + flags + ['-lcrypto'], check=True)
    files = []
    for i, m in enumerate(msgs[:40]):
        p = os.path.join(root, 'm%03d.eml' % i)
        with open(p, 'wb') as f:
            f.write(m.data)
        files.append(p)
    out = {}
    for sel, typ in (('rsa', 'rsa'), ('ed', 'ed25519')):
        env = dict(os.environ, SIGRATE_RECORD=a.keys[sel][1])
        r = subprocess.run([exe, a.keys[sel][0], typ, str(a.sigrate_seconds)] + files, env=env,
                           stdout=subprocess.PIPE, text=True)
        out[typ] = r.stdout.strip()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--count', type=int, default=1000)
    ap.add_argument('--warmup', type=int, default=40)
    ap.add_argument('--concurrency', default='1,8')
    ap.add_argument('--sockets', default='unix,inet')
    ap.add_argument('--rows', default='alone,floor,sift-sign-rsa,opendkim-sign-rsa,sift-sign-ed,opendkim-sign-ed,'
                    'sift-verify,opendkim-verify')
    ap.add_argument('--sigrate-seconds', type=float, default=3.0)
    ap.add_argument('-o', dest='filterd_opts', action='append', default=[],
                    help='NAME=VALUE setting for filterd (e.g. filterd_engine=native); repeatable')
    ap.add_argument('--builddir', default=sifttest.builddir())
    a = ap.parse_args()
    a.levels = [int(x) for x in a.concurrency.split(',')]
    root = tempfile.mkdtemp(prefix='sift-dkim-bench-')
    os.chmod(root, 0o755)
    a.keys = genkeys(root, a.builddir)
    a.dns = dnsserver.DNSServer({DOMAIN: [{'name': '%s._domainkey' % s, 'type': 'TXT', 'ttl': 3600,
                                           'data': a.keys[s][1]} for s in ('rsa', 'ed')]})
    a.dns.start()
    msgs = corpus.generate(400, seed=1)
    signed = presign(msgs, open(a.keys['rsa'][0], 'rb').read())
    results = []
    try:
        rows = a.rows.split(',')
        if 'alone' in rows:
            a.socket = 'unix'
            run_row(a, root, 'postfix alone', None, 'sign', msgs, results)
        for sock in a.sockets.split(','):
            a.socket = sock
            for r in rows:
                if r == 'alone':
                    continue
                if r == 'floor':
                    run_row(a, root, 'sift, no plugin (floor)', 'sift', 'floor', msgs, results)
                    continue
                filt, mode = r.split('-', 1)
                mode = {'sign-rsa': 'sign-rsa', 'sign-ed': 'sign-ed', 'verify': 'verify'}[mode]
                run_row(a, root, '%s %s' % (filt, mode), filt, mode,
                        signed if mode == 'verify' else msgs, results)
        rates = sigrate(a, root, msgs)
    finally:
        a.dns.stop()
        shutil.rmtree(root, ignore_errors=True)
    print('DKIM benchmark: corpus seed 1 (~15 KB average), %d messages per level, %d CPUs, Postfix %s' % (
        a.count, os.cpu_count(), subprocess.run(['postconf', '-dh', 'mail_version'], capture_output=True,
                                                text=True).stdout.strip()))
    hdr = '%-26s %-6s %5s %9s %8s %8s %12s %9s %6s' % ('row', 'socket', 'conc', 'msg/s', 'p50 ms', 'p99 ms',
                                                      'cpu ms/msg', 'RSS MB', 'errors')
    print(hdr)
    print('-' * len(hdr))
    for r in results:
        print('%-26s %-6s %5d %9.1f %8.1f %8.1f %12s %9s %6d' % (
            r['name'], r['socket'], r['concurrency'], r['msg_per_s'], r['p50_ms'], r['p99_ms'],
            '%.2f' % r['cpu_ms_per_msg'] if r['cpu_ms_per_msg'] is not None else '-',
            '%.1f' % (r['rss_max_kb'] / 1024.0) if r['rss_max_kb'] else '-', r['errors']))
    print('one core, outside Postfix (sign: Sift\'s signer; sign-libopendkim: libopendkim, key parsed per message'
          ' as OpenDKIM does; verify: libopendkim as the plugin configures it):')
    for k, v in rates.items():
        print('  %s: %s' % (k, v.replace('\n', '; ')))
    return 1 if any(r['errors'] for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
