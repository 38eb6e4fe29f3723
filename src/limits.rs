//! Every bound the server enforces, in one place.
//!
//! Each default is a named constant with its unit last, and [`Limits`] carries the values in
//! force (the defaults unless the configuration overrides them). Exceeding a bound is always a
//! typed error ([`crate::proto::error::ProtoError`]) that maps to exactly one ICAP status; the
//! protocol code never clamps silently.
//!
//! The defaults are chosen for a busy proxy: thousands of keep-alive connections per shard,
//! header sizes that accept what Squid itself accepts, and deadlines long enough for a slow
//! origin server that Squid is still waiting on.

use std::time::Duration;

/// Largest ICAP request head (request line + headers + blank line). Squid's heads are well
/// under 2 KiB; 16 KiB leaves room for long `X-` headers without inviting memory abuse.
pub const ICAP_HEADER_BYTES_MAX: usize = 16 * 1024;
/// Largest number of ICAP header lines in one request.
pub const ICAP_HEADER_COUNT_MAX: usize = 64;
/// Largest encapsulated HTTP header block (req-hdr plus res-hdr). Squid's own
/// `reply_header_max_size` defaults to 64 KB, so we accept as much.
pub const HTTP_HEADER_BYTES_MAX: usize = 64 * 1024;
/// Preview size advertised in OPTIONS; a request asking for more is rejected (400).
pub const PREVIEW_BYTES_MAX: usize = 1024;
/// Longest chunk-size line including extensions and CRLF. It bounds chunk extensions too
/// (Squid CVE-2024-25111 came from unbounded extension lists).
pub const CHUNK_LINE_BYTES_MAX: usize = 256;
/// Largest trailer section after the last chunk.
pub const TRAILER_BYTES_MAX: usize = 4 * 1024;
/// Open connections one shard serves at once; one more is answered 503 and closed.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 4096;
/// A keep-alive connection with no request in progress is closed after this long.
pub const IDLE_KEEPALIVE: Duration = Duration::from_secs(120);
/// A request head (ICAP head plus encapsulated headers) must arrive completely within this.
pub const HEADER_READ_DEADLINE: Duration = Duration::from_secs(30);
/// Longest silence allowed inside a body, or while the client is not reading our answer.
/// Squid waits on slow origin servers, so this is generous (c-icap uses 300 s too).
pub const BODY_INACTIVITY: Duration = Duration::from_secs(300);
/// Size of the receive blocks bodies are read into and retained in (zero copy).
pub const RECV_BLOCK_BYTES: usize = 128 * 1024;
/// Size of the small block an idle keep-alive connection waits with, so that thousands of idle
/// connections cost kilobytes each rather than a full receive block.
pub const IDLE_BLOCK_BYTES: usize = 4 * 1024;
/// The newest body bytes kept back from the client while an echo streams (no `Allow: 204`),
/// so that a threat found at the very end still stops the object from arriving whole. It is
/// also all that is retained before the 200 starts: Squid stalls when a server waits.
pub const HOLDBACK_BYTES: usize = 32 * 1024;
/// Retained body segments (one per received chunk piece) before the echo is committed; bounds
/// bookkeeping memory when a client sends tiny chunks.
pub const BODY_SEGMENTS_MAX: usize = 16 * 1024;
/// Most body bytes scanned per object; past it the over-limit policy decides (ClamAV's
/// StreamMaxLength is 100M too, but ClamAV then passes the object).
pub const SCAN_BYTES_MAX: u64 = 100 * 1024 * 1024;
/// Per-object scan time budget (ClamAV's MaxScanTime is 120 s; a proxy user waits on this).
pub const SCAN_TIME_MAX: Duration = Duration::from_secs(30);
/// Largest object kept in memory for whole-object YARA rules (modules, filesize, uintXX).
pub const YARA_WHOLE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest overlap a streamed YARA rule may need. Consecutive blocks given to the YARA block
/// scanner share the longest match any streamed rule can have (computed from the rules when
/// the generation is built, usually tens of bytes), so no match is split by a block edge; a
/// rule whose longest match exceeds this is evaluated on the whole object instead.
pub const YARA_OVERLAP_BYTES: usize = 16 * 1024;
/// YARA block scanners a shard may build (each reserves virtual memory for a WASM instance).
pub const YARA_BLOCK_SCANNERS_MAX: usize = 256;
/// Matches yara-x records per pattern and object (its own default): each costs a few tens of
/// bytes, so this bounds the memory one pattern can take on a pathological object (a file of
/// zeros against a pattern of zeros). A pattern that reaches it drops later matches, which can
/// change a rule that counts matches or tests their offsets (`#a`, `@a[i]`, `$a in (...)`);
/// when that happens to such a rule the object goes through `policy.over_limit` as
/// `Heuristics.Limits.Exceeded.MaxYaraMatches` (a rule that only asks whether `$a` occurs
/// cannot change).
pub const YARA_MATCHES_PER_PATTERN_MAX: usize = 1_000_000;
/// Partial multi-segment matches held per object, by the `.ndb` matcher and, separately, by the
/// `.ldb` subsignature matcher (one per signature segment seen whose signature is not complete
/// yet). None is ever evicted to make room, since evicting lets an
/// attacker flush the real one; past the bound the over-limit policy decides
/// (`Heuristics.Limits.Exceeded.MaxPartialMatches`).
pub const BODY_PARTIALS_MAX: usize = 16 * 1024;
/// Runs of segment ends held for bounded `{n-m}` gaps per object, over all partial matches
/// (16 bytes each; for `.ldb` also the starts and matches kept for end-relative and PE offsets). Each partial match keeps only the ends within its gap, so this is reached
/// only by input that repeats many segments; past it the over-limit policy decides, as above.
pub const BODY_PARTIAL_ENDS_MAX: usize = 64 * 1024;
/// Most decoded bytes per Content-Encoded object (the same as `SCAN_BYTES_MAX`: what is decoded
/// is what is scanned). Past it the over-limit policy decides.
pub const DECODED_BYTES_MAX: u64 = 100 * 1024 * 1024;
/// Most decoded bytes per received byte once past `DECODE_RATIO_FLOOR_BYTES`. Text compresses
/// about 4-10:1 and repetitive JSON or CSV rarely past 50:1; deflate's limit is about 1032:1,
/// so a gzip bomb shows up as a ratio long before the size cap.
pub const DECODE_RATIO_MAX: u64 = 100;
/// Decoded bytes below which the ratio is not judged, so a small page that compresses very
/// well (a page of blanks, a sparse file header) is not taken for a bomb.
pub const DECODE_RATIO_FLOOR_BYTES: u64 = 1024 * 1024;
/// Most stacked codings (`Content-Encoding: gzip, br` is two); real servers send one.
pub const ENCODINGS_MAX: usize = 3;
/// Largest zstd window accepted (a power of two is used as is, anything else rounds down).
/// RFC 8878 asks HTTP decoders for 8 MiB; larger frames are refused as over the limit.
pub const ZSTD_WINDOW_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Output buffer of each decoding stage, allocated once per connection; also the step at
/// which the decode ratio is checked.
pub const DECODE_BUFFER_BYTES: usize = 32 * 1024;
/// Container nesting followed below the top-level object (a member of a member of ... is at
/// depth 2, ...). ClamAV's MaxRecursion is 17; deeper members are `MaxRecursion`.
pub const CONTAINER_DEPTH_MAX: u32 = 16;
/// Members extracted per top-level object, at every depth (ClamAV's MaxFiles).
pub const CONTAINER_MEMBERS_MAX: u32 = 10_000;
/// Bytes extracted per member (ClamAV's MaxFileSize): past it the member is `MaxFileSize`.
pub const MEMBER_BYTES_MAX: u64 = 100 * 1024 * 1024;
/// Bytes extracted per top-level object, at every depth (ClamAV's MaxScanSize).
pub const EXTRACTED_BYTES_MAX: u64 = 400 * 1024 * 1024;
/// Extracted bytes per byte of the top-level object, once past `EXTRACT_RATIO_FLOOR_BYTES`:
/// a zip bomb shows up as a ratio long before the size caps. Nested deflate reaches about
/// 1000:1 per level, real archives rarely pass 20:1.
pub const EXTRACT_RATIO_MAX: u64 = 200;
/// Extracted bytes below which the ratio is not judged (a small archive of blanks is fine).
pub const EXTRACT_RATIO_FLOOR_BYTES: u64 = 8 * 1024 * 1024;
/// Bytes buffered, over a whole object's tree, for the formats that need random access (OLE2,
/// CAB, 7z, PDF, ...): past it the object is `MaxBufferSize`.
pub const CONTAINER_BUFFER_BYTES_MAX: u64 = 32 * 1024 * 1024;
/// Memory the LZMA decoders (`.xz`, `.lzma`, zip method 14, NSIS) may use per stream; a stream
/// whose dictionary needs more is refused as broken. `xz -9` needs 65 MiB. A zip PPMd entry's
/// model is held to the same bound (7-Zip's and WinZip's usual ones are 16-64 MiB), so that
/// one bound covers every decoder whose memory the archive chooses.
pub const LZMA_MEMORY_BYTES_MAX: u64 = 80 * 1024 * 1024;
/// `Options-TTL` advertised in OPTIONS.
pub const OPTIONS_TTL: Duration = Duration::from_secs(3600);
/// Distinct threat names a shard counts by name in its metrics; further names are counted as
/// `other`, so a signature set with millions of names cannot blow up a Prometheus server.
pub const THREAT_LABELS_MAX: usize = 256;
/// Access-log bytes a shard buffers before writing them out (it also writes every control
/// tick, 50 ms): one write per many lines instead of one per transaction.
pub const ACCESS_LOG_FLUSH_BYTES: usize = 64 * 1024;
/// Filled access-log buffers queued for the log writer thread. When the writer falls behind
/// (a slow disk), shards drop lines and count them rather than stall their connections.
pub const ACCESS_LOG_QUEUE_BUFFERS: usize = 64;
/// Largest HTTP request head accepted on the metrics listener.
pub const SCRAPE_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// How long the metrics listener waits for a scraper's request, and for the shards' counters.
pub const SCRAPE_DEADLINE: Duration = Duration::from_secs(2);

