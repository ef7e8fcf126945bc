//! Cairn's own routes: `/api/v1/status`, `/api/v1/peers`, `/api/v1/traffic`,
//! `/api/v1/refusals`, `/api/v1/policy/explain` and the dashboard at `/`.

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
    let window = query
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "window")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| "hour".to_owned());
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
    match serde_json::to_vec(&report) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(source) => Error::Report {
            what: "traffic report",
            source,
        }
        .into_response(),
    }
}

/// `GET /api/v1/refusals`: the recent refusals (digest mismatches from upstream or peers,
/// policy refusals), newest first, each with its reason.
pub(super) fn refusals(mirror: &Mirror) -> Response {
    let report = serde_json::json!({
        "kept": crate::refusals::RECENT_REFUSALS,
        "refusals": mirror.metrics().refusals.recent(),
    });
    match serde_json::to_vec(&report) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(source) => Error::Report {
            what: "refusals report",
            source,
        }
        .into_response(),
    }
}

/// `GET /api/v1/policy/explain?package=ECOSYSTEM:NAME@VERSION`: which rule of the policy
/// decides on that version, and why.
pub(super) async fn explain(mirror: &Mirror, query: Option<&str>) -> Response {
    let package = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "package")
            .map(|(_, v)| v.into_owned())
    });
    let Some(package) = package else {
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

pub(super) async fn dashboard(mirror: &Mirror) -> Response {
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
    out.push_str("\nSee /metrics (Prometheus) and /api/v1/status (JSON).\n");
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
}
