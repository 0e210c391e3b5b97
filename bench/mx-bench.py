#!/usr/bin/python3
"""What an MX sees: a private Postfix receiving one SMTP session per
message, alone and with each filter, side by side in one run.

Load: bench/corpus.py mx_corpus (50% ~2.6 KB text, 35% ~20 KB
multipart/alternative HTML, 15% ~200 KB with a base64 attachment; 38 KB on
average), every message DKIM-signed (rsa-2048, dkimpy) for example.test
except in the originating rows, which get them unsigned. Each message is
its own SMTP session (connect, EHLO, XCLIENT ADDR=192.0.2.N, EHLO, MAIL,
RCPT, DATA, QUIT; Postfix has smtpd_authorized_xclient_hosts =
127.0.0.0/8), at concurrency 1 and 8 (one client process per session
slot). Postfix relays accepted mail to a local smtp-sink. Milters listen
on unix sockets (rspamd's proxy: 127.0.0.1, it cannot take a unix socket
here). A local DNS server (tests/lib/dnsserver.py) serves example.test:
SPF "v=spf1 ip4:192.0.2.0/24 -all" and the DKIM key. Everything is on
127.0.0.0/8; every process started here is stopped by its PID.

Rows (--rows, comma-separated; default all but spam-unscored):
    alone            Postfix alone
    floor            filterd, no plugin
    null             bench/null-milter.c: libmilter, CONTINUE at end of
                     message, every other step negotiated away
    dkim-sign        filterd dkim, signing rsa-2048 (ORIGINATING)
    opendkim-sign    OpenDKIM signing with the same key (ORIGINATING)
    dkim-verify      filterd dkim, verifying (key from the local DNS)
    opendkim-verify  OpenDKIM verifying (key from TestPublicKeys)
    clamav           filterd clamav, libclamav with a small EICAR database
    clamav-milter    clamav-milter + clamd, the same database
    spam             filterd spam, stock SpamAssassin rules, no kill level
    spam-unscored    the same with spam_max_size = 1k: every message is
                     received whole and none is scored (what the spam row
                     costs before its scoring); only when --rows names it
    spamass-milter   spamass-milter + spamd (2 children, no Bayes, no RBL)
    inbound          filterd spf + dkim (verify) + clamav + spam
    rspamd           rspamd's proxy worker as a milter, local checks only
    originating      filterd dkim (sign) + clamav (ORIGINATING)
A row whose program is not installed (or not built) is reported as such
and skipped.

All filters are started once; --rounds N (default 3) runs every row at
every level N times, interleaved (round 1: all rows, round 2: ...), and
the medians are reported. Columns per row and level:
    msg/s        accepted messages / wall time of the level (median)
    x alone      msg/s / Postfix alone's msg/s in the same run
    p50, p99     latency of one SMTP session, connect to the reply to QUIT
    CPU ms/msg   utime+stime of all the filter's processes over the level
                 / messages accepted (median)
    RSS MB       sum of VmRSS of the filter's processes, maximum sampled
                 during the level (every 0.1 s), maximum over rounds
    PSS MB       sum of Pss of those processes at the end of the level
                 (shared pages split between them: rspamd, spamd children)
    errors       sessions that did not end with 250 after the data
and a second table, the machine's CPU per message (where throughput at
concurrency 8 comes from when every CPU is busy):
    busy         share of all CPUs busy over the level (/proc/stat)
    machine      busy CPU time of the whole machine / messages accepted
    client       the load generator's processes (getrusage of its children)
    filter       the filter's processes (the CPU ms/msg column above)
    Postfix+rest machine - client - filter: Postfix's processes, smtp-sink,
                 the DNS server, the kernel's share of the loopback traffic
    budget       machine CPU of Postfix alone / machine CPU of the row: with
                 every CPU busy, msg/s is (CPUs / machine CPU per message),
                 so this is the "x alone" the CPU budget allows

Above the tables, when build/bench/kernel-entry is built: what a system
call costs on this machine, and how much more each page touched right
after a kernel entry costs (not near 0: every entry flushes the TLB, and
a filter that shares its CPUs with Postfix's processes pays for it).

Run as root:  /usr/bin/python3 bench/mx-bench.py [--rounds 3] [--count 120]
              [--rows alone,floor,...] [--concurrency 1,8] [--json FILE]
"""

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
sys.path.insert(0, HERE)
import sifttest  # noqa: E402
import corpus  # noqa: E402
import dnsserver  # noqa: E402


