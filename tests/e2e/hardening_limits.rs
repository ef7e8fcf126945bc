//! The bounds on upstreams, set by `cairn serve`'s flags: a packument over `--max-document-size`
//! is a 502 naming the limit, a trickling packument ends at `--upstream-deadline` with a 504
//! naming it (and holds no other request; the audit passthrough too), an endless tarball stops at `--max-artifact-size`
//! with nothing left behind. The upstream is a small npm registry of its own here.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;

use crate::fake_upstream::{bind_local, serve_fake};
use crate::support::{Cairn, assert_refused_and_nothing_stored, get};

/// A registry with `big` (a 2 MiB packument), `slow` (a packument sent a byte every 200 ms),
/// `small` and `endless` (whose tarball never ends); returns its base URL.
fn registry() -> String {
    let listener = bind_local();
    let base = format!("http://{}/", listener.local_addr().expect("address"));
    let packument = |name: &str| {
        let integrity = base64::engine::general_purpose::STANDARD.encode([0u8; 64]);
        serde_json::json!({
            "name": name,
            "dist-tags": { "latest": "1.0.0" },
            "versions": { "1.0.0": {
                "name": name,
                "version": "1.0.0",
                "dist": {
                    "tarball": format!("{base}{name}/-/{name}-1.0.0.tgz"),
                    "integrity": format!("sha512-{integrity}"),
                },
            }},
        })
        .to_string()
    };
    let (small, endless) = (packument("small"), packument("endless"));
    let mut big: serde_json::Value = serde_json::from_str(&packument("big")).expect("packument");
    big["readme"] = serde_json::Value::String("x".repeat(2 << 20));
    let big = big.to_string();
    let app = axum::Router::new()
        .route("/small", axum::routing::get(move || async move { small }))
        .route("/big", axum::routing::get(move || async move { big }))
        .route(
            "/endless",
            axum::routing::get(move || async move { endless }),
        )
        .route("/slow", axum::routing::get(|| async { trickle() }))
        .route(
            "/-/npm/v1/security/advisories/bulk",
            axum::routing::post(|| async { trickle() }),
        )
        .route(
            "/endless/-/endless-1.0.0.tgz",
            axum::routing::get(|| async {
                let chunk = Bytes::from(vec![0u8; 16 << 10]);
                let stream = futures_util::stream::repeat_with(move || {
                    Ok::<_, std::convert::Infallible>(chunk.clone())
                });
                axum::body::Body::from_stream(stream)
            }),
        );
    serve_fake(listener, app);
    base
}

/// A body of one space every 200 ms, without end.
fn trickle() -> axum::body::Body {
    let stream = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from_static(b" ")),
            (),
        ))
    });
    axum::body::Body::from_stream(stream)
}

#[test]
fn limit_flags_bound_documents_exchanges_and_artifacts() {
    let upstream = registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let cairn = Cairn::start(
        &data,
        &[
            "--npm-upstream",
            &upstream,
            "--max-document-size",
            "1M",
            "--upstream-deadline",
            "3s",
            "--max-artifact-size",
            "64K",
            "--upstream-concurrency",
            "1",
        ],
    );
    let npm = cairn.npm();

    let big = get(&format!("{npm}big"));
    assert_eq!(big.status, 502, "{}", big.text);
    assert!(
        big.text
            .contains("larger than 1 MiB, the limit of npm documents (--max-document-size)"),
        "{}",
        big.text
    );

    // The trickle holds the only metadata slot until the deadline; the next miss then goes
    // through.
    let slow = std::thread::spawn({
        let url = format!("{npm}slow");
        move || get(&url)
    });
    std::thread::sleep(Duration::from_millis(500));
    let small = get(&format!("{npm}small"));
    assert_eq!(small.status, 200, "{}", small.text);
    let slow = slow.join().expect("slow");
    assert_eq!(slow.status, 504, "{}", slow.text);
    assert!(
        slow.text
            .contains("within the 3s upstream deadline (--upstream-deadline)"),
        "{}",
        slow.text
    );

    // The audit passthrough is held to the same deadline.
    let audit = std::process::Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data",
            "{}",
        ])
        .args(["-w", "\n%{http_code}", "--max-time", "60"])
        .arg(format!("{npm}-/npm/v1/security/advisories/bulk"))
        .output()
        .expect("curl");
    let audit = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(
        audit.ends_with("\n504")
            && audit.contains("within the 3s upstream deadline (--upstream-deadline)"),
        "{audit}"
    );

    assert_eq!(get(&format!("{npm}endless")).status, 200);
    let tarball = get(&format!("{npm}endless/-/endless-1.0.0.tgz"));
    assert_refused_and_nothing_stored(
        &tarball,
        502,
        &data,
        "npm",
        "endless/-/endless-1.0.0.tgz",
        &[],
    );
    assert!(
        tarball
            .text
            .contains("larger than 64 KiB, the limit of --max-artifact-size"),
        "{}",
        tarball.text
    );
    cairn.stop();
}
