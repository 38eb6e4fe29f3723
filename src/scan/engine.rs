//! The signature engine as an [`Inspector`]: body signatures, hash signatures, YARA and URL
//! rules over one object, streamed.
//!
//! One [`EngineInspector`] per connection, reused for every transaction on it. At `begin` it
//! picks up the shard's current generation (so a reload takes effect at a request boundary
//! while an object in flight finishes on the generation it started with), checks the URL deny
//! list, and resets its streams. `feed` runs the body matcher, the digests and the YARA block
//! scanner over each slice as it arrives and reports a threat as soon as one is certain, so the
//! server can answer inside a preview or cut a streamed echo short. `finish` settles the hash
//! signatures and the YARA rules, which only conclude at the end of the object.
//!
//! A body with a `Content-Encoding` is decoded on the fly ([`super::decode`]) and every
//! scanner sees the decoded bytes, as the browser will; `scan_bytes_max` still counts the
//! bytes as received, and the decoder's own caps bound what decoding may produce. A decoding
//! fault goes through the over-limit policy like every other limit.

use super::decode::{self, Coding, DecodeChain, Fault};
use super::object::Hit;
use super::policy::{self, OverLimit};
use super::shard_gen::ShardGen;
use super::unpack::{self, Unpacker, WholeStore};
use super::ScanLimits;
use crate::budget::{Charge, ShardBudget, Use};
use crate::inspect::{Inspector, PolicyKind, Progress, Txn, Verdict};
use crate::proto::Method;
use crate::signatures::{urls, Generation};
use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Per-shard scanning context: the current generation and the engine's settings.
pub struct ScanCtx {
    current: RefCell<Rc<ShardGen>>,
    pub limits: ScanLimits,
    pub policy: super::ScanPolicy,
    /// The shard's memory budget: whole-object copies and decoders are charged to it.
    pub budget: Rc<ShardBudget>,
    /// Where whole-object copies past `yara_whole_bytes_max` go (`None`: not kept; such an
    /// object is `Heuristics.Limits.Exceeded.MaxYaraWholeSize`).
    pub spool_dir: Option<std::path::PathBuf>,
}

impl ScanCtx {
    /// A context with a budget of its own that never refuses (tools and tests), spooling
    /// big objects under the system's temporary directory.
    pub fn new(gen: Arc<Generation>, limits: ScanLimits, policy: super::ScanPolicy) -> Rc<ScanCtx> {
        Self::with_budget(gen, limits, policy, ShardBudget::new(usize::MAX), Some(std::env::temp_dir()))
    }

    /// A context charging its buffers to `budget` (the shard's).
    pub fn with_budget(
        gen: Arc<Generation>,
        limits: ScanLimits,
        policy: super::ScanPolicy,
        budget: Rc<ShardBudget>,
        spool_dir: Option<std::path::PathBuf>,
    ) -> Rc<ScanCtx> {
        let current = RefCell::new(ShardGen::new(gen, limits.yara_matches_per_pattern_max));
        Rc::new(ScanCtx { current, limits, policy, budget, spool_dir })
    }

    /// Switches to a new generation; objects in flight keep the one they started with.
    pub fn install(&self, gen: Arc<Generation>) {
        *self.current.borrow_mut() = ShardGen::new(gen, self.limits.yara_matches_per_pattern_max);
    }

    pub fn current(&self) -> Rc<ShardGen> {
        self.current.borrow().clone()
    }
}