/// At the connection cap, a connection idle (between requests) for at least this long is
/// closed to make room for a new one instead of answering the newcomer 503. Shorter idle
/// periods are a busy client's round trip between requests, and are left alone.
pub const IDLE_EVICT_AFTER: Duration = Duration::from_secs(1);

/// Receive-block bytes one connection may hold: the block being read into plus the blocks its
/// hold-back window and unwritten output lie in. Whatever the client does (`Allow: 204`, early
/// answers, pipelining, never reading our answers), a connection at this bound is not read from
/// until its output drains (TCP back-pressure), and the hold-back window is echoed early rather
/// than spread over more blocks. Must hold at least three receive blocks.
pub const CONN_RETAINED_BYTES_MAX: usize = 512 * 1024;
/// Memory budget of one shard: reservations of connections in a transaction
/// (`conn_retained_bytes_max` each), whole-object copies, decoder buffers and container buffers.
/// When it is spent, a connection that needs its reservation waits (is not read from) and a
/// buffer that cannot be charged is refused with a counted reason; nothing is allocated past it.
pub const SHARD_MEMORY_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Slowest average body transfer accepted, in bytes per second from the start of the body,
/// judged once `transfer_rate_grace` has passed. 0 turns it off (the default): Squid forwards
/// a body as fast as the origin server sends it, and a slow origin is not an attack. When on, a
/// body slower than this is treated like one that fell silent (408, or a cut-off echo).
pub const TRANSFER_RATE_MIN_BYTES_PER_SEC: u64 = 0;
/// How long a body may take before `transfer_rate_min_bytes_per_sec` is judged.
pub const TRANSFER_RATE_GRACE: Duration = Duration::from_secs(30);

