#!/usr/bin/python3
"""dnsserver.py - a small authoritative DNS server for Sift's tests.

Serves zones from a dict (or a JSON file) on 127.0.0.1 over UDP and TCP on
the same port, using Debian's dnspython for the wire format:

    {"example.com": [
        {"name": "example.com", "type": "TXT", "ttl": 300, "data": "v=spf1 -all"},
        {"name": "mx", "type": "MX", "data": "10 mx.example.com"},
        {"name": "slow.example.com", "type": "TIMEOUT"},
        {"name": "broken.example.com", "type": "SERVFAIL"}]}

Record names are absolute ("mx.example.com", trailing dot optional), "@"
for the apex, or relative to the zone ("mx"). Types: A, AAAA, TXT (data a
string, split into 255-byte character-strings, or a list of strings used
as given), MX ("10 mx.example.com"), PTR, CNAME, NS, SOA and any other type
dnspython can parse from zone-file text. Names in data are absolute. ttl
defaults to 300. Markers: "TIMEOUT" (never answer any query for the name)
and "SERVFAIL" (answer every query for it with SERVFAIL); a marker may
carry "except": ["TXT", ...], query types it does not apply to (those are
answered from the data as usual).

Answers: AA set; CNAME chains inside our data are followed into the answer;
NXDOMAIN when the name (or the end of its CNAME chain) does not exist,
NODATA (NOERROR, no answer) when it exists with other types or is an empty
non-terminal; both carry the zone's SOA in the authority section (a made-up
one when the zone has none). Names outside every zone get REFUSED. UDP
answers larger than 512 bytes (or the client's EDNS buffer size, at most
4096) are truncated to the question with TC set, so clients retry over TCP.
Malformed queries get FORMERR when they have a readable header, and are
dropped otherwise; the server never dies on input.

Use as a module:
    srv = DNSServer(zones)          # zones: dict as above
    srv.start()                     # threads; srv.port is the port
    ...; srv.set_zones(new); srv.log  # [(qname, qtype, "udp"|"tcp"), ...]
    srv.stop()

or standalone:
    dnsserver.py ZONES.json [--port N] [--port-file FILE]
port 0 (the default) picks a free port, printed on stdout and written to
--port-file. SIGHUP reloads the JSON file; SIGTERM/SIGINT stop.

Threading: one thread serves UDP, one accepts TCP connections and one
thread per TCP connection; the zone data is replaced atomically (set_zones
swaps one reference), so lookups need no lock. The query log is appended
under a lock.
"""

import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

MARKERS = ("TIMEOUT", "SERVFAIL")


class ZoneData:
    """Parsed zones: names -> {rdtype: rrset} plus markers."""

    def __init__(self, zones):
        self.zones = {}     # dns.name.Name (zone) -> SOA rrset
        self.nodes = {}     # dns.name.Name -> {rdtype int: dns.rrset.RRset}
        self.markers = {}   # dns.name.Name -> "TIMEOUT" | "SERVFAIL"
        self.marker_except = {}  # dns.name.Name -> set of rdtypes exempted
        self.names = set()  # every name that exists, with its ancestors in zone
        for zone, records in zones.items():
            origin = dns.name.from_text(zone)
            self.zones[origin] = None
            self.names.add(origin)
            for rec in records:
                self._add(origin, rec)
        for origin in self.zones:
            soa = self.nodes.get(origin, {}).get(dns.rdatatype.SOA)
            if soa is None:
                soa = dns.rrset.from_text(
                    origin, 300, "IN", "SOA",
                    "ns.%s hostmaster.%s 1 3600 600 86400 60" % (origin, origin))
            self.zones[origin] = soa

    def _name(self, origin, text):
        if text in ("@", "", None):
            return origin
        n = dns.name.from_text(text.rstrip(".") + ".")
        if n.is_subdomain(origin):
            return n
        return dns.name.from_text(text, origin=origin)

    def _add(self, origin, rec):
        name = self._name(origin, rec.get("name"))
        rtype = str(rec["type"]).upper()
        ttl = int(rec.get("ttl", 300))
        n = name
        while n != origin and n.is_subdomain(origin):
            self.names.add(n)
            n = n.parent()
        if rtype in MARKERS:
            self.markers[name] = rtype
            if rec.get("except"):
                self.marker_except[name] = set(
                    dns.rdatatype.from_text(str(t).upper()) for t in rec["except"])
            return
        rdtype = dns.rdatatype.from_text(rtype)
        data = rec.get("data", "")
        if rdtype == dns.rdatatype.TXT:
            if isinstance(data, list):
                chunks = [s.encode() if isinstance(s, str) else bytes(s) for s in data]
            else:
                raw = data.encode()
                chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
            rd = dns.rdata.from_wire(
                dns.rdataclass.IN, rdtype,
                b"".join(bytes([len(c)]) + c for c in chunks), 0,
                sum(len(c) + 1 for c in chunks))
        else:
            rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, str(data),
                                     origin=dns.name.root, relativize=False)
        node = self.nodes.setdefault(name, {})
        rrset = node.get(rdtype)
        if rrset is None:
            rrset = node[rdtype] = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
        rrset.add(rd, ttl)

    def zone_of(self, name):
        best = None
        for origin in self.zones:
            if name.is_subdomain(origin) and (best is None or len(origin) > len(best)):
                best = origin
        return best