pub struct EngineInspector {
    ctx: Rc<ScanCtx>,
    sg: Rc<ShardGen>,
    /// Every signature on the object and on every member inside it ([`super::unpack`]).
    unpack: Unpacker,
    /// The object's file name, from the last segment of the request URL's path (may be
    /// empty): the first name in a member path (`archive.zip/dir/file.exe`).
    name: String,
    /// The first bytes of the object, for YARA at preview time and the file-magic policy.
    preview: Vec<u8>,
    /// Bytes scanned (decoded, for an encoded body).
    bytes: u64,
    /// Bytes received, checked against `scan_bytes_max`.
    received: u64,
    spent: Duration,
    content_type: Vec<u8>,
    content_length: Option<u64>,
    url: Vec<u8>,
    done: Option<Verdict>,
    /// The limit that decided the current object, whatever the policy made of it.
    limit: Option<&'static str>,
    /// The codings to undo for this object, outermost first (empty: scanned as received).
    codings: Vec<Coding>,
    /// A decoding fault found in the head (too many codings), answered at begin.
    coding_fault: Option<Fault>,
    /// A leading `206` range of an encoded object: it may end in the middle of the stream.
    partial: bool,
    decode: DecodeChain,
    /// What the current object's decoders cost (released when the object ends).
    decode_charge: Option<Charge>,
    /// The operator's policy for this transaction (`skip`, `default`, `strict`).
    policy: PolicyKind,
}

impl EngineInspector {
    pub fn new(ctx: Rc<ScanCtx>) -> Self {
        let sg = ctx.current();
        let l = &ctx.limits;
        let unpack_policy = unpack::Policy { over_limit: ctx.policy.over_limit, encrypted: ctx.policy.encrypted };
        EngineInspector {
            unpack: Unpacker::new(
                &sg,
                l.unpack,
                unpack_policy,
                (l.body_partials_max, l.body_partial_ends_max),
                l.yara_block_scanners_max,
                l.yara_whole_bytes_max,
                WholeStore { budget: ctx.budget.clone(), spool_dir: ctx.spool_dir.clone() },
            ),
            name: String::with_capacity(64),
            preview: Vec::with_capacity(ctx.limits.preview_bytes),
            bytes: 0,
            received: 0,
            spent: Duration::ZERO,
            content_type: Vec::with_capacity(64),
            content_length: None,
            url: Vec::with_capacity(256),
            done: None,
            limit: None,
            codings: Vec::with_capacity(ctx.limits.decode.encodings_max),
            coding_fault: None,
            partial: false,
            decode: DecodeChain::new(ctx.limits.decode),
            decode_charge: None,
            policy: PolicyKind::Default,
            ctx,
            sg,
        }
    }

    fn gen(&self) -> &Generation {
        &self.sg.gen
    }

    fn over_limit(&mut self, threat: &'static str) -> Verdict {
        self.limit = Some(threat);
        match self.over_limit_policy() {
            OverLimit::Block => Verdict::Infected { threat: threat.into() },
            OverLimit::Pass => Verdict::Clean,
        }
    }

    /// The over-limit policy for this transaction: `strict` blocks whatever the setting,
    /// inside containers too.
    fn over_limit_policy(&self) -> OverLimit {
        match self.policy {
            PolicyKind::Strict => OverLimit::Block,
            _ => self.ctx.policy.over_limit,
        }
    }

    fn conclude(&mut self, v: Verdict) -> Progress {
        self.unpack.end();
        self.decode.end();
        self.decode_charge = None;
        self.done = Some(v.clone());
        Progress::Done(v)
    }

