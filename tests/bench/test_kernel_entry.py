#!/usr/bin/python3
"""bench/kernel-entry: its report (a system call's time, the table of
pages touched with and without a kernel entry before them) is what
bench/mx-bench.py reads, its neighbour runs until stopped and touches its
memory, and bad usage is refused. Prints "N passed, N failed"."""
import importlib.util, os, re, subprocess, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402

BUILD = os.environ["SIFT_BUILDDIR"]
EXE = os.path.join(BUILD, "bench", "kernel-entry")
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def mx_bench():
    spec = importlib.util.spec_from_file_location("mxbench", os.path.join(SRC, "bench", "mx-bench.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def mx_bench_parse(out):
    """mx-bench's kernel_entry() on a given report (its subprocess.run
    replaced)."""
    m = mx_bench()

    class R:
        stdout = out

    m.subprocess = type("S", (), {"run": staticmethod(lambda *a, **k: R)})
    m.os = type("O", (), {"path": os.path, "access": staticmethod(lambda *a: True), "X_OK": os.X_OK})
    return m.kernel_entry(BUILD)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return [int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")][0]


def neighbour_rss(kb):
    p = subprocess.Popen([EXE, "--neighbour", "1000", str(kb)])
    try:
        time.sleep(0.5)
        return rss_kb(p.pid)
    finally:
        p.kill()
        p.wait()


def main():
    r = subprocess.run([EXE], capture_output=True, text=True, timeout=120)
    lines = r.stdout.splitlines()
    check(r.returncode == 0, "report: exit 0", r.stderr)
    check(len(lines) == 7 and lines[0].startswith("system call (getppid): "), "report: 7 lines", r.stdout)
    rows = [ln.split() for ln in lines[2:]]
    check([int(x[0]) for x in rows] == [8, 32, 128, 512, 2048], "report: 8 to 2048 pages", r.stdout)
    # a system call takes time, and touching more pages takes longer
    sys_ns = float(lines[0].split(":")[1].split()[0])
    check(sys_ns > 0, "report: a system call costs more than 0 ns", lines[0])
    check(float(rows[-1][1]) > float(rows[0][1]), "report: 2048 pages cost more than 8", r.stdout)
    probe = mx_bench().kernel_entry(BUILD)
    check(probe is not None and probe[0] > 0, "mx-bench reads the report", probe)
    # what it takes from a report: the system call and the last row's
    # extra ns a page
    m = re.match(r"system call \(getppid\): ([0-9.]+) ns\n", r.stdout)
    check(m is not None and mx_bench_parse(r.stdout) == (float(m.group(1)), float(rows[-1][3])),
          "mx-bench takes the system call and the last row's extra ns a page", r.stdout)
    check(mx_bench().kernel_entry("/nonexistent") is None, "mx-bench: no kernel-entry built, no figures")

    # the neighbour: runs until killed, sleeping between rounds (far from
    # a whole CPU), its memory touched
    p = subprocess.Popen([EXE, "--neighbour", "1000", "1024"])
    try:
        time.sleep(1.5)
        check(p.poll() is None, "neighbour: still running")
        with open("/proc/%d/stat" % p.pid) as f:
            st = f.read().rsplit(")", 1)[1].split()
        ticks = int(st[11]) + int(st[12])
        hz = os.sysconf("SC_CLK_TCK")
        check(ticks / hz < 1.2, "neighbour: sleeps between rounds", ticks)
    finally:
        p.kill()
        p.wait()
    small, big = neighbour_rss(0), neighbour_rss(8192)
    check(big - small >= 8000, "neighbour: its 8192 KB are touched", (small, big))

    for args in (["--neighbour"], ["--neighbour", "1"], ["-x"]):
        r = subprocess.run([EXE] + args, capture_output=True, text=True, timeout=10)
        check(r.returncode == 2 and "usage: kernel-entry" in r.stderr, "usage refused: %s" % " ".join(args),
              (r.returncode, r.stderr))
    sys.exit(done())


if __name__ == "__main__":
    main()
