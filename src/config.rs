//! The collector's configuration: defaults, a TOML file (`--config`), then command-line
//! overrides; validated once, printed at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::collector::decode::DecoderConfig;
use crate::collector::pending::PendingLimits;
use crate::collector::sequence::SequenceLimits;
use crate::collector::tcp::TcpLimits;
use crate::collector::templates::TemplateLimits;
use crate::collector::tls::TlsFiles;
use crate::sink::parquet::{ArchiveConfig, Codec};
use crate::sink::store::Destination;

/// Workers started by default at most, whatever the cores: past this the disk, the NIC and
/// the kernel's socket locks, not decoding, bound the rate, and each worker holds open files.
pub const MAX_AUTO_WORKERS: usize = 8;

/// Everything `flowvm collect` can be told. Every field has a default; a config file may set
/// any subset, and unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses to listen on, for both UDP and TCP unless one is turned off.
    pub listen: Vec<SocketAddr>,
    /// Addresses to listen on for UDP only: NetFlow's customary port. Every UDP listener takes
    /// IPFIX, NetFlow v9 and v5 alike.
    pub udp_listen: Vec<SocketAddr>,
    /// Listen on UDP.
    pub udp: bool,
    /// Listen on TCP.
    pub tcp: bool,
    /// Let other sockets share the UDP ports (SO_REUSEPORT), for a deliberate fan-out over
    /// several collectors; off, a port another socket holds stops the start with an error.
    pub reuse_port: bool,
    /// Source networks allowed to send (datagrams and connections); empty allows everyone.
    pub allow: Vec<IpNet>,
    /// The collector's TLS certificate chain (PEM); with `tls_key`, TLS listeners open on
    /// `tls_listen`.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA exporters' certificates must chain to (mutual authentication); without it any
    /// client may connect over TLS.
    pub tls_client_ca: Option<PathBuf>,
    /// Addresses of the TLS listeners (IANA's `ipfixs` port, 4740).
    pub tls_listen: Vec<SocketAddr>,
    /// Where the archive goes: a directory (`DIR` or `file://DIR`), or an S3 bucket and prefix
    /// (`s3://BUCKET/PREFIX`), written through the spool.
    pub out: PathBuf,
    /// With an object store as `out`: the local directory files are written and completed in
    /// before they are uploaded (and removed).
    pub spool: PathBuf,
    /// Octets of completed files the spool may hold waiting for upload; past it the archive
    /// refuses rows (TCP waits, UDP drops are counted as `archive_full`).
    pub spool_max_bytes: u64,
    /// This collector's name in every file name, so collectors sharing one bucket prefix never
    /// write the same key (letters, digits, `.`, `_`, `-`); unset, the host name.
    pub collector_id: Option<String>,
    /// Rotation window of the archive files, in seconds.
    pub rotate: u64,
    /// Milliseconds between syncs of the archive's journals to the disk (0: after every
    /// batch): a crash loses at most what was decoded in the last interval plus 0.25 s.
    pub sync_interval_ms: u64,
    /// A file is completed early past this many octets.
    pub max_file_bytes: u64,
    /// How the archive's Parquet pages are compressed: `zstd` (smaller files) or `lz4` (less
    /// CPU a record).
    pub compression: Codec,
    /// UDP socket receive buffer, in octets (SO_RCVBUF).
    pub rcvbuf: usize,
    /// UDP template lifetime in seconds (RFC 7011 §8.4).
    pub template_lifetime: u64,
    /// Templates held over all exporters.
    pub max_templates: usize,
    /// Templates held for one Transport Session.
    pub max_templates_per_session: usize,
    /// Templates held for one exporter address over all its Transport Sessions (over UDP,
    /// every source port is a session); also bounds its sequence number streams.
    pub max_templates_per_exporter: usize,
    /// Field Specifiers (program instructions) held over all templates: a template may have
    /// up to 1024 fields and its program weighs about a kilobyte per field, so the count of
    /// templates alone does not bound memory.
    pub max_template_fields: usize,
    /// Field Specifiers held for one exporter address.
    pub max_template_fields_per_exporter: usize,
    /// Octets of data held for templates not yet received, over all exporters.
    pub pending_max_bytes: usize,
    /// Octets of such data held for one Transport Session.
    pub pending_max_session_bytes: usize,
    /// Seconds such data is held before it is dropped.
    pub pending_max_age: u64,
    /// Concurrent TCP connections.
    pub max_connections: usize,
    /// Concurrent TCP connections from one exporter address (`max_connections` bounds it too).
    pub max_connections_per_exporter: usize,
    /// Seconds a new TCP connection has to deliver its first complete Message Header.
    pub tcp_header_timeout: u64,
    /// Seconds a TCP connection may stay silent mid-stream before it is closed.
    pub tcp_idle_timeout: u64,
    /// Pipelines (receive, decode, archive), each with its own UDP socket on every port
    /// (SO_REUSEPORT); 0 takes one per core, at most [`MAX_AUTO_WORKERS`].
    pub workers: usize,
    /// Messages of TCP connections queued for decoding, per worker.
    pub queue: usize,
    /// Octets of Messages queued between receive and decode.
    pub queue_max_bytes: usize,
    /// Archive files open at once.
    pub max_open_files: usize,
    /// Rows per batch handed to the archive.
    pub batch_rows: usize,
    /// Prometheus metrics address; empty to turn metrics off.
    pub metrics: Option<SocketAddr>,
    /// Log level when `RUST_LOG` is not set.
    pub log_level: String,
    /// Extra Information Elements (CSV with the registry's columns).
    pub elements: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![
                SocketAddr::from(([0, 0, 0, 0], 4739)),
                SocketAddr::from(([0_u16; 8], 4739)),
            ],
            udp_listen: vec![
                SocketAddr::from(([0, 0, 0, 0], 2055)),
                SocketAddr::from(([0_u16; 8], 2055)),
            ],
            udp: true,
            tcp: true,
            reuse_port: false,
            allow: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_listen: vec![
                SocketAddr::from(([0, 0, 0, 0], 4740)),
                SocketAddr::from(([0_u16; 8], 4740)),
            ],
            out: PathBuf::from("flows"),
            spool: PathBuf::from("spool"),
            spool_max_bytes: 8 << 30,
            collector_id: None,
            rotate: 60,
            sync_interval_ms: 500,
            max_file_bytes: 256 << 20,
            compression: Codec::Zstd,
            rcvbuf: 32 << 20,
            template_lifetime: 1800,
            max_templates: 65_536,
            max_templates_per_session: 4096,
            max_templates_per_exporter: 16_384,
            max_template_fields: 1 << 19,
            max_template_fields_per_exporter: 1 << 17,
            pending_max_bytes: 64 << 20,
            pending_max_session_bytes: 16 << 20,
            pending_max_age: 1800,
            max_connections: 256,
            max_connections_per_exporter: 16,
            tcp_header_timeout: 10,
            tcp_idle_timeout: 600,
            workers: 0,
            queue: 16_384,
            queue_max_bytes: 64 << 20,
            max_open_files: 256,
            batch_rows: 65_536,
            metrics: Some(SocketAddr::from(([127, 0, 0, 1], 9739))),
            log_level: "info".to_owned(),
            elements: None,
        }
    }
}

