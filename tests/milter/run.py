#!/usr/bin/python3
"""filterd end to end with miltertest: starts filterd with the access and
test plugins on a free port, runs every tests/milter/*.lua script against
it (miltertest plays the MTA), checks the log lines, a reload by SIGUSR1,
and a second instance whose plugin fails (tempfail). Everything runs once
per milter engine (filterd_engine; env SIFT_FILTERD_ENGINES, default
"native libmilter"), with packets that are unusual but valid played by
hand (MAIL and RCPT with many ESMTP parameters, many X-Sift-Release
headers, a message going on after a DISCARD at RCPT); the native engine
also gets malformed packets and a connection limit. Prints "N passed, N
failed" over all runs."""
import os, re, shutil, signal, socket, struct, subprocess, sys, time

sys.path.insert(0, os.path.join(os.environ["SIFT_SRCDIR"], "tests", "lib"))
import sifttest  # noqa: E402

SRC = os.environ["SIFT_SRCDIR"]
BUILD = os.environ["SIFT_BUILDDIR"]
HERE = os.path.join(SRC, "tests", "milter")
ENGINE = "libmilter"


def check(cond, what, detail=""):
    """sifttest.check, the check named with the milter engine under test."""
    return sifttest.check(cond, f"[{ENGINE}] {what}", detail)


def plugin_dir(tmp):
    d = os.path.join(tmp, "plugins")
    os.makedirs(d, exist_ok=True)
    for p in (os.path.join(BUILD, "plugins", "access.so"), os.path.join(BUILD, "tests", "testplug.so")):
        os.symlink(p, os.path.join(d, os.path.basename(p)))
    return d


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def start_filterd(tmp, conf, name, extra=()):
    port = sifttest.free_port()
    log = os.path.join(tmp, name + ".log")
    p = sifttest.Proc([os.path.join(BUILD, "filterd", "filterd"), "-f", "-c", conf,
                       "-o", f"filterd_engine={ENGINE}",
                       "-o", f"filterd_listen=inet:127.0.0.1:{port}",
                       "-o", f"filterd_pid_file={tmp}/{name}.pid",
                       "-o", f"filterd_user={sifttest.daemon_user()}"] + list(extra), log=log, port=port)
    p.start()
    return p, port, log


