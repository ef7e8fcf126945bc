//! Signature checks on a recorded archive `InRelease` against the machine's Debian keyring.

use std::path::Path;

use super::*;

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

fn in_release() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bookworm-updates-InRelease"
    ))
    .expect("fixture")
}

fn debian_keyring() -> Keyring {
    Keyring::load(&[Path::new(KEYRING)])
        .unwrap_or_else(|e| panic!("{e} (package debian-archive-keyring must be installed)"))
}

#[test]
fn recorded_in_release_verifies() {
    let (text, signer) = debian_keyring()
        .verify_cleartext("InRelease", &in_release())
        .expect("verifies");
    assert!(text.starts_with("Origin: Debian\n"), "{}", &text[..40]);
    assert!(!text.contains('\r'));
    assert_eq!(signer.fingerprint.len(), 40);
}

#[test]
fn one_changed_byte_is_refused() {
    let mut bytes = in_release();
    let at = bytes
        .windows(8)
        .position(|w| w == b"Codename")
        .expect("field");
    bytes[at] = b'c';
    let e = debian_keyring()
        .verify_cleartext("dists/bookworm-updates/InRelease", &bytes)
        .expect_err("tampered");
    assert!(e.0.contains("dists/bookworm-updates/InRelease"), "{e}");
    assert!(e.0.contains("no good signature from keyring"), "{e}");
    assert!(e.0.contains(KEYRING), "{e}");
}

#[test]
fn the_text_alone_is_refused() {
    let text = in_release();
    let body = String::from_utf8_lossy(&text);
    let start = body.find("Origin:").expect("body");
    let e = debian_keyring()
        .verify_cleartext("InRelease", body[start..].as_bytes())
        .expect_err("unsigned");
    assert!(e.0.contains("not an OpenPGP clear-signed message"), "{e}");
}

#[test]
fn a_keyring_without_the_signing_keys_is_refused() {
    // The removed-keys keyring holds only retired keys, none of which signed this file.
    let removed = Path::new("/usr/share/keyrings/debian-archive-removed-keys.gpg");
    let keyring = Keyring::load(&[removed]).expect("keyring");
    let e = keyring
        .verify_cleartext("InRelease", &in_release())
        .expect_err("wrong keys");
    assert!(e.0.contains("does not verify with any key"), "{e}");
}

#[test]
fn unreadable_keyrings_name_the_file() {
    let e = Keyring::load(&[Path::new("/nonexistent/keyring.gpg")]).expect_err("missing");
    assert!(e.0.contains("/nonexistent/keyring.gpg"), "{e}");
    let e = Keyring::from_bytes(b"not a key", "inline").expect_err("garbage");
    assert!(e.0.starts_with("inline:"), "{e}");
}

#[test]
fn detached_signature_must_be_a_signature() {
    assert!(is_signature(b"hello").is_err());
}
