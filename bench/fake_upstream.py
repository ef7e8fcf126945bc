#!/usr/bin/env python3
"""Fake npm upstream for Cairn's large-artifact benchmark (bench/npm.sh, part e).

Serves one package, `huge` 1.0.0, whose tarball is a file of random bytes (2 GiB by
default) generated once and cached next to its sha512. The packument's dist.tarball points
back at this server and dist.integrity is the file's real `sha512-<base64>`.

    python3 bench/fake_upstream.py --port 8090 --dir /tmp/bench/huge [--size-mib 2048]

With `--small N` it also serves packages `small0` … `small{N-1}`, each a 64 KiB tarball of
random bytes (for peer-fetch latency). `GET /-/stats` answers how many tarball requests and
bytes it has sent (`{"tarball_requests": n, "tarball_bytes": n}`), for the swarm benchmark's
"upstream sends each file once" check.

With `--many N` it also serves `many`, a packument of N versions (each with a few KiB of
description, as real ones carry), published an hour apart up to now (so the last week's are
young under a 7-day cooldown), and a PyPI page `/simple/manyproj/` (PEP 691 JSON) with N
files uploaded an hour apart; their files are never fetched (bench/policy.sh).

Prints `fake upstream listening on http://127.0.0.1:PORT` once ready.
"""

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = "huge"
VERSION = "1.0.0"
FILE = f"{NAME}-{VERSION}.tgz"


def prepare(directory: str, size_mib: int) -> tuple[str, str]:
    """Create the artifact (if missing or the wrong size) and return (path, integrity)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, FILE)
    meta = path + ".integrity"
    size = size_mib * 1024 * 1024
    if os.path.exists(path) and os.path.getsize(path) == size and os.path.exists(meta):
        with open(meta) as f:
            return path, f.read().strip()
    print(f"generating {size_mib} MiB of random bytes at {path}", file=sys.stderr, flush=True)
    tmp = path + ".tmp"
    subprocess.run(
        ["dd", "if=/dev/urandom", f"of={tmp}", "bs=1M", f"count={size_mib}",
         "iflag=fullblock", "status=none"],
        check=True,
    )
    h = hashlib.sha512()
    with open(tmp, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    integrity = "sha512-" + base64.b64encode(h.digest()).decode()
    os.replace(tmp, path)
    with open(meta, "w") as f:
        f.write(integrity + "\n")
    return path, integrity


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--dir", default="/tmp/bench/huge")
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--small", type=int, default=0)
    ap.add_argument("--many", type=int, default=0)
    args = ap.parse_args()

    path, integrity = prepare(args.dir, args.size_mib)
    size = os.path.getsize(path)
    origin = f"http://127.0.0.1:{args.port}"
    packument = {
        "_id": NAME,
        "name": NAME,
        "dist-tags": {"latest": VERSION},
        "versions": {
            VERSION: {
                "name": NAME,
                "version": VERSION,
                "dist": {
                    "tarball": f"{origin}/{NAME}/-/{FILE}",
                    "integrity": integrity,
                },
            }
        },
        "modified": "2024-01-01T00:00:00.000Z",
        "time": {"created": "2024-01-01T00:00:00.000Z", VERSION: "2024-01-01T00:00:00.000Z"},
    }
    body = json.dumps(packument).encode()
    small = {}
    for i in range(args.small):
        name = f"small{i}"
        data = os.urandom(64 * 1024)
        integrity_small = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        doc = json.loads(json.dumps(packument))
        doc["_id"] = doc["name"] = name
        doc["versions"][VERSION]["name"] = name
        doc["versions"][VERSION]["dist"] = {
            "tarball": f"{origin}/{name}/-/{name}-{VERSION}.tgz",
            "integrity": integrity_small,
        }
        small[f"/{name}"] = ("doc", json.dumps(doc).encode())
        small[f"/{name}/-/{name}-{VERSION}.tgz"] = ("tarball", data)
    if args.many:
        import time as clock

        def stamp(t: float) -> str:
            return clock.strftime("%Y-%m-%dT%H:%M:%S.000Z", clock.gmtime(t))

        now = clock.time()
        data = os.urandom(64 * 1024)
        integrity_many = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        filler = ("lorem ipsum dolor sit amet " * 200)[:5000]
        versions, times = {}, {"created": stamp(now - args.many * 3600)}
        for i in range(args.many):
            v = f"1.{i // 100}.{i % 100}"
            versions[v] = {
                "name": "many",
                "version": v,
                "description": filler,
                "dependencies": {"small0": "^1.0.0"},
                "dist": {
                    "tarball": f"{origin}/many/-/many-{v}.tgz",
                    "integrity": integrity_many,
                    "shasum": hashlib.sha1(data).hexdigest(),
                },
            }
            times[v] = stamp(now - (args.many - i) * 3600)
        last = list(versions)[-1]
        doc = {"_id": "many", "name": "many", "dist-tags": {"latest": last},
               "versions": versions, "time": times}
        small["/many"] = ("doc", json.dumps(doc).encode())
        files = []
        for i in range(args.many):
            v = f"1.{i // 100}.{i % 100}"
            name = f"manyproj-{v}-py3-none-any.whl"
            files.append({
                "filename": name,
                "url": f"{origin}/files/{name}",
                "hashes": {"sha256": hashlib.sha256(name.encode()).hexdigest()},
                "requires-python": ">=3.8",
                "size": 1000,
                "upload-time": stamp(now - (args.many - i) * 3600),
                "yanked": False,
            })
        page = {"meta": {"api-version": "1.1"}, "name": "manyproj", "files": files,
                "versions": sorted({f["filename"].split("-")[1] for f in files})}
        small["/simple/manyproj"] = ("doc", json.dumps(page).encode())
    stats = {"tarball_requests": 0, "tarball_bytes": 0}
    stats_lock = threading.Lock()

    def count(n: int) -> None:
        with stats_lock:
            stats["tarball_requests"] += 1
            stats["tarball_bytes"] += n

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # quiet
            pass

        def do_HEAD(self):
            self.handle_get(head=True)

        def do_GET(self):
            self.handle_get(head=False)

        def handle_get(self, head: bool):
            p = self.path.split("?", 1)[0]
            if p == "/-/stats":
                with stats_lock:
                    answer = json.dumps(stats).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if not head:
                    self.wfile.write(answer)
            elif p.rstrip("/") in small:
                kind, data = small[p.rstrip("/")]
                self.send_response(200)
                doc_type = (
                    "application/vnd.pypi.simple.v1+json"
                    if p.startswith("/simple/")
                    else "application/json"
                )
                self.send_header(
                    "Content-Type",
                    doc_type if kind == "doc" else "application/octet-stream",
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)
                    if kind == "tarball":
                        count(len(data))
            elif p in (f"/{NAME}", f"/{NAME}/"):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)
            elif p == f"/{NAME}/-/{FILE}":
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if not head:
                    self.wfile.flush()
                    with open(path, "rb") as f:
                        try:
                            sent = self.connection.sendfile(f)
                        except (BrokenPipeError, ConnectionResetError):
                            sent = f.tell()
                    count(sent)
            else:
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "21")
                self.end_headers()
                if not head:
                    self.wfile.write(b'{"error":"not found"}')

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"fake upstream listening on {origin} integrity={integrity}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
