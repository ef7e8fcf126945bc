//! apt: a mutable index name resolved through the current `InRelease`, a `.deb` listed only by
//! a `Packages` index, an index fetched by path served by hash without a second download, and a
//! source package's purge (its pool files go, the indexes stay). The `InRelease` files are signed with a throwaway OpenPGP key.

use std::sync::Arc;

use bytes::Bytes;
use cairn_mirror::ecosystem::Ecosystem;
use cairn_mirror::testing::noise;
use sha2::Digest as _;
use url::Url;

use crate::upstream::Upstream;
use crate::{STALE, TTL, blobs, get, open, served_from_store};

/// A throwaway OpenPGP key (deterministic) that signs `InRelease` files.
struct Signer {
    key: pgp::composed::SignedSecretKey,
    /// The public key, as a keyring file holds it.
    keyring: Vec<u8>,
}

fn signer() -> Signer {
    use pgp::composed::{EncryptionCaps, KeyType, SecretKeyParamsBuilder, SignedPublicKey};
    use pgp::ser::Serialize as _;
    use rand::SeedableRng as _;
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .can_encrypt(EncryptionCaps::None)
        .primary_user_id("Cairn Engine Test <engine@cairn.invalid>".into());
    let key = params
        .build()
        .expect("key parameters")
        .generate(rand::rngs::StdRng::seed_from_u64(7))
        .expect("generate the key");
    let keyring = SignedPublicKey::from(key.clone())
        .to_bytes()
        .expect("public key bytes");
    Signer { key, keyring }
}

impl Signer {
    /// A clear-signed `InRelease` of suite `stable` listing `files` (path under the suite, bytes).
    fn in_release(&self, files: &[(&str, &[u8])]) -> String {
        use rand::SeedableRng as _;
        let mut text = String::from(
            "Origin: Cairn\nSuite: stable\nCodename: stable\nArchitectures: amd64\nComponents: main\nSHA256:\n",
        );
        for (path, bytes) in files {
            text.push_str(&format!(
                " {} {} {path}\n",
                hex::encode(sha2::Sha256::digest(bytes)),
                bytes.len()
            ));
        }
        pgp::composed::CleartextSignedMessage::sign(
            rand::rngs::StdRng::seed_from_u64(8),
            &text,
            &self.key.primary_key,
            &pgp::types::Password::empty(),
        )
        .expect("clear-sign")
        .to_armored_string(Default::default())
        .expect("armor")
    }

    fn archive(&self) -> Arc<dyn Ecosystem> {
        let keyring = cairn_apt::signature::Keyring::from_bytes(&self.keyring, "engine test key")
            .expect("keyring");
        Arc::new(cairn_apt::Archive::new("test", keyring).expect("archive"))
    }
}

fn xz(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::new();
    let mut writer =
        lzma_rust2::XzWriter::new(&mut out, lzma_rust2::XzOptions::with_preset(1)).expect("xz");
    writer.write_all(data).expect("xz");
    writer.finish().expect("xz");
    out
}

/// A `Packages` index naming `debs` (pool path, bytes).
fn packages(debs: &[(&str, &[u8])]) -> String {
    let mut out = String::new();
    for (path, bytes) in debs {
        let name = path.rsplit('/').next().unwrap_or_default();
        let package = name.split('_').next().unwrap_or_default();
        out.push_str(&format!(
            "Package: {package}\nVersion: 1.0\nArchitecture: all\nFilename: {path}\nSize: {}\nSHA256: {}\n\n",
            bytes.len(),
            hex::encode(sha2::Sha256::digest(bytes))
        ));
    }
    out
}

const INDEX: &str = "main/binary-amd64/Packages.xz";
const DEB: &str = "pool/main/h/hello/hello_1.0_all.deb";

/// An archive under `/debian/` whose `Packages.xz` names one `.deb`: the upstream, the
/// signer, the index bytes and the `.deb` bytes.
async fn apt_upstream() -> (Upstream, Signer, Vec<u8>, Bytes) {
    let upstream = Upstream::start().await;
    let signer = signer();
    let deb = Bytes::from(noise(300 << 10, 9));
    let index = xz(packages(&[(DEB, &deb)]).as_bytes());
    upstream.put(
        "debian/dists/stable/InRelease",
        signer.in_release(&[(INDEX, &index)]),
    );
    upstream.put(&format!("debian/dists/stable/{INDEX}"), index.clone());
    upstream.put(&format!("debian/{DEB}"), deb.clone());
    (upstream, signer, index, deb)
}

fn debian(upstream: &Upstream) -> Url {
    upstream.url.join("debian/").expect("url")
}

