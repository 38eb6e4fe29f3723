//! Command line and TOML configuration, turned into one validated [`Config`].
//!
//! Every key of the file has a command-line flag of the same name where an operator would
//! want one; the command line wins over the file. Every limit of [`crate::limits`] can be
//! overridden under `[limits]`. Errors are one line and the process exits with status 2.

use crate::access::{AllowList, NetSet, PolicyKind, PolicyRule, PolicyTable};
use crate::inspect::InspectorKind;
use crate::limits::Limits;
use crate::obs::access_log::LogFormat;
use crate::scan::policy::{Early204, OverLimit};
use crate::scan::unpack::EncryptedPolicy;
use crate::scan::ScanPolicy;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:1344";
pub const DEFAULT_SIGNATURES: &str = "./signatures";
/// Where whole objects too big for memory are spooled: a disk-backed directory every system
/// has (`/tmp` may be a memory file system).
pub const DEFAULT_SPOOL_DIR: &str = "/var/tmp";

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub signatures: PathBuf,
    /// CPUs to run shards on, in order; one shard per entry.
    pub cpus: Vec<usize>,
    pub inspector: InspectorKind,
    pub limits: Limits,
    /// Only check the configuration, then exit.
    pub check: bool,
    /// With `--check`: list every skipped signature line, not one line per file and reason.
    pub verbose: bool,
    /// How long SIGTERM waits for in-flight transactions.
    pub shutdown_grace: Duration,
    pub policy: ScanPolicy,
    /// The operator's block page template, read at start.
    pub block_page: Option<String>,
    /// How often the signature folder is checked for changes (0: only on SIGHUP).
    pub reload_poll: Duration,
    /// Where the Prometheus metrics and status pages are served (off when `None`).
    pub metrics: Option<SocketAddr>,
    /// Where HAProxy's agent-check is answered (off when `None`).
    pub agent: Option<SocketAddr>,
    /// How long a stop answers agent checks with `drain` before the listeners close.
    pub agent_drain: Duration,
    pub access_log: LogDest,
    pub access_log_format: LogFormat,
    /// Where whole objects too big for memory are spooled for whole-object YARA rules (`None`:
    /// off; such objects are a named limit).
    pub spool_dir: Option<PathBuf>,
    /// Start even when another socket already listens on `listen` (see `server::port_check`).
    pub allow_shared_port: bool,
    /// Connecting addresses that may use the service (empty: every address).
    pub allow_clients: AllowList,
    /// Networks, users and groups mapped to a scanning policy.
    pub policies: PolicyTable,
    /// ICAP over TLS (icaps://): listeners and certificate files; off when `listen` is empty.
    pub tls: TlsConfig,
}

/// The TLS listeners and the files they serve. Certificate and key are loaded (and checked) when
/// the server starts and again on SIGHUP; see `src/server/tls.rs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Addresses every shard listens on for TLS, beside the plain `listen` address.
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM CA certificates: when set, clients must present a certificate they signed.
    pub client_ca: Option<PathBuf>,
}

/// Where access-log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogDest {
    /// Standard error: journald and container runtimes collect it as it is.
    Stderr,
    /// No access log.
    Off,
    /// Appended to this file, which is reopened on SIGUSR1 (for logrotate).
    File(PathBuf),
}

