//! OpenPGP checks of an archive's `InRelease` (clear-signed) and `Release` + `Release.gpg`
//! (detached) against the archive's keyring, as apt's gpgv does: the file is good when at least
//! one of its signatures was made by a usable key of the keyring.
//!
//! A key is usable when it is the primary key, or a subkey whose binding signature from the
//! primary verifies and allows signing; and when, at the signature's creation time and now, it
//! has not expired. The signature itself must not be from the future or expired. (rPGP leaves
//! these policy checks to its caller; Debian keys carry third-party certifications on their user
//! IDs, so whole-key binding checks are not used to filter keys.)

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::KeyDetails;

/// Signatures up to this far in the future are accepted (clock skew between machines).
const CLOCK_SKEW_SECS: u64 = 300;

/// The keys an archive's Release files must be signed with.
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
    /// Where the keys came from, for messages.
    source: String,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({}, {} keys)", self.source, self.keys.len())
    }
}

/// What a good signature was made with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// Fingerprint of the key (primary or subkey) that made the signature, upper-case hex.
    pub fingerprint: String,
}

/// Why a signed file is refused; the message names the file, the keyring and the keys.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignatureError(pub String);

impl Keyring {
    /// Read keyrings: binary (`gpg --export`, `.gpg`) or armored (`.asc`) files, concatenated.
    pub fn load(paths: &[&Path]) -> Result<Keyring, SignatureError> {
        let mut keys = Vec::new();
        let mut names = Vec::new();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|e| {
                SignatureError(format!("cannot read keyring {}: {e}", path.display()))
            })?;
            keys.extend(parse_keys(&bytes).map_err(|reason| {
                SignatureError(format!("keyring {}: {reason}", path.display()))
            })?);
            names.push(path.display().to_string());
        }
        if keys.is_empty() {
            return Err(SignatureError(format!(
                "keyring {} holds no public keys",
                names.join(", ")
            )));
        }
        Ok(Keyring {
            keys,
            source: names.join(", "),
        })
    }

    /// A keyring from bytes (binary or armored); `source` names it in messages.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Keyring, SignatureError> {
        let keys =
            parse_keys(bytes).map_err(|reason| SignatureError(format!("{source}: {reason}")))?;
        Ok(Keyring {
            keys,
            source: source.to_owned(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Check a clear-signed file (`InRelease`) and return the text that was signed.
    pub fn verify_cleartext(
        &self,
        file: &str,
        bytes: &[u8],
    ) -> Result<(String, Signer), SignatureError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| SignatureError(format!("{file} is not UTF-8 text")))?;
        let (message, _) = CleartextSignedMessage::from_string(text).map_err(|e| {
            SignatureError(format!(
                "{file} is not an OpenPGP clear-signed message: {e}"
            ))
        })?;
        let signed = message.signed_text();
        let signer = self.check(file, message.signatures(), signed.as_bytes())?;
        // The signed text has CRLF line ends (the form that was hashed); readers want lines.
        Ok((signed.replace("\r\n", "\n"), signer))
    }

    /// Check `data` (`Release`) against a detached armored signature (`Release.gpg`).
    pub fn verify_detached(
        &self,
        file: &str,
        data: &[u8],
        signature: &[u8],
    ) -> Result<Signer, SignatureError> {
        let signatures = detached_signatures(signature)
            .map_err(|reason| SignatureError(format!("{file}.gpg: {reason}")))?;
        self.check(file, &signatures, data)
    }

    fn check(
        &self,
        file: &str,
        signatures: &[Signature],
        data: &[u8],
    ) -> Result<Signer, SignatureError> {
        if signatures.is_empty() {
            return Err(SignatureError(format!("{file} carries no signature")));
        }
        let now = unix_now();
        let mut problems = Vec::new();
        for signature in signatures {
            match self.check_one(signature, data, now) {
                Ok(signer) => return Ok(signer),
                Err(problem) => problems.push(problem),
            }
        }
        Err(SignatureError(format!(
            "{file}: no good signature from keyring {}: {}",
            self.source,
            problems.join("; ")
        )))
    }

    /// One signature against the keyring: which key made it, or why none of ours did.
    fn check_one(&self, signature: &Signature, data: &[u8], now: u64) -> Result<Signer, String> {
        let issuer = issuer_of(signature);
        let created = signature
            .created()
            .map(|t| u64::from(t.as_secs()))
            .ok_or_else(|| format!("signature by {issuer} has no creation time"))?;
        if created > now + CLOCK_SKEW_SECS {
            return Err(format!("signature by {issuer} is dated in the future"));
        }
        if let Some(valid) = signature.signature_expiration_time()
            && valid.as_secs() > 0
            && created + u64::from(valid.as_secs()) < now
        {
            return Err(format!("signature by {issuer} has expired"));
        }
        let mut tried = false;
        for key in &self.keys {
            let primary_created = u64::from(key.primary_key.created_at().as_secs());
            let primary_expires = primary_expiry(key);
            if signature.verify(&key.primary_key, data).is_ok() {
                return usable(
                    &key.primary_key.fingerprint(),
                    primary_created,
                    primary_expires,
                    created,
                    now,
                );
            }
            for sub in &key.public_subkeys {
                let Some(binding) = sub
                    .signatures
                    .iter()
                    .find(|b| b.verify_subkey_binding(&key.primary_key, &sub.key).is_ok())
                else {
                    continue;
                };
                tried = true;
                if signature.verify(&sub.key, data).is_ok() {
                    let fingerprint = sub.key.fingerprint();
                    if !binding.key_flags().sign() {
                        return Err(format!(
                            "signature by subkey {} which may not sign",
                            hex::encode_upper(fingerprint.as_bytes())
                        ));
                    }
                    let sub_created = u64::from(sub.key.created_at().as_secs());
                    let expires = binding
                        .key_expiration_time()
                        .filter(|d| d.as_secs() > 0)
                        .map(|d| sub_created + u64::from(d.as_secs()));
                    let expires = match (expires, primary_expires) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    return usable(&fingerprint, sub_created, expires, created, now);
                }
            }
        }
        let _ = tried;
        Err(format!(
            "signature by {issuer} does not verify with any key of the keyring"
        ))
    }
}

