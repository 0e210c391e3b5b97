#!/usr/bin/python3
"""Spam scoring benchmark: Sift's spam plugin against SpamAssassin (spamd)
and rspamd, on the SpamAssassin public corpus, all on 127.0.0.1.

    bench/spam/bench.py [--sample N] [--corpus DIR] [--count M]
                        [--concurrency 1,8] [--skip-postfix] [--json FILE]
    bench/spam/bench.py --mx N [--mx-seed S] [--cache DIR] [--json FILE]

Part 1, scoring cost per message on one core (same messages for all):
  - Sift: `siftctl spam check --json` pinned to CPU 0 (taskset), the stock
    ruleset (/usr/share/spamassassin /etc/spamassassin), MIME parse
    included; per-message time measured in-process;
  - SpamAssassin: spamd with one child (-L, use_bayes 0), spamc one message
    at a time; wall latency per message and spamd CPU time per message;
  - rspamd: a private rspamd (local checks only: network modules disabled,
    DNS pointed at a closed local port), one normal worker, rspamc one
    message at a time; latency and worker CPU time per message.
Part 2, messages/s through a private Postfix (tests/lib/sifttest.py) at each
concurrency, one SMTP session per worker (bench/postfix-bench.py's load
generator), messages from the same corpus, delivery to discard(8):
  - Postfix alone;  - filterd with the spam plugin (stock ruleset, tagging,
    no kill level so every message is accepted);
  - spamass-milter + spamd (2 children);  - rspamd's proxy in milter mode.
CPU seconds of the filter processes per message are reported too.
With --mx N, only Sift's CPU time per message in-process (siftctl spam
check's cpu_us, one thread, pinned to CPU 0) on N messages of bench/corpus.py's
MX mix (text, HTML, attachment), by class and overall; the Hyperscan
databases are compiled into --cache first (minutes, once).
The corpus is fetched with `npm pack` into a temp dir unless --corpus is
given; nothing is committed. Every process started here is stopped by PID.
"""

import argparse
import glob
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(SRC, 'tests', 'lib'))
sys.path.insert(0, os.path.join(SRC, 'bench'))
import sifttest  # noqa: E402
import corpus as bcorpus  # noqa: E402


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


pfbench = load_module('pfbench', os.path.join(SRC, 'bench', 'postfix-bench.py'))
agreement = load_module('agreement', os.path.join(HERE, 'agreement.py'))