impl Config {
    /// The number of workers: `workers`, or one per core (at most [`MAX_AUTO_WORKERS`]).
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(MAX_AUTO_WORKERS)
    }

    /// Reads a TOML file over the defaults.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, or names a key that does not exist.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Checks values that would make the collector useless or unbounded.
    ///
    /// # Errors
    /// A message naming the first bad setting.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("rotate", self.rotate),
            ("max_file_bytes", self.max_file_bytes),
            ("spool_max_bytes", self.spool_max_bytes),
            ("template_lifetime", self.template_lifetime),
            ("pending_max_age", self.pending_max_age),
            ("tcp_idle_timeout", self.tcp_idle_timeout),
            ("tcp_header_timeout", self.tcp_header_timeout),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be above 0"));
            }
        }
        for (name, value) in [
            ("max_templates", self.max_templates),
            ("max_templates_per_session", self.max_templates_per_session),
            (
                "max_templates_per_exporter",
                self.max_templates_per_exporter,
            ),
            ("max_template_fields", self.max_template_fields),
            (
                "max_template_fields_per_exporter",
                self.max_template_fields_per_exporter,
            ),
            ("queue_max_bytes", self.queue_max_bytes),
            ("max_open_files", self.max_open_files),
            ("max_connections", self.max_connections),
            (
                "max_connections_per_exporter",
                self.max_connections_per_exporter,
            ),
            ("queue", self.queue),
            ("batch_rows", self.batch_rows),
        ] {
            if value == 0 {
                return Err(format!("{name} must be above 0"));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(
                "TLS needs both a certificate and its key: give --tls-cert and --tls-key"
                    .to_owned(),
            );
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err("--tls-client-ca needs --tls-cert and --tls-key".to_owned());
        }
        self.destination()?;
        if let Some(id) = &self.collector_id {
            check_collector_id(id)?;
        }
        if (self.listen.is_empty() || !(self.udp || self.tcp)) && self.tls_cert.is_none() {
            return Err("nothing to listen on: give --listen, and keep UDP or TCP on".to_owned());
        }
        Ok(())
    }

    /// The effective configuration as TOML, for the start-up banner.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# unprintable: {e}\n"))
    }

    /// The decoder core's part.
    pub fn decoder(&self) -> DecoderConfig {
        DecoderConfig {
            templates: TemplateLimits {
                max_templates: self.max_templates,
                max_per_session: self.max_templates_per_session,
                max_per_exporter: self.max_templates_per_exporter,
                max_weight: self.max_template_fields,
                max_weight_per_exporter: self.max_template_fields_per_exporter,
                lifetime: Duration::from_secs(self.template_lifetime),
            },
            pending: PendingLimits {
                max_bytes: self.pending_max_bytes,
                max_session_bytes: self.pending_max_session_bytes,
                max_age: Duration::from_secs(self.pending_max_age),
            },
            sequences: SequenceLimits {
                max_streams: self.max_templates,
                max_per_exporter: self.max_templates_per_exporter,
                idle: Duration::from_secs(self.template_lifetime),
            },
            batch_rows: self.batch_rows,
        }
    }

    /// The TLS listeners' files, when TLS is on.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The TCP listeners' part.
    pub fn tcp_limits(&self) -> TcpLimits {
        TcpLimits {
            max_connections: self.max_connections,
            max_per_exporter: self.max_connections_per_exporter,
            header_timeout: Duration::from_secs(self.tcp_header_timeout),
            idle: Duration::from_secs(self.tcp_idle_timeout),
        }
    }

    /// Where the archive goes, read from `out`.
    ///
    /// # Errors
    /// `out` is a URL of a scheme not supported, or not text.
    pub fn destination(&self) -> Result<Destination, String> {
        let out = self
            .out
            .to_str()
            .ok_or_else(|| format!("--out {}: not UTF-8", self.out.display()))?;
        Destination::parse(out)
    }

    /// The directory the archive writes and completes files in: `out` itself, or the spool
    /// when `out` is an object store.
    pub fn local_dir(&self) -> PathBuf {
        match self.destination() {
            Ok(Destination::Local(dir)) => dir,
            _ => self.spool.clone(),
        }
    }

    /// `collector_id`, or the host name (characters outside the id's set become `-`).
    pub fn collector_id(&self) -> String {
        self.collector_id.clone().unwrap_or_else(host_name)
    }

    /// The archive's part.
    pub fn archive(&self) -> ArchiveConfig {
        ArchiveConfig {
            out: self.local_dir(),
            collector: self.collector_id(),
            rotate_seconds: i64::try_from(self.rotate).unwrap_or(i64::MAX),
            max_file_bytes: self.max_file_bytes,
            max_open_files: self.max_open_files,
            codec: self.compression,
        }
    }
}

