//! The HTTP front's own unit tests: errors as clients see them, warnings, ranges.

use std::sync::Arc;

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use super::documents::{MAX_WARNING_REASON, accepts_gzip, human_age, stale_warning};
use super::files::parse_range;
use super::passthrough::escapes_its_path;
use super::{matches_etag, public_message};

use crate::error::Error;

#[test]
fn store_errors_name_no_data_directory_path() {
    let path = std::path::Path::new("/srv/cairn-data/blobs/ab/bafkexample");
    let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
    for error in [
        Error::Store(crate::error::StoreError::io("open", path, io())),
        Error::Shared(Arc::new(Error::Store(crate::error::StoreError::Corrupt {
            path: path.to_path_buf(),
            expected: "x".into(),
            got: "y".into(),
        }))),
    ] {
        assert!(error.to_string().contains("/srv/cairn-data"), "{error}");
        let message = public_message(&error);
        assert!(!message.contains("/srv/cairn-data"), "{message}");
        assert!(message.contains("store"), "{message}");
    }
}

#[test]
fn ranges() {
    for (spec, size, expect) in [
        ("bytes=0-9", 100, Some(Ok((0, 9)))),
        ("bytes=90-", 100, Some(Ok((90, 99)))),
        ("bytes=-10", 100, Some(Ok((90, 99)))),
        ("bytes=-200", 100, Some(Ok((0, 99)))),
        ("bytes=50-500", 100, Some(Ok((50, 99)))),
        ("bytes=100-", 100, Some(Err(()))),
        ("bytes=-0", 100, Some(Err(()))),
        ("bytes=9-0", 100, None),
        ("bytes=0-1,5-6", 100, None),
        ("items=0-1", 100, None),
    ] {
        assert_eq!(parse_range(spec, size), expect, "{spec}");
    }
}

#[test]
fn gzip_negotiation() {
    for (value, expect) in [
        ("gzip, deflate", true),
        ("gzip;q=0", false),
        ("deflate, br", false),
        ("*", true),
        ("GZIP", true),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
        assert_eq!(accepts_gzip(&headers), expect, "{value}");
    }
    assert!(!accepts_gzip(&HeaderMap::new()));
}

#[test]
fn stale_warnings_say_what_happened() {
    let offline = crate::engine::stale_reason(&Error::Shared(Arc::new(Error::Offline {
        what: "npm metadata lodash".into(),
    })));
    let warning = stale_warning(7_500, &offline);
    assert_eq!(
        warning,
        "110 cairn \"Response is Stale: served a cached copy fetched 2h 5m ago; upstream not \
         contacted: this node runs --offline\""
    );
    assert!(!warning.contains("not cached"), "{warning}");
    let down = crate::engine::stale_reason(&Error::UpstreamFailed {
        url: "http://up.invalid/lodash".into(),
        reason: "connection refused \"x\"\r\nInjected: yes é".into(),
    });
    let warning = stale_warning(42, &down);
    assert!(HeaderValue::from_str(&warning).is_ok(), "{warning}");
    assert_eq!(
        warning,
        "110 cairn \"Response is Stale: served a cached copy fetched 42s ago; upstream \
         unreachable: connection refused 'x'  Injected: yes  \""
    );
    let status = crate::engine::stale_reason(&Error::UpstreamStatus {
        url: "http://up.invalid/lodash".into(),
        status: StatusCode::SERVICE_UNAVAILABLE,
    });
    assert_eq!(status, "upstream answered 503 Service Unavailable");
    assert!(stale_warning(0, &"x".repeat(10_000)).len() < MAX_WARNING_REASON + 100);
    assert_eq!(human_age(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
    assert_eq!(human_age(65), "1m 5s");
}

#[test]
fn etag_matching() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::IF_NONE_MATCH,
        HeaderValue::from_static("\"a\", W/\"b\""),
    );
    assert!(matches_etag(&headers, "\"a\""));
    assert!(matches_etag(&headers, "\"b\""));
    assert!(!matches_etag(&headers, "\"c\""));
}

#[test]
fn passthrough_refuses_dot_segments_and_encoded_slashes() {
    for path in [
        "-/npm/v1/security/../../x",
        "-/npm/v1/security/%2e%2e/x",
        "-/npm/v1/security/%2E%2E/x",
        "-/npm/v1/security/./audits",
        "-/npm/v1/security%2faudits",
        "-/npm/v1/security%2Faudits",
        "-/npm/v1/security%5caudits",
        "-/npm/v1/security\\audits",
    ] {
        assert!(escapes_its_path(path), "{path}");
    }
    assert!(!escapes_its_path("-/npm/v1/security/audits/quick"));
    assert!(!escapes_its_path("-/v1/search?text=a%2f..%2fb&size=20"));
}