/// Body bytes one connection processes per scheduler turn before the shard runs something
/// else: big objects are scanned in turns of this size (in the shard's bulk task queue), so a
/// small transaction, a timer or the control task never waits behind a whole object.
pub const SCAN_TURN_BYTES: usize = 64 * 1024;
/// A shard keeps a connection it accepted while it holds no more connections than the shard
/// with the fewest plus this many; otherwise it hands the connection to that shard (see
/// [`crate::balance`]). 0 spreads every connection evenly; `connections_per_shard_max` or more
/// turns the hand-off off (the kernel's SO_REUSEPORT hash alone decides).
pub const BALANCE_ACCEPT_SLACK_CONNECTIONS: usize = 0;

/// A keep-alive connection moves off its shard at a transaction boundary only when that shard's
/// busy fraction exceeds the least busy shard's by more than this (thousandths of the window).
/// Below it the difference is noise, and a move would cost more than it saves. 1000 or more
/// turns moves off.
pub const BALANCE_MOVE_MARGIN_PERMILLE: usize = 200;

/// After a shard moves a connection away it waits this long before the next move, and a
/// connection that arrived on a shard (accepted, handed over or moved) stays at least this
/// long: together with the half-the-gap rule this keeps connections from bouncing.
pub const BALANCE_MOVE_COOLDOWN: Duration = Duration::from_secs(2);

