#!/usr/bin/env python3
"""A local PyPI that publishes PEP 658 metadata, for bench/uv-metadata.sh.

The upstream reachable from the benchmark machines publishes no core metadata, so a resolver
that reads it (uv) cannot be compared there with a cache that serves it. This server is a
snapshot of that upstream for one pinned requirements file, plus the metadata:

    python3 bench/fake_pypi.py prepare --dir DIR --upstream URL --requirements FILE
    python3 bench/fake_pypi.py serve --dir DIR --port PORT

`prepare` downloads the wheels pip picks for the file (`pip download --no-deps`, every
requirement pinned), extracts each wheel's `METADATA`, and saves each project's simple page
(PEP 691 JSON) as upstream serves it, every file of every version. `serve` answers
`/simple/PROJECT/` with that page, its file URLs pointing here and every wheel of a pinned
version advertising core metadata (`core-metadata` and `data-dist-info-metadata`, with the
sha256 of the pinned version's `METADATA`); `/files/NAME` with the wheel, and
`/files/NAME.metadata` with the metadata. A file not downloaded is a 404 (no resolver of a
pinned set asks for one). Prints `fake pypi listening on http://127.0.0.1:PORT` once ready.
"""

import argparse
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import urllib.request
import zipfile

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name_version(filename):
    parts = filename[: -len(".whl")].split("-")
    return normalize(parts[0]), parts[1]


def prepare(args):
    wheels = os.path.join(args.dir, "wheels")
    pages = os.path.join(args.dir, "pages")
    meta = os.path.join(args.dir, "meta")
    for d in (wheels, pages, meta):
        os.makedirs(d, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
         "--only-binary=:all:", "-q", "-d", wheels, "-r", args.requirements,
         "--index-url", args.upstream],
        check=True,
    )
    pinned = {}
    for filename in sorted(os.listdir(wheels)):
        if not filename.endswith(".whl"):
            continue
        project, version = wheel_name_version(filename)
        with zipfile.ZipFile(os.path.join(wheels, filename)) as z:
            name = next(n for n in z.namelist()
                        if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            data = z.read(name)
        with open(os.path.join(meta, f"{project}-{version}.metadata"), "wb") as f:
            f.write(data)
        pinned[project] = version
    upstream = args.upstream if args.upstream.endswith("/") else args.upstream + "/"
    for project in pinned:
        request = urllib.request.Request(upstream + project + "/", headers={"Accept": JSON_TYPE})
        with urllib.request.urlopen(request, timeout=120) as response:
            body = response.read()
        with open(os.path.join(pages, project + ".json"), "wb") as f:
            f.write(body)
    with open(os.path.join(args.dir, "pinned.json"), "w") as f:
        json.dump(pinned, f)
    print(f"prepared {len(pinned)} projects in {args.dir}")


def version_of(filename, project):
    """The version in a distribution's file name, for wheels and sdists."""
    stem = filename
    for suffix in (".whl", ".tar.gz", ".zip", ".tar.bz2"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if filename.endswith(".whl"):
        return stem.split("-")[1]
    head, _, version = stem.rpartition("-")
    return version if normalize(head) == project else None


def serve(args):
    pinned = json.load(open(os.path.join(args.dir, "pinned.json")))
    wheels = os.path.join(args.dir, "wheels")
    meta_dir = os.path.join(args.dir, "meta")
    base = f"http://127.0.0.1:{args.port}"
    metadata = {}
    for project, version in pinned.items():
        path = os.path.join(meta_dir, f"{project}-{version}.metadata")
        with open(path, "rb") as f:
            data = f.read()
        metadata[project] = (data, hashlib.sha256(data).hexdigest())
    files = {name: os.path.join(wheels, name) for name in os.listdir(wheels)}
    served_metadata = {}
    pages = {}
    for project, version in pinned.items():
        page = json.load(open(os.path.join(args.dir, "pages", project + ".json")))
        data, digest = metadata[project]
        for f in page.get("files", []):
            name = f["filename"]
            f["url"] = f"{base}/files/{name}"
            f.pop("core-metadata", None)
            f.pop("data-dist-info-metadata", None)
            if name.endswith(".whl") and version_of(name, project) == version:
                f["core-metadata"] = {"sha256": digest}
                f["data-dist-info-metadata"] = {"sha256": digest}
                served_metadata[name + ".metadata"] = data
        pages[project] = json.dumps(page).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, status, body, content_type="application/octet-stream"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path.startswith("/simple/"):
                project = normalize(path[len("/simple/"):].strip("/"))
                if project in pages:
                    return self.answer(200, pages[project], JSON_TYPE)
            elif path.startswith("/files/"):
                name = path[len("/files/"):]
                if name in served_metadata:
                    return self.answer(200, served_metadata[name])
                if name in files:
                    with open(files[name], "rb") as f:
                        return self.answer(200, f.read())
            self.answer(404, b"not found\n", "text/plain")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"fake pypi listening on {base}", flush=True)
    server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--dir", required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--requirements", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--dir", required=True)
    s.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    prepare(args) if args.command == "prepare" else serve(args)


if __name__ == "__main__":
    main()
