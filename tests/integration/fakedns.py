#!/usr/bin/env python3
"""A scriptable upstream for the hardening tests, on loopback only.

It answers every A question with --answer (TTL 300) over UDP and TCP, and logs one line per
UDP query it receives: "SRCPORT ID QNAME" (the name exactly as sent, letter case included), so a
test can read the resolver's source ports, IDs and 0x20 case. Behaviour by --mode:
  normal    answer
  refused   answer REFUSED
  mangle    answer with the question name lower-cased (an upstream that loses 0x20 case)
  wrongport answer from another socket (right address, wrong port)
  silent    read and never answer (a black hole)
  servfail  answer SERVFAIL with EDE --ede (6, DNSSEC Bogus, as a validating upstream would)
Names with a label "slow" are answered after --delay-ms; names under "hole." never; for names
starting with "spoof", every ID from 0 to 65535 is first sent a forged answer (--spoof-answer,
question in lower case, as an off-path attacker who cannot know the case would) from the right
address and port, then the real answer ("spoofdrop" names: no real answer to that first query, as if the flood
had drowned it). Names starting "refusedq" are answered REFUSED, "servfail" SERVFAIL with EDE
--ede; "badchain" get a CNAME whose target is a forward compression pointer to kaspersky.com,
"loopchain" one that points at itself, "baddname" a DNAME whose target is such a pointer. Names
starting with "big" get a TXT answer of about --big-bytes octets (over TCP; over UDP it is
truncated with TC).
Options off by default: --delay-all-ms delays every answer (a slow upstream); --log-time starts
each log line with the time in seconds ("TIME SRCPORT ID QNAME"); --cookies answers a query's
DNS cookie (RFC 7873) with the client cookie and a server cookie, except for names starting
"nocookie" (no cookie option) and "badcookie" (a client cookie that is not the query's).
"""
import argparse
import select
import socket
import struct
import threading
import time


def parse_question(pkt):
    off = 12
    labels = []
    while True:
        n = pkt[off]
        if n == 0:
            off += 1
            break
        labels.append(pkt[off + 1:off + 1 + n])
        off += 1 + n
    qtype, qclass = struct.unpack("!HH", pkt[off:off + 4])
    return labels, qtype, qclass, off + 4


def has_opt(pkt):
    return struct.unpack("!H", pkt[10:12])[0] > 0


def client_cookie(pkt, qend):
    """The 8-octet client cookie of the query's OPT record, or None."""
    off = qend
    try:
        for _ in range(struct.unpack("!H", pkt[10:12])[0]):
            while pkt[off] != 0 and pkt[off] < 0xc0:
                off += 1 + pkt[off]
            off += 2 if pkt[off] >= 0xc0 else 1
            rtype, _, _, rdlen = struct.unpack("!HHIH", pkt[off:off + 10])
            off += 10
            if rtype == 41:
                o, end = off, off + rdlen
                while o + 4 <= end:
                    code, olen = struct.unpack("!HH", pkt[o:o + 4])
                    if code == 10 and olen >= 8:
                        return pkt[o + 4:o + 12]
                    o += 4 + olen
            off += rdlen
    except (IndexError, struct.error):
        pass
    return None


def answer(pkt, args, rcode=0, lower=False, addr=None, big=False, tc=False):
    qid = pkt[0:2]
    labels, qtype, qclass, qend = parse_question(pkt)
    question = bytearray(pkt[12:qend])
    if lower:
        question = bytearray(question.lower())
    flags = 0x8000 | 0x0400 | (pkt[2] & 0x01) << 8 | rcode | (0x0020 if args.ad else 0)
    if tc:
        flags |= 0x0200
    records = b""
    count = 0
    if rcode == 0 and not tc:
        if big:
            chunk = b"x" * 250
            n = max(1, args.big_bytes // 260)
            for _ in range(n):
                rdata = bytes([len(chunk)]) + chunk
                records += b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 300, len(rdata)) + rdata
                count += 1
        elif qtype == 1:
            ip = socket.inet_aton(addr or args.answer)
            records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, args.ttl, 4) + ip
            count = 1
    opt = b""
    if has_opt(pkt):
        options = b""
        cc = client_cookie(pkt, qend) if args.cookies else None
        name = b".".join(labels).lower()
        if cc is not None and not name.startswith(b"nocookie"):
            if name.startswith(b"badcookie"):
                cc = bytes(b ^ 0xff for b in cc)
            options = struct.pack("!HH", 10, 16) + cc + b"fakesrv1"
        opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options
    header = qid + struct.pack("!HHHHH", flags, 1, count, 0, 1 if opt else 0)
    return header + bytes(question) + records + opt


