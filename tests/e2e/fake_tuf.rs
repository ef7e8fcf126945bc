//! A stand-in for the Sigstore TUF repository that `npm audit signatures` refreshes before it
//! reads any registry key, which this machine cannot reach. npm's TUF client trusts the
//! `root.json` in its cache directory and fetches the rest from its mirror through the
//! `https_proxy` it is given; so the test gives it a root of its own (one ed25519 key for every
//! role, made with the openssl CLI), a CONNECT proxy on 127.0.0.1 that terminates TLS for the
//! mirror's host with a certificate from a test CA (`NODE_EXTRA_CA_CERTS`), and signed
//! timestamp, snapshot and targets documents that list no registry keys. npm then falls back,
//! as it does for any registry Sigstore does not know, to the registry's own
//! `-/npm/v1/keys`: the node's.
//!
//! The mirror's URL is read from npm's own installation (the seeds of its TUF client), so it is
//! named nowhere here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::openssl;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// A running fake TUF mirror.
pub struct FakeTuf {
    /// `http://127.0.0.1:PORT`, for `https_proxy`.
    pub proxy: String,
    /// The test CA's certificate, for `NODE_EXTRA_CA_CERTS`.
    pub ca: PathBuf,
}

/// The URL of the TUF mirror npm's client is seeded for.
fn mirror_url() -> url::Url {
    let root = Command::new("npm")
        .args(["root", "-g"])
        .output()
        .expect("npm (it must be installed)");
    let root = String::from_utf8_lossy(&root.stdout).trim().to_owned();
    let seeds = format!("{root}/npm/node_modules/@sigstore/tuf/seeds.json");
    let seeds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&seeds).expect("npm's TUF seeds")).expect("JSON");
    let first = seeds
        .as_object()
        .and_then(|m| m.keys().next())
        .expect("a seeded mirror");
    url::Url::parse(first).expect("mirror URL")
}

/// JSON in the canonical form TUF signs: keys sorted, no spaces, only `"` and `\` escaped.
fn canonical(value: &serde_json::Value, out: &mut String) {
    let string = |s: &str, out: &mut String| {
        out.push('"');
        out.push_str(&s.replace('\\', "\\\\").replace('"', "\\\""));
        out.push('"');
    };
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, &serde_json::Value> = map.iter().collect();
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(k, out);
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        serde_json::Value::String(s) => string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

impl FakeTuf {
    /// Start it, and put its root into `npm_cache`'s TUF directory (npm's `cache` setting).
    pub fn start(dir: &Path, npm_cache: &Path) -> FakeTuf {
        std::fs::create_dir_all(dir).expect("tuf dir");
        let mirror = mirror_url();
        let host = mirror.host_str().expect("mirror host").to_owned();

        // A CA, and a certificate for the mirror's host.
        let ca = crate::tls::ca(dir);
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "tuf.key",
                "-out",
                "tuf.csr",
                "-subj",
                "/CN=tuf",
            ],
            None,
        );
        std::fs::write(dir.join("san.ext"), format!("subjectAltName=DNS:{host}\n")).expect("ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "tuf.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "7",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "tuf.crt",
            ],
            None,
        );

        // The repository's one key, and its four top-level documents.
        openssl(
            dir,
            &["genpkey", "-algorithm", "ed25519", "-out", "role.pem"],
            None,
        );
        let der = openssl(
            dir,
            &["pkey", "-in", "role.pem", "-pubout", "-outform", "DER"],
            None,
        );
        let public = hex::encode(&der[der.len() - 32..]);
        let keyid = "cairn-e2e-tuf-key";
        let expires = "2099-01-01T00:00:00Z";
        let role = serde_json::json!({ "keyids": [keyid], "threshold": 1 });
        let sign = |signed: serde_json::Value| -> String {
            let mut text = String::new();
            canonical(&signed, &mut text);
            // Ed25519 signs in one go, so openssl wants the message as a file.
            std::fs::write(dir.join("message"), &text).expect("message");
            let sig = openssl(
                dir,
                &[
                    "pkeyutl", "-sign", "-inkey", "role.pem", "-rawin", "-in", "message",
                ],
                None,
            );
            serde_json::json!({
                "signed": signed,
                "signatures": [{ "keyid": keyid, "sig": hex::encode(sig) }],
            })
            .to_string()
        };
        let common = |kind: &str| serde_json::json!({ "_type": kind, "spec_version": "1.0.31", "version": 1, "expires": expires });
        let mut root = common("root");
        root["keys"] = serde_json::json!({ keyid: {
            "keytype": "ed25519", "scheme": "ed25519", "keyval": { "public": public },
        }});
        root["roles"] = serde_json::json!({
            "root": role, "targets": role, "snapshot": role, "timestamp": role,
        });
        root["consistent_snapshot"] = false.into();
        let mut timestamp = common("timestamp");
        timestamp["meta"] = serde_json::json!({ "snapshot.json": { "version": 1 } });
        let mut snapshot = common("snapshot");
        snapshot["meta"] = serde_json::json!({ "targets.json": { "version": 1 } });
        let mut targets = common("targets");
        targets["targets"] = serde_json::json!({});
        let mut files = BTreeMap::new();
        files.insert("/timestamp.json".to_owned(), sign(timestamp));
        files.insert("/snapshot.json".to_owned(), sign(snapshot));
        files.insert("/targets.json".to_owned(), sign(targets));
        let trusted = dir_for(npm_cache, &mirror);
        std::fs::create_dir_all(trusted.join("targets")).expect("tuf cache");
        std::fs::write(trusted.join("root.json"), sign(root)).expect("root.json");

        let acceptor = cairn_mirror::http::tls::TlsFiles {
            cert: dir.join("tuf.crt"),
            key: dir.join("tuf.key"),
        }
        .acceptor()
        .expect("TLS acceptor");
        let files = Arc::new(files);
        let listener = crate::support::runtime().block_on(async {
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind")
        });
        let proxy = format!("http://{}", listener.local_addr().expect("address"));
        crate::support::runtime().spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, files) = (acceptor.clone(), files.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    // `CONNECT host:443 HTTP/1.1` and its headers.
                    let head = read_head(&mut stream).await;
                    if !head.starts_with("CONNECT ") {
                        return;
                    }
                    let mut stream = stream.into_inner();
                    if stream
                        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if let Ok(tls) = acceptor.accept(stream).await {
                        serve(tls, &files).await;
                    }
                });
            }
        });
        FakeTuf { proxy, ca }
    }
}

/// Where npm's TUF client keeps what it trusts of `mirror`, below npm's cache.
fn dir_for(npm_cache: &Path, mirror: &url::Url) -> PathBuf {
    // The client names it by `encodeURIComponent(host + path)`; a host needs none of it.
    let name = format!(
        "{}{}",
        mirror.host_str().expect("host"),
        mirror.path().trim_end_matches('/')
    );
    npm_cache.join("_tuf").join(name)
}

/// A request's head: its lines up to the empty one.
async fn read_head<R: AsyncRead + Unpin>(stream: &mut BufReader<R>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return head,
            Ok(_) if line == "\r\n" || line == "\n" => return head,
            Ok(_) => head.push_str(&line),
        }
        if head.len() > 64 << 10 {
            return head;
        }
    }
}

/// Answer one connection's requests: a document of the repository, else 404 (no newer root).
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, files: &BTreeMap<String, String>) {
    let mut stream = BufReader::new(stream);
    loop {
        let head = read_head(&mut stream).await;
        let Some(path) = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split(' ').next())
        else {
            return;
        };
        let reply = match files.get(path) {
            Some(body) => format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
        };
        if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
