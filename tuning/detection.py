#!/usr/bin/env python3
"""Helpers of `tuning/bench-vs-c-icap --detection` (see there), one subcommand each:

  sigs CLAM_EXE DIR      write the two clam.exe signatures of issue 11 into DIR
  zip PATH MB            write a zip of mixed members of about MB megabytes; print its size,
                         the bytes extracted from it and its member count
  ask CORPUS TSV SERVERS ICAPD_PORT CICAP_PORT
                         send every corpus file to each server as a RESPMOD body, one line of
                         verdicts per file into TSV
  report RAW OUT SERVERS SCRIPT
                         the markdown report from what the others wrote
"""

import hashlib
import io
import json
import os
import random
import re
import socket
import sys
import tarfile
import zipfile


def sigs(clam_exe, folder):
    """The signatures exactly as tests/containers.rs writes them: the MD5 of clam.exe as an
    .hdb, and its 64 bytes at file offset 0x40 (the code its entry point runs) as an .ndb."""
    exe = open(clam_exe, "rb").read()
    with open(os.path.join(folder, "clam.hdb"), "w") as f:
        f.write(f"{hashlib.md5(exe).hexdigest()}:{len(exe)}:ClamExe-MD5\n")
    with open(os.path.join(folder, "clam.ndb"), "w") as f:
        f.write(f"ClamExe-Code:0:*:{exe[0x40:0x80].hex()}\n")


def mixed_zip(path, mb):
    """Members in turn: 4 MiB of deflated text, 4 MiB of stored random bytes, and a stored
    .tar.gz of two 2 MiB text files; then a small last member. Deterministic (seeded)."""
    rng = random.Random(11)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(4000)]

    def text(n):
        out, size = [], 0
        while size < n:
            line = b" ".join(rng.choice(words) for _ in range(12)) + b"\n"
            out.append(line)
            size += len(line)
        return b"".join(out)[:n]

    extracted, members = 0, 0
    with open(path, "wb") as raw, zipfile.ZipFile(raw, "w") as z:
        while raw.tell() < mb * 10**6 * 0.92:
            kind = members % 3
            if kind == 0:
                data = text(4 << 20)
                z.writestr(f"text{members}.txt", data, zipfile.ZIP_DEFLATED)
            elif kind == 1:
                data = rng.randbytes(4 << 20)
                z.writestr(f"random{members}.bin", data, zipfile.ZIP_STORED)
            else:
                buf = io.BytesIO()
                with tarfile.open(fileobj=buf, mode="w:gz") as t:
                    for k in range(2):
                        d = text(2 << 20)
                        info = tarfile.TarInfo(f"doc{k}.txt")
                        info.size = len(d)
                        t.addfile(info, io.BytesIO(d))
                        extracted += len(d)
                data = buf.getvalue()
                z.writestr(f"docs{members}.tar.gz", data, zipfile.ZIP_STORED)
            extracted += len(data)
            members += 1
        z.writestr("last.txt", b"the last member\n", zipfile.ZIP_DEFLATED)
        extracted += 16
        members += 1
    print(os.path.getsize(path), extracted, members)


def ask_one(port, name, body):
    """One RESPMOD with Allow 204: (blocked, what), blocked when the answer names an infection
    (X-Infection-Found, both servers' header) or its HTTP response is a 403."""
    req = f"GET http://origin.test/{name} HTTP/1.1\r\nHost: origin.test\r\n\r\n".encode()
    res = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
    head = (
        f"RESPMOD icap://127.0.0.1:{port}/virus_scan ICAP/1.0\r\nHost: 127.0.0.1\r\nAllow: 204\r\n"
        f"Encapsulated: req-hdr=0, res-hdr={len(req)}, res-body={len(req) + len(res)}\r\n\r\n"
    ).encode()
    step = 65536
    chunked = b"".join(b"%x\r\n" % len(body[i : i + step]) + body[i : i + step] + b"\r\n" for i in range(0, len(body), step))
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    s.sendall(head + req + res + chunked + b"0\r\n\r\n")
    data = b""
    while True:
        icap_head, sep, rest = data.partition(b"\r\n\r\n")
        # Enough: the ICAP head, and for a 200 the encapsulated HTTP status line too.
        if sep and (not icap_head.startswith(b"ICAP/1.0 200") or b"\r\n" in rest):
            break
        more = s.recv(65536)
        if not more:
            break
        data += more
    s.close()
    icap_head, _, rest = data.partition(b"\r\n\r\n")
    status = icap_head.split(b" ")[1].decode() if b" " in icap_head else "no answer"
    found = re.search(rb"X-Infection-Found:[^\r]*Threat=([^;\r]+)", icap_head, re.I)
    http = re.match(rb"HTTP/1\.[01] (\d+)", rest)
    if found:
        return True, found.group(1).decode().strip()
    if http and http.group(1) == b"403":
        return True, "HTTP 403"
    return False, f"ICAP {status}"