/// The window over which a shard measures its busy fraction for move decisions. Short enough
/// to follow a connection whose rate changes, long enough that one large scan is not a trend.
pub const BALANCE_WINDOW: Duration = Duration::from_millis(250);

/// Most bytes scanned per object under the `strict` policy (see [`crate::access`]): a tenth of
/// `SCAN_BYTES_MAX`, for clients whose downloads should be small and fully judged.
pub const STRICT_SCAN_BYTES_MAX: u64 = 10 * 1024 * 1024;

/// Longest identity value (`X-Client-Username`, `X-Authenticated-User` once decoded, or the
/// whole `X-Authenticated-Groups` list) that is used; a longer one counts as absent. It sizes
/// a fixed buffer in every transaction outcome, so it is fixed at build time, not configured.
pub const IDENTITY_VALUE_BYTES_MAX: usize = 256;
/// Longest requested service name kept for the access log (a longer one is cut there).
/// Fixed at build time for the same reason.
pub const REQUESTED_SERVICE_LOG_BYTES: usize = 64;
/// Largest signature bundle `icapd-update` downloads (the compressed `.tar.gz`); a larger or
/// longer answer is refused before anything is unpacked. The bundled sets are kilobytes and a
/// full ClamAV main database is about 200 MB, so this leaves room without inviting a disk fill.
pub const UPDATE_BUNDLE_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Most bytes a bundle may unpack to, all members together (a gzip bomb stops here).
pub const UPDATE_UNPACKED_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;
/// Most members in a bundle.
pub const UPDATE_FILES_MAX: usize = 1024;
/// How long `icapd-update` waits for the bundle server: connecting, and between bytes.
pub const UPDATE_FETCH_DEADLINE: Duration = Duration::from_secs(60);
/// A TLS connection must finish its handshake within this, whatever the peer trickles: until
/// then it holds a connection slot without having sent a request. Squid and c-icap-client
/// handshake in milliseconds on a LAN; 10 s leaves room for a loaded client.
pub const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// The bounds in force for one server. Built from the defaults above, overridden by config,
/// and checked by [`Limits::validate`] before any shard starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub icap_header_bytes_max: usize,
    pub icap_header_count_max: usize,
    pub http_header_bytes_max: usize,
    pub preview_bytes_max: usize,
    pub chunk_line_bytes_max: usize,
    pub trailer_bytes_max: usize,
    pub connections_per_shard_max: usize,
    pub idle_keepalive: Duration,
    pub header_read_deadline: Duration,
    pub body_inactivity: Duration,
    pub recv_block_bytes: usize,
    pub idle_block_bytes: usize,
    pub holdback_bytes: usize,
    pub body_segments_max: usize,
    pub options_ttl: Duration,
    pub scan_bytes_max: u64,
    pub scan_time_max: Duration,
    pub yara_whole_bytes_max: usize,
    pub yara_overlap_bytes: usize,
    pub yara_block_scanners_max: usize,
    pub yara_matches_per_pattern_max: usize,
    pub body_partials_max: usize,
    pub body_partial_ends_max: usize,
    pub threat_labels_max: usize,
    pub access_log_flush_bytes: usize,
    pub access_log_queue_buffers: usize,
    pub scrape_request_bytes_max: usize,
    pub scrape_deadline: Duration,
    pub idle_evict_after: Duration,
    pub balance_accept_slack_connections: usize,
    pub balance_move_margin_permille: usize,
    pub balance_move_cooldown: Duration,
    pub balance_window: Duration,
    pub decoded_bytes_max: u64,
    pub decode_ratio_max: u64,
    pub decode_ratio_floor_bytes: u64,
    pub encodings_max: usize,
    pub zstd_window_bytes_max: usize,
    pub decode_buffer_bytes: usize,
    pub conn_retained_bytes_max: usize,
    pub shard_memory_bytes_max: usize,
    pub transfer_rate_min_bytes_per_sec: u64,
    pub transfer_rate_grace: Duration,
    pub scan_turn_bytes: usize,
    pub container_depth_max: u32,
    pub container_members_max: u32,
    pub member_bytes_max: u64,
    pub extracted_bytes_max: u64,
    pub extract_ratio_max: u64,
    pub extract_ratio_floor_bytes: u64,
    pub container_buffer_bytes_max: u64,
    pub lzma_memory_bytes_max: u64,
    pub strict_scan_bytes_max: u64,
    pub update_bundle_bytes_max: u64,
    pub update_unpacked_bytes_max: u64,
    pub update_files_max: usize,
    pub update_fetch_deadline: Duration,
    pub tls_handshake: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            icap_header_bytes_max: ICAP_HEADER_BYTES_MAX,
            icap_header_count_max: ICAP_HEADER_COUNT_MAX,
            http_header_bytes_max: HTTP_HEADER_BYTES_MAX,
            preview_bytes_max: PREVIEW_BYTES_MAX,
            chunk_line_bytes_max: CHUNK_LINE_BYTES_MAX,
            trailer_bytes_max: TRAILER_BYTES_MAX,
            connections_per_shard_max: CONNECTIONS_PER_SHARD_MAX,
            idle_keepalive: IDLE_KEEPALIVE,
            header_read_deadline: HEADER_READ_DEADLINE,
            body_inactivity: BODY_INACTIVITY,
            recv_block_bytes: RECV_BLOCK_BYTES,
            idle_block_bytes: IDLE_BLOCK_BYTES,
            holdback_bytes: HOLDBACK_BYTES,
            body_segments_max: BODY_SEGMENTS_MAX,
            options_ttl: OPTIONS_TTL,
            scan_bytes_max: SCAN_BYTES_MAX,
            scan_time_max: SCAN_TIME_MAX,
            yara_whole_bytes_max: YARA_WHOLE_BYTES_MAX,
            yara_overlap_bytes: YARA_OVERLAP_BYTES,
            yara_block_scanners_max: YARA_BLOCK_SCANNERS_MAX,
            yara_matches_per_pattern_max: YARA_MATCHES_PER_PATTERN_MAX,
            body_partials_max: BODY_PARTIALS_MAX,
            body_partial_ends_max: BODY_PARTIAL_ENDS_MAX,
            threat_labels_max: THREAT_LABELS_MAX,
            access_log_flush_bytes: ACCESS_LOG_FLUSH_BYTES,
            access_log_queue_buffers: ACCESS_LOG_QUEUE_BUFFERS,
            scrape_request_bytes_max: SCRAPE_REQUEST_BYTES_MAX,
            scrape_deadline: SCRAPE_DEADLINE,
            idle_evict_after: IDLE_EVICT_AFTER,
            balance_accept_slack_connections: BALANCE_ACCEPT_SLACK_CONNECTIONS,
            balance_move_margin_permille: BALANCE_MOVE_MARGIN_PERMILLE,
            balance_move_cooldown: BALANCE_MOVE_COOLDOWN,
            balance_window: BALANCE_WINDOW,
            decoded_bytes_max: DECODED_BYTES_MAX,
            decode_ratio_max: DECODE_RATIO_MAX,
            decode_ratio_floor_bytes: DECODE_RATIO_FLOOR_BYTES,
            encodings_max: ENCODINGS_MAX,
            zstd_window_bytes_max: ZSTD_WINDOW_BYTES_MAX,
            decode_buffer_bytes: DECODE_BUFFER_BYTES,
            conn_retained_bytes_max: CONN_RETAINED_BYTES_MAX,
            shard_memory_bytes_max: SHARD_MEMORY_BYTES_MAX,
            transfer_rate_min_bytes_per_sec: TRANSFER_RATE_MIN_BYTES_PER_SEC,
            transfer_rate_grace: TRANSFER_RATE_GRACE,
            scan_turn_bytes: SCAN_TURN_BYTES,
            container_depth_max: CONTAINER_DEPTH_MAX,
            container_members_max: CONTAINER_MEMBERS_MAX,
            member_bytes_max: MEMBER_BYTES_MAX,
            extracted_bytes_max: EXTRACTED_BYTES_MAX,
            extract_ratio_max: EXTRACT_RATIO_MAX,
            extract_ratio_floor_bytes: EXTRACT_RATIO_FLOOR_BYTES,
            container_buffer_bytes_max: CONTAINER_BUFFER_BYTES_MAX,
            lzma_memory_bytes_max: LZMA_MEMORY_BYTES_MAX,
            strict_scan_bytes_max: STRICT_SCAN_BYTES_MAX,
            update_bundle_bytes_max: UPDATE_BUNDLE_BYTES_MAX,
            update_unpacked_bytes_max: UPDATE_UNPACKED_BYTES_MAX,
            update_files_max: UPDATE_FILES_MAX,
            update_fetch_deadline: UPDATE_FETCH_DEADLINE,
            tls_handshake: TLS_HANDSHAKE,
        }
    }
}

