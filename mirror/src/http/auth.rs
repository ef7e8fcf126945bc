//! Access control (`--auth required`): every route but `/healthz` needs a live access token,
//! and the routes that change the node's state (purge, repair) an admin one, as does
//! `/metrics` with `--admin-metrics`. Each client
//! presents a token in its own way, and all are taken:
//!
//! - `Authorization: Bearer SECRET` (npm, yarn, pnpm; curl);
//! - `Authorization: Basic base64(USER:SECRET)` (pip, uv, apt): the password is the secret,
//!   or the user name when the password is empty (`https://SECRET@host/…`);
//! - `Authorization: SECRET` (cargo sends its registry token as it is);
//! - `Proxy-Authorization` the same ways, for proxy-form requests (apt's
//!   `Acquire::http::Proxy`).
//!
//! A request without a live token gets 401 with `WWW-Authenticate` challenges for Bearer and
//! Basic (407 with `Proxy-Authenticate` for a proxy request), so that each client reports an
//! authentication failure; a live token without the rights a route needs gets 403. The secret
//! itself is never logged.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use crate::engine::Mirror;
use crate::engine::tokens::Caller;
use crate::error::Error;

use super::error_response;

/// What a route needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Needs {
    Nothing,
    Token,
    Admin,
}

/// What the route at `path` needs (with `--auth required`); `admin_metrics`: `/metrics` is an
/// admin route (`--admin-metrics`).
pub(super) fn needs(path: &str, admin_metrics: bool) -> Needs {
    if path == "/healthz" {
        Needs::Nothing
    } else if path.starts_with(crate::PURGE_PREFIX)
        || path.starts_with(crate::REPAIR_PREFIX)
        || (admin_metrics && path == "/metrics")
    {
        Needs::Admin
    } else {
        Needs::Token
    }
}

/// The secrets a header value may carry, most likely first.
fn secrets(value: &str) -> Vec<String> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or(("", value));
    if scheme.eq_ignore_ascii_case("bearer") {
        return vec![rest.trim().to_owned()];
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return Vec::new();
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return Vec::new();
        };
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        return [password, user]
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    // Cargo sends its token as the whole value.
    vec![value.to_owned()]
}

/// The caller of a request, from the first live token its headers carry.
fn caller(mirror: &Mirror, headers: &HeaderMap, proxied: bool) -> Option<Caller> {
    let names: &[header::HeaderName] = if proxied {
        &[header::PROXY_AUTHORIZATION, header::AUTHORIZATION]
    } else {
        &[header::AUTHORIZATION]
    };
    names
        .iter()
        .flat_map(|name| headers.get_all(name))
        .filter_map(|v| v.to_str().ok())
        .flat_map(secrets)
        .find_map(|secret| mirror.caller(&secret))
}

/// Check a request against `--auth required`: the refusal to send, or `None` when it may go on.
pub(super) fn refusal(
    mirror: &Mirror,
    request: &http::Request<Body>,
    proxied: bool,
) -> Option<Response> {
    let path = request.uri().path();
    let needs = if proxied {
        Needs::Token
    } else {
        needs(path, mirror.admin_metrics())
    };
    if !mirror.auth_required() || needs == Needs::Nothing {
        return None;
    }
    let Some(caller) = caller(mirror, request.headers(), proxied) else {
        return Some(unauthorized(proxied));
    };
    if needs == Needs::Admin && !caller.admin {
        return Some(
            Error::Forbidden(format!(
                "{path} needs an admin token; the token {:?} is not one",
                caller.name
            ))
            .into_response(),
        );
    }
    None
}

fn unauthorized(proxied: bool) -> Response {
    let message = "this Cairn node needs an access token (`cairn token create NAME` on the node, \
                   then `cairn setup CLIENT --token SECRET`)";
    if proxied {
        let mut response = error_response(StatusCode::PROXY_AUTHENTICATION_REQUIRED, message);
        response.headers_mut().insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"cairn\""),
        );
        return response;
    }
    let mut response = error_response(StatusCode::UNAUTHORIZED, message);
    let headers = response.headers_mut();
    headers.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"cairn\""),
    );
    headers.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"cairn\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(pair: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    #[test]
    fn each_clients_way_of_presenting_a_token_gives_its_secret() {
        assert_eq!(secrets("Bearer cairn_abc"), ["cairn_abc"]);
        assert_eq!(secrets("bearer   cairn_abc "), ["cairn_abc"]);
        assert_eq!(secrets(&basic("ci:cairn_abc")), ["cairn_abc", "ci"]);
        assert_eq!(secrets(&basic("cairn_abc:")), ["cairn_abc"]);
        assert_eq!(secrets(&basic("cairn_abc")), ["cairn_abc"]);
        assert_eq!(secrets("cairn_abc"), ["cairn_abc"], "cargo's plain token");
        assert!(secrets("Basic !!!not-base64").is_empty());
        assert!(
            secrets(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe])
            ))
            .is_empty()
        );
    }

    #[test]
    fn only_healthz_is_open_and_only_the_state_changing_routes_need_an_admin() {
        assert_eq!(needs("/healthz", true), Needs::Nothing);
        for path in ["/", "/metrics", "/api/v1/status", "/npm/x", "/ipfs/bafy"] {
            assert_eq!(needs(path, false), Needs::Token, "{path}");
        }
        assert_eq!(needs("/metrics", true), Needs::Admin, "--admin-metrics");
        assert_eq!(needs("/api/v1/status", true), Needs::Token);
        let purge = format!("{}npm/x", crate::PURGE_PREFIX);
        assert_eq!(needs(&purge, false), Needs::Admin);
        let repair = format!("{}artifact/x", crate::REPAIR_PREFIX);
        assert_eq!(needs(&repair, false), Needs::Admin);
    }
}