impl LogDest {
    fn parse(text: &str) -> LogDest {
        match text {
            "stderr" | "-" => LogDest::Stderr,
            "off" => LogDest::Off,
            path => LogDest::File(path.into()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    signatures: Option<PathBuf>,
    shards: Option<usize>,
    cpus: Option<String>,
    inspector: Option<String>,
    shutdown_grace_ms: Option<u64>,
    reload_poll_ms: Option<u64>,
    metrics: Option<String>,
    agent: Option<String>,
    agent_drain_ms: Option<u64>,
    access_log: Option<String>,
    access_log_format: Option<String>,
    spool_dir: Option<String>,
    allow_shared_port: Option<bool>,
    allow_clients: Option<Vec<String>>,
    #[serde(default)]
    tls_listen: Vec<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    policy: FilePolicy,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    over_limit: Option<String>,
    block_page: Option<PathBuf>,
    encrypted: Option<String>,
    #[serde(default)]
    early_204: FileEarly204,
    #[serde(default)]
    rules: Vec<FileRule>,
}

/// One `[[policy.rules]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    #[serde(default)]
    networks: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    policy: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEarly204 {
    #[serde(default)]
    content_types: Vec<String>,
    #[serde(default)]
    magic: Vec<String>,
    size_max_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    icap_header_bytes_max: Option<usize>,
    icap_header_count_max: Option<usize>,
    http_header_bytes_max: Option<usize>,
    preview_bytes_max: Option<usize>,
    chunk_line_bytes_max: Option<usize>,
    trailer_bytes_max: Option<usize>,
    connections_per_shard_max: Option<usize>,
    idle_keepalive_ms: Option<u64>,
    header_read_deadline_ms: Option<u64>,
    body_inactivity_ms: Option<u64>,
    recv_block_bytes: Option<usize>,
    idle_block_bytes: Option<usize>,
    holdback_bytes: Option<usize>,
    body_segments_max: Option<usize>,
    options_ttl_ms: Option<u64>,
    scan_bytes_max: Option<u64>,
    scan_time_max_ms: Option<u64>,
    yara_whole_bytes_max: Option<usize>,
    yara_overlap_bytes: Option<usize>,
    yara_block_scanners_max: Option<usize>,
    yara_matches_per_pattern_max: Option<usize>,
    body_partials_max: Option<usize>,
    body_partial_ends_max: Option<usize>,
    threat_labels_max: Option<usize>,
    access_log_flush_bytes: Option<usize>,
    access_log_queue_buffers: Option<usize>,
    scrape_request_bytes_max: Option<usize>,
    scrape_deadline_ms: Option<u64>,
    idle_evict_after_ms: Option<u64>,
    balance_accept_slack_connections: Option<usize>,
    balance_move_margin_permille: Option<usize>,
    balance_move_cooldown_ms: Option<u64>,
    balance_window_ms: Option<u64>,
    decoded_bytes_max: Option<u64>,
    decode_ratio_max: Option<u64>,
    decode_ratio_floor_bytes: Option<u64>,
    encodings_max: Option<usize>,
    zstd_window_bytes_max: Option<usize>,
    decode_buffer_bytes: Option<usize>,
    conn_retained_bytes_max: Option<usize>,
    shard_memory_bytes_max: Option<usize>,
    transfer_rate_min_bytes_per_sec: Option<u64>,
    transfer_rate_grace_ms: Option<u64>,
    scan_turn_bytes: Option<usize>,
    container_depth_max: Option<u32>,
    container_members_max: Option<u32>,
    member_bytes_max: Option<u64>,
    extracted_bytes_max: Option<u64>,
    extract_ratio_max: Option<u64>,
    extract_ratio_floor_bytes: Option<u64>,
    container_buffer_bytes_max: Option<u64>,
    lzma_memory_bytes_max: Option<u64>,
    strict_scan_bytes_max: Option<u64>,
    update_bundle_bytes_max: Option<u64>,
    update_unpacked_bytes_max: Option<u64>,
    update_files_max: Option<usize>,
    update_fetch_deadline_ms: Option<u64>,
    tls_handshake_ms: Option<u64>,
}

pub const USAGE: &str = "\
icapd: thread-per-core ICAP (RFC 3507) content-scanning server

USAGE:
    icapd [OPTIONS]

OPTIONS:
    --config FILE        TOML configuration file (keys as below, limits under [limits])
    --listen ADDR        address to listen on [default: 0.0.0.0:1344]
    --signatures DIR     signature folder [default: ./signatures]
    --shards N           number of shards (one per CPU of the allowed set by default)
    --cpus LIST          CPUs to pin shards to, e.g. 0-3,6 (default: the inherited affinity mask)
    --inspector KIND     engine | null | test  [default: engine]
    --metrics ADDR       serve Prometheus metrics (/metrics) and a status page (/status) over
                         HTTP on ADDR, e.g. 127.0.0.1:9344 [default: off]
    --agent ADDR         answer HAProxy's agent-check on ADDR (\"up N%\" or \"drain\")
                         [default: off]
    --access-log DEST    stderr | off | a file path (reopened on SIGUSR1) [default: stderr]
    --access-log-format FMT
                         icap (c-icap's text format) | json (JSON lines) [default: icap]
    --tls-listen ADDR    also serve ICAP over TLS (icaps://) on ADDR, e.g. 0.0.0.0:11344; may be
                         given several times [default: off]
    --tls-cert FILE      PEM certificate chain for the TLS listeners (reloaded on SIGHUP)
    --tls-key FILE       PEM private key for the TLS listeners (reloaded on SIGHUP)
    --tls-client-ca FILE require client certificates signed by these PEM CA certificates
    --allow-shared-port  start even if another socket already listens on the address and
                         port (by default that is refused: SO_REUSEPORT would split the
                         connections between the two servers)
    --check              validate the configuration and exit
    -v, --verbose        with --check, list every skipped signature line with file:line
    --help               print this help
    --version            print the version

Every limit can be set in the file under [limits]; see README.md for the list and defaults.
";

/// What the command line asked for.
pub enum Parsed {
    Run(Box<Config>),
    Help,
    Version,
}

/// Parses `args` (without the program name). `allowed_cpus` is the inherited affinity mask.
pub fn parse(args: &[String], allowed_cpus: &[usize]) -> Result<Parsed, String> {
    let mut file_path: Option<PathBuf> = None;
    let mut listen: Option<String> = None;
    let mut signatures: Option<PathBuf> = None;
    let mut shards: Option<usize> = None;
    let mut cpus: Option<String> = None;
    let mut inspector: Option<String> = None;
    let mut metrics: Option<String> = None;
    let mut agent: Option<String> = None;
    let mut access_log: Option<String> = None;
    let mut access_log_format: Option<String> = None;
    let mut tls_listen: Vec<String> = Vec::new();
    let mut tls_cert: Option<PathBuf> = None;
    let mut tls_key: Option<PathBuf> = None;
    let mut tls_client_ca: Option<PathBuf> = None;
    let mut check = false;
    let mut allow_shared_port = false;
    let mut verbose = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline.clone().or_else(|| it.next().cloned()).ok_or(format!("{name} needs a value"))
        };
        match flag {
            "--config" => file_path = Some(value("--config")?.into()),
            "--listen" => listen = Some(value("--listen")?),
            "--signatures" => signatures = Some(value("--signatures")?.into()),
            "--shards" => shards = Some(parse_count(&value("--shards")?, "--shards")?),
            "--cpus" => cpus = Some(value("--cpus")?),
            "--inspector" => inspector = Some(value("--inspector")?),
            "--metrics" => metrics = Some(value("--metrics")?),
            "--agent" => agent = Some(value("--agent")?),
            "--access-log" => access_log = Some(value("--access-log")?),
            "--access-log-format" => access_log_format = Some(value("--access-log-format")?),
            "--tls-listen" => tls_listen.push(value("--tls-listen")?),
            "--tls-cert" => tls_cert = Some(value("--tls-cert")?.into()),
            "--tls-key" => tls_key = Some(value("--tls-key")?.into()),
            "--tls-client-ca" => tls_client_ca = Some(value("--tls-client-ca")?.into()),
            "--check" => check = true,
            "--allow-shared-port" => allow_shared_port = true,
            "--verbose" | "-v" => verbose = true,
            "--help" | "-h" => return Ok(Parsed::Help),
            "--version" | "-V" => return Ok(Parsed::Version),
            other => return Err(format!("unknown argument '{other}' (see --help)")),
        }
    }
    let file = match &file_path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .map_err(|e| format!("{}: {}", path.display(), e.to_string().lines().collect::<Vec<_>>().join(" ")))?
        }
        None => FileConfig::default(),
    };
    let listen_text = listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen: SocketAddr =
        listen_text.parse().map_err(|_| format!("invalid listen address '{listen_text}' (want IP:PORT)"))?;
    let cpus_text = cpus.or(file.cpus);
    let mut cpu_list = match &cpus_text {
        Some(text) => {
            let list = parse_cpu_list(text)?;
            if let Some(bad) = list.iter().find(|c| !allowed_cpus.contains(c)) {
                return Err(format!("CPU {bad} is not in the allowed set {allowed_cpus:?}"));
            }
            list
        }
        None => allowed_cpus.to_vec(),
    };
    if cpu_list.is_empty() {
        return Err("no CPU to run on".into());
    }
    if let Some(n) = shards.or(file.shards) {
        if n == 0 {
            return Err("--shards must be at least 1".into());
        }
        if n > cpu_list.len() {
            return Err(format!("--shards {n} exceeds the {} CPUs available {cpu_list:?}", cpu_list.len()));
        }
        cpu_list.truncate(n);
    }
    let inspector_text = inspector.or(file.inspector).unwrap_or_else(|| "engine".into());
    let inspector = InspectorKind::parse(&inspector_text)
        .ok_or(format!("unknown inspector '{inspector_text}' (engine, null, test)"))?;
    let limits = apply_limits(file.limits)?;
    let over_limit = match file.policy.over_limit.as_deref() {
        None | Some("block") => OverLimit::Block,
        Some("pass") => OverLimit::Pass,
        Some(other) => return Err(format!("policy.over_limit: '{other}' (block, pass)")),
    };
    let encrypted = match file.policy.encrypted.as_deref() {
        None | Some("block") => EncryptedPolicy::Block,
        Some("pass") => EncryptedPolicy::Pass,
        Some(other) => return Err(format!("policy.encrypted: '{other}' (block, pass)")),
    };
    let early_204 = Early204 {
        content_types: file.policy.early_204.content_types.iter().map(|c| c.to_ascii_lowercase()).collect(),
        magic: file.policy.early_204.magic,
        size_max_bytes: file.policy.early_204.size_max_bytes,
    };
    early_204.validate().map_err(|e| format!("policy.early_204: {e}"))?;
    let block_page = match &file.policy.block_page {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|e| format!("policy.block_page {}: {e}", path.display()))?)
        }
        None => None,
    };
    let metrics = match metrics.or(file.metrics) {
        None => None,
        Some(text) if text == "off" => None,
        Some(text) => Some(
            text.parse::<SocketAddr>()
                .map_err(|_| format!("invalid metrics address '{text}' (want IP:PORT or off)"))?,
        ),
    };
    if metrics.is_some_and(|m| m == listen) {
        return Err(format!("the metrics listener cannot share the ICAP address {listen}"));
    }
    let allow_clients = AllowList::new(
        NetSet::parse(&file.allow_clients.unwrap_or_default()).map_err(|e| format!("allow_clients: {e}"))?,
    );
    let policies = policy_table(file.policy.rules)?;
    let agent = match agent.or(file.agent) {
        None => None,
        Some(text) if text == "off" => None,
        Some(text) => Some(
            text.parse::<SocketAddr>().map_err(|_| format!("invalid agent address '{text}' (want IP:PORT or off)"))?,
        ),
    };
    if agent.is_some_and(|a| a == listen || Some(a) == metrics) {
        return Err("the agent-check listener cannot share the ICAP or metrics address".into());
    }
    let access_log = LogDest::parse(&access_log.or(file.access_log).unwrap_or_else(|| "stderr".into()));
    let format_text = access_log_format.or(file.access_log_format).unwrap_or_else(|| "icap".into());
    let access_log_format =
        LogFormat::parse(&format_text).ok_or(format!("unknown access log format '{format_text}' (icap, json)"))?;
    // Listeners given on the command line replace those of the file, like every other key.
    let tls_listen_text = if tls_listen.is_empty() { file.tls_listen } else { tls_listen };
    let mut tls_addrs: Vec<SocketAddr> = Vec::with_capacity(tls_listen_text.len());
    for text in &tls_listen_text {
        let addr: SocketAddr =
            text.parse().map_err(|_| format!("invalid TLS listen address '{text}' (want IP:PORT)"))?;
        if addr == listen || metrics == Some(addr) || tls_addrs.contains(&addr) {
            return Err(format!("the TLS listener {addr} is already in use by another listener"));
        }
        tls_addrs.push(addr);
    }
    let tls = TlsConfig {
        listen: tls_addrs,
        cert: tls_cert.or(file.tls_cert),
        key: tls_key.or(file.tls_key),
        client_ca: tls_client_ca.or(file.tls_client_ca),
    };
    if !tls.listen.is_empty() && (tls.cert.is_none() || tls.key.is_none()) {
        return Err("--tls-listen needs --tls-cert and --tls-key (tls_cert, tls_key in the file)".into());
    }
    if tls.listen.is_empty() && (tls.cert.is_some() || tls.key.is_some() || tls.client_ca.is_some()) {
        return Err("TLS certificate files are set but there is no --tls-listen (tls_listen) to use them".into());
    }
    Ok(Parsed::Run(Box::new(Config {
        listen,
        signatures: signatures.or(file.signatures).unwrap_or_else(|| DEFAULT_SIGNATURES.into()),
        cpus: cpu_list,
        inspector,
        limits,
        check,
        verbose,
        shutdown_grace: Duration::from_millis(file.shutdown_grace_ms.unwrap_or(10_000)),
        policy: ScanPolicy { over_limit, early_204, encrypted },
        block_page,
        reload_poll: Duration::from_millis(file.reload_poll_ms.unwrap_or(2_000)),
        metrics,
        agent,
        agent_drain: Duration::from_millis(file.agent_drain_ms.unwrap_or(0)),
        access_log,
        access_log_format,
        spool_dir: match file.spool_dir.as_deref() {
            Some("off") => None,
            Some(dir) => Some(dir.into()),
            None => Some(DEFAULT_SPOOL_DIR.into()),
        },
        tls,
        allow_shared_port: allow_shared_port || file.allow_shared_port.unwrap_or(false),
        allow_clients,
        policies,
    })))
}