/// A collector id is a file name part and an object key part: 1 to 64 letters, digits, `.`,
/// `_` or `-`.
fn check_collector_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > 64 || !id.chars().all(allowed) || id.starts_with('.') {
        return Err(format!(
            "--collector-id {id:?}: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
        ));
    }
    Ok(())
}

/// The host name as a collector id (Linux's `/proc/sys/kernel/hostname`), `collector` when it
/// cannot be read.
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let id: String = name
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() {
        "collector".to_owned()
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn workers_default_to_the_cores_at_most_eight_and_the_option_sets_them() {
        let auto = Config::default().worker_count();
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(auto, cores.min(MAX_AUTO_WORKERS));
        let Ok(Cli {
            command: Command::Collect(args),
            ..
        }) = Cli::try_parse_from(["flowvm", "collect", "--workers", "3"])
        else {
            panic!("flowvm collect --workers 3 did not parse");
        };
        assert_eq!(args.config().map(|c| c.worker_count()), Ok(3));
    }

    #[test]
    fn defaults_listen_on_4739_for_udp_and_tcp_and_2055_for_udp_on_both_families() {
        let c = Config::default();
        assert_eq!(
            c.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["0.0.0.0:4739", "[::]:4739"]
        );
        assert_eq!(
            c.udp_listen
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["0.0.0.0:2055", "[::]:2055"]
        );
        assert!(c.udp && c.tcp && !c.reuse_port);
        assert_eq!(c.out, PathBuf::from("flows"));
        // One address holds at most 16 of the 256 TCP slots, and must send its first header
        // within 10 s; data waits for its template as long as a UDP template lives.
        let tcp = c.tcp_limits();
        assert_eq!((tcp.max_connections, tcp.max_per_exporter), (256, 16));
        assert_eq!(tcp.header_timeout, Duration::from_secs(10));
        assert_eq!(c.decoder().pending.max_age, Duration::from_secs(1800));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn a_file_sets_a_subset_and_unknown_keys_are_refused() {
        let c: Config = toml::from_str("rotate = 5\nlisten = [\"127.0.0.1:0\"]\n").unwrap();
        assert_eq!((c.rotate, c.udp, c.listen.len()), (5, true, 1));
        assert!(toml::from_str::<Config>("rotat = 5\n").is_err());
        let printed: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(printed, c);
        assert!(Config { rotate: 0, ..c }.validate().is_err());
    }

    #[test]
    fn an_s3_destination_writes_through_the_spool_and_ids_are_checked() {
        let c = Config {
            out: PathBuf::from("s3://flows/site-a"),
            spool: PathBuf::from("/var/spool/flowvm"),
            collector_id: Some("edge-1.fra".to_owned()),
            ..Config::default()
        };
        assert!(c.validate().is_ok());
        assert_eq!(c.local_dir(), PathBuf::from("/var/spool/flowvm"));
        assert_eq!(c.archive().collector, "edge-1.fra");
        assert_eq!(
            Config::default().local_dir(),
            PathBuf::from("flows"),
            "a directory is written in place"
        );
        for bad in ["", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            let c = Config {
                collector_id: Some(bad.to_owned()),
                ..Config::default()
            };
            assert!(c.validate().is_err(), "{bad:?} accepted");
        }
        let c = Config {
            out: PathBuf::from("gs://bucket"),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("gs://"));
        let host = Config::default().collector_id();
        assert!(check_collector_id(&host).is_ok(), "{host:?}");
    }
}
