#!/usr/bin/python3
"""filterd end to end with miltertest: starts filterd with the access and
test plugins on a free port, runs every tests/milter/*.lua script against
it (miltertest plays the MTA), checks the log lines, a reload by SIGUSR1,
and a second instance whose plugin fails (tempfail). Prints
"N passed, N failed"."""
import os, re, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.environ["SIFT_SRCDIR"], "tests", "lib"))
import sifttest  # noqa: E402

SRC = os.environ["SIFT_SRCDIR"]
BUILD = os.environ["SIFT_BUILDDIR"]
HERE = os.path.join(SRC, "tests", "milter")
passed = failed = 0


def result(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def plugin_dir(tmp):
    d = os.path.join(tmp, "plugins")
    os.makedirs(d, exist_ok=True)
    for p in (os.path.join(BUILD, "plugins", "access.so"), os.path.join(BUILD, "tests", "testplug.so")):
        os.symlink(p, os.path.join(d, os.path.basename(p)))
    return d


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def start_filterd(tmp, conf, name):
    port = sifttest.free_port()
    log = os.path.join(tmp, name + ".log")
    p = sifttest.Proc([os.path.join(BUILD, "filterd", "filterd"), "-f", "-c", conf,
                       "-o", f"filterd_listen=inet:127.0.0.1:{port}",
                       "-o", f"filterd_pid_file={tmp}/{name}.pid"], log=log, port=port)
    p.start()
    return p, port, log


def wait_for(pred, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def miltertest(script, port):
    r = subprocess.run(["miltertest", "-D", f"port={port}", "-D", f"dir={HERE}", "-s",
                        os.path.join(HERE, script)], capture_output=True, text=True, timeout=60)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def main():
    tmp = tempfile.mkdtemp(prefix="sift-milter-")
    os.chmod(tmp, 0o755)
    pdir = plugin_dir(tmp)
    write(f"{tmp}/client.cidr", "192.0.2.66/32 REJECT\n")
    write(f"{tmp}/client_names", "evil.example REJECT\n")
    senders = ("spam@bad.example REJECT go away\n"
               "spammer.example REJECT\n"
               "hold@x.example HOLD\n"
               "prepend@x.example PREPEND X-Sift-Test: prepended\n"
               "discard@x.example DISCARD\n"
               "ok@good.example OK\n")
    write(f"{tmp}/senders", senders)
    write(f"{tmp}/rcpts", "nobody@example.com REJECT no such user\n"
          "busy@example.com 451 4.2.0 mailbox busy\n")
    conf = f"{tmp}/filterd.conf"
    write(conf, f"""# test configuration
plugin_directory = {pdir}
inbound_plugins = access testplug
originating_plugins = testplug
access_client_map = cidr:{tmp}/client.cidr
# a second map for names would need a second plugin instance: names and
# addresses share one map in Postfix too
access_sender_map = texthash:{tmp}/senders
access_recipient_map = texthash:{tmp}/rcpts
testplug_symbol = TEST_SYM:1.5
testplug_header = X-Testplug: seen
""")
    # client names and addresses: one texthash map holding both kinds
    write(f"{tmp}/clients", "evil.example REJECT\n192.0.2.66 REJECT\n")
    subprocess.run(["sed", "-i", f"s|cidr:{tmp}/client.cidr|texthash:{tmp}/clients|", conf], check=True)

    fd, port, log = start_filterd(tmp, conf, "filterd")
    try:
        for script in ["accept.lua", "client_reject.lua", "sender_reject.lua", "rcpt_reject.lua",
                       "hold.lua", "prepend.lua", "discard.lua", "whitelist.lua", "originating.lua",
                       "concurrent.lua", "reload_before.lua"]:
            ok, out = miltertest(script, port)
            result("milter " + script, ok, out)
        text = open(log).read()
        result("log: summary line with queue id",
               re.search(r"4ABCDEF123: filterd: action=accept, profile=inbound, from=<alice@example.org>, "
                         r"rcpts=1, score=1\.5, symbols=TEST_SYM\(1\.5\), time=\d+ms", text) is not None, text[-2000:])
        result("log: reject line names the plugin",
               re.search(r"NOQUEUE: filterd: action=reject, profile=inbound, by=access, from=<spam@bad.example>",
                         text) is not None)
        result("log: hold summary", "action=hold" in text)
        # reload: running connections keep their generation, new ones get
        # the new map
        r = subprocess.run(["miltertest", "-D", f"port={port}", "-D", f"dir={HERE}", "-D", f"pid={fd.pid}",
                            "-D", f"mapfile={tmp}/senders", "-s", os.path.join(HERE, "reload_during.lua")],
                           capture_output=True, text=True, timeout=60)
        result("reload during a connection", r.returncode == 0, r.stdout + r.stderr)
        ok = wait_for(lambda: "configuration reloaded" in open(log).read(), 10)
        result("reload by SIGUSR1 logged", ok)
        ok, out = miltertest("reload_after.lua", port)
        result("milter reload_after.lua", ok, out)
        # a broken configuration on reload keeps the running one
        with open(conf, "a") as f:
            f.write("access_reject_code = 999\n")
        os.kill(fd.pid, signal.SIGUSR1)
        ok = wait_for(lambda: "reload failed" in open(log).read(), 10)
        result("failed reload keeps running configuration", ok and fd.alive())
        ok, out = miltertest("reload_after.lua", port)
        result("still serving after failed reload", ok, out)
    finally:
        fd.stop()
    result("filterd exited after SIGTERM", not fd.alive())

    # filterd -t on a broken configuration names file and line.
    bad = f"{tmp}/bad.conf"
    write(bad, "plugin_directory = /nonexistent\ninbound_plugins = access\n# comment\naccess_reject_code = 42\n")
    r = subprocess.run([os.path.join(BUILD, "filterd", "filterd"), "-t", "-c", bad],
                       capture_output=True, text=True)
    result("filterd -t fails on a bad configuration", r.returncode == 1, r.stderr)
    r = subprocess.run([os.path.join(BUILD, "filterd", "filterd"), "-t", "-c", bad, "-o",
                        f"plugin_directory={pdir}"], capture_output=True, text=True)
    result("filterd -t names file:line", r.returncode == 1 and f"{bad}:4" in r.stderr, r.stderr)
    write(bad, "inbound_plugins = access\nthis line has no equals sign\n")
    r = subprocess.run([os.path.join(BUILD, "filterd", "filterd"), "-t", "-c", bad],
                       capture_output=True, text=True)
    result("syntax error names file:line", r.returncode == 1 and f"{bad}:2" in r.stderr, r.stderr)

    # A plugin that fails: tempfail (451) by default.
    conf2 = f"{tmp}/error.conf"
    write(conf2, f"plugin_directory = {pdir}\ninbound_plugins = testplug\n"
          "testplug_phase = eom\ntestplug_verdict = error\n")
    fd2, port2, log2 = start_filterd(tmp, conf2, "filterd-error")
    try:
        ok, out = miltertest("error.lua", port2)
        result("plugin ERROR gives 451", ok, out)
        result("error logged with the error action",
               "testplug_error_action = tempfail" in open(log2).read())
    finally:
        fd2.stop()

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
