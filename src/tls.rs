//! TLS pieces both ends share: the versions offered, reading PEM certificates and keys, and
//! the exporter's client configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// The versions offered: TLS 1.3 and 1.2. RFC 7011 §11.1 forbids SSL and TLS 1.0; TLS 1.1 is
/// refused too, though §11.1 still permits it: it relies on MD5 and SHA-1, and RFC 8996
/// deprecates it.
pub const VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];

/// Why a TLS configuration cannot be loaded: one line a user can act on.
#[derive(Debug)]
pub enum TlsError {
    /// A file cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system or the PEM parser said.
        reason: String,
    },
    /// A PEM file holds no certificate.
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    NoKey(PathBuf),
    /// The key is not the certificate's, or the certificates are not usable.
    Invalid {
        /// What was being set up.
        what: &'static str,
        /// What rustls said.
        source: rustls::Error,
    },
    /// A CA file cannot be used to verify certificates.
    Ca(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, reason } => write!(f, "cannot read {}: {reason}", path.display()),
            Self::NoCertificate(path) => {
                write!(f, "{} holds no PEM certificate", path.display())
            }
            Self::NoKey(path) => write!(f, "{} holds no PEM private key", path.display()),
            Self::Invalid {
                what,
                source: rustls::Error::InconsistentKeys(_),
            } => write!(f, "{what}: the private key does not match the certificate"),
            Self::Invalid { what, source } => write!(f, "{what}: {source}"),
            Self::Ca(reason) => write!(f, "the CA cannot be used: {reason}"),
        }
    }
}

impl std::error::Error for TlsError {}

fn read_error(path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Read {
        path: path.to_owned(),
        reason: match e {
            rustls::pki_types::pem::Error::Io(io) => io.to_string(),
            other => format!("not PEM ({other:?})"),
        },
    }
}

/// The certificates of a PEM file, at least one.
///
/// # Errors
/// The file cannot be read, is not PEM, or holds no certificate.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_error(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error(path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// The private key of a PEM file.
///
/// # Errors
/// The file cannot be read, is not PEM, or holds no private key.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(path.to_owned()),
        other => read_error(path)(other),
    })
}

/// The certificates of the CA file `ca`, as trust anchors.
///
/// # Errors
/// Those of [`certificates`], or a certificate that cannot be a trust anchor.
pub fn roots(ca: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Ca(format!("{}: {e}", ca.display())))?;
    }
    Ok(Arc::new(roots))
}

/// The exporter's TLS configuration: trust `ca` for the collector's certificate, and present
/// `identity` (certificate chain and key files) when given.
///
/// # Errors
/// A file that cannot be used, or a key that does not match its certificate.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&VERSIONS)
        .map_err(|source| TlsError::Invalid {
            what: "TLS versions",
            source,
        })?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|source| TlsError::Invalid {
                what: "the client certificate and key",
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
