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

use super::body::BodyStream;
use super::decode::{self, Coding, DecodeChain, Fault};
use super::hash::HashStream;
use super::imports::ImportStream;
use super::ldb::LdbStream;
use super::policy::{self, OverLimit};
use super::sections::SectionStream;
use super::shard_gen::{LentBlock, ShardGen};
use super::yara_stream::YaraFeeder;
use super::ScanLimits;
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
}

impl ScanCtx {
    pub fn new(gen: Arc<Generation>, limits: ScanLimits, policy: super::ScanPolicy) -> Rc<ScanCtx> {
        let timeout = limits.scan_time_max.max(Duration::from_secs(1));
        Rc::new(ScanCtx { current: RefCell::new(ShardGen::new(gen, timeout)), limits, policy })
    }

    /// Switches to a new generation; objects in flight keep the one they started with.
    pub fn install(&self, gen: Arc<Generation>) {
        let timeout = self.limits.scan_time_max.max(Duration::from_secs(1));
        *self.current.borrow_mut() = ShardGen::new(gen, timeout);
    }

    pub fn current(&self) -> Rc<ShardGen> {
        self.current.borrow().clone()
    }
}

/// Capacity of the whole-object copy kept between objects; larger copies are freed.
const WHOLE_KEEP_BYTES: usize = 256 * 1024;

pub struct EngineInspector {
    ctx: Rc<ScanCtx>,
    sg: Rc<ShardGen>,
    body: BodyStream,
    hash: HashStream,
    // clamdb (issue 16): logical signatures and the .fp/.sfp allowlist, per object.
    ldb: LdbStream,
    allow_hash: HashStream,
    sections: SectionStream,
    imports: ImportStream,
    yara: Option<LentBlock>,
    feeder: YaraFeeder,
    /// The first bytes of the object, for YARA at preview time and the file-magic policy.
    preview: Vec<u8>,
    /// A copy of the object for whole-object YARA rules, while it fits.
    whole: Vec<u8>,
    whole_fits: bool,
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
    /// A limit that made one scanner stop under `over_limit = pass` while the others go on;
    /// it decides the object at the end unless one of them finds a threat.
    skipped: Option<&'static str>,
    /// The codings to undo for this object, outermost first (empty: scanned as received).
    codings: Vec<Coding>,
    /// A decoding fault found in the head (too many codings), answered at begin.
    coding_fault: Option<Fault>,
    /// A leading `206` range of an encoded object: it may end in the middle of the stream.
    partial: bool,
    decode: DecodeChain,
    /// The operator's policy for this transaction (`skip`, `default`, `strict`).
    policy: PolicyKind,
}

impl EngineInspector {
    pub fn new(ctx: Rc<ScanCtx>) -> Self {
        let sg = ctx.current();
        let overlap = sg.gen.yara.overlap;
        EngineInspector {
            body: body_stream(&sg, &ctx.limits),
            hash: HashStream::new(),
            ldb: LdbStream::new(&sg.gen.ldb, ctx.limits.yara_whole_bytes_max),
            allow_hash: HashStream::new(),
            sections: SectionStream::new(),
            imports: ImportStream::new(ctx.limits.yara_whole_bytes_max),
            yara: None,
            feeder: YaraFeeder::new(overlap),
            preview: Vec::with_capacity(ctx.limits.preview_bytes),
            whole: Vec::new(),
            whole_fits: false,
            bytes: 0,
            received: 0,
            spent: Duration::ZERO,
            content_type: Vec::with_capacity(64),
            content_length: None,
            url: Vec::with_capacity(256),
            done: None,
            limit: None,
            skipped: None,
            codings: Vec::with_capacity(ctx.limits.decode.encodings_max),
            coding_fault: None,
            partial: false,
            decode: DecodeChain::new(ctx.limits.decode),
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
        match self.ctx.policy.over_limit {
            _ if self.policy == PolicyKind::Strict => Verdict::Infected { threat: threat.into() },
            OverLimit::Block => Verdict::Infected { threat: threat.into() },
            OverLimit::Pass => Verdict::Clean,
        }
    }

    /// One scanner cannot see the whole object. Under `block` that decides the object now;
    /// under `pass` the other scanners go on and the limit is reported at the end.
    fn skip(&mut self, threat: &'static str) -> Option<Progress> {
        match self.ctx.policy.over_limit {
            OverLimit::Block => {
                let v = self.over_limit(threat);
                Some(self.conclude(v))
            }
            OverLimit::Pass => {
                self.skipped.get_or_insert(threat);
                None
            }
        }
    }

    fn conclude(&mut self, v: Verdict) -> Progress {
        self.yara = None;
        self.decode.end();
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
            }
        }
    }
}