fn apply_limits(f: FileLimits) -> Result<Limits, String> {
    let d = Limits::default();
    let ms = |v: Option<u64>, default: Duration| v.map(Duration::from_millis).unwrap_or(default);
    let limits = Limits {
        icap_header_bytes_max: f.icap_header_bytes_max.unwrap_or(d.icap_header_bytes_max),
        icap_header_count_max: f.icap_header_count_max.unwrap_or(d.icap_header_count_max),
        http_header_bytes_max: f.http_header_bytes_max.unwrap_or(d.http_header_bytes_max),
        preview_bytes_max: f.preview_bytes_max.unwrap_or(d.preview_bytes_max),
        chunk_line_bytes_max: f.chunk_line_bytes_max.unwrap_or(d.chunk_line_bytes_max),
        trailer_bytes_max: f.trailer_bytes_max.unwrap_or(d.trailer_bytes_max),
        connections_per_shard_max: f.connections_per_shard_max.unwrap_or(d.connections_per_shard_max),
        idle_keepalive: ms(f.idle_keepalive_ms, d.idle_keepalive),
        header_read_deadline: ms(f.header_read_deadline_ms, d.header_read_deadline),
        body_inactivity: ms(f.body_inactivity_ms, d.body_inactivity),
        recv_block_bytes: f.recv_block_bytes.unwrap_or(d.recv_block_bytes),
        idle_block_bytes: f.idle_block_bytes.unwrap_or(d.idle_block_bytes),
        holdback_bytes: f.holdback_bytes.unwrap_or(d.holdback_bytes),
        body_segments_max: f.body_segments_max.unwrap_or(d.body_segments_max),
        options_ttl: ms(f.options_ttl_ms, d.options_ttl),
        scan_bytes_max: f.scan_bytes_max.unwrap_or(d.scan_bytes_max),
        scan_time_max: ms(f.scan_time_max_ms, d.scan_time_max),
        yara_whole_bytes_max: f.yara_whole_bytes_max.unwrap_or(d.yara_whole_bytes_max),
        yara_overlap_bytes: f.yara_overlap_bytes.unwrap_or(d.yara_overlap_bytes),
        yara_block_scanners_max: f.yara_block_scanners_max.unwrap_or(d.yara_block_scanners_max),
        yara_matches_per_pattern_max: f.yara_matches_per_pattern_max.unwrap_or(d.yara_matches_per_pattern_max),
        body_partials_max: f.body_partials_max.unwrap_or(d.body_partials_max),
        body_partial_ends_max: f.body_partial_ends_max.unwrap_or(d.body_partial_ends_max),
        threat_labels_max: f.threat_labels_max.unwrap_or(d.threat_labels_max),
        access_log_flush_bytes: f.access_log_flush_bytes.unwrap_or(d.access_log_flush_bytes),
        access_log_queue_buffers: f.access_log_queue_buffers.unwrap_or(d.access_log_queue_buffers),
        scrape_request_bytes_max: f.scrape_request_bytes_max.unwrap_or(d.scrape_request_bytes_max),
        scrape_deadline: ms(f.scrape_deadline_ms, d.scrape_deadline),
        idle_evict_after: ms(f.idle_evict_after_ms, d.idle_evict_after),
        balance_accept_slack_connections: f
            .balance_accept_slack_connections
            .unwrap_or(d.balance_accept_slack_connections),
        balance_move_margin_permille: f.balance_move_margin_permille.unwrap_or(d.balance_move_margin_permille),
        balance_move_cooldown: ms(f.balance_move_cooldown_ms, d.balance_move_cooldown),
        balance_window: ms(f.balance_window_ms, d.balance_window),
        decoded_bytes_max: f.decoded_bytes_max.unwrap_or(d.decoded_bytes_max),
        decode_ratio_max: f.decode_ratio_max.unwrap_or(d.decode_ratio_max),
        decode_ratio_floor_bytes: f.decode_ratio_floor_bytes.unwrap_or(d.decode_ratio_floor_bytes),
        encodings_max: f.encodings_max.unwrap_or(d.encodings_max),
        zstd_window_bytes_max: f.zstd_window_bytes_max.unwrap_or(d.zstd_window_bytes_max),
        decode_buffer_bytes: f.decode_buffer_bytes.unwrap_or(d.decode_buffer_bytes),
        conn_retained_bytes_max: f.conn_retained_bytes_max.unwrap_or(d.conn_retained_bytes_max),
        shard_memory_bytes_max: f.shard_memory_bytes_max.unwrap_or(d.shard_memory_bytes_max),
        transfer_rate_min_bytes_per_sec: f.transfer_rate_min_bytes_per_sec.unwrap_or(d.transfer_rate_min_bytes_per_sec),
        transfer_rate_grace: ms(f.transfer_rate_grace_ms, d.transfer_rate_grace),
        scan_turn_bytes: f.scan_turn_bytes.unwrap_or(d.scan_turn_bytes),
        container_depth_max: f.container_depth_max.unwrap_or(d.container_depth_max),
        container_members_max: f.container_members_max.unwrap_or(d.container_members_max),
        member_bytes_max: f.member_bytes_max.unwrap_or(d.member_bytes_max),
        extracted_bytes_max: f.extracted_bytes_max.unwrap_or(d.extracted_bytes_max),
        extract_ratio_max: f.extract_ratio_max.unwrap_or(d.extract_ratio_max),
        extract_ratio_floor_bytes: f.extract_ratio_floor_bytes.unwrap_or(d.extract_ratio_floor_bytes),
        container_buffer_bytes_max: f.container_buffer_bytes_max.unwrap_or(d.container_buffer_bytes_max),
        lzma_memory_bytes_max: f.lzma_memory_bytes_max.unwrap_or(d.lzma_memory_bytes_max),
        strict_scan_bytes_max: f.strict_scan_bytes_max.unwrap_or(d.strict_scan_bytes_max),
        update_bundle_bytes_max: f.update_bundle_bytes_max.unwrap_or(d.update_bundle_bytes_max),
        update_unpacked_bytes_max: f.update_unpacked_bytes_max.unwrap_or(d.update_unpacked_bytes_max),
        update_files_max: f.update_files_max.unwrap_or(d.update_files_max),
        update_fetch_deadline: ms(f.update_fetch_deadline_ms, d.update_fetch_deadline),
        tls_handshake: ms(f.tls_handshake_ms, d.tls_handshake),
    };
    limits.validate().map_err(|e| format!("invalid limits: {e}"))?;
    Ok(limits)
}

