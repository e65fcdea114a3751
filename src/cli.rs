//! The command line (`flowvm --help`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::sink::parquet::Codec;

/// IPFIX collector and exporter: templates compiled to bytecode, flows archived as Parquet.
#[derive(Debug, Parser)]
#[command(name = "flowvm", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive IPFIX (UDP and TCP), NetFlow v9 and v5 (UDP) and archive it as Parquet
    /// (defaults: UDP and TCP on 0.0.0.0:4739 and [::]:4739, UDP on 0.0.0.0:2055 and
    /// [::]:2055, every UDP port taking all three; archive in ./flows, metrics on
    /// 127.0.0.1:9739).
    Collect(Box<CollectArgs>),
    /// Decode IPFIX Files (RFC 5655) and pcap/pcapng captures of IPFIX, NetFlow v9 and v5
    /// over UDP into the archive.
    Decode {
        /// IPFIX files or captures, decoded in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where the archive goes: a directory, file://DIR, or s3://BUCKET/PREFIX (endpoint and
        /// credentials from the AWS_* variables, as for collect).
        #[arg(long, value_name = "DIR|URL", default_value = "flows")]
        out: PathBuf,
        /// With --out s3://…: the local directory files are completed in before upload.
        #[arg(long, value_name = "DIR", default_value = "spool")]
        spool: PathBuf,
        /// This run's name in file and object names [default: the host name].
        #[arg(long, value_name = "ID")]
        collector_id: Option<String>,
        /// How the archive's Parquet pages are compressed.
        #[arg(long, value_enum, default_value_t = Codec::Zstd)]
        compression: Codec,
        /// Extra Information Elements (CSV: pen,id,name,data_type,data_semantics,units,status).
        #[arg(long, value_name = "CSV")]
        elements: Option<PathBuf>,
        /// Log level when RUST_LOG is not set.
        #[arg(long, default_value = "warn")]
        log_level: String,
    },
    /// Send generated IPFIX over UDP to a collector at a given rate and report records/s
    /// received and records lost, read from the collector's metrics; or, with --pcap, send
    /// the UDP payloads of a capture, unchanged, to any collector.
    BenchReplay {
        /// The collector's address (UDP, TCP or TLS listener).
        #[arg(long, default_value = "127.0.0.1:4739")]
        collector: SocketAddr,
        /// The collector's metrics address (flowvm's) [default: 127.0.0.1:9739; with --pcap,
        /// none: only what was sent is reported].
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<SocketAddr>,
        /// A pcap or pcapng capture: send the payload of every UDP packet in it, unchanged and
        /// in order, over UDP, instead of generated IPFIX.
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with_all = ["records", "rate", "mtu", "transport", "tls_ca", "tls_server_name"]
        )]
        pcap: Option<PathBuf>,
        /// With --pcap: passes over the capture.
        #[arg(long, default_value_t = 1, requires = "pcap")]
        loops: u64,
        /// With --pcap: datagrams per second; 0 sends as fast as the socket takes them.
        #[arg(long, value_name = "D", default_value_t = 0, requires = "pcap")]
        datagram_rate: u64,
        /// Data Records to send.
        #[arg(long, default_value_t = 10_000_000)]
        records: u64,
        /// Records per second; 0 sends as fast as the socket takes them.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// UDP exporters (source ports) the Messages are dealt over in turn, each its own
        /// stream; several spread over a collector's workers.
        #[arg(long, default_value_t = 1)]
        exporters: usize,
        /// Largest message, in octets.
        #[arg(long, default_value_t = 1400)]
        mtu: usize,
        /// Transport protocol (the collector's address must be of its listener).
        #[arg(long, value_enum, default_value = "udp")]
        transport: TransportArg,
        /// With `--transport tls`: the CA of the collector's certificate.
        #[arg(long, value_name = "FILE")]
        tls_ca: Option<PathBuf>,
        /// With `--transport tls`: the name the collector's certificate must carry
        /// [default: the host of --collector].
        #[arg(long, value_name = "NAME")]
        tls_server_name: Option<String>,
    },
    /// Meter packets from a capture file or a live interface into flows, as VPP's flowprobe
    /// does, and export them as IPFIX to a collector.
    Export(ExportArgs),
    /// Turn what a crashed collector or decode left in an archive directory (journals of open
    /// files) into complete Parquet files; `flowvm collect` does the same at start-up.
    Recover {
        /// The archive directory.
        dir: PathBuf,
        /// How the files made from journals are compressed.
        #[arg(long, value_enum, default_value_t = Codec::Zstd)]
        compression: Codec,
        /// Log level when RUST_LOG is not set.
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Print DuckDB statements that open an archive with its IPv4 addresses as text: the view
    /// `flows` and the macros `ipv4_text(a)` and `ipv4(text)` (`duckdb -cmd "$(flowvm sql)"`).
    Sql {
        /// The archive: a directory, file://DIR, or s3://BUCKET/PREFIX.
        #[arg(default_value = "flows")]
        archive: String,
        /// Extra Information Elements (CSV: pen,id,name,data_type,data_semantics,units,status),
        /// as given to the collector: its ipv4Address elements are addresses too.
        #[arg(long, value_name = "CSV")]
        elements: Option<PathBuf>,
    },
    /// Print the compiled program of every template in IPFIX files (RFC 5655: concatenated
    /// IPFIX Messages) or in captures of IPFIX, NetFlow v9 (its templates) and v5 (its fixed
    /// layout).
    Disasm {
        /// IPFIX files, or pcap/pcapng captures of IPFIX, NetFlow v9 and v5, to read.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Extra Information Elements (CSV: pen,id,name,data_type,data_semantics,units,status).
        #[arg(long, value_name = "CSV")]
        elements: Option<PathBuf>,
    },
}

