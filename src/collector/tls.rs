//! TLS over TCP (RFC 7011 §11): the server's certificate and key, the exporters' CA for mutual
//! authentication, the handshake under a deadline with its failures counted by reason, the
//! authenticated exporter's identity, and reloading the files without dropping a session.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

pub use crate::tls::TlsError;
use crate::tls::{VERSIONS, certificates, private_key, roots};

/// How often the files are checked for a change (besides SIGHUP).
const RELOAD_POLL: Duration = Duration::from_secs(5);

/// The files of a TLS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The collector's certificate chain (PEM), its own certificate first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA (PEM) exporters' certificates must chain to; without it, any client connects.
    pub client_ca: Option<PathBuf>,
}

/// Reads `files` into a server configuration.
///
/// # Errors
/// A file that cannot be read or holds no certificate or key, a key that does not match the
/// certificate, a client CA that cannot verify.
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&VERSIONS)
        .map_err(|source| TlsError::Invalid {
            what: "TLS versions",
            source,
        })?;
    let builder = match &files.client_ca {
        // Mutual authentication (§11.3): the exporter's certificate must chain to `ca`.
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider)
                .build()
                .map_err(|e| TlsError::Ca(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Invalid {
            what: "the certificate and key",
            source,
        })?;
    Ok(Arc::new(config))
}

/// The current server configuration, swapped whole when the files change: a handshake uses
/// the configuration of its start, and established sessions are untouched.
#[derive(Debug)]
pub struct Acceptor {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// SIGHUP, registered as the listeners are bound: from then on it reloads, never kills.
    hangup: Mutex<Option<Signal>>,
}

impl Acceptor {
    /// Loads `files` and registers SIGHUP (within a Tokio runtime).
    ///
    /// # Errors
    /// Those of [`load`].
    pub fn new(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let config = load(&files)?;
        let hangup = signal(SignalKind::hangup())
            .inspect_err(|e| warn!(error = %e, "Cannot catch SIGHUP: TLS files are reloaded only when they change."))
            .ok();
        if files.client_ca.is_none() {
            warn!(
                cert = %files.cert.display(),
                "TLS without --tls-client-ca: any client may connect and send records; give the exporters' CA for mutual authentication."
            );
        }
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(config),
            hangup: Mutex::new(hangup),
        }))
    }

    /// Re-reads the files; a bad file is logged and the configuration in use kept.
    pub fn reload(&self) {
        match load(&self.files) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
                info!(cert = %self.files.cert.display(), "Reloaded the TLS certificate and key.");
            }
            Err(e) => {
                warn!(error = %e, "Kept the TLS configuration in use: the new files cannot be loaded.");
            }
        }
    }

    /// Runs the handshake on `stream` within `deadline`; on success, the session and the
    /// identity of its authenticated peer.
    ///
    /// # Errors
    /// The failure's reason, as `flowvm_tls_handshakes_failed_total` labels it.
    pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        deadline: Duration,
    ) -> Result<(TlsStream<S>, Option<String>), &'static str> {
        let config = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        let accepting = TlsAcceptor::from(config).accept(stream);
        let stream = match tokio::time::timeout(deadline, accepting).await {
            Err(_) => return Err("timeout"),
            Ok(Err(e)) => {
                debug!(error = %e, "TLS handshake failed.");
                return Err(failure_reason(&e));
            }
            Ok(Ok(stream)) => stream,
        };
        let identity = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[_]>::first)
            .map(identity);
        Ok((stream, identity))
    }

    /// The modification times of the files, to notice a change.
    fn stamps(&self) -> Vec<Option<SystemTime>> {
        [
            Some(&self.files.cert),
            Some(&self.files.key),
            self.files.client_ca.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
    }

    /// Reloads on SIGHUP and when a file's modification time changes, until shutdown.
    pub async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut hangup = self
            .hangup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut stamps = self.stamps();
        loop {
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = hup => {}
                () = tokio::time::sleep(RELOAD_POLL) => {
                    if self.stamps() == stamps {
                        continue;
                    }
                }
                _ = shutdown.changed() => return,
            }
            stamps = self.stamps();
            self.reload();
        }
    }
}

/// Every reason a handshake fails, as the metric labels them.
pub const FAILURES: [&str; 9] = [
    "no_certificate",
    "unknown_ca",
    "expired",
    "bad_certificate",
    "protocol_version",
    "incompatible",
    "not_tls",
    "timeout",
    "other",
];

/// The label of a failed handshake's error.
fn failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::{Error, PeerIncompatible};
    let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return "other";
    };
    match tls {
        Error::NoCertificatesPresented => "no_certificate",
        Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => "unknown_ca",
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "expired",
        Error::InvalidCertificate(_) => "bad_certificate",
        // A ClientHello of TLS 1.1 or older lacks the signature algorithms extension (TLS 1.2
        // added it), and rustls notices that before the version itself.
        Error::PeerIncompatible(
            PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::SignatureAlgorithmsExtensionRequired,
        ) => "protocol_version",
        Error::PeerIncompatible(_) => "incompatible",
        Error::InvalidMessage(_) => "not_tls",
        _ => "other",
    }
}

/// How an authenticated exporter is named: the first DNS name of its certificate's subject
/// alternative names, else the SHA-256 fingerprint of the certificate.
fn identity(cert: &CertificateDer<'_>) -> String {
    let named = webpki::EndEntityCert::try_from(cert)
        .ok()
        .and_then(|c| c.valid_dns_names().next().map(str::to_owned));
    named.unwrap_or_else(|| {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    })
}