class DNSServer:
    def __init__(self, zones, host="127.0.0.1", port=0):
        self.data = ZoneData(zones)
        self.host = host
        self.port = port
        self.log = []
        self._log_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self.udp = self.tcp = None

    def set_zones(self, zones):
        self.data = ZoneData(zones)

    # ---- sockets ----------------------------------------------------------

    def _bind(self):
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # room for a burst of queries (thousands at once) while the
            # one UDP thread answers: a query dropped here would look like
            # a server that does not answer
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            udp.bind((self.host, self.port))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
            except OSError:
                udp.close()
                tcp.close()
                if self.port:
                    raise
                continue
            tcp.listen(64)
            self.udp, self.tcp, self.port = udp, tcp, port
            return
        raise OSError("no free port for UDP and TCP")

    def start(self):
        self._bind()
        self.udp.settimeout(0.2)
        self.tcp.settimeout(0.2)
        for fn in (self._serve_udp, self._serve_tcp):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in (self.udp, self.tcp):
            if s:
                s.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _serve_udp(self):
        while not self._stop.is_set():
            try:
                wire, addr = self.udp.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            try:
                out = self.handle(wire, "udp")
                if out is not None:
                    self.send_udp(out, addr)
            except Exception as e:  # never die on one packet
                print("dnsserver: udp: %r" % e, file=sys.stderr)

    def send_udp(self, out, addr):
        """Sends one UDP answer; a subclass may delay or drop it."""
        self.udp.sendto(out, addr)

    def _serve_tcp(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            threading.Thread(target=self._tcp_conn, args=(conn,), daemon=True).start()

    def _tcp_conn(self, conn):
        conn.settimeout(10)
        try:
            while not self._stop.is_set():
                hdr = self._recv_all(conn, 2)
                if hdr is None:
                    return
                (n,) = struct.unpack("!H", hdr)
                wire = self._recv_all(conn, n)
                if wire is None:
                    return
                try:
                    out = self.handle(wire, "tcp")
                except Exception as e:
                    print("dnsserver: tcp: %r" % e, file=sys.stderr)
                    out = None
                if out is not None:
                    conn.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            pass
        finally:
            conn.close()

    @staticmethod
    def _recv_all(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    # ---- answering -----------------------------------------------------------

    @staticmethod
    def _formerr(wire):
        if len(wire) < 12:
            return None
        qid, flags = struct.unpack("!HH", wire[:4])
        if flags & 0x8000:  # a response: ignore
            return None
        flags = 0x8000 | (flags & 0x7900) | dns.rcode.FORMERR
        return struct.pack("!HHHHHH", qid, flags, 0, 0, 0, 0)

    def handle(self, wire, transport):
        """Answers one query in wire form; None = send nothing."""
        try:
            q = dns.message.from_wire(wire)
        except Exception:
            return self._formerr(wire)
        if q.flags & dns.flags.QR:
            return None
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        if q.opcode() != dns.opcode.QUERY or len(q.question) != 1:
            r.set_rcode(dns.rcode.NOTIMP if q.opcode() != dns.opcode.QUERY
                        else dns.rcode.FORMERR)
            return r.to_wire()
        qrr = q.question[0]
        with self._log_lock:
            self.log.append((qrr.name.to_text(omit_final_dot=True).lower(),
                             dns.rdatatype.to_text(qrr.rdtype), transport))
        if self.answer(qrr.name, qrr.rdtype, qrr.rdclass, r) is None:
            return None
        limit = 65535
        if transport == "udp":
            limit = 512
            if q.edns >= 0:
                limit = max(512, min(q.payload, 4096))
        try:
            return r.to_wire(max_size=limit)
        except dns.exception.TooBig:
            t = dns.message.make_response(q)
            t.flags |= dns.flags.AA | dns.flags.TC
            return t.to_wire(max_size=limit)

    def answer(self, qname, qtype, qclass, r):
        """Fills r; returns None to send no answer at all."""
        data = self.data
        zone = data.zone_of(qname)
        if zone is None or qclass != dns.rdataclass.IN:
            r.set_rcode(dns.rcode.REFUSED)
            r.flags &= ~dns.flags.AA
            return r
        name = qname
        seen = set()
        while True:
            marker = data.markers.get(name)
            if marker and qtype in data.marker_except.get(name, ()):
                marker = None
            if marker == "TIMEOUT":
                return None
            if marker == "SERVFAIL":
                r.answer = []
                r.set_rcode(dns.rcode.SERVFAIL)
                r.flags &= ~dns.flags.AA
                return r
            node = data.nodes.get(name, {})
            if qtype == dns.rdatatype.ANY and node:
                for rrset in node.values():
                    r.answer.append(rrset)
                return r
            if qtype in node:
                r.answer.append(node[qtype])
                return r
            cname = node.get(dns.rdatatype.CNAME)
            if cname is not None and qtype != dns.rdatatype.CNAME:
                r.answer.append(cname)
                seen.add(name)
                target = cname[0].target
                tzone = data.zone_of(target)
                if tzone is None or target in seen:
                    return r  # outside our data, or a loop: the chain is the answer
                name, zone = target, tzone
                continue
            if name not in data.names:
                r.set_rcode(dns.rcode.NXDOMAIN)
            soa = data.zones[zone]
            r.authority.append(soa)
            return r


def dkimpy_dnsfunc(port, host="127.0.0.1"):
    """A TXT lookup for dkimpy (its dnsfunc= argument) asking the server at
    host:port: the first record's strings joined, or None."""
    import dns.resolver
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [host]
    res.port = port
    res.lifetime = 3

    def lookup(name, timeout=5):
        try:
            a = res.resolve((name.decode() if isinstance(name, bytes) else name).rstrip("."), "TXT")
        except Exception:
            return None
        return b"".join(next(iter(a)).strings)
    return lookup


def load_json(path):
    with open(path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description="authoritative DNS server for tests")
    ap.add_argument("zones", help="JSON file: {zone: [records]}")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    a = ap.parse_args()
    srv = DNSServer(load_json(a.zones), port=a.port)
    srv.start()
    print(srv.port, flush=True)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.port)
        os.rename(tmp, a.port_file)
    done = threading.Event()

    def reload(*_):
        try:
            srv.set_zones(load_json(a.zones))
            print("dnsserver: reloaded %s" % a.zones, file=sys.stderr, flush=True)
        except Exception as e:
            print("dnsserver: reload failed: %s" % e, file=sys.stderr, flush=True)

    signal.signal(signal.SIGHUP, reload)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(1):
        pass
    srv.stop()


if __name__ == "__main__":
    main()
