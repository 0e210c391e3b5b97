#!/usr/bin/python3
"""siftctl: `test` runs stored messages through filterd's plugin chain
(text and JSON output, profiles, recipients, header edits, symbols), `check`
(the daemons' -t: unknown names are errors), `--help` on every command,
options after operands, `reload` through the daemons' control sockets (the
outcome, a refused user; only a listener of root's believed, its answer
escaped), `quarantine` refusing a store writable by group
or others and purging the stale temporary files of unfinished stores,
bad input, getopt's errors of the plugins' commands starting "siftctl
PLUGIN TOOL:", and exit 1 when stdout cannot be written. Prints "N passed,
N failed"."""
import json, os, pwd, re, shutil, socket, struct, subprocess, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402

BUILD = os.environ["SIFT_BUILDDIR"]
SIFTCTL = sifttest.program("siftctl")


def run(*args, stdin=None):
    return subprocess.run([SIFTCTL] + list(args), capture_output=True, text=True, input=stdin, timeout=60)


def main():
    tmp = sifttest.scratch("sift-siftctl-")
    os.chmod(tmp, 0o755)  # `check` runs the daemons' -t, whose plugin init runs as the daemon user
    pdir = os.path.join(tmp, "plugins")
    os.mkdir(pdir)
    for so in ("plugins/access.so", "plugins/spf.so", "tests/testplug.so"):
        if os.path.exists(os.path.join(BUILD, so)):  # (spf: not in a -Dspf=disabled build)
            os.symlink(os.path.join(BUILD, so), os.path.join(pdir, os.path.basename(so)))
    with open(f"{tmp}/senders", "w") as f:
        f.write("spam@bad.example REJECT go away\nhold@x.example HOLD\n"
                "prepend@x.example PREPEND X-Sift-Test: yes\n"
                "esc@x.example PREPEND X-Esc: a\x1b]0;title\x07b\n")
    with open(f"{tmp}/rcpts", "w") as f:
        f.write("nobody@example.com REJECT no such user\n")
    conf = f"{tmp}/filterd.conf"
    with open(conf, "w") as f:
        f.write(f"plugin_directory = {pdir}\ninbound_plugins = access testplug\n"
                "originating_plugins = testplug\n"
                f"access_sender_map = texthash:{tmp}/senders\n"
                f"access_recipient_map = texthash:{tmp}/rcpts\n"
                "testplug_symbol = T_SYM:2\ntestplug_header = X-Testplug: seen\n"
                "filterd_listen = inet:127.0.0.1:1\nfilterd_user = nobody\n")
    msg = f"{tmp}/m.eml"
    with open(msg, "w") as f:
        f.write("From: alice@example.org\nTo: bob@example.com\nSubject: hi\n\nHello.\n")

    r = run("-c", conf, "test", "--from", "alice@example.org", "--to", "bob@example.com", msg)
    check(r.returncode == 0, "accept: exit 0", r.stderr)
    check("action: accept\n" in r.stdout and "symbol: T_SYM(2.000)" in r.stdout
          and "header add: X-Testplug: seen" in r.stdout and "score: 2.000" in r.stdout,
          "accept: text output", r.stdout)

    # what plugins put in the result comes from outside (here a map's
    # text): printed escaped, it cannot drive the terminal
    r = run("-c", conf, "test", "--from", "esc@x.example", msg)
    check(r.returncode == 0 and "header insert #0: X-Esc: a\\x1b]0;title\\x07b\n" in r.stdout and
          "\x1b" not in r.stdout and "\x07" not in r.stdout,
          "test: a header value with control characters printed escaped", r.stdout)

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
    with open(f"{tmp}/rcpts", "a") as f:
        f.write("none@example.com REJECT unknown too\n")
    r = run("-c", conf, "test", "--json", "--from", "a@example.org", "--to", "nobody@example.com",
            "--to", "none@example.com", msg)
    j = json.loads(r.stdout or "{}")
    check(j.get("action") == "reject" and j.get("rejected_recipient") == "none@example.com"
          and "<none@example.com>: Recipient address rejected: unknown too" in (j.get("reply") or ""),
          "two recipients, both rejected: reject, the reply named", j)

    r = run("-c", conf, "test", "--json", "--profile", "originating", "--from", "spam@bad.example", msg)
    j = json.loads(r.stdout)
    check(j["action"] == "accept" and j["profile"] == "originating", "--profile originating skips access", j)

    r = run("-c", conf, "test", "--json", "--auth", "alice", "--from", "spam@bad.example", msg)
    j = json.loads(r.stdout)
    check(j["profile"] == "originating", "--auth makes it originating", j)

    r = run("-c", conf, "test", "--json", "-", stdin="Subject: from stdin\n\nbody\n")
    check(r.returncode == 0 and json.loads(r.stdout)["action"] == "accept", "message from stdin", r.stderr)

    # The same sequencing as filterd: a header verdict is held for end of
    # message (later hooks skipped); an invalid reply gets its class's
    # default, with one error naming the plugin.
    r = run("-c", conf, "-o", "inbound_plugins=testplug", "-o", "testplug_phase=header",
            "-o", "testplug_verdict=reject", "-o", "testplug_reply=550 5..1 no subject",
            "-d", "test", "--json", msg)
    j = json.loads(r.stdout or "{}")
    check(j.get("action") == "reject" and j.get("decided_by") == "testplug"
          and j.get("reply") == "550 5.7.1 Message rejected", "header reject, invalid reply: default reply", j)
    check(r.stderr.count("testplug: invalid SMTP reply") == 1 and r.stderr.count("verdict 2 at phase") == 1,
          "one error naming the plugin, header hooks after the verdict skipped", r.stderr)
    check("SIFTCTL: filterd: action=reject, profile=inbound, by=testplug" in r.stderr,
          "the summary line filterd logs", r.stderr)
    r = run("-c", conf, "-o", "testplug_phase=rcpt", "-o", "testplug_verdict=tempfail",
            "-o", "testplug_reply=451 4.2.0 mailbox busy", "test", msg)
    check("action: tempfail\n" in r.stdout and "reply: 451 4.2.0 mailbox busy\n" in r.stdout,
          "a recipient's tempfail with its reply", r.stdout + r.stderr)

    r = run("-c", conf, "test", f"{tmp}/missing.eml")
    check(r.returncode == 1 and "missing.eml" in r.stderr, "missing file: exit 1 with the name", r.stderr)
    for args, says in ((("test", msg, "--from"), "siftctl test: option '--from' requires an argument"),
                       (("status", "--bogus"), "siftctl status: unrecognized option '--bogus'"),
                       (("reload", "--timeout"), "siftctl reload: option '--timeout' requires an argument"),
                       (("params", "--nosuch"), "siftctl params: unrecognized option '--nosuch'")):
        r = run("-c", conf, *args)
        check(r.returncode == 1 and r.stderr.startswith(says), f"{' '.join(args[:1] + args[-1:])}: the error "
              "names siftctl and the command", r.stderr)
    r = run("-c", conf, "test", "--client", "192.0.2.300", msg)
    check(r.returncode == 1 and '--client "192.0.2.300": not an IPv4 or IPv6 address' in r.stderr,
          "bad --client: exit 1", r.stdout + r.stderr)
    r = run("-c", conf, "test", "--json", "--client", "2001:db8::1", msg)
    check(r.returncode == 0, "--client IPv6: fine", r.stderr)
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
    r = run("-c", conf, "-o", "filterd_control_socket=", "reload")
    check(r.returncode == 1 and "filterd_control_socket is empty" in r.stderr,
          "reload without a control socket: clear error", r.stderr)
    r = run("-c", conf, "-o", f"filterd_control_socket={tmp}/none.ctl", "reload")
    check(r.returncode == 1 and "none.ctl" in r.stderr and "is the daemon running" in r.stderr,
          "reload with no daemon: exit 1 naming the socket", r.stderr)

    # options after the file, --help everywhere
    r = run("-c", conf, "test", msg, "--from", "spam@bad.example", "--json")
    check(r.returncode == 0 and json.loads(r.stdout or "{}").get("action") == "reject",
          "test FILE --from X: options after the file", r.stdout + r.stderr)
    r = run("--help")
    check(r.returncode == 0 and "usage: siftctl" in r.stdout and "reload" in r.stdout, "siftctl --help", r.stderr)
    r = run("-h")
    check(r.returncode == 0 and "usage: siftctl" in r.stdout, "siftctl -h", r.stderr)
    built = [p for p in ("dkim", "spf", "spam", "ratelimit") if os.path.exists(f"{BUILD}/plugins/{p}.so")]
    for cmd in ["test", "check", "reload", "quarantine"] + built:
        r = run(cmd, "--help")
        check(r.returncode == 0 and "usage:" in r.stdout and cmd in r.stdout and not r.stderr,
              f"siftctl {cmd} --help: usage, exit 0", r.stdout + r.stderr)
    r = run("spam", "lint", "--help")
    check(r.returncode == 0 and "usage:" in r.stdout, "siftctl spam lint --help", r.stdout + r.stderr)

    # the plugins' commands are the plugins' tools (struct sift_tool)
    r = run("help")
    for p, tool in (("dkim", "genkey"), ("spf", "check"), ("spam", "lint"), ("ratelimit", "stats")):
        if p in built:
            check(f"  {p} {tool}" in r.stdout, f"help lists the {p} plugin's {tool} tool", r.stdout)
    r = run("-c", conf, "-o", f"plugin_directory={BUILD}/plugins", "ratelimit", "nosuchtool")
    check(r.returncode == 2 and 'siftctl ratelimit: unknown command "nosuchtool"' in r.stderr
          and "ratelimit show [RULE:]VALUE" in r.stderr, "unknown tool of a plugin: exit 2 and its usage",
          r.stderr)
    r = run("-c", conf, "-o", f"plugin_directory={BUILD}/plugins", "ratelimit")
    check(r.returncode == 2 and "ratelimit stats" in r.stderr, "plugin without a tool name: exit 2", r.stderr)
    if "spf" in built:
        r = run("-c", conf, "spf", "check", "--bogus")
        check(r.returncode == 2 and "siftctl spf check: unknown option --bogus" in r.stderr
              and "spf check IP SENDER" in r.stderr, "spf check --bogus: the option named, exit 2", r.stderr)
        r = run("-c", conf, "spf", "check", "--json", "192.0.2.1", "a@example.org")
        check(r.returncode == 2 and "unknown option --json" in r.stderr, "spf check --json IP SENDER: exit 2",
              r.stderr)
    r = run("-c", conf, "nosuchplugin", "x")
    check(r.returncode == 1 and 'unknown command "nosuchplugin"' in r.stderr, "no such plugin: exit 1",
          r.stderr)
    r = run("-c", f"{tmp}/none.conf", "ratelimit", "--socket", f"{tmp}/none.sock", "stats")
    check(r.returncode == 1 and f"connect {tmp}/none.sock" in r.stderr,
          "a tool's option before its name; --socket needs no configuration", r.stderr)
    r = run("-c", f"{tmp}/none.conf", "ratelimit", "stats")
    check(r.returncode == 1 and "configuration cannot be read" in r.stderr,
          "ratelimit without --socket and without a configuration: exit 1", r.stderr)
    if "spam" in built:
        r = run("-c", conf, "-o", f"plugin_directory={BUILD}/plugins", "spam", "mime", tmp)
        check(r.returncode == 1 and f"{tmp}: Is a directory" in r.stderr,
              "a tool's message file that is a directory: the reason", r.stderr)
    r = run("-c", f"{tmp}/none.conf", "spam", "lint")
    check(r.returncode == 1 and "none.conf" in r.stderr, "a tool needing the configuration: its error", r.stderr)
    # no side doors: a plugin exports sift_plugin_entry alone, siftctl links
    # no plugin library, the programs export nothing of their own
    for so in sorted(os.listdir(f"{BUILD}/plugins")):
        if so.endswith(".so"):
            nm = subprocess.run(["nm", "-D", "--defined-only", f"{BUILD}/plugins/{so}"], capture_output=True,
                                text=True).stdout
            # (names with "__" or "@" belong to the compiler, a sanitizer or a library)
            syms = [l.split()[-1] for l in nm.splitlines() if l.strip()]
            syms = [w for w in syms if not w.startswith("__") and "@" not in w]
            check(syms == ["sift_plugin_entry"], f"{so} exports sift_plugin_entry alone", syms)
    ldd = subprocess.run(["ldd", SIFTCTL], capture_output=True, text=True).stdout
    check("libcrypto" not in ldd and "opendkim" not in ldd and "clamav" not in ldd,
          "siftctl links no plugin library", ldd)
    for prog in (SIFTCTL, f"{BUILD}/filterd/filterd", f"{BUILD}/policyd/policyd"):
        nm = subprocess.run(["nm", "-D", "--defined-only", prog], capture_output=True, text=True).stdout
        # ours and libmilter's (a sanitizer runtime may export its own)
        own = [l.split()[-1] for l in nm.splitlines() if re.search(
            r" (sift_|filterd_|policyd_|siftctl_|smfi_|mi_|sm_|Errors$|Queue$)", l)]
        check(not own, f"{os.path.basename(prog)} exports no symbol of its own (no -rdynamic)", own[:5])

    # check: the daemons' strictness (unknown names, did you mean)
    with open(f"{tmp}/typo.conf", "w") as f:
        f.write(open(conf).read() + "access_sender_mpa = texthash:/nonexistent\n")
    r = run("-c", f"{tmp}/typo.conf", "check")
    check(r.returncode == 1 and "typo.conf:10: unknown parameter \"access_sender_mpa\"" in r.stderr
          and "did you mean \"access_sender_map\"" in r.stderr, "check: unknown name with file:line and hint",
          r.stdout + r.stderr)
    r = run("-c", conf, "-o", "filterd_lisen=inet:127.0.0.1:1", "check")
    check(r.returncode == 1 and "-o: unknown parameter \"filterd_lisen\"" in r.stderr
          and "filterd_listen" in r.stderr, "check: unknown -o name of the daemon's own", r.stderr)
    if "spf" in built:
        r = run("-c", conf, "-o", "spf_softfail_action=reject", "check")
        check(r.returncode == 0, "check: a parameter of a plugin that is installed but not enabled is fine",
              r.stderr)
    r = run("-c", conf, "-o", "testplug_symbl=x", "test", msg)
    check(r.returncode == 1 and "did you mean \"testplug_symbol\"" in r.stderr, "test: unknown name refused",
          r.stderr)
    # a plugin's own value error (found by its init) names file:line
    if "dkim" in built:
        with open(f"{tmp}/dkimval.conf", "w") as f:
            f.write(f"plugin_directory = {BUILD}/plugins\ninbound_plugins = dkim\ndkim_invalid_score = abc\n"
                    "filterd_user = nobody\n")
        r = run("-c", f"{tmp}/dkimval.conf", "check")
        check(r.returncode == 1 and f"{tmp}/dkimval.conf:3: " in r.stderr and "dkim_invalid_score" in r.stderr,
              "check: a plugin's value error names file:line", r.stderr)
    pconf = f"{tmp}/policyd.conf"
    with open(pconf, "w") as f:
        f.write(f"plugin_directory = {BUILD}/plugins\ninbound_plugins = access\n"
                f"access_sender_map = texthash:{tmp}/senders\npolicyd_workers = 2\npolicyd_user = nobody\n")
    r = run("-c", pconf, "check", "policyd")
    check(r.returncode == 0 and "policyd: configuration OK" in r.stdout, "check policyd", r.stdout + r.stderr)
    r = run("-c", pconf, "-o", "policyd_worker=3", "check", "policyd")
    check(r.returncode == 1 and "did you mean \"policyd_workers\"" in r.stderr, "check policyd: unknown name",
          r.stderr)

    masking_tests(tmp)
    quarantine_tests(tmp)
    quarantine_store_tests(tmp)
    clamav_wait_tests(tmp)
    reload_tests(tmp, pconf)
    stuck_socket_tests(tmp, conf)
    fake_daemon_tests(tmp, conf)
    endless_input_tests(tmp)
    tool_option_tests(tmp)
    tool_getopt_tests(tmp)
    return done()


