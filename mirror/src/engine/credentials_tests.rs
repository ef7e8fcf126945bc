//! What a peer is sent, and what the index keeps, never carries an upstream's credentials.

use super::*;

#[test]
fn peer_documents_carry_no_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror =
        Mirror::open(MirrorConfig::new(dir.path().to_path_buf()), Vec::new()).expect("open");
    let body = b"{\"name\":\"x\"}";
    let record = MetadataRecord {
        private: false,
        cid: None,
        status: 200,
        // As an index written before credentials were kept out of URLs would hold it.
        upstream_url: "https://cairn:s3cret@upstream.invalid/npm/x".into(),
        fetched_at: 1,
        etag: None,
        last_modified: None,
        size: body.len() as u64,
    };
    mirror
        .store()
        .put_document("npm", "x", body, record, &[])
        .expect("store");
    let document = mirror
        .store()
        .holdings()
        .document("npm", "x")
        .expect("read")
        .expect("found");
    assert_eq!(document.upstream_url, "https://upstream.invalid/npm/x");
    assert_eq!(&document.body[..], body);
    drop(mirror);
    // Opened again, the index itself no longer holds them.
    let mirror =
        Mirror::open(MirrorConfig::new(dir.path().to_path_buf()), Vec::new()).expect("open");
    let stored = mirror
        .index()
        .get_metadata("npm", "x")
        .expect("read")
        .expect("found");
    assert_eq!(stored.upstream_url, "https://upstream.invalid/npm/x");
}