def wait_for(pred, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def term_and_wait(fd, timeout):
    """SIGTERM to filterd, then its exit awaited: (exit status or None, seconds)."""
    t0 = time.time()
    os.kill(fd.pid, signal.SIGTERM)
    try:
        rc = fd.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
    return rc, time.time() - t0


def miltertest(script, port):
    r = subprocess.run(["miltertest", "-D", f"port={port}", "-D", f"dir={HERE}", "-s",
                        os.path.join(HERE, script)], capture_output=True, text=True, timeout=60)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


OPTNEG = pkt(b"O", struct.pack(">III", 6, 0x1ff, 0x1fffff))


def raw_session(port, packets, timeout=5):
    """Sends packets on a fresh connection; returns the bytes read until the
    server closes (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    try:
        for p in packets:
            s.sendall(p)
        end = time.time() + timeout
        while time.time() < end:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                return got, True
            if not b:
                return got, True
            got += b
    finally:
        s.close()
    return got, False


def parse_packets(data):
    out = []
    while len(data) >= 5:
        n = struct.unpack(">I", data[:4])[0]
        out.append((data[4:5], data[5:4 + n]))
        data = data[4 + n:]
    return out


class Milter:
    """A milter connection played by hand: negotiated at once, then sends
    packets and reads the replies."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.closed = False
        self.s.sendall(OPTNEG)
        self.optneg = self.read(1)

    def read(self, n, timeout=5):
        """n reply packets (fewer if the connection closes or the time runs out)."""
        end = time.time() + timeout
        while len(parse_packets(self.buf)) < n and not self.closed and time.time() < end:
            self.s.settimeout(max(0.01, end - time.time()))
            try:
                b = self.s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                b = b""
            if not b:
                self.closed = True
            self.buf += b
        got = parse_packets(self.buf)[:n]
        self.buf = self.buf[sum(5 + len(d) for _, d in got):]
        return got

    # Per command: the protocol flags under which filterd sends no reply
    # (SMFIP_NR_* and SMFIP_NO*); macros, abort and quit never get one.
    NO_REPLY = {b"C": 0x1001, b"H": 0x2002, b"M": 0x4004, b"R": 0x8008, b"T": 0x10200, b"L": 0xa0,
                b"N": 0x40040, b"B": 0x80010, b"U": 0x20100, b"D": -1, b"A": -1, b"Q": -1}

    def replies_to(self, packets):
        """How many of these packets get a reply under the protocol
        negotiated (the end of the message counts once)."""
        proto = struct.unpack(">III", self.optneg[0][1][:12])[2] if self.optneg else 0
        return sum(1 for p in packets if not (self.NO_REPLY.get(p[4:5], 0) & proto))

    def steps(self, *packets):
        """Sends the packets and reads exactly the replies the negotiated
        protocol gives them, without waiting for ones that never come."""
        return self.send(*packets, replies=self.replies_to(packets))

    def send(self, *packets, replies=1):
        try:
            self.s.sendall(b"".join(packets))
        except OSError:  # closed by filterd
            self.closed = True
            return []
        return self.read(replies)

    def close(self):
        self.s.close()


CONNECT = pkt(b"C", b"client.example\0" + b"4" + struct.pack(">H", 25) + b"198.51.100.7\0")


def protocol_edges(tmp, pdir):
    """Packets Postfix may send that are unusual but valid, both engines."""
    conf = f"{tmp}/edges.conf"
    write(conf, f"plugin_directory = {pdir}\ninbound_plugins = testplug\n"
          "testplug_header = X-Testplug: seen\n")
    fd, port, log = start_filterd(tmp, conf, "filterd-edges", ["-o", "message_header_limit=64k"])
    try:
        # Postfix passes every ESMTP parameter of MAIL FROM and RCPT TO,
        # repeated ones too (MAIL FROM:<a> BODY=7BIT BODY=7BIT ...)
        m = Milter(port)
        m.send(CONNECT)
        m.send(pkt(b"H", b"client.example\0"))
        got = m.send(pkt(b"M", b"<alice@example.org>\0" + b"BODY=7BIT\0" * 100))
        check([c for c, _ in got] == [b"c"], "MAIL with 100 ESMTP parameters: continue", (got, m.closed))
        got = m.send(pkt(b"R", b"<bob@example.com>\0" + b"NOTIFY=NEVER\0" * 100))
        check([c for c, _ in got] == [b"c"], "RCPT with 100 ESMTP parameters: continue", (got, m.closed))
        got = m.send(pkt(b"L", b"Subject\0 x\0"), pkt(b"N"), pkt(b"B", b"hi\r\n"), pkt(b"E"), replies=2)
        check([c for c, _ in got] == [b"h", b"c"], "and the message is scanned", got)
        m.close()
        check("closing it" not in open(log).read(), "no milter connection closed", open(log).read()[-1500:])
        # X-Sift-Release headers without a valid token are removed at end
        # of message, the first logged, then their count
        release = pkt(b"L", b"X-Sift-Release\0 not-a-token\0")
        m = Milter(port)
        m.send(CONNECT)
        m.send(pkt(b"M", b"<alice@example.org>\0"))
        m.send(pkt(b"R", b"<bob@example.com>\0"))
        got = m.send(pkt(b"L", b"Subject\0 x\0"), release * 3, pkt(b"N"), pkt(b"B", b"hi\r\n"), pkt(b"E"),
                     replies=5)
        check([c for c, _ in got] == [b"m"] * 3 + [b"h", b"c"] and
              all(d == struct.pack(">I", 3 - i) + b"X-Sift-Release\0\0" for i, (_, d) in enumerate(got[:3])),
              "three X-Sift-Release headers: each removed", got)
        text = open(log).read()
        check(text.count("X-Sift-Release header without a valid release token") == 1 and
              "3 X-Sift-Release headers without a valid release token in the message" in text,
              "the first logged, then their count", text[-1500:])
        # many count against message_header_limit (64k here) as stored
        # headers do: the message is refused, a couple of lines logged
        mark = len(text)
        m.send(pkt(b"M", b"<alice@example.org>\0"))
        m.send(pkt(b"R", b"<bob@example.com>\0"))
        got = m.send(pkt(b"L", b"Subject\0 x\0"), release * 5000, pkt(b"N"), pkt(b"B", b"hi\r\n"),
                     pkt(b"E"))
        check([c for c, _ in got] == [b"y"] and got[0][1].startswith(b"552 5.3.4 "),
              "5000 X-Sift-Release headers over message_header_limit: 552 5.3.4", got[:3])
        m.close()
        time.sleep(0.2)
        new = open(log).read()[mark:]
        lines = [l for l in new.splitlines() if "X-Sift-Release" in l]
        check(len(lines) <= 2 and "header section over message_header_limit" in new and
              "action=reject" in new, "logged in a few lines", new[-1500:])
    finally:
        fd.stop()
    # A DISCARD at RCPT discards the whole message: Postfix sends nothing
    # more for it, but an MTA may go on (libmilter keeps the RCPT stage)
    # with more recipients and the content; none of it is accepted.
    conf = f"{tmp}/rcpt-discard.conf"
    write(conf, f"plugin_directory = {pdir}\ninbound_plugins = testplug\n"
          "testplug_phase = rcpt\ntestplug_verdict = discard\ntestplug_header = X-Testplug: seen\n")
    fd, port, log = start_filterd(tmp, conf, "filterd-rcpt-discard")
    try:
        m = Milter(port)
        m.send(CONNECT)
        m.send(pkt(b"H", b"client.example\0"))
        m.send(pkt(b"M", b"<alice@example.org>\0"))
        first = m.send(pkt(b"R", b"<bob@example.com>\0"))
        second = m.send(pkt(b"R", b"<carol@example.com>\0"))
        check([c for c, _ in first + second] == [b"d", b"d"],
              "DISCARD at RCPT: a later RCPT of the message is discarded too", (first, second))
        got = m.send(pkt(b"L", b"Subject\0 x\0"), pkt(b"N"), pkt(b"B", b"hi\r\n"), pkt(b"E"))
        check([c for c, _ in got] == [b"d"], "and its end of message answers discard, no continue", got)
        m.close()
        text = open(log).read()
        check(text.count("filterd: action=discard") == 1 and "action=accept" not in text,
              "one summary line: action=discard", text[-1500:])
    finally:
        fd.stop()


def native_only(tmp, conf, log, port):
    """Malformed input closes that connection (logged), filterd keeps serving;
    one write carries all modifications and the reply at end of message."""
    cases = [
        ("packet over 1 MB", [OPTNEG, struct.pack(">I", 2 * 1024 * 1024) + b"B" + b"x" * 1000]),
        ("zero length", [OPTNEG, struct.pack(">I", 0)]),
        ("length with the top bit set", [OPTNEG, struct.pack(">I", 0x80000001) + b"B"]),
        ("unknown command", [OPTNEG, pkt(b"Z", b"x")]),
        ("short optneg", [pkt(b"O", b"\0\0\0\6")]),
        ("connect without NUL", [OPTNEG, pkt(b"C", b"host")]),
        ("connect bad family", [OPTNEG, pkt(b"C", b"host\0X\0\x19127.0.0.1\0")]),
        ("connect bad address", [OPTNEG, pkt(b"C", b"host\0" + b"4\0\x19" + b"1.2.3.999\0")]),
        ("macro without NUL", [OPTNEG, pkt(b"D", b"Ci\0x")]),
        ("macro odd count", [OPTNEG, pkt(b"D", b"Ci\0")]),
        ("header without value", [OPTNEG, pkt(b"C", b"h\0" + b"4\0\x19" + b"192.0.2.1\0"),
                                  pkt(b"M", b"<a@b>\0"), pkt(b"R", b"<c@d>\0"), pkt(b"L", b"Subject\0")]),
    ]
    for name, packets in cases:
        _, closed = raw_session(port, packets)
        check(closed, "malformed: " + name + " closes the connection")
    text = open(log).read()
    check("bad packet length" in text and "unknown command" in text
          and "closing it" in text, "malformed packets are logged", text[-1500:])
    check("bad packet length 2147483649 " in text and sifttest.tcp_listening(port),
          "a length with the top bit set is logged as such, filterd keeps serving", text[-1500:])
    # a whole session by hand: the EOM answer is one write with the
    # header change and the reply
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(OPTNEG)
    hdr = s.recv(5)
    n = struct.unpack(">I", hdr[:4])[0]
    body = hdr[4:] + s.recv(n - 1)
    ver, act, proto = struct.unpack(">III", body[1:13])
    check(ver == 6 and act & 0x20 and proto & 0x100000, "native optneg: version 6, quarantine, LEADSPC",
          (ver, hex(act), hex(proto)))
    seq = [pkt(b"D", b"Cj\0mx.test\0{daemon_name}\0mx.test\0"),
           pkt(b"C", b"client.example\0" + b"4" + struct.pack(">H", 25) + b"198.51.100.7\0"),
           pkt(b"H", b"client.example\0"), pkt(b"M", b"<alice@example.org>\0"),
           pkt(b"R", b"<bob@example.com>\0"), pkt(b"L", b"From\0 alice@example.org\0"),
           pkt(b"N"), pkt(b"D", b"Ei\0" + b"4NATIVE1\0"), pkt(b"E")]
    s.sendall(b"".join(seq))
    got = b""
    end = time.time() + 5
    while time.time() < end:
        cmds = [c for c, _ in parse_packets(got)]
        if b"h" in cmds and cmds[-1] == b"c":
            break
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        if not b:
            break
        got += b
    s.close()
    cmds = [c for c, _ in parse_packets(got)]
    check(cmds[-2:] == [b"h", b"c"],
          "native: replies only where expected, header added then continue at EOM", cmds)
    # connection limit
    fd, p2, log2 = start_filterd(tmp, conf, "filterd-limit", ["-o", "filterd_max_connections=2"])
    try:
        held = [socket.create_connection(("127.0.0.1", p2), timeout=5) for _ in range(2)]
        time.sleep(0.3)
        _, closed = raw_session(p2, [OPTNEG], timeout=3)
        check(closed, "connections beyond filterd_max_connections are refused")
        check(wait_for(lambda: "too many MTA connections" in open(log2).read(), 5), "refusal logged")
        for h in held:
            h.close()
        time.sleep(0.3)
        got, _ = raw_session(p2, [OPTNEG], timeout=2)
        check(got[4:5] == b"O", "served again below the limit", got)
        # at the limit, the negotiated connection idle longest between
        # messages is closed for the new one; one in a message is not
        busy = Milter(p2)
        busy.send(CONNECT)
        busy.send(pkt(b"M", b"<alice@example.org>\0"))
        older = Milter(p2)
        time.sleep(0.3)
        newer = Milter(p2)
        check([c for c, _ in newer.optneg] == [b"O"], "at the limit, a new connection is served", newer.optneg)
        older.read(1, timeout=3)
        check(older.closed, "for it, the connection idle longest between messages is closed")
        got = busy.send(pkt(b"R", b"<bob@example.com>\0"))
        check([c for c, _ in got] == [b"c"] and not busy.closed, "the one in a message goes on", got)
        check(wait_for(lambda: "reached: closing the milter connection from" in open(log2).read(), 5),
              "the closing is logged", open(log2).read()[-1000:])
        third = Milter(p2)  # newer is idle: it gives way in turn
        newer.read(1, timeout=3)
        check(third.optneg[:1] and third.optneg[0][0] == b"O" and newer.closed,
              "and the next one makes room in turn", (third.optneg, newer.closed))
        for m in (busy, older, newer, third):
            m.close()
    finally:
        fd.stop()
    # A client that connects and says nothing, or trickles a packet a byte
    # at a time (each read well within filterd_milter_timeout), is closed
    # after filterd_milter_packet_timeout and frees its slot
    fd, p7, log7 = start_filterd(tmp, conf, "filterd-trickle", ["-o", "filterd_milter_packet_timeout=1s",
                                                                "-o", "filterd_max_connections=2"])
    try:
        silent = socket.create_connection(("127.0.0.1", p7), timeout=5)
        trickle = socket.create_connection(("127.0.0.1", p7), timeout=5)
        trickle.sendall(OPTNEG)
        trickle.recv(100)
        trickle.sendall(struct.pack(">I", 101) + b"B")  # a 100-octet body chunk announced
        silent.settimeout(0.2)
        trickle.settimeout(0.2)
        gone = {}
        t0 = time.time()
        while time.time() - t0 < 6 and len(gone) < 2:
            for name, sk in (("silent", silent), ("trickle", trickle)):
                if name in gone:
                    continue
                try:
                    if name == "trickle":
                        sk.sendall(b"x")
                    if sk.recv(100) == b"":
                        gone[name] = time.time() - t0
                except socket.timeout:
                    pass
                except OSError:
                    gone[name] = time.time() - t0
        silent.close()
        trickle.close()
        check(len(gone) == 2 and max(gone.values()) < 4,
              "a silent and a trickling client are closed after filterd_milter_packet_timeout", gone)
        text = open(log7).read()
        check("no negotiation within filterd_milter_packet_timeout" in text and
              "a packet not complete within filterd_milter_packet_timeout" in text, "both logged", text[-1000:])
        got, _ = raw_session(p7, [OPTNEG], timeout=2)
        check(got[4:5] == b"O", "their slots are free again", got)
    finally:
        fd.stop()
    # Postfix opens a milter connection per SMTP session: the thread that
    # served one connection serves the next (no thread per connection)
    fd, p4, log4 = start_filterd(tmp, conf, "filterd-reuse")
    try:
        seen, answered = set(), 0
        for _ in range(5):
            c = socket.create_connection(("127.0.0.1", p4), timeout=5)
            c.sendall(OPTNEG)
            answered += c.recv(100)[4:5] == b"O"
            seen |= set(os.listdir("/proc/%d/task" % fd.pid))
            c.sendall(pkt(b"Q"))
            c.close()
            time.sleep(0.2)
        before = set(os.listdir("/proc/%d/task" % fd.pid))
        check(answered == 5 and len(seen - before) == 0 and len(seen) == len(before),
              "sequential connections are served by one reused thread", (answered, seen, before))
    finally:
        fd.stop()
    # the free heap goes back to the system once filterd has had no
    # connection for a while (0.5 s), not at the end of every session
    fd, p5, log5 = start_filterd(tmp, conf, "filterd-trim", ["-d"])
    try:
        def trims():
            return open(log5).read().count("free heap given back to the system (idle)")
        for _ in range(12):
            c = socket.create_connection(("127.0.0.1", p5), timeout=5)
            c.sendall(OPTNEG)
            c.recv(100)
            c.sendall(pkt(b"Q"))
            c.close()
            time.sleep(0.05)
        during = trims()
        check(during <= 1, "sessions 50 ms apart: the heap is not trimmed after each one", during)
        check(wait_for(lambda: trims() == during + 1, 5) and (time.sleep(1) or trims() == during + 1),
              "idle for 0.5 s: the heap is trimmed once", (during, trims()))
    finally:
        fd.stop()
    # SIGTERM while a reload builds its generation (a plugin init of 2 s):
    # the reload finishes, then filterd stops and exits 0 (exit() never
    # runs while plugin code builds a generation on the reload thread)
    slow = f"{tmp}/slow-reload.conf"
    write(slow, open(conf).read())
    fd, p6, log6 = start_filterd(tmp, slow, "filterd-reload-stop")
    try:
        with open(slow, "a") as f:
            f.write("testplug_init_delay = 2s\n")
        os.kill(fd.pid, signal.SIGHUP)
        time.sleep(0.5)
        rc, _ = term_and_wait(fd, 20)
        text = open(log6).read()
        check(rc == 0 and "configuration reloaded" in text and
              text.index("configuration reloaded") > text.index("SIGTERM: stopping"),
              "SIGTERM during a reload: the reload finishes, then exit 0", (rc, text[-800:]))
    finally:
        fd.stop()
    # SIGTERM with a connection idle between messages: exits at once, 0
    fd, p3, log3 = start_filterd(tmp, conf, "filterd-term")
    idle = socket.create_connection(("127.0.0.1", p3), timeout=5)
    idle.sendall(OPTNEG)
    idle.recv(100)
    rc, took = term_and_wait(fd, 10)
    check(rc == 0 and took < 5, "SIGTERM with an idle connection: exit 0 quickly", rc)
    idle.close()
    fd.stop()
    # SIGTERM while a plugin still runs at end of message: after
    # filterd_shutdown_timeout filterd exits 0 without waiting for it (and
    # without running exit handlers under it); its MTA sees the close.
    os.makedirs(f"{tmp}/stall", exist_ok=True)
    shutil.chown(f"{tmp}/stall", sifttest.daemon_user())  # the plugin removes the file
    stall = f"{tmp}/stall/eom"
    busy = f"{tmp}/busy.conf"
    write(busy, open(conf).read() + f"testplug_stall_phase = eom\ntestplug_stall_file = {stall}\n"
          "testplug_stall_time = 30s\n")
    write(stall, "")
    fd, p8, log8 = start_filterd(tmp, busy, "filterd-term-busy", ["-o", "filterd_shutdown_timeout=1s"])
    m = Milter(p8)
    m.send(CONNECT)
    m.send(pkt(b"M", b"<alice@example.org>\0"))
    m.send(pkt(b"R", b"<bob@example.com>\0"))
    m.send(pkt(b"L", b"Subject\0 x\0"), pkt(b"N"), pkt(b"B", b"hi\r\n"), replies=0)
    m.s.sendall(pkt(b"E"))
    stalled = wait_for(lambda: "stalled at phase" in open(log8).read(), 5)
    rc, took = term_and_wait(fd, 10)
    closed = m.read(1, timeout=2) == [] and m.closed
    m.close()
    text = open(log8).read()
    check(stalled and rc == 0 and 0.8 < took < 5 and closed and
"still in a message after filterd_shutdown_timeout" in text,
          "SIGTERM with a plugin busy at end of message: exit 0 after filterd_shutdown_timeout, "
          "the MTA's connection closed", (stalled, rc, took, closed, text[-800:]))
    fd.stop()


def libmilter_stop(tmp, conf):
    """libmilter's smfi_main returns at SIGTERM (at once: filterd cuts its
    listener's 5 s waits short, milter.c) while its worker threads still serve their
    connections: a message in progress gets
    filterd_shutdown_timeout to finish (its reply arrives) before the exit
    handlers run; past it filterd exits 0 at once (_exit), the MTA sees the
    connection close."""
    os.makedirs(f"{tmp}/stall-lm", exist_ok=True)
    shutil.chown(f"{tmp}/stall-lm", sifttest.daemon_user())  # the plugin removes the file
    for stall_time, timeout, finishes in (("8s", "30s", True), ("30s", "1s", False)):
        stall = f"{tmp}/stall-lm/eom"
        busy = f"{tmp}/busy-lm-{stall_time}.conf"
        write(busy, open(conf).read() + f"testplug_stall_phase = eom\ntestplug_stall_file = {stall}\n"
              f"testplug_stall_time = {stall_time}\n")
        write(stall, "")
        fd, port, log = start_filterd(tmp, busy, f"filterd-lm-stop-{stall_time}",
                                      ["-o", f"filterd_shutdown_timeout={timeout}"])
        try:
            m = Milter(port)
            m.send(CONNECT)
            m.send(pkt(b"M", b"<alice@example.org>\0"))
            m.send(pkt(b"R", b"<bob@example.com>\0"))
            for p in (pkt(b"L", b"Subject\0 x\0"), pkt(b"N"), pkt(b"B", b"hi\r\n")):
                m.s.sendall(p)
                m.read(1, timeout=0.3)  # a reply or none, as negotiated
            m.s.sendall(pkt(b"E"))
            stalled = wait_for(lambda: "stalled at phase" in open(log).read(), 5)
            t0 = time.time()
            os.kill(fd.pid, signal.SIGTERM)
            got = m.read(10, timeout=40)
            try:
                rc = fd.popen.wait(10)
            except subprocess.TimeoutExpired:
                rc = None
            took = time.time() - t0
            m.close()
            text = open(log).read()
            if finishes:
                check(stalled and got and rc == 0 and 7 < took < 20 and "exiting anyway" not in text,
                      "libmilter, SIGTERM during a message: the message finishes (its reply "
                      "arrives), then exit 0", (stalled, got, rc, took, text[-800:]))
            else:
                check(stalled and got == [] and m.closed and rc == 0 and 0.8 < took < 10 and
                      "callbacks still running after filterd_shutdown_timeout" in text,
                      "libmilter, SIGTERM with a plugin busy past filterd_shutdown_timeout: "
                      "exit 0, the MTA's connection closed", (stalled, got, rc, took, text[-800:]))
        finally:
            fd.stop()
    # SIGTERM between two steps of a message (no callback running):
    # libmilter reads nothing more from the connection, so filterd does not
    # wait filterd_shutdown_timeout for a message end it will never see; it
    # says how many messages the MTA will defer
    fd, port, log = start_filterd(tmp, conf, "filterd-lm-stop-between", ["-o", "filterd_shutdown_timeout=30s"])
    try:
        m = Milter(port)
        m.send(CONNECT)
        m.send(pkt(b"M", b"<alice@example.org>\0"))
        m.send(pkt(b"R", b"<bob@example.com>\0"))
        # the listener's last wait began at the accept, moments ago: left
        # to libmilter, the stop would come at its end, 5 s later
        rc, took = term_and_wait(fd, 20)
        m.close()
        text = open(log).read()
        check(rc == 0 and took < 2 and
              "1 MTA connections were inside a message at the stop" in text,
              "libmilter, SIGTERM between the steps of a message: exit 0 at once, without waiting for its end, "
              "the message counted as deferred", (rc, took, text[-800:]))
    finally:
        fd.stop()


def main():
    global ENGINE
    engines = os.environ.get("SIFT_FILTERD_ENGINES", "native libmilter").split()
    for e in engines:
        ENGINE = e
        run_engine()
    if "libmilter" not in engines:
        no_libmilter()
    return sifttest.done()


def no_libmilter():
    """A build without libmilter (-Dlibmilter=disabled): filterd_engine =
    libmilter is refused with the setting's name, native runs."""
    tmp = sifttest.scratch("sift-milter-")
    conf = sifttest.write_conf(os.path.join(tmp, "filterd.conf"), {
        "plugin_directory": sifttest.plugin_directory(), "inbound_plugins": "", "originating_plugins": "",
        "filterd_listen": "inet:127.0.0.1:1", "filterd_engine": "libmilter"})
    r = subprocess.run([sifttest.program("filterd"), "-t", "-c", conf], capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "filterd_engine = libmilter" in r.stderr and "without libmilter" in r.stderr
          and "filterd.conf:5" in r.stderr, "no libmilter: filterd_engine = libmilter refused by name", r.stderr)


def timeout_warning(tmp, pdir):
    """libmilter applies filterd_milter_timeout only at its check of old
    sessions, every 600 s: a shorter one is warned about at start (the
    native engine applies it to each read, and says nothing)."""
    conf = f"{tmp}/timeout.conf"
    write(conf, f"plugin_directory = {pdir}\ninbound_plugins = testplug\nfilterd_milter_timeout = 2s\n")
    fd, port, log = start_filterd(tmp, conf, "filterd-timeout")
    try:
        started = wait_for(lambda: "starting: listening" in open(log).read(), 20)
        text = open(log).read()
        warned = re.search(r"warning.*filterd_milter_timeout \(2000 ms\) is enforced by libmilter only at "
                           r"its session check, every 600 s", text, re.I) is not None
        want = ENGINE == "libmilter"
        check(started and warned == want, "filterd_milter_timeout = 2s: %s" %
              ("a warning at start" if want else "no warning"), text[-1500:])
    finally:
        fd.stop()


def conn_count(tmp, pdir):
    """The connections open and in all (status.json; "Connections open" on
    the status page) count the same thing with both engines: MTA
    connections from their negotiation on. Silent clients that never
    negotiate are not counted, and (native) neither are connections
    refused at filterd_max_connections."""
    import json
    import urllib.request
    conf = f"{tmp}/conns.conf"
    write(conf, f"plugin_directory = {pdir}\ninbound_plugins = testplug\n")

    def conns(hp):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{hp}/status.json", timeout=10) as r:
                c = json.load(r)["connections"]
        except OSError:  # 503 while the plugins initialise
            return None
        return c["current"], c["total"]

    hp = sifttest.free_port()
    fd, port, log = start_filterd(tmp, conf, "filterd-conns", ["-o", f"metrics_listen=inet:127.0.0.1:{hp}"])
    silent, ms = [], []
    try:
        check(wait_for(lambda: conns(hp) is not None, 20), "conns: the status is served")
        silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
        for _ in range(3):
            m = Milter(port)
            m.send(CONNECT)
            ms.append(m)
        wait_for(lambda: conns(hp) == (3, 3), 5)
        got = conns(hp)
        check(got == (3, 3), "conns: 3 negotiated and 5 silent connections: 3 open, 3 in all", got)
        for m in ms:
            m.s.sendall(pkt(b"Q"))
            m.close()
        ms = []
        wait_for(lambda: conns(hp) == (0, 3), 5)
        got = conns(hp)
        check(got == (0, 3), "conns: the negotiated ones closed, silent ones still open: 0 open, 3 in all", got)
    finally:
        for x in silent:
            x.close()
        for m in ms:
            m.close()
        fd.stop()
    if ENGINE != "native":
        return
    hp = sifttest.free_port()
    fd, port, log = start_filterd(tmp, conf, "filterd-conns-limit",
                                  ["-o", f"metrics_listen=inet:127.0.0.1:{hp}", "-o", "filterd_max_connections=2"])
    try:
        check(wait_for(lambda: conns(hp) is not None, 20), "conns: the status is served (limit)")
        for _ in range(2):
            m = Milter(port)
            m.send(CONNECT)
            m.send(pkt(b"M", b"<a@example.org>\0"))  # in a message: not closed for a newcomer
            ms.append(m)
        extra = Milter(port)
        refused = extra.closed or extra.read(1, timeout=2) == [] and extra.closed
        extra.close()
        time.sleep(0.3)
        got = conns(hp)
        check(refused and got == (2, 2), "conns: a connection refused at filterd_max_connections is not counted",
              (refused, got))
    finally:
        for m in ms:
            m.close()
        fd.stop()


def worker_reuse(tmp, pdir):
    """Native engine: a new connection goes to the worker that finished one
    last. After a burst has started six workers, sessions one after the
    other are all served by one or two of them (the others wait, and end
    after a minute); a shared wake-up would spread them over all six."""
    conf = f"{tmp}/reuse.conf"
    write(conf, f"plugin_directory = {pdir}\ninbound_plugins = testplug\n")
    fd, port, log = start_filterd(tmp, conf, "filterd-lifo")

    def tasks():
        out = {}
        for t in os.listdir(f"/proc/{fd.pid}/task"):
            try:
                with open(f"/proc/{fd.pid}/task/{t}/schedstat") as f:
                    out[t] = int(f.read().split()[2])  # times it ran
            except OSError:
                pass
        return out

    ms = []
    try:
        for _ in range(3):  # warm up: the plugins loaded, a worker started
            m = Milter(port)
            m.send(CONNECT)
            m.s.sendall(pkt(b"Q"))
            m.close()
        time.sleep(0.3)
        before = tasks()
        for _ in range(6):
            m = Milter(port)
            m.send(CONNECT)
            ms.append(m)
        burst = tasks()
        for m in ms:
            m.s.sendall(pkt(b"Q"))
            m.close()
        ms = []
        time.sleep(1.0)  # every worker back waiting, the idle trim done
        workers = set(burst) - set(before) | {t for t in before if t in burst and burst[t] != before[t]}
        start = tasks()
        ok = 0
        for _ in range(30):
            m = Milter(port)
            ok += len(m.send(CONNECT)) == 1
            m.s.sendall(pkt(b"Q"))
            m.close()
            time.sleep(0.05)  # the worker back waiting before the next
        end = tasks()
        served = sorted(t for t in workers if t in end and end[t] != start.get(t))
        check(ok == 30 and len(workers) >= 6, "reuse: 30 sessions answered, six workers after the burst",
              (ok, len(workers)))
        check(1 <= len(served) <= 2, "reuse: the sessions one after the other go to one or two workers",
              (len(served), len(workers)))
    finally:
        for m in ms:
            m.close()
        fd.stop()


def run_engine():
    tmp = sifttest.scratch("sift-milter-")
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
    good_conf = f"{tmp}/good.conf"
    write(good_conf, open(conf).read())

    fd, port, log = start_filterd(tmp, conf, "filterd")
    try:
        for script in ["accept.lua", "client_reject.lua", "sender_reject.lua", "rcpt_reject.lua",
                       "hold.lua", "prepend.lua", "discard.lua", "whitelist.lua", "originating.lua",
                       "concurrent.lua", "reload_before.lua"]:
            ok, out = miltertest(script, port)
            check(ok, "milter " + script, out)
        text = open(log).read()
        check(re.search(r"4ABCDEF123: filterd: action=accept, profile=inbound, from=<alice@example.org>, "
                        r"rcpts=1, score=1\.5, symbols=TEST_SYM\(1\.5\), time=\d+ms", text) is not None,
              "log: summary line with queue id", text[-2000:])
        check(re.search(r"NOQUEUE: filterd: action=reject, profile=inbound, by=access, from=<spam@bad.example>",
                        text) is not None, "log: reject line names the plugin")
        check("action=hold" in text, "log: hold summary")
        # reload: running connections keep their generation, new ones get
        # the new map
        r = subprocess.run(["miltertest", "-D", f"port={port}", "-D", f"dir={HERE}", "-D", f"pid={fd.pid}",
                            "-D", f"mapfile={tmp}/senders", "-s", os.path.join(HERE, "reload_during.lua")],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "reload during a connection", r.stdout + r.stderr)
        ok = wait_for(lambda: "configuration reloaded" in open(log).read(), 10)
        check(ok, "reload by SIGUSR1 logged")
        ok, out = miltertest("reload_after.lua", port)
        check(ok, "milter reload_after.lua", out)
        # a broken configuration on reload keeps the running one
        with open(conf, "a") as f:
            f.write("access_reject_code = 999\n")
        os.kill(fd.pid, signal.SIGUSR1)
        ok = wait_for(lambda: "reload failed" in open(log).read(), 10)
        check(ok and fd.alive(), "failed reload keeps running configuration")
        ok, out = miltertest("reload_after.lua", port)
        check(ok, "still serving after failed reload", out)
        # an MTA without SMFIP_HDR_LEADSPC (milter protocol 2) strips the
        # space after a header's colon and adds one to our edits: refused,
        # with the reason (the MTA applies milter_default_action), not
        # served with headers that lose or gain a space
        got, closed = raw_session(port, [pkt(b"O", struct.pack(">III", 2, 0x3f, 0))])
        ok = wait_for(lambda: "does not offer SMFIP_HDR_LEADSPC" in open(log).read(), 5)
        check(closed and b"O" not in got[4:5] and ok,
              "an MTA without SMFIP_HDR_LEADSPC: refused at negotiation, the reason logged",
              (got, closed, open(log).read()[-600:]))
        ok, out = miltertest("accept.lua", port)
        check(ok, "still serving after a refused negotiation", out)
        if ENGINE == "libmilter":
            libmilter_stop(tmp, good_conf)
        if ENGINE == "native":
            native_only(tmp, good_conf, log, port)
            ok, out = miltertest("accept.lua", port)
            check(ok, "still serving after malformed packets", out)
    finally:
        fd.stop()
    check(not fd.alive(), "filterd exited after SIGTERM")

    check("filterd_milter_timeout" not in open(log).read(),
          "no filterd_milter_timeout warning with the default timeout", open(log).read()[-800:])
    timeout_warning(tmp, pdir)
    conn_count(tmp, pdir)
    protocol_edges(tmp, pdir)
    if ENGINE == "native":
        worker_reuse(tmp, pdir)

    # filterd -t on a broken configuration names file and line.
    bad = f"{tmp}/bad.conf"
    write(bad, "plugin_directory = /nonexistent\ninbound_plugins = access\n# comment\naccess_reject_code = 42\n")
    r = subprocess.run([os.path.join(BUILD, "filterd", "filterd"), "-t", "-c", bad],
                       capture_output=True, text=True)
    check(r.returncode == 1, "filterd -t fails on a bad configuration", r.stderr)
    r = subprocess.run([os.path.join(BUILD, "filterd", "filterd"), "-t", "-c", bad, "-o",
                        f"plugin_directory={pdir}"], capture_output=True, text=True)
    check(r.returncode == 1 and f"{bad}:4" in r.stderr, "filterd -t names file:line", r.stderr)
    write(bad, "inbound_plugins = access\nthis line has no equals sign\n")
    r = subprocess.run([os.path.join(BUILD, "filterd", "filterd"), "-t", "-c", bad],
                       capture_output=True, text=True)
    check(r.returncode == 1 and f"{bad}:2" in r.stderr, "syntax error names file:line", r.stderr)

    # A plugin that fails: tempfail (451) by default.
    conf2 = f"{tmp}/error.conf"
    write(conf2, f"plugin_directory = {pdir}\ninbound_plugins = testplug\n"
          "testplug_phase = eom\ntestplug_verdict = error\n")
    fd2, port2, log2 = start_filterd(tmp, conf2, "filterd-error")
    try:
        ok, out = miltertest("error.lua", port2)
        check(ok, "plugin ERROR gives 451", out)
        check("testplug_error_action = tempfail" in open(log2).read(),
              "error logged with the error action")
    finally:
        fd2.stop()

    # A plugin's invalid reply is logged once, naming the plugin, and the
    # verdict gets the default reply of its class (both engines).
    for k, (verdict, reply, want) in enumerate((("reject", "550 5..1 no subject", ("550", "5.7.1", "Message rejected")),
                                 ("tempfail", "550 5.7.1 wrong class", ("451", "4.7.1", "Try again later")),
                                 ("reject", "5x0 5.7.1 not a code", ("550", "5.7.1", "Message rejected")))):
        confb = f"{tmp}/bad-reply.conf"
        write(confb, f"plugin_directory = {pdir}\ninbound_plugins = testplug\n"
              f"testplug_phase = eom\ntestplug_verdict = {verdict}\ntestplug_reply = {reply}\n")
        fdb, portb, logb = start_filterd(tmp, confb, f"filterd-bad-reply-{k}")
        try:
            r = subprocess.run(["miltertest", "-D", f"port={portb}", "-D", f"dir={HERE}",
                                "-D", f"want_code={want[0]}", "-D", f"want_xcode={want[1]}",
                                "-D", f"want_text={want[2]}", "-s", os.path.join(HERE, "bad_reply.lua")],
                               capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, f"invalid reply {reply!r}: {verdict} with {' '.join(want)}",
                  r.stdout + r.stderr)
            text = open(logb).read()
            n = len(re.findall(r"testplug: invalid SMTP reply .* for " + verdict, text))
            check(n == 1, f"invalid reply {reply!r}: one error naming the plugin", text[-1500:])
            check("refused the reply" not in text, f"invalid reply {reply!r}: the engine took the reply",
                  text[-1500:])
        finally:
            fdb.stop()

    # Verdicts of the content stages are held for end of message, and hooks
    # after such a verdict do not run (one verdict line per message).
    for phase in ("header", "eoh", "body"):
        conf3 = f"{tmp}/deferred-{phase}.conf"
        write(conf3, f"plugin_directory = {pdir}\ninbound_plugins = testplug\n"
              f"testplug_phase = {phase}\ntestplug_verdict = reject\n"
              "testplug_reply = 550 5.7.1 testplug says no\n")
        fd3, port3, log3 = start_filterd(tmp, conf3, "filterd-deferred-" + phase)
        try:
            ok, out = miltertest("deferred.lua", port3)
            check(ok, f"{phase} reject given at end of message", out)
            n = len(re.findall(r"verdict 2 at phase", open(log3).read()))
            check(n == 2, f"{phase}: one verdict per message, later hooks skipped", f"{n} verdict lines")
        finally:
            fd3.stop()


if __name__ == "__main__":
    sys.exit(main())
