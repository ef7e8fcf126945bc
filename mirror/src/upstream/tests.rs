//! The upstream client's own tests: credentials kept out of URLs, redirects held under the base, limits.

use super::*;

fn upstream(base: &str) -> Upstream {
    Upstream::new(Url::parse(base).expect("url"), UpstreamLimits::default()).expect("new")
}

#[test]
fn only_urls_under_the_base_are_allowed() {
    let u = upstream("https://registry.example/npm");
    for (url, allowed) in [
        ("https://registry.example/npm/lodash", true),
        ("https://registry.example:443/npm/a/-/a-1.tgz", true),
        ("https://registry.example/other/lodash", false),
        ("http://registry.example/npm/lodash", false),
        ("https://evil.example/npm/lodash", false),
        ("https://registry.example/npm/%2e%2e/admin", false),
    ] {
        let url = Url::parse(url).expect("url");
        assert_eq!(u.allows(&url), allowed, "{url}");
    }
}

#[test]
fn declared_prefixes_are_allowed() {
    let u = upstream("https://index.example/");
    let dl = Url::parse("https://files.example/crates/x/1.0.0/download").expect("url");
    assert!(!u.allows(&dl));
    u.clone().add_prefixes(vec![
        Url::parse("https://files.example/crates/").expect("url"),
    ]);
    assert!(u.allows(&dl), "clones share prefixes");
    assert!(!u.allows(&Url::parse("https://files.example/other").expect("url")));
}

#[test]
fn credentials_are_redacted() {
    let url = Url::parse("https://user:secret@registry.example/").expect("url");
    assert_eq!(redact(&url), "https://****:****@registry.example/");
    // Text that is not a URL (here, a port out of range) still loses its credentials.
    assert_eq!(
        redact_text("https://user:secret@registry.example:99999/"),
        "https://registry.example:99999/"
    );
}

#[test]
fn join_refuses_dot_segments() {
    let u = upstream("https://registry.example/npm/");
    for path in [
        "-/npm/v1/security/../../../../lodash",
        "-/npm/v1/security/%2e%2e/%2e%2e/lodash",
        "-/npm/v1/security/%2E%2E/lodash",
        "-/npm/v1/security/.%2e/lodash",
        "a/./b",
        "..",
    ] {
        assert!(
            matches!(u.join(path), Err(Error::BadRequest(_))),
            "{path} should be refused"
        );
    }
    assert!(u.join("@types%2fnode").is_ok());
    assert!(u.join("-/v1/search?text=a/../b").is_ok());
}

#[test]
fn credentials_are_taken_out_of_the_base() {
    let u = upstream("https://cairn:s3cret@registry.example/npm");
    assert_eq!(u.base().as_str(), "https://registry.example/npm/");
    let joined = u.join("lodash").expect("join");
    assert_eq!(joined.as_str(), "https://registry.example/npm/lodash");
    let header = u.credentials.as_ref().expect("credentials kept");
    assert!(header.is_sensitive());
    // base64("cairn:s3cret")
    assert_eq!(header.as_bytes(), b"Basic Y2Fpcm46czNjcmV0");
    assert!(!format!("{u:?}").contains("s3cret"));
    assert_eq!(u.shown(), "https://****:****@registry.example/npm/");
    let encoded = upstream("https://a%40b:p%3Aw@registry.example/");
    // base64("a@b:p:w")
    assert_eq!(
        encoded.credentials.as_ref().map(|h| h.as_bytes()),
        Some(&b"Basic YUBiOnA6dw=="[..])
    );
    assert!(upstream("https://registry.example/").credentials.is_none());
}

#[test]
fn urls_with_userinfo_are_not_allowed() {
    let u = upstream("https://registry.example/npm/");
    let url = Url::parse("https://x:y@registry.example/npm/lodash").expect("url");
    assert!(!u.allows(&url));
}

#[test]
fn strip_userinfo_removes_credentials_from_text() {
    for (text, stripped) in [
        (
            "https://cairn:s3cret@registry.example/npm/x",
            "https://registry.example/npm/x",
        ),
        ("http://token@h.example:8080", "http://h.example:8080"),
        (
            "https://registry.example/@scope/x",
            "https://registry.example/@scope/x",
        ),
        (
            "https://registry.example/x?u=a@b",
            "https://registry.example/x?u=a@b",
        ),
        ("derived from a@1/x.whl", "derived from a@1/x.whl"),
        ("", ""),
    ] {
        assert_eq!(strip_userinfo(text), stripped, "{text}");
    }
}

/// What a fake origin saw: (method, path, Authorization).
type Seen = Arc<std::sync::Mutex<Vec<(String, String, Option<String>)>>>;