/// Options of `flowvm export`; names and defaults follow VPP's `set ipfix exporter` and
/// `flowprobe params`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["pcap", "interface"])))]
pub struct ExportArgs {
    /// A pcap or pcapng capture, replayed on its own timestamps (as fast as possible, it is
    /// read and keyed on a second thread when the machine has a second core).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// A live Linux interface (AF_PACKET; needs root or CAP_NET_RAW).
    #[arg(long, value_name = "NAME")]
    pub interface: Option<String>,
    /// Replay the capture at this multiple of real time (1 = as captured) instead of as fast
    /// as possible.
    #[arg(long, value_name = "FACTOR")]
    pub speed: Option<f64>,
    /// The collector.
    #[arg(long, value_name = "HOST:PORT")]
    pub collector: String,
    /// Transport protocol.
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: TransportArg,
    /// With `--transport tls`: the CA (PEM) the collector's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// With `--transport tls`: this exporter's certificate chain (PEM), for collectors that
    /// authenticate exporters.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name the collector's certificate must carry [default: the host of --collector].
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Source address to bind [default: chosen by the kernel].
    #[arg(long, value_name = "ADDR")]
    pub src: Option<std::net::IpAddr>,
    /// Source port to bind [default: 0, chosen by the kernel]. VPP's fixed 4739 is
    /// `--src-port 4739`, which fails while a collector on this host holds that port.
    #[arg(long, default_value_t = 0)]
    pub src_port: u16,
    /// Largest IP packet, in octets (68..=1450; RFC 7011 §10.3.3).
    #[arg(long, default_value_t = 512)]
    pub path_mtu: u32,
    /// Seconds between template re-sends over UDP.
    #[arg(long, default_value_t = 20)]
    pub template_interval: u64,
    /// Send IPv4 datagrams without the UDP checksum, as VPP does by default (IPv6 always has
    /// one). Without it, each Message is also a send of its own (segmentation offload needs the
    /// checksum).
    #[arg(long)]
    pub no_udp_checksum: bool,
    /// Observation Domain ID (worker i of --workers exports as this plus i).
    #[arg(long, default_value_t = 1)]
    pub domain_id: u32,
    /// Meter a live --interface on N threads: the kernel spreads flows over them by hash
    /// (PACKET_FANOUT), each with its own flow table, export socket and Observation Domain.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: usize,
    /// Active timer, seconds: running flows are exported this often; 0 exports every packet.
    #[arg(long, default_value_t = 15)]
    pub active: u64,
    /// Passive timer, seconds: flows idle this long expire.
    #[arg(long, default_value_t = 120)]
    pub passive: u64,
    /// Fields to record: any of l2, l3, l4, comma-separated.
    #[arg(long, default_value = "l3,l4")]
    pub record: flowvm_exporter::flow::RecordFlags,
    /// Flows held at most (up to 4,294,967,294); packets of new flows beyond are exported
    /// alone (flowEndReason 5).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_flows: usize,
    /// Seconds a partly filled Message waits before it is sent (the flowprobe flush).
    #[arg(long, default_value_t = 5)]
    pub flush_interval: u64,
    /// Log level when RUST_LOG is not set.
    #[arg(long, default_value = "warn")]
    pub log_level: String,
}