// The defaults must satisfy the same relations `validate` checks on overrides.
const _: () = assert!(ICAP_HEADER_BYTES_MAX + HTTP_HEADER_BYTES_MAX <= RECV_BLOCK_BYTES);
const _: () = assert!(IDLE_BLOCK_BYTES <= RECV_BLOCK_BYTES);
const _: () = assert!(ICAP_HEADER_COUNT_MAX <= u16::MAX as usize);
const _: () = assert!(CONN_RETAINED_BYTES_MAX >= 3 * RECV_BLOCK_BYTES);
const _: () = assert!(SHARD_MEMORY_BYTES_MAX >= CONN_RETAINED_BYTES_MAX);

impl Limits {
    /// The scanning engine's share of the limits.
    pub fn scan(&self) -> crate::scan::ScanLimits {
        crate::scan::ScanLimits {
            scan_bytes_max: self.scan_bytes_max,
            scan_time_max: self.scan_time_max,
            yara_whole_bytes_max: self.yara_whole_bytes_max,
            yara_overlap_bytes: self.yara_overlap_bytes,
            yara_block_scanners_max: self.yara_block_scanners_max,
            yara_matches_per_pattern_max: self.yara_matches_per_pattern_max,
            body_partials_max: self.body_partials_max,
            body_partial_ends_max: self.body_partial_ends_max,
            preview_bytes: self.preview_bytes_max,
            strict_scan_bytes_max: self.strict_scan_bytes_max,
            decode: crate::scan::decode::DecodeLimits {
                decoded_bytes_max: self.decoded_bytes_max,
                decode_ratio_max: self.decode_ratio_max,
                decode_ratio_floor_bytes: self.decode_ratio_floor_bytes,
                encodings_max: self.encodings_max,
                zstd_window_bytes_max: self.zstd_window_bytes_max,
                decode_buffer_bytes: self.decode_buffer_bytes,
            },
            unpack: crate::scan::unpack::UnpackLimits {
                recursion_max: self.container_depth_max,
                files_max: self.container_members_max,
                file_bytes_max: self.member_bytes_max,
                scan_bytes_max: self.extracted_bytes_max,
                ratio_max: self.extract_ratio_max,
                ratio_floor_bytes: self.extract_ratio_floor_bytes,
                buffer_bytes_max: self.container_buffer_bytes_max,
                lzma_memory_bytes_max: self.lzma_memory_bytes_max,
            },
        }
    }

