//! Cairn's own routes: `/api/v1/status`, `/api/v1/peers`, `/api/v1/traffic`,
//! `/api/v1/refusals`, `/api/v1/upstreams`, `/api/v1/store`, `/api/v1/search`,
//! `/api/v1/policy/explain`, and the plain-text summary at `/` (the dashboard page is
//! `dashboard`).

use axum::response::{IntoResponse, Response};
use http::header::{self};

use crate::engine::Mirror;
use crate::error::Error;

#[derive(serde::Serialize)]
struct StatusReport {
    offline: bool,
    data_dir: String,
    upstreams: Vec<UpstreamStatus>,
    stats: Vec<crate::index::EcosystemStats>,
}

#[derive(serde::Serialize)]
struct UpstreamStatus {
    ecosystem: String,
    upstream: Option<String>,
    disabled_because: Option<String>,
    /// The upstreams that take the packages their patterns name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routed: Vec<crate::engine::RouteReport>,
}

async fn status_report(mirror: &Mirror) -> Result<StatusReport, Error> {
    let index = mirror.index().clone();
    let stats = crate::engine::blocking(move || Ok(index.stats()?)).await?;
    Ok(StatusReport {
        offline: mirror.config().offline,
        data_dir: mirror.config().data_dir.display().to_string(),
        upstreams: mirror
            .upstreams()
            .into_iter()
            .map(|(ecosystem, upstream)| UpstreamStatus {
                ecosystem: ecosystem.to_owned(),
                upstream: upstream.clone().ok(),
                disabled_because: upstream.err(),
                routed: mirror.routes_of(ecosystem),
            })
            .collect(),
        stats,
    })
}

pub(super) async fn status(mirror: &Mirror) -> Response {
    match status_report(mirror).await {
        Ok(report) => match serde_json::to_vec_pretty(&report) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(source) => Error::Report {
                what: "status report",
                source,
            }
            .into_response(),
        },
        Err(e) => e.into_response(),
    }
}

/// The peer's identity, addresses and connected peers; `{"p2p": false}` with `--no-p2p`.
pub(super) async fn peers(mirror: &Mirror) -> Response {
    let report = match mirror.peer_source() {
        Some(peers) => peers.describe().await,
        None => serde_json::json!({ "p2p": false, "peers": [] }),
    };
    match serde_json::to_vec_pretty(&report) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(source) => Error::Report {
            what: "peers report",
            source,
        }
        .into_response(),
    }
}

/// `GET /api/v1/traffic?window=hour|day` (`hour` when none is named): lookups answered from
/// the cache and fetched, and bytes served by source, per ecosystem, in buckets (a minute for
/// the hour, a quarter hour for the day), with the window's totals and the bytes upstream was
/// spared (served from the cache or by peers).
pub(super) fn traffic(mirror: &Mirror, query: Option<&str>) -> Response {
    let window = query_value(query, "window").unwrap_or_else(|| "hour".to_owned());
    let series = match mirror.traffic(&window) {
        Ok(series) => series,
        Err(e) => return e.into_response(),
    };
    let spared: u64 = series
        .totals
        .values()
        .map(|c| c.cache_bytes + c.peer_bytes)
        .sum();
    let report = serde_json::json!({
        "window": window,
        "start": crate::ecosystem::time::format_rfc3339(series.start_minute * 60_000),
        "bucket_seconds": series.bucket_minutes * 60,
        "spared_upstream_bytes": spared,
        "totals": series.totals,
        "ecosystems": series.ecosystems,
    });
    json("traffic report", &report)
}

/// `GET /api/v1/refusals`: the recent refusals (digest mismatches from upstream or peers,
/// policy refusals), newest first, each with its reason.
pub(super) fn refusals(mirror: &Mirror) -> Response {
    let report = serde_json::json!({
        "kept": crate::refusals::RECENT_REFUSALS,
        "refusals": mirror.metrics().refusals.recent(),
    });
    json("refusals report", &report)
}

/// A JSON answer, or a 500 naming `what` could not be written.
fn json(what: &'static str, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(source) => Error::Report { what, source }.into_response(),
    }
}