fn body_stream(sg: &ShardGen, limits: &ScanLimits) -> BodyStream {
    BodyStream::with_limits(&sg.gen.body, limits.body_partials_max, limits.body_partial_ends_max)
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
            self.body = body_stream(&current, &self.ctx.limits);
            if self.feeder.span() != current.gen.yara.overlap {
                self.feeder = YaraFeeder::new(current.gen.yara.overlap);
            }
            self.ldb = LdbStream::new(&current.gen.ldb, self.ctx.limits.yara_whole_bytes_max);
            self.sg = current;
        }
        self.yara = None;
        self.done = None;
        self.limit = None;
        self.skipped = None;
        self.body.reset();
        self.ldb.reset(&self.sg.gen.ldb);
        self.sections.reset();
        self.imports.reset(&self.sg.gen.imports);
        self.feeder.reset();
        self.preview.clear();
        self.whole.clear();
        if self.whole.capacity() > WHOLE_KEEP_BYTES {
            // A big object's copy is not kept on an idle connection.
            self.whole = Vec::new();
        }
        self.bytes = 0;
        self.received = 0;
        self.spent = Duration::ZERO;
        self.decode.end();
        self.policy = txn.policy;
        if self.policy == PolicyKind::Skip {
            // Not scanned by the operator's choice; the outcome carries the policy, so the
            // transaction is logged and counted as skipped, never as scanned and clean.
            return self.conclude(Verdict::Clean);
        }
        self.read_http_fields(txn);
        if !self.url.is_empty() {
            if let Some(name) = self.gen().urls.first_match(&self.url) {
                return self.conclude(Verdict::Infected { threat: name.into() });
            }
        }
        if let Some(fault) = self.coding_fault {
            let v = self.over_limit(fault.threat());
            return self.conclude(v);
        }
        self.decode.begin(&self.codings, self.partial);
        // Not `needed(content_length)`: a Content-Length header can lie, and a body longer than
        // it must not escape the hash signatures. Hashing stops past the largest signed size.
        let needed = self.gen().hashes.needed(None);
        self.hash.begin(needed);
        let allow_needed = self.gen().allow.needed(None);
        self.allow_hash.begin(allow_needed);
        self.yara = self.sg.lend_block(self.ctx.limits.yara_block_scanners_max);
        // Without a block scanner the streaming rules run with the whole-object ones at the end.
        let need_whole = self.gen().yara.whole.is_some() || (self.yara.is_none() && self.gen().yara.stream.is_some());
        self.whole_fits = need_whole;
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
        if self.decode.is_active() {
            let complete = self.decode.finish();
            self.decode.end();
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
        self.limit
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
        let sg = self.sg.clone();
        if self.yara.is_none() && self.whole_fits && sg.gen.yara.stream.is_some() {
            // No block scanner was free at `begin`: another object may have given one back
            // since, and what came before is in the whole-object copy.
            if let Some(mut lent) = sg.lend_block(self.ctx.limits.yara_block_scanners_max) {
                let fed = self.feeder.feed(lent.scanner(), &self.whole);
                if self.feeder.scanned_any() {
                    lent.mark_used();
                }
                self.yara = Some(lent);
                if sg.gen.yara.whole.is_none() {
                    // The copy was kept only for the streaming rules.
                    self.whole_fits = false;
                    self.whole.clear();
                }
                if fed.is_err() {
                    let v = self.over_limit(policy::THREAT_TIME);
                    return self.conclude(v);
                }
            }
        }
        if self.whole_fits {
            if self.whole.len() + data.len() <= self.ctx.limits.yara_whole_bytes_max {
                self.whole.extend_from_slice(data);
            } else {
                self.whole_fits = false;
                self.whole.clear();
                if self.yara.is_none() && sg.gen.yara.stream.is_some() {
                    if let Some(done) = self.skip(policy::THREAT_YARA_SCANNERS) {
                        return done;
                    }
                }
                if sg.gen.yara.whole.is_some() {
                    if let Some(done) = self.skip(policy::THREAT_YARA_WHOLE) {
                        return done;
                    }
                }
            }
        }
        // clamdb (issue 16): while an allowlist hash could still match, a found body
        // signature waits for the end of the object (BodyStream keeps it found).
        let allow_open = allow_could_match(&sg.gen.allow, self.bytes);
        if let Some(sig) = self.body.feed(&sg.gen.body, data) {
            if !allow_open {
                return self.conclude(Verdict::Infected { threat: sg.gen.body.name(sig).into() });
            }
        }
        self.ldb.feed(&sg.gen.ldb, data);
        self.sections.feed(&sg.gen.sections, data);
        self.imports.feed(data);
        if allow_open {
            feed_bounded(&mut self.allow_hash, sg.gen.allow.size_max(), self.bytes - data.len() as u64, data);
        }
        if self.body.overflowed() && self.skipped != Some(policy::THREAT_PARTIALS) {
            if let Some(done) = self.skip(policy::THREAT_PARTIALS) {
                return done;
            }
        }
        let hashed_before = self.bytes - data.len() as u64;
        match sg.gen.hashes.size_max() {
            // One byte past the largest signed size is enough to rule every signature out.
            Some(max) if hashed_before > max => {}
            Some(max) => {
                let room = max.saturating_add(1) - hashed_before;
                self.hash.feed(&data[..data.len().min(usize::try_from(room).unwrap_or(usize::MAX))]);
            }
            None => self.hash.feed(data),
        }
        if let Some(lent) = self.yara.as_mut() {
            let fed = self.feeder.feed(lent.scanner(), data);
            if self.feeder.scanned_any() {
                lent.mark_used();
            }
            if fed.is_err() {
                let v = self.over_limit(policy::THREAT_TIME);
                return self.conclude(v);
            }
        }
        Progress::More
    }

    fn preview_verdict_of_scanned(&mut self) -> Option<Verdict> {
        // Bytes the literal matcher still holds back (it stages tiny chunks) are matched now:
        // an early 204 must not leave the end of the preview unseen.
        // An allowlist hash may still clear the object: then the end decides.
        let sg = self.sg.clone();
        let allow_open = allow_could_match(&sg.gen.allow, self.bytes);
        if let Some(sig) = self.body.flush(&sg.gen.body) {
            if allow_open {
                return None;
            }
            let v = Verdict::Infected { threat: sg.gen.body.name(sig).into() };
            self.conclude(v.clone());
            return Some(v);
        }
        // Streaming YARA rules that hold on the preview and cannot stop holding with more data
        // (monotone ones) answer now; the others wait for the body.
        match self.sg.scan_preview_rules(&self.preview) {
            Ok(Some(_)) if allow_open => return None,
            Ok(Some(name)) => return Some(Verdict::Infected { threat: name.into() }),
            Ok(None) => {}
            Err(_) => return Some(self.over_limit(policy::THREAT_TIME)),
        }
        // `strict` never answers a clean preview early: the whole object is judged.
        (self.policy != PolicyKind::Strict
            && self.ctx.policy.early_204.allows(&self.content_type, self.content_length, &self.preview))
        .then_some(Verdict::Clean)
    }

    /// The verdict of the scanners that conclude at the end of the object; a signature
    /// match on an object whose hash is on the `.fp`/`.sfp` allowlist is clean (clamdb).
    fn finish_scanned(&mut self) -> Verdict {
        let sg = self.sg.clone();
        let allowed = !sg.gen.allow.is_empty() && self.allow_hash.finish(&sg.gen.allow).is_some();
        let verdict = self.finish_signatures();
        if allowed && self.limit.is_none() {
            return Verdict::Clean;
        }
        verdict
    }

    fn finish_signatures(&mut self) -> Verdict {
        let sg = self.sg.clone();
        let ldb = self.ldb.finish(&sg.gen.ldb);
        if let Some(sig) = self.body.finish(&sg.gen.body) {
            return Verdict::Infected { threat: sg.gen.body.name(sig).into() };
        }

        if let Some(name) = self.hash.finish(&sg.gen.hashes) {
            return Verdict::Infected { threat: name.into() };
        }
        if let Some(name) = self.sections.finish(&sg.gen.sections) {
            return Verdict::Infected { threat: name.into() };
        }
        let imports = self.imports.finish(&sg.gen.imports);
        if let Ok(Some(name)) = imports {
            return Verdict::Infected { threat: name.into() };
        }
        if let Some(sig) = ldb {
            return Verdict::Infected { threat: sg.gen.ldb.name(sig).into() };
        }
        if let Some(mut lent) = self.yara.take() {
            let flushed = self.feeder.finish(lent.scanner());
            if self.feeder.scanned_any() {
                lent.mark_used();
            }
            let result = flushed.and_then(|()| lent.finish());
            match result {
                Ok(Some(name)) => return Verdict::Infected { threat: name.into() },
                Ok(None) => {}
                Err(_) => return self.over_limit(policy::THREAT_TIME),
            }
        } else if self.whole_fits && sg.gen.yara.stream.is_some() {
            match sg.scan_stream_rules(&self.whole) {
                Ok(Some(name)) => return Verdict::Infected { threat: name.into() },
                Ok(None) => {}
                Err(_) => return self.over_limit(policy::THREAT_TIME),
            }
        }
        if self.whole_fits {
            match sg.scan_whole_rules(&self.whole) {
                Ok(Some(name)) => return Verdict::Infected { threat: name.into() },
                Ok(None) => {}
                Err(_) => return self.over_limit(policy::THREAT_TIME),
            }
        }
        if self.body.overflowed() {
            self.skipped.get_or_insert(policy::THREAT_PARTIALS);
        }
        if let Some(threat) = self.ldb.limit_hit().or(imports.err()) {
            self.skipped.get_or_insert(threat);
        }
        if let Some(threat) = self.skipped {
            return self.over_limit(threat);
        }
        Verdict::Clean
    }
}

/// Whether an allowlist hash could still match an object of which `bytes` have been seen.
fn allow_could_match(allow: &super::hash::HashSet, bytes: u64) -> bool {
    !allow.is_empty() && allow.size_max().is_none_or(|max| bytes <= max)
}

/// Feeds `data` (which starts at `before`) to `hash`, stopping one byte past `max`.
fn feed_bounded(hash: &mut HashStream, max: Option<u64>, before: u64, data: &[u8]) {
    match max {
        Some(max) if before > max => {}
        Some(max) => {
            let room = max.saturating_add(1) - before;
            hash.feed(&data[..data.len().min(usize::try_from(room).unwrap_or(usize::MAX))]);
        }
        None => hash.feed(data),
    }
}
