//! HTTPS for `serve --tls-cert FILE --tls-key FILE`: rustls with HTTP/2 and HTTP/1.1 offered by
//! ALPN. The certificate chain and key are PEM files, read at start (an error names the file)
//! and read again when either file changes (looked at no more than every
//! [`RELOAD_CHECK`], at a handshake): a renewed certificate needs no restart. A renewal that
//! does not load (a half-written file, a key that is not the certificate's) keeps the
//! certificate in use, and the log says why.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How often, at most, the files are looked at for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(10);

/// Where the certificate chain and its key are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the TLS key {key} does not go with the certificate {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

impl TlsFiles {
    /// Load the chain and key: the certified key to serve.
    pub fn load(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let read = |what: &'static str, path: &Path, reason: String| TlsError::Read {
            what,
            path: path.to_path_buf(),
            reason,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| read("certificate", &self.cert, e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| read("certificate", &self.cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(read(
                "certificate",
                &self.cert,
                "no PEM certificate in it".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| read("key", &self.key, e.to_string()))?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified =
            CertifiedKey::from_der(chain, key, &provider).map_err(|e| TlsError::Mismatch {
                cert: self.cert.clone(),
                key: self.key.clone(),
                reason: e.to_string(),
            })?;
        Ok(Arc::new(certified))
    }

    /// The files' modification times, to notice a renewal.
    fn stamp(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
        (modified(&self.cert), modified(&self.key))
    }

    /// The acceptor for these files, loading them now (an error when they do not load).
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let resolver = Reloading {
            current: Mutex::new(Current {
                key: self.load()?,
                stamp: self.stamp(),
                checked: Instant::now(),
            }),
            files: self.clone(),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Read {
            what: "configuration",
            path: self.cert.clone(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

struct Current {
    key: Arc<CertifiedKey>,
    stamp: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

/// Serves the loaded certificate, loading it again when its files change.
#[derive(Debug)]
struct Reloading {
    files: TlsFiles,
    current: Mutex<Current>,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("stamp", &self.stamp)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.checked.elapsed() >= RELOAD_CHECK {
            current.checked = Instant::now();
            let stamp = self.files.stamp();
            if stamp != current.stamp {
                match self.files.load() {
                    Ok(key) => {
                        current.key = key;
                        current.stamp = stamp;
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate loaded again");
                    }
                    // Kept: the next check tries again (the stamp is not taken).
                    Err(e) => tracing::warn!("keeping the TLS certificate in use: {e}"),
                }
            }
        }
        Some(current.key.clone())
    }
}
