//! Documents rendered for clients: one render per document version, variant and base, kept in
//! a bounded cache with its gzip form.

use std::sync::Arc;

use url::Url;

use super::{MetadataHit, Mirror, Registered, blocking};
use crate::ecosystem::{MetadataDoc, MetadataRoute};
use crate::engine::render::{RenderKey, RenderedDoc};
use crate::error::Error;
use crate::upstream::redact;

impl Mirror {
    /// The document behind `hit`, or its `part` when one is named, rendered as `variant` for
    /// clients at `base`. A part the document does not have is [`Error::NotFound`]. Cancel-safe.
    pub(crate) async fn render(
        &self,
        registered: &Registered,
        route: &MetadataRoute,
        part: Option<&str>,
        hit: &MetadataHit,
        base: &Url,
    ) -> Result<Arc<RenderedDoc>, Error> {
        let Some(cid) = hit.record.cid else {
            return Err(Error::NoBodyToRender {
                key: route.key.clone(),
            });
        };
        let key = RenderKey {
            cid,
            variant: route.variant,
            part: part.map(str::to_owned),
            base: base.to_string(),
            for_token_clients: self.auth_required(),
        };
        let for_token_clients = key.for_token_clients;
        if let Some(doc) = self.inner.rendered.get(&key) {
            return Ok(doc);
        }
        let this = self.clone();
        let ecosystem = registered.ecosystem.clone();
        let (doc_key, upstream_url, base) = (
            route.key.clone(),
            hit.record.upstream_url.clone(),
            base.clone(),
        );
        self.inner
            .render_flights
            .run(key.clone(), move || async move {
                let store = this.inner.store.clone();
                let etag = key.etag();
                let variant = key.variant;
                let part = key.part.clone();
                let rendered = blocking(move || {
                    let body = store.read_metadata(&cid)?;
                    let url = Url::parse(&upstream_url).map_err(|source| Error::StoredUrl {
                        url: upstream_url.clone(),
                        source,
                    })?;
                    let doc = MetadataDoc {
                        key: &doc_key,
                        url: &url,
                        body: &body,
                        context: None,
                    };
                    let bad = |e: crate::ecosystem::AdapterError| Error::BadMetadata {
                        url: redact(&url),
                        reason: e.0,
                    };
                    let rendered = match &part {
                        None => ecosystem.render(&doc, variant, &base).map_err(bad)?,
                        Some(part) => ecosystem
                            .render_part(&doc, variant, part, &base)
                            .map_err(bad)?
                            .ok_or_else(|| {
                                Error::NotFound(format!(
                                    "{} {doc_key} has no {part:?}",
                                    ecosystem.name()
                                ))
                            })?,
                    };
                    let rendered = if for_token_clients {
                        ecosystem
                            .for_token_clients(variant, rendered)
                            .map_err(bad)?
                    } else {
                        rendered
                    };
                    Ok(Arc::new(RenderedDoc::new(
                        rendered.body,
                        rendered.content_type,
                        etag,
                    )))
                })
                .await
                .map_err(Arc::new)?;
                this.inner.rendered.insert(key, rendered.clone());
                Ok(rendered)
            })
            .await
            .map_err(Error::Shared)
    }
}