def pct(v, p):
    v = sorted(v)
    if not v:
        return float('nan')
    k = (len(v) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def proc_cpu(pids):
    """utime+stime seconds of the given pids and their children threads."""
    tick = os.sysconf('SC_CLK_TCK')
    total = 0
    for pid in pids:
        try:
            with open('/proc/%d/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def pids_matching(substr):
    out = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % d, 'rb') as f:
                cmd = f.read().replace(b'\0', b' ').decode('utf-8', 'replace')
        except OSError:
            continue
        if substr in cmd:
            out.append(int(d))
    return out


class Rspamd:
    """A private rspamd: ports on 127.0.0.1, local checks only."""

    def __init__(self, tmp, normal_count=1, proxy_count=2, dns_port=None):
        """dns_port: a local DNS server to ask (default: a closed port, every
        query times out after 0.1 s)."""
        self.dir = tempfile.mkdtemp(prefix='rspamd-', dir=tmp)
        for d in ('override.d', 'local.d', 'run', 'db', 'log'):
            os.makedirs(os.path.join(self.dir, d))
        os.chmod(self.dir, 0o777)
        for d in ('run', 'db', 'log'):
            os.chmod(os.path.join(self.dir, d), 0o777)
        self.normal = sifttest.free_port()
        self.ctl = sifttest.free_port()
        self.proxy = sifttest.free_port()
        dead_dns = dns_port or sifttest.free_port()
        w = lambda name, text: open(os.path.join(self.dir, name), 'w').write(text)
        w('override.d/worker-normal.inc', 'bind_socket = "127.0.0.1:%d";\ncount = %d;\n' % (self.normal, normal_count))
        w('override.d/worker-controller.inc', 'bind_socket = "127.0.0.1:%d";\ncount = 1;\n' % self.ctl)
        w('override.d/worker-proxy.inc', 'bind_socket = "127.0.0.1:%d";\nmilter = yes;\ntimeout = 120s;\n'
          'count = %d;\nupstream "local" {\n  default = yes;\n  self_scan = yes;\n}\n' % (self.proxy, proxy_count))
        w('local.d/options.inc', 'dns { nameserver = ["127.0.0.1:%d"]; timeout = 0.1s; retransmits = 0; }\n'
          % dead_dns)
        for m in ('rbl', 'fuzzy_check', 'dkim', 'spf', 'dmarc', 'asn', 'neural', 'ratelimit', 'replies',
                  'greylist', 'reputation', 'mx_check', 'url_redirector', 'dkim_signing', 'arc', 'history_redis',
                  'clickhouse', 'elastic', 'metadata_exporter', 'external_services', 'antivirus', 'multimap',
                  'phishing', 'emails', 'rspamd_update', 'dcc'):
            w('local.d/%s.conf' % m, 'enabled = false;\n')
        argv = ['rspamd', '-f', '-u', 'nobody', '-g', 'nogroup', '--var', 'CONFDIR=/etc/rspamd',
                '--var', 'LOCAL_CONFDIR=%s' % self.dir, '--var', 'RUNDIR=%s/run' % self.dir,
                '--var', 'DBDIR=%s/db' % self.dir, '--var', 'LOGDIR=%s/log' % self.dir,
                '-c', '/etc/rspamd/rspamd.conf']
        self.p = sifttest.Proc(argv, log=os.path.join(self.dir, 'stdout.log'), port=self.normal,
                               start_timeout=120, name='rspamd')
        self.p.start()
        sifttest.wait_port(self.proxy, 120)

    def worker_pids(self):
        return [p for p in pids_matching('rspamd:') if p != self.p.pid]

    def stop(self):
        self.p.stop()


def spamd_start(tmp, children):
    site = os.path.join(tmp, 'sa-site-%d' % children)
    os.makedirs(site)
    for f in glob.glob('/etc/spamassassin/*.pre') + glob.glob('/etc/spamassassin/*.cf'):
        shutil.copy(f, site)
    with open(os.path.join(site, 'local.cf'), 'a') as f:
        f.write('\nuse_bayes 0\nuse_auto_whitelist 0\nskip_rbl_checks 1\n')
    port = sifttest.free_port()
    argv = ['/usr/sbin/spamd', '-L', '-x', '-u', 'nobody', '--siteconfigpath=%s' % site,
            '--listen=127.0.0.1:%d' % port, '-m', str(children), '--min-children=%d' % children,
            '--min-spare=%d' % children, '--max-spare=%d' % children, '-s', 'stderr', '-H', tmp]
    p = sifttest.Proc(argv, log=os.path.join(tmp, 'spamd-%d.log' % children), port=port, start_timeout=180,
                      name='spamd')
    p.start()
    return p, port


def per_message_cost(a, tmp, files):
    res = {}
    conf = os.path.join(tmp, 'sift-cost.conf')
    with open(conf, 'w') as f:
        f.write('plugin_directory = %s\ninbound_plugins = spam\n'
                'spam_rules = /usr/share/spamassassin /etc/spamassassin\nspam_cache_directory = %s\n'
                'spam_max_size = 10m\n' % (os.path.join(a.builddir, 'plugins'), a.cache or tmp))
    us = []
    for i in range(0, len(files), 400):
        r = subprocess.run(['taskset', '-c', '0', os.path.join(a.builddir, 'tools', 'siftctl'), '-c', conf, 'spam',
                            'check', '--json'] + files[i:i + 400], capture_output=True, text=True, timeout=3600)
        for line in r.stdout.splitlines():
            try:
                us.append(json.loads(line)['us'])
            except (ValueError, KeyError):
                pass
    res['sift'] = {'messages': len(us), 'median_ms': pct(us, 50) / 1000, 'p99_ms': pct(us, 99) / 1000,
                   'mean_ms': statistics.mean(us) / 1000 if us else None,
                   'msg_per_s_one_core': 1e6 / statistics.mean(us) if us else None}
    print('sift: median %.3f ms, p99 %.3f ms, mean %.3f ms per message (one core)' % (
        res['sift']['median_ms'], res['sift']['p99_ms'], res['sift']['mean_ms']), flush=True)

    n_ext = min(len(files), a.ext_sample)
    # SpamAssassin: one spamd child, sequential spamc
    sp, port = spamd_start(tmp, 1)
    try:
        pids = [p for p in pids_matching('spamd child')] or [sp.pid]
        lat = []
        cpu0 = proc_cpu(pids_matching('spamd'))
        for f in files[:n_ext]:
            data = open(f, 'rb').read()
            t0 = time.monotonic()
            subprocess.run(['/usr/bin/spamc', '-d', '127.0.0.1', '-p', str(port), '-c'], input=data,
                           capture_output=True, timeout=300)
            lat.append(time.monotonic() - t0)
        cpu = proc_cpu(pids_matching('spamd')) - cpu0
        res['spamassassin'] = {'messages': len(lat), 'median_ms': pct(lat, 50) * 1000, 'p99_ms': pct(lat, 99) * 1000,
                               'cpu_ms_per_message': 1000 * cpu / max(1, len(lat))}
        print('spamassassin (spamd -L, 1 child): median %.1f ms, p99 %.1f ms, CPU %.1f ms per message' % (
            res['spamassassin']['median_ms'], res['spamassassin']['p99_ms'],
            res['spamassassin']['cpu_ms_per_message']), flush=True)
    finally:
        sp.stop()
    # rspamd: one normal worker, sequential rspamc
    rs = Rspamd(tmp, normal_count=1, proxy_count=1)
    try:
        lat = []
        wp = rs.worker_pids()
        cpu0 = proc_cpu(wp)
        for f in files[:n_ext]:
            data = open(f, 'rb').read()
            t0 = time.monotonic()
            subprocess.run(['rspamc', '-h', '127.0.0.1:%d' % rs.normal], input=data, capture_output=True,
                           timeout=300)
            lat.append(time.monotonic() - t0)
        cpu = proc_cpu(wp) - cpu0
        res['rspamd'] = {'messages': len(lat), 'median_ms': pct(lat, 50) * 1000, 'p99_ms': pct(lat, 99) * 1000,
                         'cpu_ms_per_message': 1000 * cpu / max(1, len(lat))}
        print('rspamd (local checks, 1 worker): median %.1f ms, p99 %.1f ms, CPU %.1f ms per message' % (
            res['rspamd']['median_ms'], res['rspamd']['p99_ms'], res['rspamd']['cpu_ms_per_message']), flush=True)
    finally:
        rs.stop()
    return res


def mx_cost(a, tmp):
    """CPU per message of the spam plugin in-process (siftctl spam check's
    cpu_us: MIME parse, texts and scoring, one thread) on the MX mix of
    bench/corpus.py, by message class and overall."""
    d = os.path.join(tmp, 'mx')
    os.makedirs(d, exist_ok=True)
    files = []
    for i, m in enumerate(bcorpus.mx_corpus(a.mx, seed=a.mx_seed)):
        f = os.path.join(d, '%05d-%s.eml' % (i, m.kind))
        with open(f, 'wb') as fh:
            fh.write(m.data)
        files.append((m.kind, f))
    conf = os.path.join(tmp, 'sift-mx.conf')
    with open(conf, 'w') as f:
        f.write('plugin_directory = %s\ninbound_plugins = spam\n'
                'spam_rules = /usr/share/spamassassin /etc/spamassassin\nspam_cache_directory = %s\n'
                'spam_max_size = 10m\n' % (os.path.join(a.builddir, 'plugins'), a.cache or tmp))
    siftctl = os.path.join(a.builddir, 'tools', 'siftctl')
    # the Hyperscan databases first: without them the plugin matches with PCRE2 alone
    subprocess.run([siftctl, '-c', conf, 'spam', 'compile'], check=True, timeout=3600)
    kind_of = {f: k for k, f in files}
    by = {}
    for i in range(0, len(files), 400):
        r = subprocess.run(['taskset', '-c', '0', siftctl, '-c', conf, 'spam', 'check', '--json'] +
                           [f for _, f in files[i:i + 400]], capture_output=True, text=True, timeout=3600)
        for line in r.stdout.splitlines():
            try:
                j = json.loads(line)
            except ValueError:
                continue
            by.setdefault(kind_of[j['file']], []).append(j['cpu_us'] / 1000)
    res = {}
    for k in ('text', 'html', 'attach'):
        v = by.get(k, [])
        if v:
            res[k] = {'messages': len(v), 'mean_ms': statistics.mean(v), 'p99_ms': pct(v, 99)}
    allv = [x for v in by.values() for x in v]
    res['all'] = {'messages': len(allv), 'mean_ms': statistics.mean(allv) if allv else None,
                  'p99_ms': pct(allv, 99)}
    print('spam plugin CPU on the MX mix (%d messages, seed %d), ms per message:' % (a.mx, a.mx_seed))
    for k in ('text', 'html', 'attach', 'all'):
        if k in res:
            print('  %-7s %5d msgs  mean %6.3f  p99 %6.3f' % (k, res[k]['messages'], res[k]['mean_ms'],
                                                            res[k]['p99_ms']), flush=True)
    return res


def postfix_run(a, tmp, name, msgs, milter, cpu_pids_fn):
    rows = []
    pf = sifttest.Postfix(root=os.path.join(tmp, 'pf-' + name.replace(' ', '-').replace('+', '-')), delivery='discard',
                          milters=[milter] if milter else [], keep=True,
                          main={'milter_default_action': 'tempfail', 'milter_command_timeout': '120s',
                                'milter_content_timeout': '300s'})
    pf.start()
    try:
        for conc in [int(x) for x in a.concurrency.split(',')]:
            pfbench.measure(pf.port, msgs, conc, max(20, conc * 2), 'thread')
            pfbench.wait_drained(pf)
            pids = cpu_pids_fn() if cpu_pids_fn else []
            c0 = proc_cpu(pids)
            row = pfbench.measure(pf.port, msgs, conc, a.count, 'thread')
            row['filter_cpu_ms_per_message'] = (1000 * (proc_cpu(pids) - c0) / max(1, row['accepted'])
                                                if pids else None)
            row['drain_s'] = pfbench.wait_drained(pf)
            row['system'] = name
            rows.append(row)
            print('  %-22s conc %d: %7.1f msg/s, p50 %7.1f ms, p99 %7.1f ms, errors %d, filter CPU %s ms/msg' % (
                name, conc, row['msg_per_s'], row['p50_ms'], row['p99_ms'], row['errors'],
                '%.1f' % row['filter_cpu_ms_per_message'] if row['filter_cpu_ms_per_message'] is not None
                else '-'), flush=True)
            if row['first_error']:
                print('    first error: %s' % row['first_error'], flush=True)
    finally:
        pf.stop()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sample', type=int, default=1000, help='messages for the per-message cost (Sift)')
    ap.add_argument('--ext-sample', type=int, default=300, help='of those, for SpamAssassin and rspamd')
    ap.add_argument('--count', type=int, default=400, help='messages per Postfix level')
    ap.add_argument('--concurrency', default='1,8')
    ap.add_argument('--corpus')
    ap.add_argument('--cache', default='')
    ap.add_argument('--builddir', default=os.environ.get('SIFT_BUILDDIR', os.path.join(SRC, 'build')))
    ap.add_argument('--skip-postfix', action='store_true')
    ap.add_argument('--skip-cost', action='store_true')
    ap.add_argument('--mx', type=int, default=0,
                    help='only the in-process CPU per message on N messages of the MX mix (bench/corpus.py)')
    ap.add_argument('--mx-seed', type=int, default=1)
    ap.add_argument('--json')
    ap.add_argument('--keep', action='store_true')
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit('bench: run as root')
    tmp = tempfile.mkdtemp(prefix='sift-spam-bench-')
    os.chmod(tmp, 0o755)
    out = {}
    procs = []
    try:
        if a.mx:
            out['mx'] = mx_cost(a, tmp)
            if a.json:
                with open(a.json, 'w') as f:
                    json.dump(out, f, indent=1, default=str)
            return 0
        data = a.corpus or agreement.fetch_corpus(tmp)
        if os.path.isdir(os.path.join(data, 'package', 'data')):
            data = os.path.join(data, 'package', 'data')
        groups = agreement.corpus_files(data)
        sel = agreement.sample(groups, a.sample, seed=7)
        files = [f for _, f in sel]
        import random
        random.Random(3).shuffle(files)
        if not a.skip_cost:
            out['per_message'] = per_message_cost(a, tmp, files)
        if not a.skip_postfix:
            msgs = []
            for i, f in enumerate(files[:max(a.count, 200)]):
                raw = open(f, 'rb').read()
                if raw.startswith(b'From '):
                    raw = raw.split(b'\n', 1)[1]
                raw = raw.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
                msgs.append(bcorpus.Msg('sa', 'sender%d@example.test' % (i % 10), 'user%d@sift.test' % (i % 10), raw))
            rows = []
            rows += postfix_run(a, tmp, 'postfix alone', msgs, None, None)
            # Sift filterd + spam
            port = sifttest.free_port()
            conf = os.path.join(tmp, 'filterd.conf')
            with open(conf, 'w') as f:
                f.write('filterd_listen = inet:127.0.0.1:%d\nfilterd_user = root\nfilterd_pid_file = %s\n'
                        'plugin_directory = %s\ninbound_plugins = spam\noriginating_plugins = spam\n'
                        'spam_rules = /usr/share/spamassassin /etc/spamassassin\nspam_cache_directory = %s\n'
                        'spam_kill_level = none\nspam_max_size = 10m\n' % (
                            port, os.path.join(tmp, 'filterd.pid'), os.path.join(a.builddir, 'plugins'),
                            a.cache or tmp))
            fd = sifttest.Proc([os.path.join(a.builddir, 'filterd', 'filterd'), '-f', '-c', conf],
                               log=os.path.join(tmp, 'filterd.log'), port=port, start_timeout=600, name='filterd')
            fd.start()
            procs.append(fd)
            rows += postfix_run(a, tmp, 'sift filterd+spam', msgs, 'inet:127.0.0.1:%d' % port, lambda: [fd.pid])
            fd.stop()
            procs.remove(fd)
            # spamass-milter + spamd
            sp, sport = spamd_start(tmp, 2)
            procs.append(sp)
            mport = sifttest.free_port()
            sm = sifttest.Proc(['/usr/sbin/spamass-milter', '-p', 'inet:%d@127.0.0.1' % mport, '-m',
                                '--', '-d', '127.0.0.1', '-p', str(sport)],
                               log=os.path.join(tmp, 'spamass-milter.log'), port=mport, name='spamass-milter')
            sm.start()
            procs.append(sm)
            rows += postfix_run(a, tmp, 'spamass-milter+spamd', msgs, 'inet:127.0.0.1:%d' % mport,
                                lambda: pids_matching('spamd') + [sm.pid])
            sm.stop()
            sp.stop()
            procs = [p for p in procs if p not in (sm, sp)]
            # rspamd milter
            rs = Rspamd(tmp, normal_count=1, proxy_count=2)
            try:
                rows += postfix_run(a, tmp, 'rspamd milter', msgs, 'inet:127.0.0.1:%d' % rs.proxy, rs.worker_pids)
            finally:
                rs.stop()
            out['postfix'] = rows
            print()
            print('%-22s %5s %9s %9s %9s %7s %14s' % ('system', 'conc', 'msg/s', 'p50 ms', 'p99 ms', 'errors',
                                                      'filter CPU ms'))
            for r in rows:
                print('%-22s %5d %9.1f %9.1f %9.1f %7d %14s' % (
                    r['system'], r['concurrency'], r['msg_per_s'], r['p50_ms'], r['p99_ms'], r['errors'],
                    '%.1f' % r['filter_cpu_ms_per_message'] if r['filter_cpu_ms_per_message'] is not None else '-'))
        if a.json:
            with open(a.json, 'w') as f:
                json.dump(out, f, indent=1, default=str)
    finally:
        for p in procs:
            p.stop()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