#[tokio::test]
async fn a_mutable_index_name_serves_what_the_current_in_release_lists() {
    let (upstream, signer, index, _) = apt_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(
        dir.path(),
        STALE,
        vec![(signer.archive(), debian(&upstream))],
    );
    let path = format!("/apt/test/dists/stable/{INDEX}");
    let first = get(&mirror, &path).await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.body, index);
    // A new InRelease names new bytes for the same index name.
    let other = Bytes::from(noise(50 << 10, 10));
    let newer = xz(packages(&[(DEB, &other)]).as_bytes());
    upstream.put(
        "debian/dists/stable/InRelease",
        signer.in_release(&[(INDEX, &newer)]),
    );
    upstream.put(&format!("debian/dists/stable/{INDEX}"), newer.clone());
    let second = get(&mirror, &path).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, newer, "the same name serves the new bytes");
    assert_eq!(upstream.hits("debian/dists/stable/InRelease"), 2);
    assert_eq!(upstream.hits(&format!("debian/dists/stable/{INDEX}")), 2);
    // The name is looked up by the content the current InRelease lists: once held, it is
    // served from the store whatever upstream now has at that path.
    upstream.put(&format!("debian/dists/stable/{INDEX}"), index);
    let third = get(&mirror, &path).await;
    assert_eq!(third.status, 200);
    assert_eq!(third.body, newer);
    assert_eq!(upstream.hits(&format!("debian/dists/stable/{INDEX}")), 2);
}

#[tokio::test]
async fn a_file_listed_only_by_a_listing_is_served_once_the_listing_was_fetched() {
    let (upstream, signer, _, deb) = apt_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), TTL, vec![(signer.archive(), debian(&upstream))]);
    let deb_path = format!("/apt/test/{DEB}");
    let before = get(&mirror, &deb_path).await;
    assert_eq!(
        before.status,
        404,
        "no listing names it yet: {}",
        String::from_utf8_lossy(&before.body)
    );
    assert_eq!(
        upstream.hits(&format!("debian/{DEB}")),
        0,
        "never fetched unlisted"
    );
    assert_eq!(
        get(&mirror, &format!("/apt/test/dists/stable/{INDEX}"))
            .await
            .status,
        200
    );
    let after = get(&mirror, &deb_path).await;
    assert_eq!(
        after.status,
        200,
        "{}",
        String::from_utf8_lossy(&after.body)
    );
    assert_eq!(after.body, deb);
    assert_eq!(upstream.hits(&format!("debian/{DEB}")), 1);
}

#[tokio::test]
async fn the_same_bytes_under_another_key_are_not_downloaded_again() {
    let (upstream, signer, index, _) = apt_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), TTL, vec![(signer.archive(), debian(&upstream))]);
    let by_path = get(&mirror, &format!("/apt/test/dists/stable/{INDEX}")).await;
    assert_eq!(by_path.status, 200);
    let hash = hex::encode(sha2::Sha256::digest(&index));
    let by_hash_key = format!("dists/stable/main/binary-amd64/by-hash/SHA256/{hash}");
    let by_hash = get(&mirror, &format!("/apt/test/{by_hash_key}")).await;
    assert_eq!(
        by_hash.status,
        200,
        "{}",
        String::from_utf8_lossy(&by_hash.body)
    );
    assert_eq!(by_hash.body, index);
    assert_eq!(
        upstream.hits(&format!("debian/{by_hash_key}")),
        0,
        "the by-hash name is served from the copy held under the other name"
    );
    assert_eq!(upstream.hits(&format!("debian/dists/stable/{INDEX}")), 1);
    assert_eq!(blobs(dir.path()).len(), 1, "one copy of the bytes");
}

#[tokio::test]
async fn a_source_package_purge_drops_its_pool_files_and_keeps_the_indexes() {
    let (upstream, signer, _, deb) = apt_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = open(dir.path(), TTL, vec![(signer.archive(), debian(&upstream))]);
    let index_path = format!("/apt/test/dists/stable/{INDEX}");
    assert_eq!(get(&mirror, &index_path).await.status, 200);
    let deb_path = format!("/apt/test/{DEB}");
    assert_eq!(served_from_store(&mirror, &deb_path).await.body, deb);

    let spec = cairn_mirror::PurgeSpec::parse("apt:test/hello").expect("spec");
    let report = mirror.purge(&spec).await.expect("purge");

    assert!(report.documents.is_empty(), "the InRelease stays");
    assert_eq!(report.files, 1);
    assert_eq!(report.artifacts[0].key, DEB);
    assert!(
        mirror
            .index()
            .get_artifact("apt/test", DEB)
            .expect("read")
            .is_none()
    );
    // The index stays held, and still lists the pool file: it is fetched again, verified.
    assert_eq!(get(&mirror, &index_path).await.status, 200);
    assert_eq!(upstream.hits(&format!("debian/dists/stable/{INDEX}")), 1);
    assert_eq!(served_from_store(&mirror, &deb_path).await.body, deb);
    assert_eq!(upstream.hits(&format!("debian/{DEB}")), 2);
}