/// The value of `name` in a query string.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `GET /api/v1/upstreams`: each upstream the node is configured with (routed ones too), and
/// how its exchanges went: `up`, `down` or `unknown` (not asked yet), latency, recent errors,
/// stale documents served because of it.
pub(super) fn upstreams(mirror: &Mirror) -> Response {
    let mut seen = mirror.metrics().health.report();
    let mut add = |ecosystem: &str, upstream: String| {
        if !seen
            .iter()
            .any(|h| h.ecosystem == ecosystem && h.upstream == upstream)
        {
            seen.push(crate::health::UpstreamHealth {
                ecosystem: ecosystem.to_owned(),
                upstream,
                state: "unknown",
                ..Default::default()
            });
        }
    };
    let mut off = Vec::new();
    for (ecosystem, upstream) in mirror.upstreams() {
        match upstream {
            Ok(upstream) => add(ecosystem, upstream),
            Err(why) => off.push(serde_json::json!({ "ecosystem": ecosystem, "because": why })),
        }
        for route in mirror.routes_of(ecosystem) {
            add(ecosystem, route.upstream);
        }
    }
    seen.sort_by(|a, b| (&a.ecosystem, &a.upstream).cmp(&(&b.ecosystem, &b.upstream)));
    let report = serde_json::json!({
        "offline": mirror.config().offline,
        "upstreams": seen,
        "off": off,
    });
    json("upstreams report", &report)
}

/// `GET /api/v1/store`: bytes held against the limits, per ecosystem, free disk space, pins,
/// and the last verification run.
pub(super) async fn store(mirror: &Mirror) -> Response {
    match mirror.store_report().await {
        Ok(report) => json("store report", &report),
        Err(e) => e.into_response(),
    }
}

/// Longest text a search takes.
const MAX_SEARCH: usize = 256;

/// A search's text read as `[ECOSYSTEM:]NAME[@VERSION | ==VERSION | VERSION]`: npm's scoped
/// names keep their leading `@`.
fn parse_search<'a>(
    text: &'a str,
    ecosystems: &[&str],
) -> (Option<&'a str>, &'a str, Option<&'a str>) {
    let text = text.trim();
    let (ecosystem, rest) = match text.split_once(':') {
        Some((e, rest)) if ecosystems.contains(&e) => (Some(e), rest.trim()),
        _ => (None, text),
    };
    let split = rest
        .split_once("==")
        .or_else(|| rest.split_once(char::is_whitespace))
        .or_else(|| {
            rest.get(1..)
                .and_then(|tail| tail.rfind('@'))
                .map(|at| (&rest[..at + 1], &rest[at + 2..]))
        });
    match split {
        Some((name, version)) if !version.trim().is_empty() => {
            (ecosystem, name.trim(), Some(version.trim()))
        }
        Some((name, _)) => (ecosystem, name.trim(), None),
        None => (ecosystem, rest, None),
    }
}