    /// Checks the relations the protocol code relies on. A message head (ICAP head plus the
    /// encapsulated headers) is parsed in one receive block, so both header bounds together
    /// must fit in one.
    pub fn validate(&self) -> Result<(), String> {
        let nonzero = [
            ("icap_header_bytes_max", self.icap_header_bytes_max),
            ("icap_header_count_max", self.icap_header_count_max),
            ("http_header_bytes_max", self.http_header_bytes_max),
            ("chunk_line_bytes_max", self.chunk_line_bytes_max),
            ("connections_per_shard_max", self.connections_per_shard_max),
            ("recv_block_bytes", self.recv_block_bytes),
            ("idle_block_bytes", self.idle_block_bytes),
            ("body_segments_max", self.body_segments_max),
            ("access_log_flush_bytes", self.access_log_flush_bytes),
            ("access_log_queue_buffers", self.access_log_queue_buffers),
            ("scrape_request_bytes_max", self.scrape_request_bytes_max),
            ("scan_turn_bytes", self.scan_turn_bytes),
            ("body_partials_max", self.body_partials_max),
            ("body_partial_ends_max", self.body_partial_ends_max),
            ("update_files_max", self.update_files_max),
        ];
        for (name, value) in nonzero {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.chunk_line_bytes_max < 8 {
            return Err("chunk_line_bytes_max must be at least 8".into());
        }
        if self.icap_header_bytes_max + self.http_header_bytes_max > self.recv_block_bytes {
            return Err(format!(
                "icap_header_bytes_max + http_header_bytes_max ({}) must not exceed recv_block_bytes ({})",
                self.icap_header_bytes_max + self.http_header_bytes_max,
                self.recv_block_bytes
            ));
        }
        if self.idle_block_bytes > self.recv_block_bytes {
            return Err("idle_block_bytes must not exceed recv_block_bytes".into());
        }
        if self.icap_header_count_max > u16::MAX as usize {
            return Err("icap_header_count_max must be at most 65535".into());
        }
        if self.yara_matches_per_pattern_max == 0 {
            return Err("yara_matches_per_pattern_max must be greater than 0".into());
        }
        if self.yara_overlap_bytes == 0 || self.yara_overlap_bytes > 64 * 1024 {
            return Err("yara_overlap_bytes must be between 1 and 65536".into());
        }
        if self.scrape_deadline.is_zero() {
            return Err("scrape_deadline must be greater than 0".into());
        }
        if self.scan_time_max.is_zero() {
            return Err("scan_time_max must be greater than 0".into());
        }
        if self.recv_block_bytes > u32::MAX as usize / 2 {
            return Err("recv_block_bytes is too large".into());
        }
        if self.decode_ratio_max == 0 {
            return Err("decode_ratio_max must be greater than 0".into());
        }
        if self.encodings_max > 16 {
            return Err("encodings_max must be at most 16".into());
        }
        if !(1024..=1 << 30).contains(&self.zstd_window_bytes_max) {
            return Err("zstd_window_bytes_max must be between 1024 and 1073741824".into());
        }
        if self.conn_retained_bytes_max < 3 * self.recv_block_bytes {
            return Err("conn_retained_bytes_max must hold at least three receive blocks (3 * recv_block_bytes)".into());
        }
        if self.shard_memory_bytes_max < self.conn_retained_bytes_max {
            return Err("shard_memory_bytes_max must be at least conn_retained_bytes_max".into());
        }
        if !(1024..=1 << 20).contains(&self.decode_buffer_bytes) {
            return Err("decode_buffer_bytes must be between 1024 and 1048576".into());
        }
        if !(1..=64).contains(&self.container_depth_max) {
            return Err("container_depth_max must be between 1 and 64".into());
        }
        if self.extract_ratio_max == 0 {
            return Err("extract_ratio_max must be greater than 0".into());
        }
        if self.update_bundle_bytes_max == 0 || self.update_unpacked_bytes_max == 0 {
            return Err("update_bundle_bytes_max and update_unpacked_bytes_max must be greater than 0".into());
        }
        if self.update_fetch_deadline.is_zero() {
            return Err("update_fetch_deadline must be greater than 0".into());
        }
        if self.tls_handshake.is_zero() {
            return Err("tls_handshake_ms must be greater than 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert_eq!(Limits::default().validate(), Ok(()));
    }

    #[test]
    fn header_bounds_must_fit_a_block() {
        let limits = Limits { recv_block_bytes: 32 * 1024, ..Limits::default() };
        assert!(limits.validate().unwrap_err().contains("recv_block_bytes"));
    }

    #[test]
    fn zero_bounds_are_refused() {
        let limits = Limits { icap_header_count_max: 0, ..Limits::default() };
        assert!(limits.validate().is_err());
    }
}
