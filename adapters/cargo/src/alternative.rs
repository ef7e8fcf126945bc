//! An alternative registry (cargo's `[registries.NAME]`): the same sparse protocol as the
//! crates-io replacement, served at `/cargo/NAME/` and kept in an index namespace of its own,
//! `cargo/NAME`. Everything but the name is [`Cargo`]'s.

use cairn_ecosystem::{
    AdapterError, BadRequest, DocumentFacts, Ecosystem, MetadataDoc, PackageScope, Rendered,
    Request, Route,
};
use url::Url;

use crate::Cargo;

/// Names an alternative registry cannot take: they are paths of the crates-io replacement
/// beside it (`/cargo/index/`, `/cargo/crates/`).
const RESERVED: [&str; 2] = ["index", "crates"];

/// One alternative registry.
#[derive(Clone, Debug)]
pub struct Alternative {
    /// `cargo/NAME`.
    name: String,
}

impl Alternative {
    /// The registry cargo calls `registry`: a cargo registry name (ASCII letters, digits, `-`
    /// and `_`, starting with a letter, as cargo requires), lower-cased, and neither `index`
    /// nor `crates`.
    pub fn new(registry: &str) -> Result<Alternative, String> {
        crate::index::check_name(registry)
            .map_err(|e| format!("cargo registry name {registry:?}: {e}"))?;
        let lower = registry.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) {
            return Err(format!(
                "cargo registry name {registry:?} is a path of the crates-io replacement; \
                 name it otherwise"
            ));
        }
        Ok(Alternative {
            name: format!("cargo/{lower}"),
        })
    }
}

impl Ecosystem for Alternative {
    fn name(&self) -> &str {
        &self.name
    }

    fn client_root(&self) -> &'static str {
        Cargo.client_root()
    }

    fn route(&self, request: &Request<'_>) -> Result<Option<Route>, BadRequest> {
        Cargo.route(request)
    }

    fn key_route(&self, key: &str) -> Result<Option<Route>, BadRequest> {
        Cargo.key_route(key)
    }

    fn package_scope(&self, name: &str, version: Option<&str>) -> Result<PackageScope, BadRequest> {
        Cargo.package_scope(name, version)
    }

    fn read(&self, doc: &MetadataDoc<'_>) -> Result<DocumentFacts, AdapterError> {
        Cargo.read(doc)
    }

    fn render(
        &self,
        doc: &MetadataDoc<'_>,
        variant: &'static str,
        base: &Url,
    ) -> Result<Rendered, AdapterError> {
        Cargo.render(doc, variant, base)
    }

    fn without(
        &self,
        doc: &MetadataDoc<'_>,
        refused: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Vec<u8>>, AdapterError> {
        Cargo.without(doc, refused)
    }

    fn for_token_clients(
        &self,
        variant: &'static str,
        rendered: Rendered,
    ) -> Result<Rendered, AdapterError> {
        Cargo.for_token_clients(variant, rendered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cargos_and_stay_clear_of_the_replacements_paths() {
        assert_eq!(Alternative::new("Corp").expect("ok").name(), "cargo/corp");
        assert_eq!(
            Alternative::new("my_reg-2").expect("ok").name(),
            "cargo/my_reg-2"
        );
        for bad in [
            "",
            "index",
            "CRATES",
            "2corp",
            "a/b",
            "a.b",
            "..",
            &"a".repeat(70),
        ] {
            assert!(Alternative::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn routes_and_documents_are_the_replacements() {
        let corp = Alternative::new("corp").expect("ok");
        let route = corp
            .route(&Request::get("crates/serde/1.0.0/download"))
            .expect("routes");
        assert_eq!(
            route,
            Cargo
                .route(&Request::get("crates/serde/1.0.0/download"))
                .expect("routes")
        );
        assert!(corp.route(&Request::get("index/../x")).is_err());
    }
}
