//! Finding cached files by package name and version, for the dashboard's search box: each
//! cached file whose key or package names the text searched for, with where it came from and
//! its CIDs.

use rusqlite::params;

use super::artifacts::artifact_columns;
use super::{ArtifactRecord, Index, IndexError, err};

/// Most files one search returns.
pub const MAX_FOUND: usize = 100;

/// A cached file a search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundFile {
    pub ecosystem: String,
    pub key: String,
    pub record: ArtifactRecord,
    /// The package its document names (the document's key, or apt's package), when a
    /// document listed it.
    pub package: Option<String>,
    /// Its version, when its document says.
    pub version: Option<String>,
}

/// `text` as a LIKE pattern matching it anywhere, its wildcards taken literally.
fn contains(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Index {
    /// Cached files (of `ecosystem` only, when given) whose key or package contains `name`
    /// (ASCII case ignored) and, when `version` is given, whose version is it (or whose key
    /// contains it, for files no document dated); most recently fetched first, at most
    /// `limit` (capped at [`MAX_FOUND`]).
    pub fn search(
        &self,
        name: &str,
        version: Option<&str>,
        ecosystem: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FoundFile>, IndexError> {
        let limit = limit.min(MAX_FOUND) as i64;
        let name = contains(name);
        let version_in_key = version.map(contains);
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT a.flat_cid, a.root_cid, a.size, a.upstream_url, a.fetched_at,
                            a.private, a.ecosystem, a.key, COALESCE(r.package, r.metadata_key),
                            r.version
                     FROM artifacts a LEFT JOIN artifact_refs r
                          ON r.ecosystem = a.ecosystem AND r.key = a.key
                     WHERE (?3 IS NULL OR a.ecosystem = ?3)
                       AND (a.key LIKE ?1 ESCAPE '\\'
                            OR COALESCE(r.package, r.metadata_key) LIKE ?1 ESCAPE '\\')
                       AND (?2 IS NULL OR r.version = ?2
                            OR (r.version IS NULL AND a.key LIKE ?4 ESCAPE '\\'))
                     ORDER BY a.fetched_at DESC, a.key LIMIT ?5",
                )
                .map_err(err("search artifacts"))?;
            let rows = stmt
                .query_map(
                    params![name, version, ecosystem, version_in_key, limit],
                    |row| {
                        Ok(FoundFile {
                            record: artifact_columns(row, 0)?,
                            ecosystem: row.get(6)?,
                            key: row.get(7)?,
                            package: row.get(8)?,
                            version: row.get(9)?,
                        })
                    },
                )
                .map_err(err("search artifacts"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(err("search artifacts"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::contains;

    #[test]
    fn wildcards_are_taken_literally() {
        assert_eq!(contains("left-pad"), "%left-pad%");
        assert_eq!(contains("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