def chain_answer(pkt, loop=False, rtype=5):
    """An answer whose CNAME (rtype 5) or DNAME (39) target is a forward compression pointer to
    the next record's owner, kaspersky.com (or, with loop, a pointer to itself): a parser that
    follows forward pointers reads the target as a listed name; embargo's cannot read it."""
    qid = pkt[0:2]
    _, _, _, qend = parse_question(pkt)
    question = pkt[12:qend]
    flags = 0x8000 | 0x0400 | (pkt[2] & 0x01) << 8
    cname_at = 12 + len(question)
    target_at = cname_at + 12 + 2
    ptr = cname_at + 12 if loop else target_at
    cname = b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 300, 2) + struct.pack("!H", 0xC000 | ptr)
    a = b"\x09kaspersky\x03com\x00" + struct.pack("!HHIH", 1, 1, 300, 4) + socket.inet_aton("192.0.2.66")
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0) if has_opt(pkt) else b""
    header = qid + struct.pack("!HHHHH", flags, 1, 2, 0, 1 if opt else 0)
    return header + question + cname + a + opt


def failure_answer(pkt, rcode, ede):
    """rcode with an EDE option (code ede, text "fake") when the query had EDNS."""
    qid = pkt[0:2]
    _, _, _, qend = parse_question(pkt)
    flags = 0x8000 | (pkt[2] & 0x01) << 8 | 0x0080 | rcode
    opt = b""
    if has_opt(pkt):
        option = struct.pack("!HHH", 15, 2 + 4, ede) + b"fake"
        opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option
    header = qid + struct.pack("!HHHHH", flags, 1, 0, 0, 1 if opt else 0)
    return header + pkt[12:qend] + opt