/// The key that made a signature is usable at the signature's time and now.
fn usable(
    fingerprint: &pgp::types::Fingerprint,
    key_created: u64,
    expires: Option<u64>,
    signed_at: u64,
    now: u64,
) -> Result<Signer, String> {
    let fingerprint = hex::encode_upper(fingerprint.as_bytes());
    if signed_at + CLOCK_SKEW_SECS < key_created {
        return Err(format!("signature predates its key {fingerprint}"));
    }
    if let Some(expires) = expires
        && (expires < now || expires < signed_at)
    {
        return Err(format!("key {fingerprint} has expired"));
    }
    Ok(Signer { fingerprint })
}

/// When the primary key expires, from its latest self-signature that says so.
fn primary_expiry(key: &SignedPublicKey) -> Option<u64> {
    let created = u64::from(key.primary_key.created_at().as_secs());
    let own = key.primary_key.fingerprint();
    key.details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .chain(key.details.direct_signatures.iter())
        .filter(|s| s.issuer_fingerprint().iter().any(|f| **f == own))
        .max_by_key(|s| s.created().map(|t| t.as_secs()))
        .and_then(|s| s.key_expiration_time())
        .filter(|d| d.as_secs() > 0)
        .map(|d| created + u64::from(d.as_secs()))
}

fn issuer_of(signature: &Signature) -> String {
    if let Some(fingerprint) = signature.issuer_fingerprint().first() {
        return hex::encode_upper(fingerprint.as_bytes());
    }
    signature
        .issuer_key_id()
        .first()
        .map(|id| format!("key ID {}", hex::encode_upper(id.as_ref())))
        .unwrap_or_else(|| "an unnamed key".to_owned())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn is_armored(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    bytes[start..].starts_with(b"-----BEGIN PGP")
}

fn parse_keys(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, String> {
    let mut keys = Vec::new();
    if is_armored(bytes) {
        // An armored file may hold several blocks, one after another.
        let text = std::str::from_utf8(bytes).map_err(|_| "armored keyring is not UTF-8")?;
        for block in armor_blocks(text) {
            let (parsed, _) = SignedPublicKey::from_string_many(block)
                .map_err(|e| format!("not an OpenPGP public key block: {e}"))?;
            for key in parsed {
                keys.push(key.map_err(|e| format!("unreadable key: {e}"))?);
            }
        }
    } else {
        let parsed = SignedPublicKey::from_bytes_many(bytes)
            .map_err(|e| format!("not an OpenPGP keyring: {e}"))?;
        for key in parsed {
            keys.push(key.map_err(|e| format!("unreadable key: {e}"))?);
        }
    }
    Ok(keys)
}

/// The `-----BEGIN PGP …-----` … `-----END PGP …-----` blocks of an armored file.
fn armor_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN PGP") {
        let from = &rest[start..];
        let Some(end) = from.find("-----END PGP") else {
            break;
        };
        let after = &from[end..];
        let close = after[5..].find("-----").map_or(after.len(), |i| i + 10);
        blocks.push(&from[..end + close]);
        rest = &after[close..];
    }
    blocks
}

fn detached_signatures(bytes: &[u8]) -> Result<Vec<Signature>, String> {
    let mut out = Vec::new();
    if is_armored(bytes) {
        let text = std::str::from_utf8(bytes).map_err(|_| "armored signature is not UTF-8")?;
        for block in armor_blocks(text) {
            let (signatures, _) = DetachedSignature::from_string_many(block)
                .map_err(|e| format!("not an OpenPGP signature: {e}"))?;
            for s in signatures {
                out.push(
                    s.map_err(|e| format!("unreadable signature: {e}"))?
                        .signature,
                );
            }
        }
    } else {
        for s in DetachedSignature::from_bytes_many(bytes)
            .map_err(|e| format!("not an OpenPGP signature: {e}"))?
        {
            out.push(
                s.map_err(|e| format!("unreadable signature: {e}"))?
                    .signature,
            );
        }
    }
    Ok(out)
}

/// Check that bytes are an OpenPGP signature (`Release.gpg`), without verifying it: it is
/// verified together with the `Release` it signs.
pub fn is_signature(bytes: &[u8]) -> Result<(), String> {
    let signatures = detached_signatures(bytes)?;
    if signatures.is_empty() {
        return Err("no signature in it".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