/// `--transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    /// IPFIX over UDP (RFC 7011 §10.3).
    Udp,
    /// IPFIX over TCP (RFC 7011 §10.4).
    Tcp,
    /// IPFIX over TLS over TCP (RFC 7011 §11); needs --tls-ca.
    Tls,
}

/// Options of `flowvm collect`; each overrides the config file, which overrides the defaults.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// TOML config file (keys as printed at start-up).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on for UDP and TCP (repeat for several) [default: 0.0.0.0:4739,
    /// [::]:4739]. Given alone, it replaces the UDP-only NetFlow listeners too.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// Address to listen on for UDP only (repeat for several) [default: 0.0.0.0:2055,
    /// [::]:2055, NetFlow's customary port]. Every UDP listener takes IPFIX, NetFlow v9 and v5.
    #[arg(long, value_name = "ADDR:PORT")]
    pub udp_listen: Vec<SocketAddr>,
    /// Do not listen on UDP.
    #[arg(long)]
    pub no_udp: bool,
    /// Do not listen on TCP.
    #[arg(long)]
    pub no_tcp: bool,
    /// Share the UDP ports with other sockets (SO_REUSEPORT), for a deliberate fan-out over
    /// several collectors; without it a port another socket holds is an error.
    #[arg(long)]
    pub reuse_port: bool,
    /// Source network allowed to send, as CIDR (repeat for several); others are dropped and
    /// counted as not_allowed [default: every source].
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<ipnet::IpNet>,
    /// The collector's TLS certificate chain (PEM); with --tls-key, TLS listeners open on
    /// --tls-listen beside the plain ones.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA exporters' certificates must chain to (mutual authentication); without it any
    /// client may connect over TLS.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Address to listen on for TLS (repeat for several) [default: 0.0.0.0:4740, [::]:4740].
    #[arg(long, value_name = "ADDR:PORT")]
    pub tls_listen: Vec<SocketAddr>,
    /// Where the archive goes: a directory, file://DIR, or s3://BUCKET/PREFIX (endpoint and
    /// credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_ALLOW_HTTP) [default: flows].
    #[arg(long, value_name = "DIR|URL")]
    pub out: Option<PathBuf>,
    /// With --out s3://…: the local directory files are completed in before upload
    /// [default: spool].
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Octets of completed files the spool may hold waiting for upload; past it rows wait
    /// (TCP) or are counted as dropped (UDP, archive_full) [default: 8589934592].
    #[arg(long, value_name = "OCTETS")]
    pub spool_max_bytes: Option<u64>,
    /// This collector's name in file and object names, so collectors sharing a bucket prefix
    /// never write the same key [default: the host name].
    #[arg(long, value_name = "ID")]
    pub collector_id: Option<String>,
    /// Rotation window of archive files, in seconds [default: 60].
    #[arg(long, value_name = "SECONDS")]
    pub rotate: Option<u64>,
    /// Seconds between syncs of the archive's journals to the disk, fractions allowed; 0
    /// syncs after every batch [default: 0.5]. A crash loses at most this plus 0.25 s.
    #[arg(long, value_name = "SECONDS")]
    pub sync_interval: Option<f64>,
    /// Complete an archive file early past this size, in octets [default: 268435456].
    #[arg(long, value_name = "OCTETS")]
    pub max_file_bytes: Option<u64>,
    /// How the archive's Parquet pages are compressed [default: zstd].
    #[arg(long, value_enum)]
    pub compression: Option<Codec>,
    /// Pipelines (receive, decode, archive), each with its own UDP socket on every port
    /// [default: one per core, at most 8].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// UDP receive buffer, in octets [default: 33554432].
    #[arg(long, value_name = "OCTETS")]
    pub rcvbuf: Option<usize>,
    /// UDP template lifetime, in seconds [default: 1800].
    #[arg(long, value_name = "SECONDS")]
    pub template_lifetime: Option<u64>,
    /// Templates held over all exporters [default: 65536].
    #[arg(long)]
    pub max_templates: Option<usize>,
    /// Templates held for one exporter address over all its ports and connections
    /// [default: 16384].
    #[arg(long)]
    pub max_templates_per_exporter: Option<usize>,
    /// Octets of data held for templates not yet received [default: 67108864].
    #[arg(long, value_name = "OCTETS")]
    pub pending_max_bytes: Option<usize>,
    /// Seconds data waits for its template before it is dropped [default: 1800].
    #[arg(long, value_name = "SECONDS")]
    pub pending_max_age: Option<u64>,
    /// Concurrent TCP connections [default: 256].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Concurrent TCP connections from one exporter address [default: 16].
    #[arg(long)]
    pub max_connections_per_exporter: Option<usize>,
    /// Seconds a new TCP connection has to send its first complete message header [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub tcp_header_timeout: Option<u64>,
    /// Seconds a TCP peer may stay silent mid-stream before it is closed [default: 600].
    #[arg(long, value_name = "SECONDS")]
    pub tcp_idle_timeout: Option<u64>,
    /// Prometheus metrics address, or "off" [default: 127.0.0.1:9739].
    #[arg(long, value_name = "ADDR:PORT|off")]
    pub metrics: Option<String>,
    /// Log level when RUST_LOG is not set [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Extra Information Elements (CSV with the registry's columns).
    #[arg(long, value_name = "CSV")]
    pub elements: Option<PathBuf>,
}