class Upstream:
    def __init__(self, args):
        self.args = args
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", args.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", args.port))
        self.tcp.listen(64)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.lock = threading.Lock()
        self.spoofed = set()

    def reply_for(self, pkt, over_tcp):
        labels, qtype, _, _ = parse_question(pkt)
        name = b".".join(labels).lower()
        if self.args.mode == "silent" or name.endswith(b".hole") or b".hole." in name + b".":
            return None, 0
        delay = self.args.delay_ms / 1000 if b"slow" in labels or any(
            l.lower() == b"slow" for l in labels) else 0
        delay = max(delay, self.args.delay_all_ms / 1000)
        if self.args.mode == "refused" or name.startswith(b"refusedq"):
            return answer(pkt, self.args, rcode=5), delay
        if self.args.mode == "servfail" or name.startswith(b"servfail"):
            return failure_answer(pkt, 2, self.args.ede), delay
        if name.startswith(b"badchain") or name.startswith(b"loopchain"):
            return chain_answer(pkt, loop=name.startswith(b"loopchain")), delay
        if name.startswith(b"baddname"):
            return chain_answer(pkt, rtype=39), delay
        big = name.startswith(b"big")
        if big and not over_tcp:
            # A "slow" big name is slow over TCP only.
            return answer(pkt, self.args, tc=True), self.args.delay_all_ms / 1000
        return answer(pkt, self.args, lower=self.args.mode == "mangle", big=big), delay

    def send_later(self, sock, data, to, delay):
        def go():
            time.sleep(delay)
            with self.lock:
                sock.sendto(data, to)
        threading.Thread(target=go, daemon=True).start()

    def spoof(self, pkt, to):
        forged = bytearray(answer(pkt, self.args, lower=True, addr=self.args.spoof_answer))
        with self.lock:
            for i in range(65536):
                forged[0:2] = struct.pack("!H", i)
                try:
                    self.udp.sendto(forged, to)
                except OSError:
                    pass
                if i % 256 == 255:
                    time.sleep(0.002)  # Paced so that the resolver reads every one.

    def on_udp(self):
        pkt, src = self.udp.recvfrom(65535)
        if len(pkt) < 12 or pkt[2] & 0x80:
            return
        labels, _, _, _ = parse_question(pkt)
        qname = b".".join(labels).decode("ascii", "replace")
        if self.log:
            stamp = "%.3f " % time.monotonic() if self.args.log_time else ""
            self.log.write("%s%d %d %s\n" % (stamp, src[1], struct.unpack("!H", pkt[0:2])[0],
                                              qname))
        if qname.lower().startswith("spoof") and qname.lower() not in self.spoofed:
            self.spoofed.add(qname.lower())  # An attacker's one try per name and query.
            self.spoof(pkt, src)
            if qname.lower().startswith("spoofdrop"):
                return  # The flood drowned the real answer.
        data, delay = self.reply_for(pkt, False)
        if data is None:
            return
        sock = self.other if self.args.mode == "wrongport" else self.udp
        if delay:
            self.send_later(sock, data, src, delay)
        else:
            with self.lock:
                sock.sendto(data, src)

    def serve_tcp(self, conn):
        answered = 0
        wlock = threading.Lock()

        def later(data, delay):
            # A delayed answer goes in its own time: later questions on the connection are not
            # held behind it (pipelined answers may come in any order, RFC 7766 6.2.1.1).
            time.sleep(delay)
            try:
                with wlock:
                    conn.sendall(struct.pack("!H", len(data)) + data)
            except OSError:
                pass
        try:
            buf = b""
            while True:
                chunk = conn.recv(65535)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                    n = struct.unpack("!H", buf[:2])[0]
                    pkt, buf = buf[2:2 + n], buf[2 + n:]
                    data, delay = self.reply_for(pkt, True)
                    if data is None:
                        continue
                    if delay and not self.args.tcp_answers:
                        threading.Thread(target=later, args=(data, delay), daemon=True).start()
                        continue
                    time.sleep(delay)
                    with wlock:
                        conn.sendall(struct.pack("!H", len(data)) + data)
                    answered += 1
                    if self.args.tcp_answers and answered >= self.args.tcp_answers:
                        return
        except OSError:
            pass
        finally:
            conn.close()

    def run(self):
        deadline = time.time() + self.args.lifetime
        while time.time() < deadline:
            ready, _, _ = select.select([self.udp, self.tcp], [], [], 0.5)
            for s in ready:
                if s is self.udp:
                    self.on_udp()
                else:
                    conn, src = self.tcp.accept()
                    if self.log:
                        self.log.write("%d tcp-connection -\n" % src[1])
                    threading.Thread(target=self.serve_tcp, args=(conn,), daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log")
    p.add_argument("--answer", default="192.0.2.1")
    p.add_argument("--spoof-answer", default="6.6.6.6")
    p.add_argument("--mode", default="normal",
                   choices=["normal", "refused", "mangle", "wrongport", "silent", "servfail"])
    p.add_argument("--delay-ms", type=int, default=300)
    p.add_argument("--big-bytes", type=int, default=60000)
    p.add_argument("--ad", action="store_true", help="set AD in every answer")
    p.add_argument("--ede", type=int, default=6,
                   help="EDE code of SERVFAIL answers (servfail mode, names starting servfail)")
    p.add_argument("--ttl", type=int, default=300, help="TTL of A answers")
    p.add_argument("--tcp-answers", type=int, default=0,
                   help="close a TCP connection after this many answers (0: never)")
    p.add_argument("--lifetime", type=int, default=600, help="seconds before it stops by itself")
    p.add_argument("--delay-all-ms", type=int, default=0, help="delay every answer this long")
    p.add_argument("--log-time", action="store_true",
                   help="start each log line with time.monotonic() in seconds")
    p.add_argument("--cookies", action="store_true",
                   help="answer DNS cookies (nocookie*, badcookie* names: none, a wrong one)")
    Upstream(p.parse_args()).run()


if __name__ == "__main__":
    main()
