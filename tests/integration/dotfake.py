#!/usr/bin/env python3
"""A DNS-over-TLS upstream for the tests (Python's standard library only): it serves TLS with
the certificate and key given, reads length-prefixed DNS messages, and logs one line per
question: its length, whether it carries an EDNS Padding option (RFC 7830), and its name as read
(letter case kept). --mode lower answers every question with an A record, the question's name in
lower case (as an upstream that does not keep case); --mode silent completes the handshake and
never answers. It stops by itself after --lifetime seconds."""
import argparse
import socket
import ssl
import struct
import threading
import time


def read_name(msg, off):
    labels = []
    while msg[off]:
        n = msg[off]
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return ".".join(labels) + ".", off + 1


def padded(msg, off):
    """Does the additional section (an OPT record after the question at off) hold option 12?"""
    if struct.unpack(">H", msg[10:12])[0] != 1 or off + 11 > len(msg) or msg[off] != 0:
        return False
    rdlen = struct.unpack(">H", msg[off + 9:off + 11])[0]
    p, end = off + 11, off + 11 + rdlen
    while p + 4 <= end:
        code, olen = struct.unpack(">HH", msg[p:p + 4])
        if code == 12:
            return True
        p += 4 + olen
    return False


def answer(msg, qend):
    name, _ = read_name(msg, 12)
    wire = b"".join(bytes([len(l)]) + l.lower().encode() for l in name.rstrip(".").split("."))
    head = msg[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0)
    question = wire + b"\0" + msg[qend - 4:qend]
    rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 7])
    return head + question + rr


def serve(conn, args, lock):
    buf = b""
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
                n = struct.unpack(">H", buf[:2])[0]
                msg, buf = buf[2:2 + n], buf[2 + n:]
                name, off = read_name(msg, 12)
                qend = off + 4
                with lock, open(args.log, "a") as f:
                    f.write("len=%d padded=%d name=%s\n" % (n, padded(msg, qend), name))
                if args.mode == "lower":
                    out = answer(msg, qend)
                    conn.sendall(struct.pack(">H", len(out)) + out)
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--mode", choices=["lower", "silent"], default="lower")
    p.add_argument("--lifetime", type=int, default=600)
    args = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["dot"])
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", args.port))
    s.listen(64)
    open(args.log, "w").close()
    lock = threading.Lock()
    end = time.time() + args.lifetime
    s.settimeout(1)
    while time.time() < end:
        try:
            raw, _ = s.accept()
        except socket.timeout:
            continue
        try:
            raw.settimeout(30)
            conn = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            continue
        threading.Thread(target=serve, args=(conn, args, lock), daemon=True).start()


if __name__ == "__main__":
    main()
