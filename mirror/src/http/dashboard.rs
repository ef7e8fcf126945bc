//! The dashboard: one page and its script and style sheet, compiled into the binary (no CDN,
//! nothing to build), served at `/` to browsers (a request that accepts `text/html`) and at
//! `/assets/…`. The page reads the `/api/v1/` routes itself and shows everything as text; its
//! Content-Security-Policy allows only this node's own script, style and API, so even markup
//! that got into a name or a reason could not run.

use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::header::{self, HeaderValue};

/// Where the page's files are served.
pub(super) const ASSETS: &str = "/assets/";

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");
const ICON: &str = include_str!("dashboard/favicon.svg");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Whether a request for `/` comes from a browser (which asks for HTML) rather than a tool.
pub(super) fn wants_page(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page changes with the binary: asked again each time, it is small.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The page.
pub(super) fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// A file of the page under [`ASSETS`], or `None`.
pub(super) fn file(path: &str) -> Option<Response> {
    match path.strip_prefix(ASSETS)? {
        "dashboard.js" => Some(asset("text/javascript; charset=utf-8", SCRIPT)),
        "dashboard.css" => Some(asset("text/css; charset=utf-8", STYLE)),
        "favicon.svg" => Some(asset("image/svg+xml", ICON)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_its_own_files_and_sets_text_only() {
        for name in ["dashboard.js", "dashboard.css", "favicon.svg"] {
            assert!(PAGE.contains(&format!("{ASSETS}{name}")), "{name}");
            assert!(file(&format!("{ASSETS}{name}")).is_some(), "{name}");
        }
        assert!(file("/assets/../index.html").is_none());
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        // What the node says reaches the page only as text.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "the script uses {sink}");
        }
        let mut headers = HeaderMap::new();
        assert!(!wants_page(&headers), "curl's */* gets the text summary");
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(wants_page(&headers));
    }
}
