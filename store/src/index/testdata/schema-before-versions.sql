CREATE TABLE IF NOT EXISTS artifacts (
    ecosystem    TEXT NOT NULL,
    key          TEXT NOT NULL,
    flat_cid     BLOB NOT NULL,
    root_cid     BLOB NOT NULL,
    size         INTEGER NOT NULL,
    upstream_url TEXT NOT NULL,
    fetched_at   INTEGER NOT NULL,
    last_access  INTEGER NOT NULL,
    PRIMARY KEY (ecosystem, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifacts_by_flat ON artifacts (flat_cid);
CREATE TABLE IF NOT EXISTS artifact_refs (
    ecosystem    TEXT NOT NULL,
    key          TEXT NOT NULL,
    flat_cid     BLOB NOT NULL,
    url          TEXT NOT NULL,
    size         INTEGER,
    metadata_key TEXT NOT NULL,
    PRIMARY KEY (ecosystem, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metadata (
    ecosystem     TEXT NOT NULL,
    key           TEXT NOT NULL,
    cid           BLOB,
    status        INTEGER NOT NULL,
    upstream_url  TEXT NOT NULL,
    fetched_at    INTEGER NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    size          INTEGER NOT NULL,
    PRIMARY KEY (ecosystem, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    cid  BLOB PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pins (
    root      BLOB PRIMARY KEY,
    pinned_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leaves (
    cid      BLOB PRIMARY KEY,
    flat_cid BLOB NOT NULL,
    offset   INTEGER NOT NULL,
    len      INTEGER NOT NULL
) WITHOUT ROWID;