    fn read_http_fields(&mut self, txn: &Txn<'_>) {
        self.content_type.clear();
        self.content_length = None;
        self.url.clear();
        self.codings.clear();
        self.coding_fault = None;
        self.partial = false;
        self.name.clear();
        let body_head = if txn.method == Method::Reqmod { txn.req_hdr } else { txn.res_hdr };
        if let Some(head) = body_head {
            if let Err(fault) = decode::plan(head, self.ctx.limits.decode.encodings_max, &mut self.codings) {
                self.coding_fault = Some(fault);
            }
            if txn.method == Method::Respmod && status_code(head) == Some(206) && !self.codings.is_empty() {
                // Only a range from byte 0 can be decoded; a later piece is scanned as received.
                let from_start = header_value(head, b"content-range").is_some_and(range_starts_at_zero);
                self.partial = from_start;
                if !from_start {
                    self.codings.clear();
                }
            }
            if let Some(v) = header_value(head, b"content-type") {
                self.content_type.extend_from_slice(v);
            }
            self.content_length = header_value(head, b"content-length")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse().ok());
        }
        if let Some(req) = txn.req_hdr {
            let line_end = req.iter().position(|&b| b == b'\r').unwrap_or(req.len());
            let mut parts = req[..line_end].split(|&b| b == b' ');
            if let (Some(_method), Some(target)) = (parts.next(), parts.next()) {
                urls::subject(target, header_value(req, b"host"), &mut self.url);
                self.name.push_str(&String::from_utf8_lossy(url_file_name(target)));
            }
        }
    }
}

/// Memory the decoders for `codings` may take: each stage's output buffer plus its window
/// (32 KiB for deflate with its state, up to 16 MiB for brotli, the configured cap for zstd).
fn decoder_cost(codings: &[Coding], limits: &decode::DecodeLimits) -> usize {
    codings
        .iter()
        .map(|c| {
            limits.decode_buffer_bytes
                + match c {
                    Coding::Gzip | Coding::Deflate => 64 * 1024,
                    Coding::Brotli => 16 * 1024 * 1024,
                    Coding::Zstd => limits.zstd_window_bytes_max,
                }
        })
        .sum()
}

/// The last segment of a request target's path (`/dl/a.zip?x=1` gives `a.zip`), at most
/// [`unpack::tree::NAME_BYTES_MAX`] bytes.
fn url_file_name(target: &[u8]) -> &[u8] {
    let end = target.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(target.len());
    let path = &target[..end];
    let name = &path[path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)..];
    &name[..name.len().min(unpack::tree::NAME_BYTES_MAX)]
}

/// The status code of an HTTP response head.
fn status_code(head: &[u8]) -> Option<u16> {
    let code = head.strip_prefix(b"HTTP/")?.split(|&b| b == b' ').nth(1)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Whether a `Content-Range` value is a byte range starting at 0. RFC 9110 §14.4: the unit is
/// case-insensitive (`Bytes`) and `first-pos` is `1*DIGIT`, so `bytes 00-…` starts at 0 too;
/// reading only the literal `bytes 0-` would scan such a range undecoded.
pub(super) fn range_starts_at_zero(value: &[u8]) -> bool {
    let unit_end = value.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(value.len());
    if !value[..unit_end].eq_ignore_ascii_case(b"bytes") {
        return false;
    }
    let rest = value[unit_end..].trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[..digits].iter().all(|&b| b == b'0') && rest[digits..].trim_ascii_start().starts_with(b"-")
}

/// The value of the first header `name` (lowercase) in an HTTP head.
fn header_value<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon].eq_ignore_ascii_case(name).then(|| line[colon + 1..].trim_ascii())
    })
}

impl Inspector for EngineInspector {
    fn begin(&mut self, txn: &Txn<'_>) -> Progress {
        let current = self.ctx.current();
        if !Rc::ptr_eq(&current, &self.sg) {
            self.sg = current;
        }
        self.unpack.end();
        self.done = None;
        self.limit = None;
        self.preview.clear();
        self.bytes = 0;
        self.received = 0;
        self.spent = Duration::ZERO;
        self.decode.end();
        self.decode_charge = None;
        self.policy = txn.policy;
        let over_limit = self.over_limit_policy();
        if self.policy == PolicyKind::Skip {
            // Not scanned by the operator's choice; the outcome carries the policy, so the
            // transaction is logged and counted as skipped, never as scanned and clean. The
            // container layer is begun so that no member path of the last object is reported.
            self.unpack.begin(&self.sg, "", over_limit);
            return self.conclude(Verdict::Clean);
        }
        self.read_http_fields(txn);
        // Begun first, so that a transaction answered here reports no member path or
        // container limit left over from the previous one.
        self.unpack.begin(&self.sg, &self.name, over_limit);
        if !self.url.is_empty() {
            if let Some(name) = self.gen().urls.first_match(&self.url) {
                return self.conclude(Verdict::Infected { threat: name.into() });
            }
        }
        if let Some(fault) = self.coding_fault {
            let v = self.over_limit(fault.threat());
            return self.conclude(v);
        }
        if !self.codings.is_empty() {
            let cost = decoder_cost(&self.codings, &self.ctx.limits.decode);
            match self.ctx.budget.try_charge(Use::Decoder, cost) {
                Some(c) => self.decode_charge = Some(c),
                None => {
                    let v = self.over_limit(policy::THREAT_MEMORY);
                    return self.conclude(v);
                }
            }
        }
        self.decode.begin(&self.codings, self.partial);
        Progress::More
    }