/// A fake origin on 127.0.0.1 that records every request and answers with `answer`.
async fn origin(
    answer: impl Fn(&str) -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (Url, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url =
        Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
    let seen = Seen::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |request: http::Request<axum::body::Body>| {
        let (record, answer) = (record.clone(), answer.clone());
        async move {
            let auth = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let path = request.uri().path().to_owned();
            record
                .lock()
                .expect("seen")
                .push((request.method().to_string(), path.clone(), auth));
            answer(&path)
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

fn redirect(to: String) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (http::StatusCode::FOUND, [(http::header::LOCATION, to)]).into_response()
}

#[tokio::test]
async fn redirects_outside_the_allow_list_are_refused() {
    use axum::response::IntoResponse as _;
    let (inside, inside_seen) = origin(|_| "internal document".into_response()).await;
    let target = inside.join("secret").expect("url").to_string();
    let (up, up_seen) = origin(move |path| match path {
        "/npm/away" => redirect(target.clone()),
        "/npm/loop" => redirect("/npm/loop".to_owned()),
        _ => "ok".into_response(),
    })
    .await;
    let mut base = up.join("npm/").expect("base");
    base.set_username("cairn").expect("user");
    base.set_password(Some("s3cret")).expect("password");
    let u = Upstream::new(base, UpstreamLimits::default()).expect("upstream");
    let away = u.join("away").expect("url");
    match u.get(&away, None, None, None).await {
        Err(e @ Error::RedirectRefused { .. }) => {
            assert!(e.to_string().contains("/secret"), "{e}");
            assert_eq!(e.status(), http::StatusCode::BAD_GATEWAY);
        }
        other => panic!("expected a refused redirect, got {other:?}"),
    }
    let forwarded = u
        .forward(
            http::Method::POST,
            &away,
            &http::HeaderMap::new(),
            bytes::Bytes::new(),
        )
        .await;
    assert!(matches!(forwarded, Err(Error::RedirectRefused { .. })));
    assert!(
        inside_seen.lock().expect("seen").is_empty(),
        "the internal host was reached"
    );
    let looped = u.get(&u.join("loop").expect("url"), None, None, None).await;
    assert!(
        matches!(looped, Err(Error::UpstreamRequest { .. })),
        "{looped:?}"
    );
    // Cairn's own request carried the credentials; the client's forward did not.
    let seen = up_seen.lock().expect("seen").clone();
    assert_eq!(seen[0].2.as_deref(), Some("Basic Y2Fpcm46czNjcmV0"));
    assert_eq!(seen[1].0, "POST");
    assert_eq!(seen[1].2, None, "a forwarded request carried credentials");
}

#[tokio::test]
async fn credentials_stay_on_the_base_origin() {
    use axum::response::IntoResponse as _;
    let (files, files_seen) = origin(|_| "file bytes".into_response()).await;
    let file = files.join("files/a.tgz").expect("url").to_string();
    let (up, up_seen) = origin(move |path| match path {
        "/npm/a.tgz" => redirect(file.clone()),
        _ => "ok".into_response(),
    })
    .await;
    let mut base = up.join("npm/").expect("base");
    base.set_username("cairn").expect("user");
    base.set_password(Some("s3cret")).expect("password");
    let u = Upstream::new(base, UpstreamLimits::default()).expect("upstream");
    u.add_prefixes(vec![files.join("files/").expect("prefix")]);
    let asked = u.join("a.tgz").expect("url");
    let response = u.get(&asked, None, None, None).await.expect("get");
    assert!(u.redirected_away(&asked, &response));
    assert_eq!(response.text().await.expect("body"), "file bytes");
    // Asked directly, a declared location gets no credentials either.
    let direct = files.join("files/a.tgz").expect("url");
    let response = u.get(&direct, None, None, None).await.expect("get");
    assert!(!u.redirected_away(&direct, &response));
    assert_eq!(
        up_seen.lock().expect("seen")[0].2.as_deref(),
        Some("Basic Y2Fpcm46czNjcmV0")
    );
    let files_seen = files_seen.lock().expect("seen").clone();
    assert_eq!(files_seen.len(), 2);
    assert!(
        files_seen.iter().all(|(_, _, auth)| auth.is_none()),
        "credentials left the base's origin: {files_seen:?}"
    );
}

#[tokio::test]
async fn a_bearer_token_is_sent_to_the_base_origin_only_and_never_shown() {
    use axum::response::IntoResponse as _;
    let (files, files_seen) = origin(|_| "file bytes".into_response()).await;
    let file = files.join("files/a.tgz").expect("url").to_string();
    let (up, up_seen) = origin(move |path| match path {
        "/corp/a.tgz" => redirect(file.clone()),
        _ => "ok".into_response(),
    })
    .await;
    let token = Credentials::Bearer("t0ken-secret".into());
    assert_eq!(format!("{token:?}"), "Bearer(****)");
    let base = up.join("corp/").expect("base");
    let u = Upstream::with_credentials(base, Some(&token), UpstreamLimits::default())
        .expect("upstream");
    assert!(u.private());
    assert!(!u.shown().contains("t0ken"), "{}", u.shown());
    assert!(!format!("{u:?}").contains("t0ken"));
    u.add_prefixes(vec![files.join("files/").expect("prefix")]);
    let asked = u.join("a.tgz").expect("url");
    let response = u.get(&asked, None, None, None).await.expect("get");
    assert_eq!(response.text().await.expect("body"), "file bytes");
    assert_eq!(
        up_seen.lock().expect("seen")[0].2.as_deref(),
        Some("Bearer t0ken-secret")
    );
    let files_seen = files_seen.lock().expect("seen").clone();
    assert!(
        files_seen.iter().all(|(_, _, auth)| auth.is_none()),
        "the token left the base's origin on a redirect: {files_seen:?}"
    );
    // A URL's own user name and password win over given credentials; a token that HTTP
    // cannot carry is refused with the upstream named.
    let mut with_user = up.join("corp/").expect("base");
    with_user.set_username("u").expect("user");
    assert!(
        Upstream::with_credentials(with_user, Some(&token), UpstreamLimits::default())
            .expect("upstream")
            .private()
    );
    let bad = Credentials::Bearer("line\nbreak".into());
    let err = Upstream::with_credentials(
        up.join("corp/").expect("base"),
        Some(&bad),
        UpstreamLimits::default(),
    )
    .expect_err("refused");
    assert!(err.to_string().contains("corp"), "{err}");
    assert!(!err.to_string().contains("break"), "{err}");
    assert!(
        !Upstream::new(up, UpstreamLimits::default())
            .expect("up")
            .private()
    );
}
