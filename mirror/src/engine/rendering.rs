//! Documents rendered for clients: one render per document version, variant and base, kept in
//! a bounded cache with its gzip form.

use std::sync::Arc;

use url::Url;

use super::{MetadataHit, Mirror, Registered, blocking};
use crate::ecosystem::{MetadataDoc, MetadataRoute};
use crate::engine::render::{RenderKey, RenderedDoc};
use crate::error::Error;
use crate::policy::AsOf;
use crate::upstream::redact;

impl Mirror {
    /// The document behind `hit`, or its `part` when one is named, rendered as `variant` for
    /// clients at `base`, in the view `as_of` when there is one (its base names it, so its
    /// renders are cached apart). A part the document does not have is [`Error::NotFound`].
    /// Cancel-safe.
    pub(crate) async fn render(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        part: Option<&str>,
        hit: &MetadataHit,
        base: &Url,
        as_of: Option<&AsOf>,
    ) -> Result<Arc<RenderedDoc>, Error> {
        let Some(cid) = hit.record.cid else {
            return Err(Error::NoBodyToRender {
                key: route.key.clone(),
            });
        };
        let name = registered.ecosystem.name();
        let policed = self.policed(&self.policy(), name) || as_of.is_some();
        let key = RenderKey {
            cid,
            variant: route.variant,
            part: part.map(str::to_owned),
            base: base.to_string(),
            for_token_clients: self.auth_required(),
            policy: if policed { self.policy_generation() } else { 0 },
        };
        let for_token_clients = key.for_token_clients;
        if let Some(doc) = self.inner.rendered.get(&key)
            && doc.until.is_none_or(|until| super::now_ms() < until)
        {
            return Ok(doc);
        }
        // What the policy leaves out of this document, from the references it recorded.
        let refused = if policed {
            self.refused_in_document(name, &route.key, as_of).await?
        } else {
            Default::default()
        };
        let this = self.clone();
        let ecosystem = registered.ecosystem.clone();
        let ecosystem_name = registered.ecosystem.name().to_owned();
        let (doc_key, upstream_url, base) = (
            route.key.clone(),
            hit.record.upstream_url.clone(),
            base.clone(),
        );
        self.inner
            .render_flights
            .run(key.clone(), move || async move {
                let store = this.inner.store.clone();
                let etag = key.etag_without(&refused.keys);
                let until = refused.until;
                let variant = key.variant;
                let part = key.part.clone();
                let rendered = blocking(move || {
                    let body = store.read_metadata(&cid)?;
                    let request = RenderRequest {
                        variant,
                        part: part.as_deref(),
                        base: &base,
                        for_token_clients,
                    };
                    let mut doc = render_body(
                        ecosystem.as_ref(),
                        &doc_key,
                        &upstream_url,
                        body,
                        &refused.keys,
                        &request,
                        etag,
                    )?;
                    doc.until = until;
                    Ok(Arc::new(doc))
                })
                .await
                .map_err(Arc::new)?;
                this.inner.metrics.rendered(&ecosystem_name, "on-request");
                this.inner.rendered.insert(key, rendered.clone());
                Ok(rendered)
            })
            .await
            .map_err(Error::Shared)
    }
}

/// How the client whose request finds its document missing wants it rendered: given to the
/// fetch, the rendering (and its gzip form when the client takes that) is made from the
/// fetched body beside the document's transaction, so the response waits for the longer of
/// the two instead of both in turn.
#[derive(Clone, Debug)]
pub struct RenderAhead {
    pub base: Url,
    pub gzip: bool,
    /// Rendered for clients that present a token (set by the engine, from its own
    /// configuration).
    pub(crate) for_token_clients: bool,
}

/// How a document is to be rendered: as `variant`, only `part` of it when one is named, with
/// URLs under `base`, for clients that present a token or not.
pub(super) struct RenderRequest<'a> {
    pub variant: &'static str,
    pub part: Option<&'a str>,
    pub base: &'a Url,
    pub for_token_clients: bool,
}

/// `body`, the document `doc_key` fetched from `upstream_url`, without the files whose keys
/// are `refused` and rendered as `request` asks, with `etag`.
pub(super) fn render_body(
    ecosystem: &dyn crate::ecosystem::Ecosystem,
    doc_key: &str,
    upstream_url: &str,
    body: bytes::Bytes,
    refused: &std::collections::BTreeSet<String>,
    request: &RenderRequest<'_>,
    etag: String,
) -> Result<RenderedDoc, Error> {
    let url = Url::parse(upstream_url).map_err(|source| Error::StoredUrl {
        url: upstream_url.to_owned(),
        source,
    })?;
    let bad = |e: crate::ecosystem::AdapterError| Error::BadMetadata {
        url: redact(&url),
        reason: e.0,
    };
    // Without what the policy refuses, in the upstream's own form.
    let body = if refused.is_empty() {
        body
    } else {
        let doc = MetadataDoc {
            key: doc_key,
            url: &url,
            body: &body,
            context: None,
        };
        match ecosystem
            .without(&doc, &|key| refused.contains(key))
            .map_err(bad)?
        {
            Some(filtered) => bytes::Bytes::from(filtered),
            None => body,
        }
    };
    let doc = MetadataDoc {
        key: doc_key,
        url: &url,
        body: &body,
        context: None,
    };
    let (variant, base) = (request.variant, request.base);
    let rendered = match request.part {
        None => ecosystem.render(&doc, variant, base).map_err(bad)?,
        Some(part) => ecosystem
            .render_part(&doc, variant, part, base)
            .map_err(bad)?
            .ok_or_else(|| {
                Error::NotFound(format!("{} {doc_key} has no {part:?}", ecosystem.name()))
            })?,
    };
    let rendered = if request.for_token_clients {
        ecosystem
            .for_token_clients(variant, rendered)
            .map_err(bad)?
    } else {
        rendered
    };
    Ok(RenderedDoc::new(rendered.body, rendered.content_type, etag))
}