/// `GET /api/v1/search?q=[ECOSYSTEM:]NAME[@VERSION]`: the cached files of that package (its
/// key or package contains NAME), newest first, each with where it came from, its CIDs, and
/// its path on the trustless gateway.
pub(super) async fn search(mirror: &Mirror, query: Option<&str>) -> Response {
    let Some(text) = query_value(query, "q").filter(|q| !q.trim().is_empty()) else {
        return Error::BadRequest("expected ?q=[ECOSYSTEM:]NAME[@VERSION]".into()).into_response();
    };
    if text.len() > MAX_SEARCH {
        return Error::BadRequest(format!("a search is at most {MAX_SEARCH} bytes"))
            .into_response();
    }
    let names: Vec<&str> = mirror
        .upstreams()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let (ecosystem, name, version) = parse_search(&text, &names);
    if name.is_empty() {
        return Error::BadRequest("the search names no package".into()).into_response();
    }
    let index = mirror.index().clone();
    let asked = (
        ecosystem.map(str::to_owned),
        name.to_owned(),
        version.map(str::to_owned),
    );
    let (e, n, v) = asked.clone();
    let found = crate::engine::blocking(move || {
        Ok(index.search(&n, v.as_deref(), e.as_deref(), crate::index::MAX_FOUND)?)
    })
    .await;
    let found = match found {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let files: Vec<serde_json::Value> = found
        .into_iter()
        .map(|f| {
            let root = f.record.root.to_string();
            serde_json::json!({
                "ecosystem": f.ecosystem,
                "key": f.key,
                "package": f.package,
                "version": f.version,
                "size": f.record.size,
                "from": f.record.upstream_url,
                "fetched": crate::ecosystem::time::format_rfc3339(f.record.fetched_at),
                "private": f.record.private,
                "flat_cid": f.record.flat.to_string(),
                "root_cid": root,
                "gateway": format!("/ipfs/{root}?format=car"),
            })
        })
        .collect();
    json(
        "search results",
        &serde_json::json!({
            "ecosystem": asked.0,
            "name": asked.1,
            "version": asked.2,
            "files": files,
        }),
    )
}

/// `GET /api/v1/policy/explain?package=ECOSYSTEM:NAME@VERSION`: which rule of the policy
/// decides on that version, and why.
pub(super) async fn explain(mirror: &Mirror, query: Option<&str>) -> Response {
    let Some(package) = query_value(query, "package") else {
        return Error::BadRequest("expected ?package=ECOSYSTEM:NAME@VERSION".into())
            .into_response();
    };
    match mirror.explain(&package).await {
        Ok(explanation) => match serde_json::to_vec_pretty(&explanation) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(source) => Error::Report {
                what: "policy explanation",
                source,
            }
            .into_response(),
        },
        Err(e) => e.into_response(),
    }
}

/// `/` for tools (curl, scripts): what the node serves and holds, as plain text.
pub(super) async fn summary(mirror: &Mirror) -> Response {
    let report = match status_report(mirror).await {
        Ok(report) => report,
        Err(e) => return e.into_response(),
    };
    let mut out = String::from("Cairn: content-addressed package mirror\n\n");
    out.push_str(&format!(
        "mode: {}\ndata: {}\n\n",
        if report.offline { "offline" } else { "online" },
        report.data_dir
    ));
    for u in &report.upstreams {
        match (&u.upstream, &u.disabled_because) {
            (Some(url), _) => out.push_str(&format!("/{}/  ← {url}\n", u.ecosystem)),
            (None, Some(why)) => out.push_str(&format!("/{}/  off: {why}\n", u.ecosystem)),
            _ => {}
        }
        for r in &u.routed {
            out.push_str(&format!(
                "/{}/  {} ← {}{}\n",
                u.ecosystem,
                r.names.join(" "),
                r.upstream,
                if r.private { " (private)" } else { "" }
            ));
        }
    }
    out.push('\n');
    for s in &report.stats {
        out.push_str(&format!(
            "{}: {} artifacts ({}), {} metadata documents\n",
            s.ecosystem,
            s.artifacts,
            crate::units::size(s.artifact_bytes),
            s.metadata_documents
        ));
    }
    out.push_str(
        "\nOpen this address in a browser for the dashboard; see /metrics (Prometheus) and \
         /api/v1/status (JSON).\n",
    );
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::parse_search;

    #[test]
    fn searches_name_an_ecosystem_a_package_and_a_version() {
        let known = ["npm", "pypi", "cargo"];
        let parse = |text| parse_search(text, &known);
        assert_eq!(parse("left-pad"), (None, "left-pad", None));
        assert_eq!(parse(" left-pad@1.3.0 "), (None, "left-pad", Some("1.3.0")));
        assert_eq!(parse("@types/node"), (None, "@types/node", None));
        assert_eq!(
            parse("@types/node@20.1.0"),
            (None, "@types/node", Some("20.1.0"))
        );
        assert_eq!(
            parse("npm:@scope/x@1"),
            (Some("npm"), "@scope/x", Some("1"))
        );
        assert_eq!(
            parse("pypi:six==1.16.0"),
            (Some("pypi"), "six", Some("1.16.0"))
        );
        assert_eq!(parse("serde 1.0.0"), (None, "serde", Some("1.0.0")));
        assert_eq!(parse("left-pad@"), (None, "left-pad", None));
        assert_eq!(
            parse("apt:openssl"),
            (None, "apt:openssl", None),
            "not an ecosystem here"
        );
        assert_eq!(parse("@"), (None, "@", None));
    }
}