def _load(name, *path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, *path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


pb = _load('postfix_bench', 'postfix-bench.py')
dkb = _load('dkim_bench', 'dkim', 'dkim-bench.py')
cvb = _load('clamav_bench', 'clamav', 'bench.py')
spb = _load('spam_bench', 'spam', 'bench.py')
cvlib = cvb.cvlib

DOMAIN = dkb.DOMAIN  # example.test: the corpus' senders
SPAM_RULES = '/usr/share/spamassassin /etc/spamassassin'

ROWS = [
    ('alone', 'Postfix alone'),
    ('floor', 'filterd, no plugin'),
    ('null', 'null-milter (libmilter, does nothing)'),
    ('dkim-sign', 'filterd dkim sign (rsa-2048)'),
    ('opendkim-sign', 'opendkim sign (rsa-2048)'),
    ('dkim-verify', 'filterd dkim verify'),
    ('opendkim-verify', 'opendkim verify'),
    ('clamav', 'filterd clamav (libclamav, EICAR db)'),
    ('clamav-milter', 'clamav-milter + clamd'),
    ('spam', 'filterd spam (stock SA rules)'),
    ('spam-unscored', 'filterd spam, every message over spam_max_size'),
    ('spamass-milter', 'spamass-milter + spamd'),
    ('inbound', 'filterd inbound (spf, dkim, clamav, spam)'),
    ('rspamd', 'rspamd proxy milter (local checks)'),
    ('originating', 'filterd originating (dkim sign, clamav)'),
]
ORIGINATING = {'dkim-sign', 'opendkim-sign', 'originating'}
# Rows run only when --rows names them (they explain another row).
EXTRA = {'spam-unscored'}
NEEDS = {
    'opendkim-sign': ['/usr/sbin/opendkim'], 'opendkim-verify': ['/usr/sbin/opendkim'],
    'clamav-milter': ['/usr/sbin/clamav-milter', '/usr/sbin/clamd'],
    'spamass-milter': ['/usr/sbin/spamass-milter', '/usr/sbin/spamd'],
    'rspamd': ['/usr/bin/rspamd'],
}
# Messages per level for rows far slower than the rest (the whole run stays
# within ~15 minutes).
SLOW_COUNT = {'spamass-milter': 12}


def tree_pids(pid):
    """pid and all its descendants (by /proc/*/stat parent links)."""
    parent = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open('/proc/%s/stat' % d) as f:
                    parent[int(d)] = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return out


class Filter:
    """A started milter: the Postfix endpoint, the processes to stop, and
    the process trees whose CPU and memory count as the filter's."""

    def __init__(self, milter, procs, roots=None, stop=None):
        self.milter = milter
        self.procs = procs
        self.roots = roots if roots is not None else [p.pid for p in procs]
        self._stop = stop

    def pids(self):
        return [p for r in self.roots for p in tree_pids(r)]

    def stop(self):
        if self._stop:
            self._stop()
        for p in reversed(self.procs):
            p.stop()


class Lab:
    def __init__(self, a, root):
        self.a = a
        self.root = root
        self.stoppers = []

    def sub(self, name):
        d = os.path.join(self.root, name)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        return d

    def setup_common(self):
        self.keys = dkb.genkeys(self.sub('keys'), self.a.builddir)
        rsa_txt = self.keys['rsa'][1]
        # example.test as a sending domain: SPF, the DKIM key, an MX, and
        # forward-confirmed names for the clients (192.0.2.N <-> mta-N) and
        # their HELO names, so that every lookup gets an answer.
        hosts = [{'name': 'mta-%d' % n, 'type': 'A', 'data': '192.0.2.%d' % n}
                 for n in range(1, 251)]
        hosts += [{'name': 'client%d' % n, 'type': 'A', 'data': '192.0.2.%d' % (n + 1)}
                  for n in range(50)]
        self.dns = dnsserver.DNSServer({
            DOMAIN: [
                {'name': '@', 'type': 'TXT', 'ttl': 3600, 'data': 'v=spf1 ip4:192.0.2.0/24 -all'},
                {'name': '@', 'type': 'MX', 'data': '10 mx.example.test'},
                {'name': '@', 'type': 'A', 'data': '192.0.2.250'},
                {'name': 'mx', 'type': 'A', 'data': '192.0.2.250'},
                {'name': 'rsa._domainkey', 'type': 'TXT', 'ttl': 3600, 'data': rsa_txt},
                {'name': 'ed._domainkey', 'type': 'TXT', 'ttl': 3600,
                 'data': self.keys['ed'][1]}] + hosts,
            '2.0.192.in-addr.arpa': [{'name': '%d' % n, 'type': 'PTR',
                                      'data': 'mta-%d.example.test' % n} for n in range(1, 251)]})
        self.dns.start()
        self.stoppers.append(self.dns.stop)
        self.dbdir = os.path.join(self.root, 'clamav-db')
        cvlib.make_db(self.dbdir)
        with open(os.path.join(self.root, 'keytable'), 'w') as f:
            f.write('rsa %s:rsa:%s\n' % (DOMAIN, self.keys['rsa'][0]))

    def filterd(self, name, plugins, opts=()):
        d = self.sub(name)
        ns = argparse.Namespace(mode='filterd', filterd_socket='unix', plugins=plugins,
                                daemon_opt=['dns_servers=127.0.0.1:%d' % self.dns.port,
                                            'authserv_id=mx.sift.test',
                                            'myhostname=mx.sift.test'] + list(opts))
        p, pfkw = pb.start_daemon(ns, d, self.a.builddir, start_timeout=900)
        if 'spam' in plugins.split():
            wait_hyperscan(p)
        return Filter(pfkw['milters'][0], [p])

    def dkim_opts(self):
        return ['dkim_key_table=texthash:%s/keytable' % self.root,
                'dkim_signing_table=inline:{ %s=rsa }' % DOMAIN]

    def clamav_opts(self):
        return ['clamav_database_directory=' + self.dbdir, 'clamav_ready_wait=60s']

    def spam_compile(self):
        """Fills the spam cache (siftctl spam compile), so that filterd
        starts on Hyperscan at once; fast when the cache is already full."""
        conf = os.path.join(self.root, 'spam-compile.conf')
        with open(conf, 'w') as f:
            f.write('plugin_directory = %s/plugins\ninbound_plugins = spam\n' % self.a.builddir +
                    ''.join('%s = %s\n' % tuple(o.split('=', 1)) for o in self.spam_opts()))
        subprocess.run([os.path.join(self.a.builddir, 'tools', 'siftctl'), '-c', conf, 'spam',
                        'compile'], check=True, timeout=3600, stdout=subprocess.DEVNULL)

    def spam_opts(self, max_size='10m'):
        os.makedirs(self.a.cache, mode=0o700, exist_ok=True)
        return ['spam_rules=' + SPAM_RULES, 'spam_cache_directory=' + self.a.cache,
                'spam_kill_level=none', 'spam_max_size=' + max_size]

    def opendkim(self, mode):
        d = self.sub('opendkim-' + mode)
        sock = os.path.join(d, 'opendkim.sock')
        p = dkb.opendkim_proc(d, 'unix:' + sock, {'unix': sock}, self.keys,
                              'sign-rsa' if mode == 'sign' else 'verify')
        # The clients present 192.0.2.N (XCLIENT): internal for signing.
        conf = os.path.join(d, 'opendkim-%s.conf' % ('sign-rsa' if mode == 'sign' else 'verify'))
        with open(conf) as f:
            text = f.read()
        if mode == 'sign':
            text = text.replace('InternalHosts 127.0.0.1', 'InternalHosts 127.0.0.1,192.0.2.0/24')
        with open(conf, 'w') as f:
            f.write(text)
        p.start()
        return Filter('unix:' + sock, [p])

    def clamav_milter(self):
        d = self.sub('clamav-milter')
        clamd = cvlib.Clamd(os.path.join(d, 'clamd'), self.dbdir, max_threads=16).start()
        p, listen = cvb.start_milter(d, 'clamav-milter', 'unix', clamd)
        return Filter(listen, [p], roots=[p.pid, clamd.proc.pid], stop=clamd.stop)

    def spamass_milter(self):
        d = self.sub('spamass-milter')
        sp, sport = spb.spamd_start(d, 2)
        sock = os.path.join(d, 'spamass.sock')
        sm = sifttest.Proc(['/usr/sbin/spamass-milter', '-p', 'unix:' + sock, '-m', '--', '-d',
                            '127.0.0.1', '-p', str(sport)],
                           log=os.path.join(d, 'spamass-milter.log'), unix=sock, umask=0,
                           name='spamass-milter')
        try:
            sm.start()
        except Exception:
            sp.stop()
            raise
        return Filter('unix:' + sock, [sp, sm])

    def rspamd(self):
        rs = spb.Rspamd(self.sub('rspamd'), normal_count=1, proxy_count=2, dns_port=self.dns.port)
        return Filter('inet:127.0.0.1:%d' % rs.proxy, [rs.p])

    def start(self, row):
        """Starts the filter of `row`; None for Postfix alone."""
        if row == 'alone':
            return None
        if row == 'floor':
            return self.filterd(row, '')
        if row == 'null':
            sock = os.path.join(self.sub('null'), 'null.sock')
            p = sifttest.Proc([self.null_milter, '-p', 'unix:' + sock],
                              log=os.path.join(self.root, 'null', 'null.log'), unix=sock, umask=0,
                              name='null-milter')
            p.start()
            return Filter('unix:' + sock, [p])
        if row in ('dkim-sign', 'dkim-verify'):
            return self.filterd(row, 'dkim', self.dkim_opts())
        if row == 'clamav':
            return self.filterd(row, 'clamav', self.clamav_opts())
        if row == 'spam':
            return self.filterd(row, 'spam', self.spam_opts())
        if row == 'spam-unscored':
            return self.filterd(row, 'spam', self.spam_opts('1k'))
        if row == 'inbound':
            return self.filterd(row, 'spf dkim clamav spam', self.dkim_opts() +
                                self.clamav_opts() + self.spam_opts())
        if row == 'originating':
            return self.filterd(row, 'dkim clamav', self.dkim_opts() + self.clamav_opts())
        if row.startswith('opendkim-'):
            return self.opendkim(row.split('-', 1)[1])
        if row == 'clamav-milter':
            return self.clamav_milter()
        if row == 'spamass-milter':
            return self.spamass_milter()
        if row == 'rspamd':
            return self.rspamd()
        raise ValueError(row)

    def stop(self):
        for s in reversed(self.stoppers):
            s()


def wait_hyperscan(proc, timeout=1800):
    """Waits until a filterd with the spam plugin matches with Hyperscan
    (when it had to compile in the background)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        log = proc.log()
        if 'in the background' not in log or 'now in use' in log or 'stays on PCRE2' in log:
            return
        time.sleep(1)
    raise RuntimeError('filterd: Hyperscan databases not ready after %d s' % timeout)


def missing(row, builddir):
    if row == 'null':
        exe = os.path.join(builddir, 'bench', 'null-milter')
        return None if os.access(exe, os.X_OK) else 'not built (libmilter-dev)'
    for exe in NEEDS.get(row, []):
        if not os.access(exe, os.X_OK):
            return 'not installed (%s)' % exe
    return None


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measure_level(a, pf, filt, row, msgs, conc):
    run = pb.session_fn(per_message=True, xclient=True)
    count = SLOW_COUNT.get(row, a.count)
    pb.measure(pf.port, msgs, conc, max(a.warmup, conc), 'process', run)
    pb.wait_drained(pf)
    pids = filt.pids() if filt else []
    c0 = pb.cpu_seconds(pids)
    m0, k0 = sifttest.machine_cpu(), children_cpu()
    with pb.RssSampler(pids or None) as rs:
        r = pb.measure(pf.port, msgs, conc, count, 'process', run)
    m1, k1 = sifttest.machine_cpu(), children_cpu()
    n = max(1, r['accepted'])
    r['machine_ms_per_msg'] = 1000.0 * (m1[0] - m0[0]) / n
    r['busy'] = (m1[0] - m0[0]) / max(1e-9, m1[1] - m0[1])
    r['client_ms_per_msg'] = 1000.0 * (k1 - k0) / n
    r['cpu_ms_per_msg'] = 1000.0 * (pb.cpu_seconds(pids) - c0) / n if filt else None
    r['rss_max_kb'] = rs.max_rss or None
    r['pss_kb'] = pb.pss_kb(filt.pids()) if filt else None
    r['drain_s'] = pb.wait_drained(pf)
    return r


def summarise(row, conc, runs):
    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    cpus = [r['cpu_ms_per_msg'] for r in runs if r['cpu_ms_per_msg'] is not None]
    return {
        'row': row, 'concurrency': conc, 'rounds': len(runs), 'messages': runs[0]['messages'],
        'msg_per_s': med('msg_per_s'), 'all_msg_per_s': [round(r['msg_per_s'], 1) for r in runs],
        'p50_ms': med('p50_ms'), 'p99_ms': med('p99_ms'),
        'cpu_ms_per_msg': statistics.median(cpus) if cpus else None,
        'all_cpu_ms_per_msg': [round(c, 3) for c in cpus],
        'rss_max_kb': max((r['rss_max_kb'] or 0) for r in runs) or None,
        'pss_kb': max((r['pss_kb'] or 0) for r in runs) or None,
        'machine_ms_per_msg': med('machine_ms_per_msg'), 'busy': med('busy'),
        'client_ms_per_msg': med('client_ms_per_msg'),
        'errors': sum(r['errors'] for r in runs),
        'first_error': next((r['first_error'] for r in runs if r['first_error']), None),
    }


def table(rows, skipped, levels):
    alone = {r['concurrency']: r['msg_per_s'] for r in rows if r['row'] == 'alone'}
    names = dict(ROWS)
    out = ['| row | conc | msg/s | x alone | p50 ms | p99 ms | CPU ms/msg | RSS MB | PSS MB | errors |',
           '|---|---|---|---|---|---|---|---|---|---|']

    def f(v, fmt):
        return fmt % v if v is not None else '-'
    for r in rows:
        base = alone.get(r['concurrency'])
        out.append('| %s | %d | %.1f | %s | %.1f | %.1f | %s | %s | %s | %d |' % (
            names[r['row']], r['concurrency'], r['msg_per_s'],
            '%.2f' % (r['msg_per_s'] / base) if base else '-', r['p50_ms'], r['p99_ms'],
            f(r['cpu_ms_per_msg'], '%.2f'),
            f(r['rss_max_kb'] and r['rss_max_kb'] / 1024.0, '%.0f'),
            f(r['pss_kb'] and r['pss_kb'] / 1024.0, '%.0f'), r['errors']))
    for row, why in skipped:
        out.append('| %s | %s | %s |  |  |  |  |  |  |  |' % (
            names[row], ','.join(map(str, levels)), why))
    return '\n'.join(out)


def cpu_table(rows):
    """The machine's CPU per message, row by row (see the docstring)."""
    alone = {r['concurrency']: r for r in rows if r['row'] == 'alone'}
    names = dict(ROWS)
    out = ['| row | conc | busy | machine ms/msg | client | filter | Postfix+rest | budget | x alone |',
           '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        a = alone.get(r['concurrency'])
        filt = r['cpu_ms_per_msg'] or 0.0
        rest = r['machine_ms_per_msg'] - r['client_ms_per_msg'] - filt
        out.append('| %s | %d | %.0f%% | %.2f | %.2f | %s | %.2f | %s | %s |' % (
            names[r['row']], r['concurrency'], 100 * r['busy'], r['machine_ms_per_msg'],
            r['client_ms_per_msg'], '%.2f' % filt if r['cpu_ms_per_msg'] is not None else '-', rest,
            '%.2f' % (a['machine_ms_per_msg'] / r['machine_ms_per_msg']) if a else '-',
            '%.2f' % (r['msg_per_s'] / a['msg_per_s']) if a else '-'))
    return '\n'.join(out)


def kernel_entry(builddir):
    """bench/kernel-entry.c on this machine: (ns a system call, ns more a
    page touched right after one), or None when it is not built. Where
    the second is not near 0, every kernel entry flushes the TLB, and a
    filter sharing its CPUs with Postfix's processes pays for it
    (bench/spam/RESULTS.md, "The machine's share")."""
    exe = os.path.join(builddir, 'bench', 'kernel-entry')
    if not os.access(exe, os.X_OK):
        return None
    out = subprocess.run([exe], capture_output=True, text=True, timeout=60).stdout.splitlines()
    try:
        sys_ns = float(out[0].rsplit(':', 1)[1].split()[0])
        page_ns = float(out[-1].split()[-1])
    except (IndexError, ValueError):
        return None
    return sys_ns, page_ns


def run_rounds(a, lab, pf, filters, rows, levels, corpora):
    runs = {}
    for rnd in range(a.rounds):
        for row in rows:
            filt = filters.get(row)
            pf.set_main(smtpd_milters=filt.milter if filt else '',
                        milter_macro_daemon_name='ORIGINATING' if row in ORIGINATING
                        else '$myhostname')
            pf.reload()
            for conc in levels:
                r = measure_level(a, pf, filt, row, corpora[row in ORIGINATING], conc)
                runs.setdefault((row, conc), []).append(r)
                print('r%d %-16s c%-2d %7.1f msg/s  p50 %6.1f ms  p99 %7.1f ms  cpu %s ms/msg  '
                      'machine %.2f ms/msg (busy %.0f%%)  errors %d' % (
                          rnd, row, conc, r['msg_per_s'], r['p50_ms'], r['p99_ms'],
                          '%.2f' % r['cpu_ms_per_msg'] if r['cpu_ms_per_msg'] is not None else '-',
                          r['machine_ms_per_msg'], 100 * r['busy'], r['errors']),
                      file=sys.stderr, flush=True)
                if r['first_error']:
                    print('   first error: %s' % r['first_error'], file=sys.stderr, flush=True)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--rows', default=','.join(r for r, _ in ROWS if r not in EXTRA))
    ap.add_argument('--concurrency', default='1,8')
    ap.add_argument('--rounds', type=int, default=3, help='interleaved rounds (medians)')
    ap.add_argument('--count', type=int, default=120,
                    help='messages per level and round (spamass-milter: %d)' %
                    SLOW_COUNT['spamass-milter'])
    ap.add_argument('--warmup', type=int, default=16, help='warm-up messages per level')
    ap.add_argument('--corpus', type=int, default=120, help='distinct messages in the corpus')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--cache', default='/var/tmp/sift-mx-bench-spam-cache',
                    help='spam_cache_directory (kept between runs: Hyperscan compiles once)')
    ap.add_argument('--builddir', default=sifttest.builddir())
    ap.add_argument('--json', metavar='FILE')
    ap.add_argument('--keep', action='store_true')
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit('mx-bench: run as root (private Postfix instance)')
    levels = [int(x) for x in a.concurrency.split(',') if x.strip()]
    known = [r for r, _ in ROWS]
    wanted = [r for r in a.rows.split(',') if r]
    for r in wanted:
        if r not in known:
            sys.exit('mx-bench: unknown row %s (known: %s)' % (r, ', '.join(known)))
    wanted = [r for r in known if r in wanted]
    skipped = [(r, missing(r, a.builddir)) for r in wanted if missing(r, a.builddir)]
    rows = [r for r in wanted if not missing(r, a.builddir)]

    t_start = time.monotonic()
    root = tempfile.mkdtemp(prefix='sift-mx-bench-')
    os.chmod(root, 0o755)
    lab = Lab(a, root)
    lab.null_milter = os.path.join(a.builddir, 'bench', 'null-milter')
    filters, procs, pf = {}, [], None
    try:
        lab.setup_common()
        plain = corpus.mx_corpus(a.corpus, a.seed)
        signed = dkb.presign(plain, open(lab.keys['rsa'][0], 'rb').read())
        corpora = {False: signed, True: plain}
        if {'spam', 'spam-unscored', 'inbound'} & set(rows):
            t0 = time.monotonic()
            lab.spam_compile()
            print('spam cache ready in %.1f s' % (time.monotonic() - t0), file=sys.stderr, flush=True)
        sink_port = sifttest.free_port()
        sink = sifttest.Proc(['smtp-sink', '-u', 'nobody', '127.0.0.1:%d' % sink_port, '1024'],
                             log=os.path.join(root, 'smtp-sink.log'), port=sink_port)
        sink.start()
        procs.append(sink)
        for row in rows:
            t0 = time.monotonic()
            filters[row] = lab.start(row)
            print('started %-16s in %.1f s' % (row, time.monotonic() - t0), file=sys.stderr,
                  flush=True)
        pf = sifttest.Postfix(root=os.path.join(root, 'postfix'), delivery='relay:%d' % sink_port,
                              keep=True, main={
                                  'smtpd_authorized_xclient_hosts': '127.0.0.0/8',
                                  'milter_command_timeout': '120s',
                                  'milter_content_timeout': '300s',
                                  'message_size_limit': '20480000'})
        pf.start()
        runs = run_rounds(a, lab, pf, filters, rows, levels, corpora)
    finally:
        if pf is not None:
            pf.stop()
        for f in filters.values():
            if f:
                f.stop()
        for p in reversed(procs):
            p.stop()
        lab.stop()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print('kept %s' % root, file=sys.stderr)
    result = [summarise(r, c, runs[(r, c)]) for r in rows for c in levels if (r, c) in runs]
    minutes = (time.monotonic() - t_start) / 60
    pfv = subprocess.run(['postconf', '-dh', 'mail_version'], capture_output=True,
                         text=True).stdout.strip()
    print()
    print('MX benchmark, %s: mx_corpus(%d, seed %d), %d msgs per level and round '
          '(spamass-milter %d), %d round(s), medians; one SMTP session per message with XCLIENT; '
          'delivery to smtp-sink; %d CPUs; Postfix %s; %.1f minutes' % (
              time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), a.corpus, a.seed, a.count,
              SLOW_COUNT['spamass-milter'], a.rounds, os.cpu_count(), pfv, minutes))
    probe = kernel_entry(a.builddir)
    if probe:
        print('The machine (bench/kernel-entry): a system call costs %.0f ns; each page touched '
              'right after a kernel entry %.1f ns more than without one.' % probe)
    print()
    print(table(result, skipped, levels))
    print()
    print(cpu_table(result))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'rows': result, 'skipped': skipped, 'rounds': a.rounds, 'count': a.count,
                       'corpus': a.corpus, 'seed': a.seed, 'cpus': os.cpu_count(),
                       'postfix': pfv, 'python': platform.python_version(),
                       'kernel_entry': {'syscall_ns': probe[0], 'page_after_entry_ns': probe[1]}
                       if probe else None,
                       'runs': {'%s/c%d' % k: v for k, v in runs.items()}}, f, indent=1)
    return 1 if any(r['errors'] for r in result) else 0


if __name__ == '__main__':
    sys.exit(main())