impl CollectArgs {
    /// The effective configuration: defaults, then the file, then these options.
    ///
    /// # Errors
    /// An unreadable or invalid config file, a bad `--metrics`, or a value `validate` refuses.
    pub fn config(&self) -> Result<Config, String> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if !self.listen.is_empty() {
            c.listen.clone_from(&self.listen);
            // `--listen` alone says where to listen: not also on the default NetFlow port.
            if c.udp_listen == Config::default().udp_listen {
                c.udp_listen.clear();
            }
        }
        if !self.udp_listen.is_empty() {
            c.udp_listen.clone_from(&self.udp_listen);
        }
        c.udp &= !self.no_udp;
        c.tcp &= !self.no_tcp;
        c.reuse_port |= self.reuse_port;
        if !self.allow.is_empty() {
            c.allow.clone_from(&self.allow);
        }
        for (file, given) in [
            (&mut c.tls_cert, &self.tls_cert),
            (&mut c.tls_key, &self.tls_key),
            (&mut c.tls_client_ca, &self.tls_client_ca),
        ] {
            if given.is_some() {
                file.clone_from(given);
            }
        }
        if !self.tls_listen.is_empty() {
            c.tls_listen.clone_from(&self.tls_listen);
        }
        if let Some(seconds) = self.sync_interval {
            if !(0.0..=3600.0).contains(&seconds) {
                return Err(format!(
                    "--sync-interval {seconds}: between 0 and 3600 seconds"
                ));
            }
            c.sync_interval_ms = Duration::from_secs_f64(seconds)
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX);
        }
        macro_rules! set {
            ($($field:ident),*) => {$(if let Some(v) = &self.$field { c.$field = v.clone(); })*};
        }
        set!(
            out,
            spool,
            spool_max_bytes,
            rotate,
            max_file_bytes,
            compression,
            rcvbuf,
            workers,
            template_lifetime,
            max_templates,
            max_templates_per_exporter,
            pending_max_bytes,
            pending_max_age,
            max_connections,
            max_connections_per_exporter,
            tcp_header_timeout,
            tcp_idle_timeout,
            log_level
        );
        if self.elements.is_some() {
            c.elements.clone_from(&self.elements);
        }
        if self.collector_id.is_some() {
            c.collector_id.clone_from(&self.collector_id);
        }
        match self.metrics.as_deref() {
            None => {}
            Some("off") => c.metrics = None,
            Some(addr) => {
                c.metrics = Some(addr.parse().map_err(|e| format!("--metrics {addr}: {e}"))?)
            }
        }
        c.validate()?;
        Ok(c)
    }
}