    fn feed(&mut self, data: &[u8]) -> Progress {
        if let Some(v) = &self.done {
            return Progress::Done(v.clone());
        }
        self.received += data.len() as u64;
        let max = match self.policy {
            PolicyKind::Strict => self.ctx.limits.scan_bytes_max.min(self.ctx.limits.strict_scan_bytes_max),
            _ => self.ctx.limits.scan_bytes_max,
        };
        if self.received > max {
            let v = self.over_limit(policy::THREAT_SIZE);
            return self.conclude(v);
        }
        if !self.decode.is_active() {
            return self.scan(data);
        }
        // The chain is moved out for the call so that its sink can borrow the scanners; an
        // empty chain holds no allocation, so this costs two moves.
        let mut chain = std::mem::replace(&mut self.decode, DecodeChain::new(self.ctx.limits.decode));
        let mut progress = Progress::More;
        let result = chain.feed(data, &mut |piece| match self.scan(piece) {
            Progress::More => ControlFlow::Continue(()),
            done => {
                progress = done;
                ControlFlow::Break(())
            }
        });
        self.decode = chain;
        match result {
            Ok(_) => {
                if progress != Progress::More {
                    self.decode.end();
                }
                progress
            }
            Err(fault) => {
                // The stream cannot be read further, but what was decoded is still judged by
                // every scanner, as at the end of a broken stream in `finish`: under `pass` a
                // fault in the middle must not skip the end-of-object rules either.
                self.decode.end();
                let v = match self.finish_scanned() {
                    Verdict::Clean => self.over_limit(fault.threat()),
                    found => found,
                };
                self.conclude(v)
            }
        }
    }

    fn preview_verdict(&mut self) -> Option<Verdict> {
        if let Some(v) = &self.done {
            return Some(v.clone());
        }
        self.preview_verdict_of_scanned()
    }

    fn charge(&mut self, spent: Duration) -> Progress {
        if self.done.is_some() {
            return Progress::More;
        }
        self.spent += spent;
        if self.spent > self.ctx.limits.scan_time_max {
            let v = self.over_limit(policy::THREAT_TIME);
            return self.conclude(v);
        }
        Progress::More
    }

    fn finish(&mut self) -> Verdict {
        if let Some(v) = self.done.take() {
            return v;
        }
        // The decoders' memory goes back to the budget whichever way this returns.
        let _decoders = self.decode_charge.take();
        if self.decode.is_active() {
            // What a decoder held back (an unfinished brotli piece) is decoded and scanned now;
            // as in `feed`, the chain is moved out so that its sink can borrow the scanners.
            let mut chain = std::mem::replace(&mut self.decode, DecodeChain::new(self.ctx.limits.decode));
            let mut progress = Progress::More;
            let complete = chain.finish(&mut |piece| match self.scan(piece) {
                Progress::More => ControlFlow::Continue(()),
                done => {
                    progress = done;
                    ControlFlow::Break(())
                }
            });
            self.decode = chain;
            self.decode.end();
            if let Progress::Done(v) = progress {
                // A scanner reached its verdict on the last decoded bytes.
                self.done = None;
                return v;
            }
            if let Err(fault) = complete {
                // What was decoded is still judged: a signature found in it names the threat,
                // and under `pass` a broken stream must not skip the end-of-object rules.
                return match self.finish_scanned() {
                    Verdict::Clean => self.over_limit(fault.threat()),
                    found => found,
                };
            }
        }
        self.finish_scanned()
    }