def ask(corpus, tsv, servers, icapd_port, cicap_port):
    ports = {"icapd": int(icapd_port), "c-icap": int(cicap_port)}
    with open(tsv, "w") as f:
        for name in sorted(os.listdir(corpus)):
            body = open(os.path.join(corpus, name), "rb").read()
            row = [name]
            for server in servers.split():
                blocked, what = ask_one(ports[server], name, body)
                row += ["blocked" if blocked else "passed", what]
            f.write("\t".join(row) + "\n")


def report(raw, out, servers, script):
    servers = servers.split()
    rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(raw, "detection.tsv"))]
    zbytes, zextracted, zmembers = map(int, open(os.path.join(raw, "mixed-zip.txt")).read().split())
    p = print
    p("# Detection on ClamAV's test corpus: " + " and ".join("c-icap + ClamAV" if s == "c-icap" else s for s in servers) + "\n")
    p("```text\n" + open(os.path.join(out, "machine.txt")).read() + "```\n")
    p(
        "Signatures, the same in both: clam.exe's MD5 as an `.hdb` (`ClamExe-MD5`) and its 64 bytes at file "
        "offset 0x40 as an `.ndb` body signature (`ClamExe-Code`). One RESPMOD per file, Allow 204; blocked "
        "means the answer named an infection (the name is given) or carried an HTTP 403.\n"
    )
    p("| file | " + " | ".join(servers) + " |")
    p("|---|" + "---|" * len(servers))
    for r in rows:
        cells = []
        for i in range(len(servers)):
            verdict, what = r[1 + 2 * i], r[2 + 2 * i]
            cells.append(f"blocked: {what}" if verdict == "blocked" else f"passed ({what})")
        p(f"| {r[0]} | " + " | ".join(cells) + " |")
    counts = [sum(1 for r in rows if r[1 + 2 * i] == "blocked") for i in range(len(servers))]
    p("\n" + "; ".join(f"{s}: {c} of {len(rows)} blocked" for s, c in zip(servers, counts)) + ".\n")
    if "c-icap" not in servers:
        p(
            "c-icap + ClamAV could not be set up on this machine. On one where c-icap, "
            f"libc-icap-mod-virus-scan and clamav install, `{script} --detection` fills in its column.\n"
        )
    p(f"## A {zbytes / 1e6:.0f} MB zip of mixed members\n")
    p(
        f"{zmembers} members: deflated text, stored random bytes and stored .tar.gz files of text; "
        f"{zextracted / 1e6:.0f} MB extracted in all (a .tar.gz counts as itself and as its content). "
        "Closed loop, no Allow 204 (the whole zip is scanned and sent back).\n"
    )
    p("| server | answered | zip MB/s | extracted MB/s | p50 ms | server CPU s |")
    p("|---|---|---|---|---|---|")
    for s in servers:
        d = json.load(open(os.path.join(raw, f"mixed-zip-{s}.json")))
        cpu = open(os.path.join(raw, f"mixed-zip-{s}.cpu")).read().split()
        cpu_s = float(cpu[1]) - float(cpu[2]) if len(cpu) == 3 else float("nan")
        mbs = d["body_mb_per_s"]
        p(
            f"| {s} | {d['answered']} | {mbs:,.1f} | {mbs * zextracted / zbytes:,.1f} "
            f"| {d['latency_us']['p50'] / 1000:,.0f} | {cpu_s:.1f} |"
        )


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"sigs": sigs, "zip": lambda p, mb: mixed_zip(p, int(mb)), "ask": ask, "report": report}[cmd](*args)