def bounded_run(args, stdin_path, limit_s=60, rss_kb=1_500_000):
    """Runs siftctl ARGS with stdin_path as its input; stops it (and says so)
    when it runs longer than limit_s or holds more than rss_kb of memory."""
    with open(stdin_path, "rb") as stdin:
        p = subprocess.Popen([SIFTCTL] + args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        t0, why = time.monotonic(), None
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
            except (OSError, AttributeError):
                rss = 0
            if rss > rss_kb or time.monotonic() - t0 > limit_s:
                why = f"stopped: {rss} kB, {time.monotonic() - t0:.1f}s"
                p.kill()
                break
            time.sleep(0.05)
        out, err = p.communicate()
        return p.returncode, out, (err + (why or ""))


def endless_input_tests(tmp):
    """Every command that reads a message (a file, standard input) stops at
    SIFT_TOOL_MESSAGE_MAX with a clear error, instead of reading endless input
    (/dev/zero) into memory until the machine runs out."""
    pdir = f"{tmp}/endless-plugins"
    os.makedirs(pdir, exist_ok=True)
    names = [n for n in ("spam", "dkim") if os.path.exists(f"{BUILD}/plugins/{n}.so")]
    for n in names:
        if not os.path.exists(f"{pdir}/{n}.so"):
            os.symlink(f"{BUILD}/plugins/{n}.so", f"{pdir}/{n}.so")
    conf = f"{tmp}/endless.conf"
    with open(conf, "w") as f:
        f.write(f"plugin_directory = {pdir}\nspam_rules = {sifttest.srcdir()}/rules\n"
                f"spam_bayes_store = lmdb:{tmp}/endless-bayes\n")
    big = "larger than 128 MiB, the largest message siftctl reads"
    cmds = [(["test", "-"], "/dev/zero", "siftctl test: -: " + big)]
    if "spam" in names:
        mbox = f"{tmp}/endless.mbox"
        with open(mbox, "wb") as f:  # sparse: a message of 200 MB of zeros
            f.write(b"From a@example.org Mon Jan  1 00:00:00 2024\nSubject: x\n\n")
            f.truncate(200 << 20)
        cmds += [(["spam", "check", "/dev/zero"], "/dev/null", "siftctl spam: /dev/zero: " + big),
                 (["spam", "learn", "--spam", mbox], "/dev/null", f"{mbox}: message 1 is " + big),
                 (["spam", "import", "-"], "/dev/zero", "-: line 1: longer than 4096 bytes")]
    if "dkim" in names:
        cmds.append((["dkim", "verify", "-"], "/dev/zero", "-: " + big))
    for args, stdin, want in cmds:
        rc, out, err = bounded_run(["-c", conf] + args, stdin)
        check(rc == 1 and want in err, f"{' '.join(args)} < {stdin}: refused at the limit", err[-300:])
    if "spam" in names:
        os.unlink(mbox)


def tool_option_tests(tmp):
    """A plugin command's option given without its value says so (not
    "unknown option", nor takes the option for an operand); spam check takes
    its options after the files as well."""
    pdir = f"{tmp}/option-plugins"
    os.makedirs(pdir, exist_ok=True)
    names = [n for n in ("spam", "ratelimit") if os.path.exists(f"{BUILD}/plugins/{n}.so")]
    for n in names:
        if not os.path.exists(f"{pdir}/{n}.so"):
            os.symlink(f"{BUILD}/plugins/{n}.so", f"{pdir}/{n}.so")
    conf = f"{tmp}/option.conf"
    with open(conf, "w") as f:
        f.write(f"plugin_directory = {pdir}\nspam_rules = {sifttest.srcdir()}/rules\nspam_use_bayes = no\n")
    msg = f"{tmp}/option.eml"
    with open(msg, "w") as f:
        f.write("From: alice@example.org\nSubject: hi\n\nHello.\n")
    cases = []
    if "spam" in names:
        said = "siftctl spam check: option --from needs a value (--from ADDR)"
        cases += [(("spam", "check", "--from"), said), (("spam", "check", msg, "--from"), said)]
    if "ratelimit" in names:
        cases += [(("ratelimit", "show", "--socket"), "siftctl ratelimit show: option --socket needs a value"),
                  (("ratelimit", "show", "alice", "--socket"),
                   "siftctl ratelimit show: option --socket needs a value"),
                  (("ratelimit", "stats", "--socket"), "siftctl ratelimit stats: option --socket needs a value")]
    for args, says in cases:
        r = run("-c", conf, *args)
        check(r.returncode == 2 and says in r.stderr, f"{' '.join(args[:2])} ... {args[-1]}: needs a value",
              r.stderr)
    # an argument a command does not take is an error, not ignored
    extra = []
    if "spam" in names:
        extra += [(("spam", "lint", "--bogus"), 'siftctl spam lint: unexpected argument "--bogus"'),
                  (("spam", "lint", "-v", "x"), 'siftctl spam lint: unexpected argument "x"'),
                  (("spam", "stats", "x"), 'siftctl spam stats: unexpected argument "x"'),
                  (("spam", "compile", "x"), 'siftctl spam compile: unexpected argument "x"'),
                  (("spam", "mime", msg, msg), "usage: siftctl spam mime FILE")]
    for args, says in extra:
        r = run("-c", conf, *args)
        check(r.returncode == 2 and r.stderr.startswith(says + "\n") and not r.stdout,
              f"{' '.join(args)}: refused, exit 2", r.stdout + r.stderr)
    if "spam" in names:
        r = run("-c", conf, "spam", "check", msg, "--from", "bob@example.org")
        check(r.returncode == 0 and r.stdout.startswith(f"{msg}: ham"), "spam check FILE --from ADDR",
              r.stdout + r.stderr)


def tool_getopt_tests(tmp):
    """getopt's own messages of the plugins' commands (and of the quarantine
    subcommands) start as siftctl's do: "siftctl PLUGIN TOOL: ...", not with
    the bare tool name."""
    pdir = f"{tmp}/getopt-plugins"
    os.makedirs(pdir, exist_ok=True)
    names = [n for n in ("dkim", "arc", "dmarc") if os.path.exists(f"{BUILD}/plugins/{n}.so")]
    for n in names:
        if not os.path.exists(f"{pdir}/{n}.so"):
            os.symlink(f"{BUILD}/plugins/{n}.so", f"{pdir}/{n}.so")
    os.makedirs(f"{tmp}/getopt-quarantine", mode=0o700, exist_ok=True)
    conf = f"{tmp}/getopt.conf"
    with open(conf, "w") as f:
        f.write(f"plugin_directory = {pdir}\ndkim_sign = no\ndns_servers = 127.0.0.1:1\n"
                f"quarantine_directory = {tmp}/getopt-quarantine\n")
    cases = [(("quarantine", "list", "--bogus"), 1, "siftctl quarantine list: unrecognized option '--bogus'"),
             (("quarantine", "purge", "--bogus"), 1, "siftctl quarantine purge: unrecognized option '--bogus'"),
             (("quarantine", "release", "--bogus"), 1,
              "siftctl quarantine release: unrecognized option '--bogus'")]
    if "dkim" in names:
        cases += [(("dkim", "genkey", "--bogus"), 1, "siftctl dkim genkey: invalid option -- '-'"),
                  (("dkim", "genkey", "-Z"), 1, "siftctl dkim genkey: invalid option -- 'Z'"),
                  (("dkim", "genkey", "-d"), 1, "siftctl dkim genkey: option requires an argument -- 'd'"),
                  (("dkim", "sign", "-Z"), 1, "siftctl dkim sign: invalid option -- 'Z'")]
    if "arc" in names:
        cases += [(("arc", "sign", "--bogus"), 1, "siftctl arc sign: unrecognized option '--bogus'"),
                  (("arc", "sign", "--key"), 1, "siftctl arc sign: option '--key' requires an argument")]
    if "dmarc" in names:
        cases += [(("dmarc", "check", "--bogus"), 2, "siftctl dmarc check: unrecognized option '--bogus'"),
                  (("dmarc", "report", "--bogus"), 2, "siftctl dmarc report: unrecognized option '--bogus'"),
                  (("dmarc", "report", "--date"), 2, "siftctl dmarc report: option '--date' requires an argument")]
    for args, rc, says in cases:
        r = run("-c", conf, *args)
        check(r.returncode == rc and r.stderr.startswith(says + "\n"),
              f"{' '.join(args)}: getopt's error names siftctl and the command", r.stderr)


def masking_tests(tmp):
    """Secrets never printed: filterd/policyd -n and -p, siftctl check and
    the daemons' error messages mask password= in state_store."""
    conf = f"{tmp}/secret.conf"
    with open(conf, "w") as f:
        f.write(f"plugin_directory = {BUILD}/plugins\n"
                "state_store = redis:127.0.0.1:1,password=hunter2,db=2\n")
    for daemon in ("filterd", "policyd"):
        for flag in ("-n", "-p"):
            r = subprocess.run([sifttest.program(daemon), flag, "-c", conf], capture_output=True, text=True,
                               timeout=60)
            out = r.stdout + r.stderr
            check(r.returncode == 0 and "state_store = redis:127.0.0.1:1,password=********,db=2" in out
                  and "hunter2" not in out, f"{daemon} {flag}: password masked", out)
        r = subprocess.run([sifttest.program(daemon), "-t", "-c", conf, "-o", "state_store=nosuch:x,password=hunter2"],
                           capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        check(r.returncode == 1 and "password=********" in out and "hunter2" not in out,
              f"{daemon} -t: error message masked", out)
    # the resolver's and the store's errors name the parameter and where it was set
    for daemon in ("filterd", "policyd"):
        for bad, why in (("state_store = bogus:x,password=hunter2", 'unknown key-value store type "bogus"'),
                         ("dns_servers = 999.1.1.1", 'bad server address "999.1.1.1"'),
                         ("dns_servers = ::1:5353", 'ambiguous server address "::1:5353": write [::1]:5353')):
            with open(f"{tmp}/located.conf", "w") as f:
                f.write(f"plugin_directory = {BUILD}/plugins\n{bad}\n")
            r = subprocess.run([sifttest.program(daemon), "-t", "-c", f"{tmp}/located.conf"], capture_output=True,
                               text=True, timeout=60)
            check(r.returncode == 1 and f"located.conf:2: {bad.split()[0]}: {why}" in r.stderr
                  and "hunter2" not in r.stderr, f"{daemon} -t: {bad.split()[0]} error names file:line, parameter",
                  r.stderr)
    r = run("-c", conf, "-o", "state_store=nosuch:x,password=hunter2", "check")
    out = r.stdout + r.stderr
    check(r.returncode == 1 and "password=********" in out and "hunter2" not in out, "siftctl check: masked", out)
    # a password in a file every user can read is named (a warning, the
    # daemons still start); 0640 is quiet, and so is a file without one
    for mode, text, warned in ((0o644, "state_store = redis:127.0.0.1:1,password=hunter2\n", True),
                               (0o640, "state_store = redis:127.0.0.1:1,password=hunter2\n", False),
                               (0o644, "state_store = memory:\n", False)):
        pconf = f"{tmp}/readable.conf"
        with open(pconf, "w") as f:
            f.write(f"plugin_directory = {BUILD}/plugins\n{text}")
        os.chmod(pconf, mode)
        r = subprocess.run([sifttest.program("policyd"), "-n", "-c", pconf], capture_output=True, text=True,
                           timeout=60)
        said = f"{pconf}:2: a password in a file readable by every user (mode 0{mode:o})" in r.stderr
        check(r.returncode == 0 and said == warned and "hunter2" not in r.stderr,
              f"mode {mode:o}, {text.split()[2][:12]}: readable password warned: {warned}", r.stderr)


def quarantine_tests(tmp):
    """siftctl quarantine refuses a quarantine_directory writable by group or
    others (whoever can write there can plant a release token), naming it
    and the fix; purge removes stale temporary files of unfinished stores."""
    q = f"{tmp}/quarantine"
    os.mkdir(q)
    conf = f"{tmp}/quarantine.conf"
    with open(conf, "w") as f:
        f.write(f"quarantine_directory = {q}\n")
    for mode in (0o777, 0o770, 0o757):
        os.chmod(q, mode)
        for cmd in (("list",), ("purge", "--older-than", "7d")):
            r = run("-c", conf, "quarantine", *cmd)
            want = (f"quarantine_directory {q}: refusing a directory writable by group or others "
                    f"(mode {mode:04o}); fix it with chmod go-w {q}")
            check(r.returncode == 1 and want in r.stderr and r.stdout == "",
                  f"quarantine {cmd[0]}: a quarantine_directory of mode {mode:04o} is refused", r.stdout + r.stderr)
    os.chmod(q, 0o750)
    r = run("-c", conf, "quarantine", "list")
    check(r.returncode == 0 and r.stderr == "", "quarantine list: mode 0750 is accepted", r.stderr)

    # owned by another unprivileged user (who can replace messages and
    # tokens): refused unless that user is filterd_user (root here); root
    # can chown
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(q, nobody.pw_uid, nobody.pw_gid)
        for cmd in (("list",), ("purge", "--older-than", "7d")):
            r = run("-c", conf, "-o", "filterd_user=root", "quarantine", *cmd)
            want = (f"quarantine_directory {q}: refusing a directory owned by uid {nobody.pw_uid} (nobody), "
                    f"not by root; fix it with chown root {q}")
            check(r.returncode == 1 and want in r.stderr and r.stdout == "",
                  f"quarantine {cmd[0]}: a quarantine_directory owned by nobody is refused, naming the owner "
                  "and the fix", r.stdout + r.stderr)
        r = run("-c", conf, "-o", "filterd_user=nobody", "quarantine", "list")
        check(r.returncode == 0 and r.stderr == "", "quarantine list: owned by filterd_user (nobody) is accepted",
              r.stderr)
        # without filterd_user, as root, the daemon's user is unknown (filterd
        # itself refuses to start so): the owner is not held against it
        r = run("-c", conf, "quarantine", "list")
        check(r.returncode == 0 and r.stderr == "", "quarantine list: without filterd_user, as root, the owner "
              "is not checked", r.stderr)
        os.chown(q, 0, 0)
    else:
        print("note: not root: the owner check of quarantine_directory is not tested", flush=True)

    # purge removes the temporary files of stores that never finished (a
    # crash between the write and the rename) once they are an hour old, so
    # never a store in progress; and nothing that a store does not write
    stale, fresh = f"{q}/.tmp-20250101-000000-0123456789ab", f"{q}/.tmp-20250101-000000-ba9876543210"
    other = f"{q}/.tmp-not.a.store"
    for path in (stale, fresh, other):
        with open(path, "w") as f:
            f.write("Sift-Quarantine: 1\n")
    hours_ago = time.time() - 2 * 3600
    for path in (stale, other):
        os.utime(path, (hours_ago, hours_ago))
    r = run("-c", conf, "quarantine", "purge", "--older-than", "7d", "--dry-run")
    check(r.returncode == 0 and f"would remove {stale} (" in r.stdout and fresh not in r.stdout and
          other not in r.stdout and all(os.path.exists(p) for p in (stale, fresh, other)),
          "quarantine purge --dry-run: names the stale temporary file, removes nothing", r.stdout + r.stderr)
    r = run("-c", conf, "quarantine", "purge", "--older-than", "7d")
    check(r.returncode == 0 and
          f"removed {stale} (left by a store that never finished, 120 minutes old)" in r.stdout and
          fresh not in r.stdout and "purged 0 of 0" in r.stdout,
          "quarantine purge: removes the temporary file two hours old, saying so", r.stdout + r.stderr)
    check(not os.path.exists(stale), "quarantine purge: the stale temporary file is gone")
    check(os.path.exists(fresh), "quarantine purge: a fresh temporary file (a store in progress) stays")
    check(os.path.exists(other), "quarantine purge: a file a store does not write stays")

    # and release tokens over a day old (refused by filterd: left by a
    # release that was killed), not younger ones
    rdir = f"{q}/.release"
    os.makedirs(rdir, mode=0o700, exist_ok=True)
    old_tok, new_tok = f"{rdir}/{'a' * 32}", f"{rdir}/{'b' * 32}"
    for path in (old_tok, new_tok):
        with open(path, "w") as f:
            f.write("20250101-000000-0123456789ab\n")
    two_days = time.time() - 2 * 86400
    os.utime(old_tok, (two_days, two_days))
    r = run("-c", conf, "quarantine", "purge", "--older-than", "7d")
    check(r.returncode == 0 and f"removed {old_tok} (an expired release token, 2880 minutes old)" in r.stdout and
          new_tok not in r.stdout and not os.path.exists(old_tok) and os.path.exists(new_tok),
          "quarantine purge: removes a release token two days old, keeps a fresh one", r.stdout + r.stderr)
    os.unlink(new_tok)

    # .release replaced by a symbolic link (the daemon user owns the store;
    # purge runs as root from cron): nothing is removed where it points
    os.rmdir(rdir)
    victim = f"{tmp}/not-the-store"
    os.mkdir(victim)
    victim_file = f"{victim}/{'c' * 32}"
    with open(victim_file, "w") as f:
        f.write("not a token\n")
    os.utime(victim_file, (two_days, two_days))
    os.symlink(victim, rdir)
    r = run("-c", conf, "quarantine", "purge", "--older-than", "7d")
    check(r.returncode == 1 and os.path.exists(victim_file) and "removed" not in r.stdout and
          f"{rdir}: not a directory (a symbolic link?): left alone" in r.stderr,
          "quarantine purge: a .release that is a symbolic link is not followed, and reported",
          r.stdout + r.stderr)
    os.unlink(rdir)


def quarantine_store_tests(tmp):
    """What the store holds is the sender's text and the daemon user's
    files: list and show write its control characters escaped, and name a
    message by its file's name; release refuses a damaged file (cut short
    or grown: its record's Size is not what follows it) and keeps it; a
    FIFO or a symbolic link named ID.msg is not opened (list would wait on
    a FIFO for good)."""
    q = f"{tmp}/qstore"
    os.mkdir(q, 0o750)
    conf = f"{tmp}/qstore.conf"
    with open(conf, "w") as f:
        f.write(f"quarantine_directory = {q}\n")

    def store(qid, sender, rcpts, reason, message, size=None, rec_id=None):
        meta = (f"Sift-Quarantine: 1\nId: {rec_id or qid}\nQueue-Id: 4AbC\nTime: 1764928800\nSender: {sender}\n" +
                "".join(f"Recipient: {r}\n" for r in rcpts) +
                f"Reason: {reason}\nPlugin: clamav\nSize: {len(message) if size is None else size}\n\n")
        with open(f"{q}/{qid}.msg", "wb") as f:
            f.write(meta.encode() + message)

    msg = b"Subject: \x1b]0;owned\x07hi\r\nFrom: a@x.test\r\n\r\n\xc2\x9b2J caf\xc3\xa9 8-bit \xe9\r\n.\r\n"
    hostile = "20261205-100000-0123456789ab"
    store(hostile, "\x1b]0;owned\x07\x1b[2Jevil@x.test", ["bob@sift.test", "\x1b[8mcarol@sift.test"],
          "virus \x1b[31mX\x7f", msg, rec_id="\x1b[2J../../x")
    r = run("-c", conf, "quarantine", "list")
    check(r.returncode == 0 and "\x1b" not in r.stdout and "\x07" not in r.stdout and "\x7f" not in r.stdout and
          r.stdout.startswith(hostile + " 2025-12-05T10:00:00Z 64 ") and
          "<\\x1b]0;owned\\x07\\x1b[2Jevil@x.test> <bob@sift.test>,<\\x1b[8mcarol@sift.test> clamav "
          "virus \\x1b[31mX\\x7f\n" in r.stdout,
          "quarantine list: control characters of the sender, recipients and reason are escaped", repr(r.stdout))
    r = subprocess.run([SIFTCTL, "-c", conf, "quarantine", "show", hostile], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    r.stdout = r.stdout.decode(errors="surrogateescape")
    check(r.returncode == 0 and "\x1b" not in r.stdout and "\x07" not in r.stdout and "\r" not in r.stdout and
          "\x9b" not in r.stdout and r.stdout.startswith(f"Id: {hostile}\n") and
          "Sender: <\\x1b]0;owned\\x07\\x1b[2Jevil@x.test>\n" in r.stdout and
          "Subject: \\x1b]0;owned\\x07hi\nFrom: a@x.test\n\n\\xc2\\x9b2J caf\u00e9 8-bit " in r.stdout,
          "quarantine show: control characters escaped in the record and the message, UTF-8 kept", repr(r.stdout))
    raw = subprocess.run([SIFTCTL, "-c", conf, "quarantine", "show", hostile, "--raw"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE).stdout
    check(raw == msg, "quarantine show --raw: the message as stored, byte for byte", raw)

    # a damaged file (cut short, or grown) is not released: sent, the
    # damaged copy would be delivered and the stored one removed
    calls = f"{tmp}/qstore-sendmail"
    fake = f"{tmp}/qstore-sendmail.sh"
    with open(fake, "w") as f:
        f.write(f"#!/bin/sh\necho \"$@\" >> {calls}\ncat > /dev/null\n")
    os.chmod(fake, 0o755)
    whole = b"Subject: whole\r\n\r\n" + b"line\r\n" * 1000
    cut = "20261205-100001-0123456789ab"
    store(cut, "a@x.test", ["bob@sift.test"], "virus X", whole[:100], size=len(whole))
    grown = "20261205-100002-0123456789ab"
    store(grown, "a@x.test", ["bob@sift.test"], "virus X", whole + b"tail\r\n", size=len(whole))
    for qid, have in ((cut, 100), (grown, len(whole) + 6)):
        r = run("-c", conf, "quarantine", "release", qid, "--sendmail", fake, "--wait", "0")
        check(r.returncode == 1 and not os.path.exists(calls) and os.path.exists(f"{q}/{qid}.msg") and
              f"{qid} is damaged: its record says {len(whole)} bytes of message, the file holds {have}; "
              "not released" in r.stderr,
              f"quarantine release: a damaged file ({have} of {len(whole)} bytes) is refused and kept",
              r.stdout + r.stderr)
    good = "20261205-100003-0123456789ab"
    store(good, "a@x.test", ["bob@sift.test", "carol@sift.test"], "virus X", whole)
    r = run("-c", conf, "quarantine", "release", good, "--sendmail", fake, "--wait", "0")
    check(r.returncode == 0 and not os.path.exists(f"{q}/{good}.msg") and os.path.exists(calls) and
          open(calls).read() == "-f a@x.test -- bob@sift.test carol@sift.test\n",
          "quarantine release: a whole file is released", r.stdout + r.stderr)
    # as many recipients as filterd keeps (10,000), long ones: more than one
    # command line holds (E2BIG), so sendmail runs for batches of them; each
    # recipient is handed over once, also when a batch fails and the release
    # is run again
    many = "20261205-100006-0123456789ab"
    rcpts = [f"r{i:05d}{'x' * 230}@example.org" for i in range(10000)]
    got = f"{tmp}/qstore-many"
    batch_sendmail = f"{tmp}/qstore-batch-sendmail.sh"
    with open(batch_sendmail, "w") as f:
        f.write(f"#!/bin/sh\nn=$(cat {got}.n 2>/dev/null || echo 0); echo $((n+1)) > {got}.n\n"
                f"cat > /dev/null\n[ \"$FAIL_AT\" = $((n+1)) ] && exit 75\n"
                f"shift 3; for r in \"$@\"; do echo \"$r\"; done >> {got}\n")
    os.chmod(batch_sendmail, 0o755)
    for fail_at in ("", "3"):
        for path in (got, got + ".n"):
            if os.path.exists(path):
                os.unlink(path)
        store(many, "a@x.test", rcpts, "virus X", whole)
        r = subprocess.run([SIFTCTL, "-c", conf, "quarantine", "release", many, "--sendmail", batch_sendmail,
                            "--wait", "0"], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, FAIL_AT=fail_at))
        if fail_at:
            first = open(got).read().split("\n")[:-1] if os.path.exists(got) else []
            with open(f"{q}/{many}.msg", "rb") as f:
                left = [ln[11:].decode() for ln in f.read().split(b"\n\n")[0].split(b"\n")
                        if ln.startswith(b"Recipient: ")]
            check(r.returncode == 1 and len(first) > 0 and first + left == rcpts and
                  f"{many} was handed over for {len(first)} of its 10000 recipients; it is kept with the "
                  f"{len(left)} others only" in r.stderr,
                  "quarantine release: a failed batch keeps the message with the recipients not reached only",
                  r.stderr[-500:])
            os.unlink(got)
            r = subprocess.run([SIFTCTL, "-c", conf, "quarantine", "release", many, "--sendmail", batch_sendmail,
                                "--wait", "0"], capture_output=True, text=True, timeout=120)
            rest = open(got).read().split("\n")[:-1] if os.path.exists(got) else []
            check(r.returncode == 0 and first + rest == rcpts and not os.path.exists(f"{q}/{many}.msg"),
                  "quarantine release again: the others only, then the message is removed", r.stderr[-500:])
        else:
            sent = open(got).read().split("\n")[:-1] if os.path.exists(got) else []
            runs = int(open(got + ".n").read()) if os.path.exists(got + ".n") else 0
            check(r.returncode == 0 and sent == rcpts and runs > 1 and not os.path.exists(f"{q}/{many}.msg"),
                  f"quarantine release: 10,000 long recipients in {runs} sendmail runs, each once",
                  r.stderr[-500:])
    if os.path.exists(f"{q}/{many}.msg"):
        os.unlink(f"{q}/{many}.msg")
    # the token replaced by a FIFO while the release waits for filterd to
    # use it (the daemon user owns the store): the wait still ends
    fifo_sendmail = f"{tmp}/qstore-fifo-sendmail.sh"
    with open(fifo_sendmail, "w") as f:
        f.write(f"#!/bin/sh\ncat > /dev/null\nfor t in {q}/.release/*; do rm -f \"$t\"; mkfifo \"$t\"; done\n")
    os.chmod(fifo_sendmail, 0o755)
    store(good, "a@x.test", ["bob@sift.test"], "virus X", whole)
    try:
        r = subprocess.run([SIFTCTL, "-c", conf, "quarantine", "release", good, "--sendmail", fifo_sendmail,
                            "--wait", "2s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
        check(r.returncode == 0 and f"released {good}" in r.stdout,
              "quarantine release: a FIFO in place of the release token does not block the wait",
              r.stdout + r.stderr)
    except subprocess.TimeoutExpired:
        check(False, "quarantine release: a FIFO in place of the release token does not block the wait (it hung)")
    # a message being released is neither deleted nor purged meanwhile: a
    # release that reaches some recipients only writes the message back with
    # the others, which would bring a deleted message back
    busy = "20261205-100007-0123456789ab"
    started, go = f"{tmp}/qstore-busy-started", f"{tmp}/qstore-busy-go"
    slow_sendmail = f"{tmp}/qstore-slow-sendmail.sh"
    with open(slow_sendmail, "w") as f:
        f.write(f"#!/bin/sh\ncat > /dev/null\ntouch {started}\n"
                f"i=0; while [ ! -e {go} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\n")
    os.chmod(slow_sendmail, 0o755)
    store(busy, "a@x.test", ["bob@sift.test"], "virus X", whole)
    rel = subprocess.Popen([SIFTCTL, "-c", conf, "quarantine", "release", busy, "--sendmail", slow_sendmail,
                            "--wait", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while not os.path.exists(started) and time.time() < deadline and rel.poll() is None:
            time.sleep(0.05)
        check(os.path.exists(started), "quarantine release: the slow sendmail runs")
        r = run("-c", conf, "quarantine", "delete", busy)
        check(r.returncode == 1 and os.path.exists(f"{q}/{busy}.msg") and
              f"{busy} is being released by another siftctl: not deleted" in r.stderr,
              "quarantine delete: a message being released is not deleted", r.stdout + r.stderr)
        r = run("-c", conf, "quarantine", "purge", "--older-than", "1s")
        counts = re.search(r"^purged (\d+) of (\d+)$", r.stdout, re.M)
        check(r.returncode == 0 and os.path.exists(f"{q}/{busy}.msg") and
              f"skipped {busy}: being released" in r.stdout and counts is not None and
              int(counts.group(1)) == int(counts.group(2)) - 1,
              "quarantine purge: a message being released is skipped, and said so", r.stdout + r.stderr)
    finally:
        open(go, "w").close()
        out, err = rel.communicate(timeout=60)
    check(rel.returncode == 0 and f"released {busy}" in out and not os.path.exists(f"{q}/{busy}.msg"),
          "quarantine release: done after the refused delete, the message removed", out + err)
    store(busy, "a@x.test", ["bob@sift.test"], "virus X", whole)
    r = run("-c", conf, "quarantine", "delete", busy)
    check(r.returncode == 0 and r.stdout == f"deleted {busy}\n" and not os.path.exists(f"{q}/{busy}.msg"),
          "quarantine delete: a message no release holds is deleted", r.stdout + r.stderr)
    if os.path.isdir(f"{q}/.release"):
        shutil.rmtree(f"{q}/.release")
    for qid in (cut, grown, hostile, good):
        if os.path.exists(f"{q}/{qid}.msg"):
            os.unlink(f"{q}/{qid}.msg")

    # not a regular file: a FIFO (list and show would wait for a writer)
    # and a symbolic link (siftctl may run as root) are skipped with a
    # warning, never opened
    fifo, link = "20261205-100004-0123456789ab", "20261205-100005-0123456789ab"
    os.mkfifo(f"{q}/{fifo}.msg", 0o600)
    target = f"{tmp}/qstore-target"
    store(good, "a@x.test", ["bob@sift.test"], "virus X", whole)
    os.rename(f"{q}/{good}.msg", target)
    os.symlink(target, f"{q}/{link}.msg")
    try:
        r = subprocess.run([SIFTCTL, "-c", conf, "quarantine", "list"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=10)
        check(r.returncode == 0 and r.stdout == "" and "not a regular file" in r.stderr and
              "a symbolic link" in r.stderr,
              "quarantine list: a FIFO and a symbolic link are skipped, with a warning", r.stdout + r.stderr)
    except subprocess.TimeoutExpired:
        check(False, "quarantine list: a FIFO and a symbolic link are skipped, with a warning (it hung)")
    for qid, what in ((fifo, "not a regular file"), (link, "a symbolic link")):
        for cmd in ("show", "release"):
            try:
                args = [cmd, qid] + (["--sendmail", fake] if cmd == "release" else [])
                r = subprocess.run([SIFTCTL, "-c", conf, "quarantine"] + args, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=10)
                check(r.returncode == 1 and what in r.stderr and r.stdout == "",
                      f"quarantine {cmd}: {what} is refused", r.stdout + r.stderr)
            except subprocess.TimeoutExpired:
                check(False, f"quarantine {cmd}: {what} is refused (it hung)")


def clamav_wait_tests(tmp):
    """siftctl test waits for the ClamAV database (loaded in the background)
    instead of answering tempfail, unless clamav_ready_wait is set."""
    sys.path.insert(0, os.path.join(os.environ.get("SIFT_SRCDIR", "."), "plugins", "clamav", "tests"))
    import cvlib  # noqa: E402
    if not os.path.exists(os.path.join(BUILD, "plugins", "clamav.so")):
        print("skip siftctl test with clamav: the clamav plugin is not built (-Dclamav=disabled)", flush=True)
        return
    dbdir = f"{tmp}/cvdb"
    cvlib.make_db(dbdir)
    conf = f"{tmp}/clamav.conf"
    with open(conf, "w") as f:
        f.write(f"plugin_directory = {BUILD}/plugins\ninbound_plugins = clamav\n"
                f"clamav_database_directory = {dbdir}\nclamav_tmpdir = {tmp}\n"
                f"quarantine_directory = {tmp}/q\n")
    eicar = cvlib.infected_messages()["plain"][0]
    clean = cvlib.clean_messages()["text"]
    r = sifttest.siftctl_test(conf, eicar, timeout=300)
    check(r["action"] == "reject", "siftctl test waits for the database: EICAR rejected, not tempfail", r)
    r = sifttest.siftctl_test(conf, clean, timeout=300)
    check(r["action"] == "accept", "siftctl test waits for the database: clean message accepted", r)
    r = sifttest.siftctl_test(conf, clean, opts=("clamav_ready_wait=0",), timeout=300)
    check(r["action"] == "tempfail", "clamav_ready_wait=0 set by hand: tempfail as before", r)

    # A message is quarantined with every recipient or not at all: filterd
    # keeps 10,000 recipients of a message (sendmail(1) has no limit), and
    # a copy stored without the others would never reach them on release.
    q = f"{tmp}/q"
    os.makedirs(q, 0o750, exist_ok=True)
    for n, action in ((10000, "discard"), (10001, "tempfail")):
        to = []
        for i in range(n):
            to += ["--to", f"r{i}@sift.test"]
        r = sifttest.siftctl_test(conf, eicar, args=["--from", "a@x.test"] + to,
                                  opts=("clamav_inbound_action=quarantine",), timeout=300)
        stored = [f for f in os.listdir(q) if f.endswith(".msg")]
        rcpts = open(f"{q}/{stored[0]}", "rb").read().count(b"\nRecipient: ") if stored else 0
        if action == "discard":
            check(r["action"] == "discard" and len(stored) == 1 and rcpts == n,
                  f"quarantine: a message to {n} recipients is stored with all of them", (r, stored, rcpts))
        else:
            check(r["action"] == "tempfail" and (r.get("reply") or "").startswith("451 4.7.1") and stored == [],
                  f"quarantine: a message to {n} recipients (more than filterd keeps) is not stored: 451",
                  (r.get("action"), r.get("reply"), stored, rcpts))
        for f in stored:
            os.unlink(f"{q}/{f}")


def milter_answers(port):
    """True if the milter on 127.0.0.1:port answers an option negotiation
    (SMFIC_OPTNEG) with its own."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(struct.pack(">IcIII", 13, b"O", 6, 0x1ff, 0x1fffff))
            head = b""
            while len(head) < 5:
                chunk = s.recv(5 - len(head))
                if not chunk:
                    return False
                head += chunk
            return head[4:5] == b"O"
    except OSError:
        return False


def stuck_socket_tests(tmp, conf):
    """--timeout bounds the whole wait: a daemon that does not accept (its
    backlog full), one that accepts and never answers, one that answers a
    byte at a time."""
    path = f"{tmp}/stuck.ctl"
    held = sifttest.stuck_unix_listener(path)
    try:
        for cmd in ("status", "reload"):
            t = time.monotonic()
            try:
                r = subprocess.run([SIFTCTL, "-c", conf, "-o", f"filterd_control_socket={path}", cmd, "--timeout",
                                    "2"], capture_output=True, text=True, timeout=30)
                rc, err = r.returncode, r.stderr
            except subprocess.TimeoutExpired:
                rc, err = None, "still waiting after 30s"
            check(rc == 1 and "did not accept the connection in time" in err and time.monotonic() - t < 10,
                  f"{cmd} --timeout 2: a daemon that does not accept: exit 1 in time", err)
        if os.path.exists(f"{BUILD}/plugins/ratelimit.so"):
            t = time.monotonic()
            try:
                r = subprocess.run([SIFTCTL, "-c", conf, "-o", f"plugin_directory={BUILD}/plugins", "ratelimit",
                                    "stats", "--socket", path], capture_output=True, text=True, timeout=40)
                rc, err = r.returncode, r.stderr
            except subprocess.TimeoutExpired:
                rc, err = None, "still waiting after 40s"
            check(rc == 1 and f"connect {path}: not accepted within 10s" in err and time.monotonic() - t < 20,
                  "ratelimit stats: a socket that does not accept: exit 1 in time", err)
    finally:
        for c in held:
            c.close()
        os.unlink(path)

    # a socket the user may not connect to: the reason, not "is the daemon running?"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    os.chmod(path, 0o600)
    srv.listen(1)
    try:
        r = subprocess.run([SIFTCTL, "-c", conf, "-o", f"filterd_control_socket={path}", "status"],
                           capture_output=True, text=True, timeout=30, user="nobody")
        check(r.returncode == 1 and "Permission denied: only root or the daemon's user may use it" in r.stderr
              and "is the daemon running" not in r.stderr, "status as another user: permission denied, named",
              r.stderr)
    finally:
        srv.close()
        os.unlink(path)

    # accepts, then never answers / answers a byte every second
    for trickle in (False, True):
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen(4)
        stop = []

        def serve():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(64)
            while not stop:
                time.sleep(1)
                if trickle:
                    try:
                        c.send(b"o" if not stop else b"")
                    except OSError:
                        break
            c.close()
        import threading
        th = threading.Thread(target=serve)
        th.start()
        t = time.monotonic()
        try:
            r = subprocess.run([SIFTCTL, "-c", conf, "-o", f"filterd_control_socket={path}", "status", "--timeout",
                                "3"], capture_output=True, text=True, timeout=30)
            rc, err = r.returncode, r.stderr
        except subprocess.TimeoutExpired:
            rc, err = None, "still waiting after 30s"
        took = time.monotonic() - t
        stop.append(1)
        srv.close()
        th.join()
        os.unlink(path)
        check(rc == 1 and "no answer in time" in err and took < 8,
              f"status --timeout 3: a daemon that {'answers a byte a second' if trickle else 'never answers'}: "
              f"exit 1 in time ({took:.1f}s)", err)


FAKE_DAEMON = r"""
import socket, sys
srv = socket.socket(socket.AF_UNIX)
srv.bind(sys.argv[1])
srv.listen(8)
print("listening", flush=True)
while True:
    c, _ = srv.accept()
    c.settimeout(5)
    try:
        c.recv(64)
        c.sendall(sys.argv[2].encode("latin-1"))
    except OSError:
        pass
    c.close()
"""


def fake_daemon(path, answer, user=None):
    """A process listening on path (as user) that answers every request
    with answer; stopped by the caller (p.kill(), p.wait())."""
    p = subprocess.Popen([sys.executable, "-c", FAKE_DAEMON, path, answer], stdout=subprocess.PIPE, text=True,
                         user=user)
    if p.stdout.readline().strip() != "listening":
        p.kill()
        p.wait()
        raise RuntimeError("the fake daemon did not start")
    return p


def fake_daemon_tests(tmp, conf):
    """What siftctl prints from a control socket: only the answer of a
    listener of root's (or siftctl's own user's) is believed, whatever
    owns the path (the run directory is the daemon user's, who can put a
    socket of its own there); control characters of the answer are
    escaped, as quarantine list/show escape them."""
    # (latin-1 characters: the fake daemon sends them as those bytes; C2 9B
    # is CSI in UTF-8)
    evil = "\x1b]0;retitled\x07\x1b[2J\xc2\x9b"
    if os.geteuid() == 0:
        run_dir = f"{tmp}/run-nobody"
        os.mkdir(run_dir, 0o755)
        nobody = pwd.getpwnam("nobody")
        os.chown(run_dir, nobody.pw_uid, nobody.pw_gid)
        path = f"{run_dir}/filterd.ctl"
        fake = fake_daemon(path, "ok FAKE ANSWER " + evil + "\n", user="nobody")
        # what a swap between a check of the path and the connect()
        # leads to: a socket of root's at the path, the daemon user's
        # process behind it
        os.chown(path, 0, 0)
        try:
            for cmd in ("status", "reload"):
                r = subprocess.run([SIFTCTL, "-c", conf, "-o", f"filterd_control_socket={path}", cmd, "--timeout",
                                    "5"], capture_output=True, text=True, timeout=30, errors="replace")
                check(r.returncode == 1 and "FAKE" not in r.stdout + r.stderr
                      and f"answered by uid {nobody.pw_uid}, not root: not the daemon's; refusing it" in r.stderr,
                      f"{cmd} as root: a listener of the daemon user's is refused, its answer not shown",
                      (r.returncode, r.stdout, r.stderr))
        finally:
            fake.kill()
            fake.wait()
            os.unlink(path)
    # a listener of root's (the tests' user) whose answer carries escapes
    path = f"{tmp}/escapes.ctl"
    for answer, cmd, stream in (("ok line one " + evil + "\nline two\n", "status", "stdout"),
                                ("ok reloaded " + evil + "\n", "reload", "stdout"),
                                ("error refused " + evil + "\n", "reload", "stderr")):
        fake = fake_daemon(path, answer)
        try:
            r = subprocess.run([SIFTCTL, "-c", conf, "-o", f"filterd_control_socket={path}", cmd, "--timeout", "5"],
                               capture_output=True, timeout=30)
        finally:
            fake.kill()
            fake.wait()
            os.unlink(path)
        out = r.stdout if stream == "stdout" else r.stderr
        check(b"\x1b" not in r.stdout + r.stderr and b"\xc2\x9b" not in r.stdout + r.stderr
              and b"\\x1b]0;retitled\\x07\\x1b[2J\\xc2\\x9b" in out and r.returncode == (stream == "stderr"),
              f"{cmd}: control characters of the answer ({answer.split()[0]}) escaped on {stream}",
              (r.returncode, r.stdout, r.stderr))


def reload_tests(tmp, pconf):
    """siftctl reload through the control socket: waits for the outcome;
    a failed reload exits 1 with the reason and the old generation keeps
    serving; a user who is neither root nor the daemon's is refused."""
    ctl = f"{tmp}/policyd.ctl"
    port = sifttest.free_port()
    # policyd drops to nobody after making its sockets as root
    with open(pconf, "a") as f:
        f.write(f"policyd_listen = inet:127.0.0.1:{port}\npolicyd_control_socket = {ctl}\n"
                "policyd_user = nobody\n")
    os.chmod(tmp, 0o755)
    for fn in (pconf, f"{tmp}/senders"):
        os.chmod(fn, 0o644)
    pol = sifttest.Proc([sifttest.program("policyd"), "-f", "-c", pconf], log=f"{tmp}/policyd.log", port=port,
                        name="policyd")
    fctl = f"{tmp}/filterd.ctl"
    things = [pol]
    try:
        pol.start()
        nobody = pwd.getpwnam("nobody")
        st = os.stat(ctl)
        check(st.st_mode & 0o777 == 0o600 and (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid),
              "control socket: mode 0600, owned by policyd_user (nobody)", (oct(st.st_mode), st.st_uid, st.st_gid))
        # the port accepts as soon as it is bound, as root: the drop follows
        end = time.monotonic() + 10
        while os.stat(f"/proc/{pol.pid}").st_uid != nobody.pw_uid and time.monotonic() < end:
            time.sleep(0.05)
        check(os.stat(f"/proc/{pol.pid}").st_uid == nobody.pw_uid, "policyd runs as nobody")

        def ask():
            with sifttest.PolicyClient(port, defaults={"protocol_state": "RCPT"}) as c:
                return c.ask(sender="spam@bad.example", recipient="a@example.com", client_address="192.0.2.1")
        check(ask().startswith("REJECT") and "go away" in ask(), "policyd: first generation answers", ask())

        with open(f"{tmp}/senders", "w") as f:
            f.write("spam@bad.example REJECT second generation\n")
        r = run("-c", pconf, "reload", "policyd")
        check(r.returncode == 0 and "reloaded the configuration" in r.stdout, "reload policyd: exit 0, outcome",
              r.stdout + r.stderr)
        check("second generation" in ask(), "reload policyd: the new generation answers", ask())

        good = open(pconf).read()
        with open(pconf, "a") as f:
            f.write("access_sender_mapp = texthash:/nonexistent\n")
        with open(f"{tmp}/senders", "w") as f:
            f.write("spam@bad.example REJECT third generation\n")
        r = run("-c", pconf, "reload", "policyd")
        check(r.returncode == 1 and "reload failed" in r.stderr and "unknown parameter \"access_sender_mapp\""
              in r.stderr and "policyd.conf:" in r.stderr, "failed reload: exit 1 with the reason", r.stderr)
        check(pol.alive() and "second generation" in ask(), "failed reload: the old generation keeps serving",
              ask())
        # what the next start would refuse, a reload refuses too: an
        # unknown run-as user, a socket group that does not exist
        for bad, param in (("policyd_user = no-such-user-here", "policyd_user"),
                           ("policyd_socket_group = no-such-group-here", "policyd_socket_group")):
            with open(pconf, "w") as f:
                f.write(good + bad + "\n")
            r = run("-c", pconf, "reload", "policyd")
            check(r.returncode == 1 and "reload failed" in r.stderr and param in r.stderr
                  and "policyd.conf:" in r.stderr, f"reload with {bad}: exit 1 naming the parameter", r.stderr)
        check(pol.alive() and "second generation" in ask(), "the old generation keeps serving after those", ask())
        with open(pconf, "w") as f:
            f.write(good)

        # SIGHUP still reloads
        pol.signal(1)
        pol.wait_log(r"reloaded the configuration", timeout=10)
        ok = False
        for _ in range(50):
            if "third generation" in ask():
                ok = True
                break
            time.sleep(0.1)
        check(ok, "SIGHUP still reloads", ask())

        # a user who is neither root nor the daemon's: refused
        other = pwd.getpwnam("daemon")
        setpriv = shutil.which("setpriv")

        def as_user(u):
            return subprocess.run([setpriv, f"--reuid={u.pw_uid}", f"--regid={u.pw_gid}", "--clear-groups",
                                   SIFTCTL, "-c", pconf, "reload", "policyd"],
                                  capture_output=True, text=True, timeout=30)
        r = as_user(nobody)
        check(r.returncode == 0 and "reloaded the configuration" in r.stdout,
              "the daemon's own user may reload (the socket is its)", r.stdout + r.stderr)
        r = subprocess.run([setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                            SIFTCTL, "-c", pconf, "status", "policyd"], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0 and r.stdout.startswith("policyd "), "the daemon's own user may ask for the status",
              r.stdout + r.stderr)
        r = as_user(other)
        check(r.returncode == 1 and "reload failed" in r.stderr and "Permission denied" in r.stderr,
              "another user: refused by the socket's mode", r.stdout + r.stderr)
        os.chmod(ctl, 0o666)  # only the peer check is left
        r = as_user(other)
        check(r.returncode == 1 and "permission denied" in r.stderr, "another user: refused by the peer check",
              r.stdout + r.stderr)
        check("refusing uid %d" % other.pw_uid in pol.log(), "another user: the refusal is logged",
              pol.log_tail())
        # ... at once, before reading anything from it
        t = time.monotonic()
        r = subprocess.run([sys.executable, "-c", "import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
                            "s.settimeout(20)\ns.connect(sys.argv[1])\nsys.stdout.write(s.recv(200).decode())",
                            ctl], capture_output=True, text=True, timeout=30, user=other.pw_name)
        took = time.monotonic() - t
        check(r.stdout.startswith("error permission denied") and took < 3,
              f"another user who sends nothing: refused at once ({took:.1f}s)", r.stdout + r.stderr)

        # a client that sends a byte every second is served on its own
        # thread (for the request's 5 s in all, not 5 s a byte): a status
        # asked for meanwhile is answered at once
        trickler = socket.socket(socket.AF_UNIX)
        trickler.connect(ctl)
        t = time.monotonic()
        status = subprocess.Popen([SIFTCTL, "-c", pconf, "status", "policyd", "--timeout", "30"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sent, said, took = 0, b"", None
        try:
            # a byte a second, the status looked at every 0.1 s
            while status.poll() is None and time.monotonic() - t < 20:
                if time.monotonic() - t >= sent:
                    try:
                        trickler.send(b"s")
                        sent += 1
                    except OSError:
                        break
                time.sleep(0.1)
            try:
                out, err = status.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                status.kill()
                out, err = status.communicate()
            took = time.monotonic() - t
            trickler.settimeout(10)
            try:
                said = trickler.recv(200)
            except OSError:
                pass
        finally:
            trickler.close()
            if status.poll() is None:
                status.kill()
        check(status.returncode == 0 and out.startswith("policyd ") and took < 3,
              f"a client trickling its request: status answered in {took:.1f}s ({sent} bytes trickled)",
              out + err)
        check(said.startswith(b"error expected one command line within 5 s"),
              "the trickling client is told its line did not come in time", said)

        # eight silent clients take every place: a ninth is told the
        # socket is busy, at once; once they are answered, status works
        silent = []
        try:
            for _ in range(8):
                c = socket.socket(socket.AF_UNIX)
                c.connect(ctl)
                silent.append(c)
            time.sleep(0.5)  # each in its thread
            t = time.monotonic()
            r = run("-c", pconf, "status", "policyd", "--timeout", "30")
            took = time.monotonic() - t
            check(r.returncode == 1 and "busy: 8 control requests are being served" in r.stderr and took < 3,
                  f"a ninth client while eight are served: told busy at once ({took:.1f}s)", r.stdout + r.stderr)
            for c in silent:
                c.settimeout(10)
                try:
                    c.recv(200)
                except OSError:
                    pass
        finally:
            for c in silent:
                c.close()
        ok = False
        for _ in range(50):
            r = run("-c", pconf, "status", "policyd")
            if r.returncode == 0:
                ok = True
                break
            time.sleep(0.1)
        check(ok and r.stdout.startswith("policyd "), "after them, status is served again", r.stdout + r.stderr)

        # filterd: the same through its reload thread
        fport = sifttest.free_port()
        fd = sifttest.start_daemon("filterd", tmp, {"inbound_plugins": "access",
                                                    "access_sender_map": f"texthash:{tmp}/senders",
                                                    "filterd_control_socket": fctl},
                                   listen=f"inet:127.0.0.1:{fport}")
        things.append(fd)
        r = run("-c", fd.conf, "reload")
        check(r.returncode == 0 and "configuration reloaded (1 plugins)" in r.stdout, "reload filterd: exit 0",
              r.stdout + r.stderr)
        r = run("-c", fd.conf, "-o", "filterd_control_socket=" + fctl, "reload", "filterd")
        check(r.returncode == 0, "reload filterd by name", r.stderr)

        # stdout that cannot be written (a full disk): exit 1 with the
        # reason on stderr, not 0 with nothing printed
        with open(f"{tmp}/full.eml", "w") as f:
            f.write("From: alice@example.org\nSubject: hi\n\nHello.\n")
        for args in (("status",), ("status", "--json"), ("reload",), ("test", "--json", f"{tmp}/full.eml"),
                     ("test", f"{tmp}/full.eml"), ("quarantine", "--help"), ("help",)):
            with open("/dev/full", "w") as full:
                r = subprocess.run([SIFTCTL, "-c", fd.conf] + list(args), stdout=full, stderr=subprocess.PIPE,
                                   text=True, timeout=60)
            check(r.returncode == 1 and "siftctl: cannot write the output: No space left on device" in r.stderr,
                  "siftctl %s > /dev/full: exit 1, saying why" % " ".join(args), (r.returncode, r.stderr))
        with open(fd.conf, "a") as f:
            f.write("access_bogus = 1\n")
        r = run("-c", fd.conf, "reload")
        check(r.returncode == 1 and "filterd.conf:" in r.stderr and "access_bogus" in r.stderr,
              "reload filterd failing: exit 1 with the reason", r.stderr)
        check(fd.alive() and sifttest.tcp_listening(fport), "filterd keeps serving after a failed reload")

        # ${x:...} nested 100,000 deep (a 500 KB line): refused by -t and by
        # a reload, quickly and naming file, line and parameter, instead of
        # overflowing the stack; the running daemon keeps its configuration
        with open(fd.conf) as f:
            fgood = f.read().replace("access_bogus = 1\n", "")
        deep = "myhostname = " + "${x:" * 100000 + "h" + "}" * 100000 + "\n"
        line = fgood.count("\n") + 1
        with open(f"{tmp}/deep.conf", "w") as f:
            f.write(fgood + deep)
        t0 = time.monotonic()
        r = subprocess.run([sifttest.program("filterd"), "-t", "-c", f"{tmp}/deep.conf"], capture_output=True,
                           text=True, timeout=120)
        check(r.returncode == 1 and f"deep.conf:{line}: myhostname: expansions nested more than 256 levels deep"
              in r.stderr and time.monotonic() - t0 < 10, "filterd -t: deeply nested ${x:...} refused quickly",
              "%d %.1fs %s" % (r.returncode, time.monotonic() - t0, r.stderr[-300:]))
        with open(fd.conf, "w") as f:
            f.write(fgood + deep)
        t0 = time.monotonic()
        r = run("-c", fd.conf, "reload")
        check(r.returncode == 1 and f"filterd.conf:{line}: myhostname: expansions nested more than 256 levels deep"
              in r.stderr and time.monotonic() - t0 < 10, "reload with deeply nested ${x:...}: fails quickly",
              "%d %.1fs %s" % (r.returncode, time.monotonic() - t0, r.stderr[-300:]))
        check(fd.alive() and milter_answers(fport), "filterd survives it and keeps answering", fd.log_tail())
        with open(fd.conf, "w") as f:
            f.write(fgood)

        # filterd's own parameters: checked at reload like any other (the
        # next start would refuse them), and a change either applied (the
        # deadlines) or named in a warning (takes effect at restart)
        line = fgood.count("\n") + 1
        for bad in ("filterd_backlog = lots", "filterd_milter_timeout = 10x", "filterd_engine = bogus",
                    "filterd_user = no-such-user-here", "filterd_socket_group = no-such-group-here"):
            with open(fd.conf, "w") as f:
                f.write(fgood + bad + "\n")
            r = run("-c", fd.conf, "reload")
            check(r.returncode == 1 and (f"filterd.conf:{line}: {bad.split()[0]} = " in r.stderr
                                         or f"filterd.conf:{line}: {bad.split()[0]}: unknown " in r.stderr),
                  f"reload with {bad}: fails naming file:line and the parameter", r.stdout + r.stderr)
        check(fd.alive() and milter_answers(fport), "filterd keeps answering after those", fd.log_tail())
        mark = len(fd.log())
        with open(fd.conf, "w") as f:
            f.write(fgood + "filterd_backlog = 100\nfilterd_command_deadline = 7s\n")
        r = run("-c", fd.conf, "reload")
        check(r.returncode == 0 and "configuration reloaded" in r.stdout, "reload with valid filterd_* changes",
              r.stdout + r.stderr)
        log = fd.log()[mark:]
        check("filterd_backlog changed: it takes effect when filterd restarts" in log
              and "filterd_command_deadline changed" not in log,
              "the backlog change is named as taking effect at restart, the deadline is applied", log)
        # the common parameters read once (resolver, store, metrics
        # listener): a state_store that would not open fails the reload,
        # one that would is named as taking effect at restart
        with open(fd.conf, "w") as f:
            f.write(fgood + "state_store = bogus:x\n")
        r = run("-c", fd.conf, "reload")
        check(r.returncode == 1 and f"filterd.conf:{line}: state_store: " in r.stderr,
              "reload with a bad state_store: fails naming file:line and the parameter", r.stdout + r.stderr)
        mark = len(fd.log())
        with open(fd.conf, "w") as f:
            f.write(fgood + "state_store = memory:\ndns_timeout = 3s\n")
        r = run("-c", fd.conf, "reload")
        log = fd.log()[mark:]
        check(r.returncode == 0 and "dns_timeout changed: it takes effect when filterd restarts" in log
              and "state_store changed" not in log,
              "reload with dns_timeout changed: named as taking effect at restart", r.stdout + r.stderr + log)
        with open(fd.conf, "w") as f:
            f.write(fgood)
    finally:
        sifttest.stop_all(things)


if __name__ == "__main__":
    sys.exit(main())