    fn istag(&self) -> &str {
        &self.sg.gen.istag
    }

    fn limit_hit(&self) -> Option<&'static str> {
        self.limit.or(self.unpack.limit())
    }

    fn found_in(&self) -> Option<&str> {
        self.unpack.found_in()
    }
}

impl EngineInspector {
    /// Runs every streaming scanner over the next bytes of the object as the client will see
    /// it (decoded, if it was encoded).
    fn scan(&mut self, data: &[u8]) -> Progress {
        if let Some(v) = &self.done {
            return Progress::Done(v.clone());
        }
        self.bytes += data.len() as u64;
        let room = self.ctx.limits.preview_bytes.saturating_sub(self.preview.len());
        self.preview.extend_from_slice(&data[..room.min(data.len())]);
        let left = self.time_left();
        match self.unpack.feed(&self.sg, data, left) {
            Some(hit) => {
                let v = self.hit_verdict(hit);
                self.conclude(v)
            }
            None => Progress::More,
        }
    }

    /// What remains of the object's scan time (`scan_time_max` less the CPU time charged).
    fn time_left(&self) -> Duration {
        self.ctx.limits.scan_time_max.saturating_sub(self.spent)
    }

    /// The verdict a scanner's hit gives: a signature's name, or a limit through the policy.
    fn hit_verdict(&mut self, hit: Hit) -> Verdict {
        match hit {
            Hit::Threat(threat) => Verdict::Infected { threat },
            Hit::Limit(name) => self.over_limit(name),
        }
    }

    fn preview_verdict_of_scanned(&mut self) -> Option<Verdict> {
        // Bytes the literal matcher still holds back (it stages tiny chunks) are matched now:
        // an early 204 must not leave the end of the preview unseen.
        if let Some(hit) = self.unpack.flush() {
            let v = self.hit_verdict(hit);
            self.conclude(v.clone());
            return Some(v);
        }
        // Streaming YARA rules that hold on the preview and cannot stop holding with more data
        // (monotone ones) answer now; the others wait for the body.
        // An allowlist hash may still clear the object: then the end decides.
        let allow_open = self.unpack.allow_open();
        match self.sg.scan_preview_rules(&self.preview, self.time_left()) {
            Ok(found) if found.rule.is_some() && allow_open => return None,
            Ok(found) if found.rule.is_some() => {
                return Some(Verdict::Infected { threat: found.rule.unwrap_or_default().into() })
            }
            // A rule whose outcome the cap on matches left unknown: the body decides.
            Ok(found) if found.saturated => return None,
            Ok(_) => {}
            Err(_) => return Some(self.over_limit(policy::THREAT_TIME)),
        }
        // `strict` never answers a clean preview early: the whole object is judged.
        (self.policy != PolicyKind::Strict
            && self.ctx.policy.early_204.allows(&self.content_type, self.content_length, &self.preview))
        .then_some(Verdict::Clean)
    }

    /// The verdict of the scanners that conclude at the end of the object, on the object and
    /// every member (the `.fp`/`.sfp` allowlist is applied per object in [`super::object`]).
    fn finish_scanned(&mut self) -> Verdict {
        let sg = self.sg.clone();
        let left = self.time_left();
        match self.unpack.finish(&sg, left) {
            Some(hit) => self.hit_verdict(hit),
            None => Verdict::Clean,
        }
    }
}
