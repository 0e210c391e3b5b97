#!/usr/bin/python3
"""siftctl: `test` runs stored messages through filterd's plugin chain
(text and JSON output, profiles, recipients, header edits, symbols), `check`
and bad input. Prints "N passed, N failed"."""
import json, os, subprocess, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402

BUILD = os.environ["SIFT_BUILDDIR"]
SIFTCTL = sifttest.program("siftctl")


def run(*args, stdin=None):
    return subprocess.run([SIFTCTL] + list(args), capture_output=True, text=True, input=stdin, timeout=60)


def main():
    tmp = tempfile.mkdtemp(prefix="sift-siftctl-")
    pdir = os.path.join(tmp, "plugins")
    os.mkdir(pdir)
    for so in ("plugins/access.so", "tests/testplug.so"):
        os.symlink(os.path.join(BUILD, so), os.path.join(pdir, os.path.basename(so)))
    with open(f"{tmp}/senders", "w") as f:
        f.write("spam@bad.example REJECT go away\nhold@x.example HOLD\n"
                "prepend@x.example PREPEND X-Sift-Test: yes\n")
    with open(f"{tmp}/rcpts", "w") as f:
        f.write("nobody@example.com REJECT no such user\n")
    conf = f"{tmp}/filterd.conf"
    with open(conf, "w") as f:
        f.write(f"plugin_directory = {pdir}\ninbound_plugins = access testplug\n"
                "originating_plugins = testplug\n"
                f"access_sender_map = texthash:{tmp}/senders\n"
                f"access_recipient_map = texthash:{tmp}/rcpts\n"
                "testplug_symbol = T_SYM:2\ntestplug_header = X-Testplug: seen\n"
                "filterd_listen = inet:127.0.0.1:1\n")
    msg = f"{tmp}/m.eml"
    with open(msg, "w") as f:
        f.write("From: alice@example.org\nTo: bob@example.com\nSubject: hi\n\nHello.\n")

    r = run("-c", conf, "test", "--from", "alice@example.org", "--to", "bob@example.com", msg)
    check(r.returncode == 0, "accept: exit 0", r.stderr)
    check("action: accept\n" in r.stdout and "symbol: T_SYM(2.000)" in r.stdout
          and "header add: X-Testplug: seen" in r.stdout and "score: 2.000" in r.stdout,
          "accept: text output", r.stdout)

    r = run("-c", conf, "test", "--json", "--from", "spam@bad.example", msg)
    j = json.loads(r.stdout)
    check(j["action"] == "reject" and j["decided_by"] == "access" and
          j["reply"] == "554 5.7.1 <spam@bad.example>: Sender address rejected: go away", "reject: JSON", j)

    r = run("-c", conf, "test", "--json", "--from", "hold@x.example", msg)
    j = json.loads(r.stdout)
    check(j["action"] == "hold" and j["hold"] is True, "hold: JSON", j)

    r = run("-c", conf, "test", "--json", "--from", "prepend@x.example", msg)
    j = json.loads(r.stdout)
    check({"op": "insert", "index": 0, "name": "X-Sift-Test", "value": "yes"}
          in j["headers"], "prepend: header insert at 0", j)

    r = run("-c", conf, "test", "--json", "--from", "a@example.org", "--to", "nobody@example.com",
            "--to", "bob@example.com", msg)
    j = json.loads(r.stdout)
    check(j["action"] == "accept" and j["rejected_recipient"] == "nobody@example.com",
          "one recipient rejected, message accepted", j)

    r = run("-c", conf, "test", "--json", "--from", "a@example.org", "--to", "nobody@example.com", msg)
    j = json.loads(r.stdout)
    check(j["action"] == "reject", "all recipients rejected", j)

    r = run("-c", conf, "test", "--json", "--profile", "originating", "--from", "spam@bad.example", msg)
    j = json.loads(r.stdout)
    check(j["action"] == "accept" and j["profile"] == "originating", "--profile originating skips access", j)

    r = run("-c", conf, "test", "--json", "--auth", "alice", "--from", "spam@bad.example", msg)
    j = json.loads(r.stdout)
    check(j["profile"] == "originating", "--auth makes it originating", j)

    r = run("-c", conf, "test", "--json", "-", stdin="Subject: from stdin\n\nbody\n")
    check(r.returncode == 0 and json.loads(r.stdout)["action"] == "accept", "message from stdin", r.stderr)

    r = run("-c", conf, "test", f"{tmp}/missing.eml")
    check(r.returncode == 1 and "missing.eml" in r.stderr, "missing file: exit 1 with the name", r.stderr)
    r = run("-c", conf, "test", "--profile", "sideways", msg)
    check(r.returncode == 1, "bad --profile: exit 1", r.stderr)
    r = run("-c", conf, "check")
    check(r.returncode == 0 and "configuration OK (2 plugins)" in r.stdout, "check: OK", r.stdout + r.stderr)
    r = run("-c", conf, "-o", "testplug_verdict=maybe", "check")
    check(r.returncode == 1 and "testplug_verdict" in r.stderr, "check: bad value names the parameter", r.stderr)
    r = run("-c", conf, "nosuchcommand")
    check(r.returncode == 1, "unknown command: exit 1", r.stderr)
    r = run("help")
    check(r.returncode == 0 and "test FILE" in r.stdout and "reload" in r.stdout, "help lists test and reload")
    r = run("-c", conf, "reload")
    check(r.returncode == 1 and "filterd_pid_file" in r.stderr, "reload without a pid file: clear error",
          r.stderr)
    return done()


if __name__ == "__main__":
    sys.exit(main())