/// Compiles `[[policy.rules]]` in file order (first match wins).
fn policy_table(rules: Vec<FileRule>) -> Result<PolicyTable, String> {
    let mut table = PolicyTable::default();
    for (i, r) in rules.into_iter().enumerate() {
        let n = i + 1;
        let policy = PolicyKind::parse(&r.policy)
            .ok_or(format!("policy.rules #{n}: unknown policy '{}' (default, skip, strict)", r.policy))?;
        if r.networks.is_empty() && r.users.is_empty() && r.groups.is_empty() {
            return Err(format!("policy.rules #{n}: names no networks, users or groups"));
        }
        let networks = NetSet::parse(&r.networks).map_err(|e| format!("policy.rules #{n}: {e}"))?;
        let names = |v: Vec<String>| v.into_iter().map(|u| u.into_bytes().into_boxed_slice()).collect();
        table.rules.push(PolicyRule { networks, users: names(r.users), groups: names(r.groups), policy });
    }
    Ok(table)
}

fn parse_count(text: &str, name: &str) -> Result<usize, String> {
    text.parse().map_err(|_| format!("{name}: '{text}' is not a number"))
}

/// Parses a CPU list like `0-3,6,8-9`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let bad = || format!("invalid CPU list '{text}' (want e.g. 0-3,6)");
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
            None => {
                let c: usize = part.parse().map_err(|_| bad())?;
                (c, c)
            }
        };
        if a > b || b >= 4096 {
            return Err(bad());
        }
        for c in a..=b {
            if !cpus.contains(&c) {
                cpus.push(c);
            }
        }
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&args, &[0, 1, 2, 3])? {
            Parsed::Run(c) => Ok(*c),
            _ => Err("not a run".into()),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:1344");
        assert_eq!(c.cpus, [0, 1, 2, 3]);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.metrics, None);
        assert_eq!(c.access_log, LogDest::Stderr);
        assert_eq!(c.access_log_format, LogFormat::Icap);
    }

    #[test]
    fn observability_flags() {
        let c =
            run(&["--metrics", "127.0.0.1:9344", "--access-log", "/tmp/a.log", "--access-log-format=json"]).unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9344".parse().unwrap()));
        assert_eq!(c.access_log, LogDest::File("/tmp/a.log".into()));
        assert_eq!(c.access_log_format, LogFormat::Json);
        assert_eq!(run(&["--access-log", "off"]).unwrap().access_log, LogDest::Off);
        assert_eq!(run(&["--metrics", "off"]).unwrap().metrics, None);
        assert!(run(&["--metrics", "9344"]).unwrap_err().contains("metrics address"));
        assert!(run(&["--access-log-format", "xml"]).unwrap_err().contains("xml"));
        assert!(run(&["--listen", "127.0.0.1:9000", "--metrics", "127.0.0.1:9000"]).is_err());
        assert_eq!(run(&["--agent", "127.0.0.1:1345"]).unwrap().agent, Some("127.0.0.1:1345".parse().unwrap()));
        assert_eq!(run(&[]).unwrap().agent, None);
        assert!(run(&["--agent", "1345"]).unwrap_err().contains("agent address"));
        assert!(run(&["--listen", "127.0.0.1:9000", "--agent", "127.0.0.1:9000"]).is_err());
    }

    #[test]
    fn tls_flags_and_keys() {
        assert_eq!(run(&[]).unwrap().tls, TlsConfig::default());
        let c = run(&[
            "--tls-listen",
            "0.0.0.0:11344",
            "--tls-listen=127.0.0.1:11345",
            "--tls-cert",
            "/c.pem",
            "--tls-key",
            "/k.pem",
            "--tls-client-ca",
            "/ca.pem",
        ])
        .unwrap();
        assert_eq!(c.tls.listen, ["0.0.0.0:11344".parse().unwrap(), "127.0.0.1:11345".parse().unwrap()]);
        assert_eq!(
            (c.tls.cert, c.tls.key, c.tls.client_ca),
            (Some("/c.pem".into()), Some("/k.pem".into()), Some("/ca.pem".into()))
        );
        assert!(run(&["--tls-listen", "0.0.0.0:11344"]).unwrap_err().contains("--tls-cert"));
        assert!(run(&["--tls-cert", "/c.pem", "--tls-key", "/k.pem"]).unwrap_err().contains("--tls-listen"));
        assert!(run(&["--tls-listen", "11344", "--tls-cert", "c", "--tls-key", "k"]).unwrap_err().contains("11344"));
        let same =
            ["--listen", "127.0.0.1:1344", "--tls-listen", "127.0.0.1:1344", "--tls-cert", "c", "--tls-key", "k"];
        assert!(run(&same).unwrap_err().contains("already in use"));

        let dir = std::env::temp_dir().join(format!("icapd-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "tls_listen = [\"0.0.0.0:11344\", \"[::1]:11344\"]\ntls_cert = \"/etc/icapd/cert.pem\"\ntls_key = \"/etc/icapd/key.pem\"\n[limits]\ntls_handshake_ms = 2500\n",
        )
        .unwrap();
        let c = run(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.tls.listen.len(), 2);
        assert_eq!(c.tls.cert, Some("/etc/icapd/cert.pem".into()));
        assert_eq!(c.limits.tls_handshake, Duration::from_millis(2500));
        let c = run(&["--config", path.to_str().unwrap(), "--tls-listen", "127.0.0.1:2"]).unwrap();
        assert_eq!(c.tls.listen, ["127.0.0.1:2".parse().unwrap()], "the command line replaces the file's list");
        std::fs::write(&path, "[limits]\ntls_handshake_ms = 0\n").unwrap();
        assert!(run(&["--config", path.to_str().unwrap()]).unwrap_err().contains("tls_handshake_ms"));
    }

    #[test]
    fn allow_list_policy_table_and_shared_port() {
        let dir = std::env::temp_dir().join(format!("icapd-config-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        let with = |text: &str| {
            std::fs::write(&path, text).unwrap();
            run(&["--config", path.to_str().unwrap()])
        };
        let c = run(&[]).unwrap();
        assert!(!c.allow_shared_port && c.policies.is_empty());
        assert!(c.allow_clients.allows("203.0.113.1".parse().unwrap()), "everyone by default");
        assert!(run(&["--allow-shared-port"]).unwrap().allow_shared_port);
        assert!(with("allow_shared_port = true\n").unwrap().allow_shared_port);
        let c = with("allow_clients = [\"10.0.0.0/8\", \"::1/128\"]\n").unwrap();
        assert!(c.allow_clients.allows("10.2.3.4".parse().unwrap()) && c.allow_clients.allows("::1".parse().unwrap()));
        assert!(!c.allow_clients.allows("127.0.0.1".parse().unwrap()));
        assert!(with("allow_clients = [\"10.0.0.0/40\"]\n").unwrap_err().starts_with("allow_clients:"));
        let c = with(
            "[[policy.rules]]\nnetworks = [\"10.9.0.0/16\"]\npolicy = \"skip\"\n[[policy.rules]]\nusers = [\"alice\"]\ngroups = [\"staff\"]\npolicy = \"strict\"\n",
        )
        .unwrap();
        assert_eq!(c.policies.rules.len(), 2);
        assert_eq!((c.policies.rules[0].policy, c.policies.rules[1].policy), (PolicyKind::Skip, PolicyKind::Strict));
        assert!(c.policies.rules[1].users.contains(&b"alice"[..]) && c.policies.uses_groups());
        let err = with("[[policy.rules]]\nusers = [\"a\"]\npolicy = \"lenient\"\n").unwrap_err();
        assert!(err.contains("#1") && err.contains("lenient"), "{err}");
        assert!(with("[[policy.rules]]\npolicy = \"skip\"\n").unwrap_err().contains("names no networks"));
        assert!(with("[[policy.rules]]\nnetworks = [\"x\"]\npolicy = \"skip\"\n").is_err());
        assert_eq!(with("[limits]\nstrict_scan_bytes_max = 4096\n").unwrap().limits.scan().strict_scan_bytes_max, 4096);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cpus_and_shards() {
        assert_eq!(run(&["--cpus", "1-2"]).unwrap().cpus, [1, 2]);
        assert_eq!(run(&["--shards=2"]).unwrap().cpus, [0, 1]);
        assert!(run(&["--cpus", "7"]).unwrap_err().contains("not in the allowed set"));
        assert!(run(&["--shards", "9"]).is_err());
        assert!(run(&["--shards", "0"]).is_err());
        assert!(run(&["--cpus", "3-1"]).is_err());
        assert_eq!(parse_cpu_list("0-2,1,5").unwrap(), [0, 1, 2, 5]);
    }

    #[test]
    fn file_and_errors() {
        let dir = std::env::temp_dir().join(format!("icapd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:2000\"\n[limits]\nholdback_bytes = 4096\nidle_keepalive_ms = 5000\n",
        )
        .unwrap();
        let c = run(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.listen.port(), 2000);
        assert_eq!(c.limits.holdback_bytes, 4096);
        assert_eq!(c.limits.idle_keepalive, Duration::from_secs(5));
        let c = run(&["--config", path.to_str().unwrap(), "--listen", "127.0.0.1:3000"]).unwrap();
        assert_eq!(c.listen.port(), 3000, "the command line wins");
        std::fs::write(&path, "[limits]\nbogus = 1\n").unwrap();
        let err = run(&["--config", path.to_str().unwrap()]).unwrap_err();
        assert!(err.contains("bogus") && !err.contains('\n'), "{err}");
        std::fs::write(&path, "[limits]\nrecv_block_bytes = 1024\n").unwrap();
        assert!(run(&["--config", path.to_str().unwrap()]).unwrap_err().contains("recv_block_bytes"));
        std::fs::write(
            &path,
            "[limits]\ndecoded_bytes_max = 1000000\ndecode_ratio_max = 50\ndecode_ratio_floor_bytes = 4096\nencodings_max = 2\nzstd_window_bytes_max = 1048576\ndecode_buffer_bytes = 8192\n",
        )
        .unwrap();
        let d = run(&["--config", path.to_str().unwrap()]).unwrap().limits.scan().decode;
        assert_eq!(
            (d.decoded_bytes_max, d.decode_ratio_max, d.decode_ratio_floor_bytes, d.encodings_max),
            (1_000_000, 50, 4096, 2)
        );
        assert_eq!((d.zstd_window_bytes_max, d.decode_buffer_bytes), (1 << 20, 8192));
        std::fs::write(&path, "[limits]\nzstd_window_bytes_max = 100\n").unwrap();
        assert!(run(&["--config", path.to_str().unwrap()]).unwrap_err().contains("zstd_window_bytes_max"));
        std::fs::write(&path, "[limits]\ndecode_ratio_max = 0\n").unwrap();
        assert!(run(&["--config", path.to_str().unwrap()]).unwrap_err().contains("decode_ratio_max"));
        assert!(run(&["--listen", "nope"]).is_err());
        assert!(run(&["--frobnicate"]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
