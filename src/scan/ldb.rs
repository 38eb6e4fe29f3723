//! ClamAV logical signatures (`.ldb`, and `.ndb` lines with targets or offsets) over a
//! streamed object.
//!
//! Every distinct variant of a segment of a body subsignature is one pattern of a
//! [`LiteralSet`] (case-insensitive ones in a second set that sees the object lower-cased);
//! identical segments of different subsignatures and signatures share their pattern, which
//! lists every segment it stands for. So the streaming cost is the literal matcher's. The
//! occurrences it reports are joined into subsignature matches as in [`super::body`]: segment
//! k must start within its gap after an end of segment k−1, and the ends kept for that are
//! those of [`super::reach`] (every end still within reach of a bounded gap, the earliest for
//! `*` and `{n-}`). Each match is recorded per subsignature: counted at once when its offset
//! can be checked while streaming (`*`, `n`, `n,m`), kept with its start when the offset
//! depends on the object's size or its PE headers (`EOF-n`, `EP±n`, `Sx+n`, `SL+n`, `SEx`).
//! For those the start of the whole subsignature matters, so their partial matches keep their
//! ends per start (each start once, the earliest end for it).
//!
//! Nothing is ever evicted: the partial matches are bounded by `body_partials_max`, and the
//! ends and deferred matches they hold by `body_partial_ends_max` (the limits the `.ndb`
//! matcher uses). Past either, what does not fit is not recorded, the stream goes on with what
//! it holds, and [`LdbStream::limit_hit`] reports `Heuristics.Limits.Exceeded.MaxPartialMatches`
//! for the over-limit policy.
//!
//! The checks on neighbouring bytes (`::f` and the `(B)`/`(L)` anchors, negated alternatives)
//! read a ring of recent bytes (the loader refuses them on normalised targets). A chunk is
//! processed in pieces of at most [`PIECE_BYTES`] and the ring holds a piece, the literal
//! matcher's staging and the longest pattern, so every byte a check needs is still there
//! however the object was cut. A left edge is checked on the first segment, when its start is
//! known to be in the ring; a right edge on the last, and when the byte after it has not
//! arrived yet the occurrence waits for it.
//!
//! At the end of the object the signatures that saw any match are evaluated: the target
//! description block (file type by magic, size, entry point, number of sections), deferred
//! offsets, PCRE subsignatures whose trigger holds (run on the object, which is kept for that
//! while it is at most `yara_whole_bytes_max` bytes), then the logical expression. A PCRE
//! subsignature whose trigger held on an object too large to keep is reported through
//! [`LdbStream::limit_hit`], never passed silently.
//!
//! The per-object state is sparse (maps keyed by the subsignatures that matched), so a
//! connection costs little however large the database; objects rarely match anything.

use super::filetype::{self, Target, HEAD_BYTES};
use super::literal::{LiteralSet, LiteralStream, Pattern};
use super::pe::{self, PeInfo};
use super::policy::THREAT_PARTIALS;
use super::reach::{Firsts, Reach};
use super::textnorm::TextNorm;
use crate::signatures::clamav::expr::Expr;
use crate::signatures::clamav::hex::Edge;
use crate::signatures::clamav::ldb::{LdbSignature, Subsig, Tdb};
use crate::signatures::clamav::offset::{ObjectFacts, SigOffset};
use crate::signatures::ndb::Gap;
use std::collections::{HashMap, HashSet};

/// Most bytes of a chunk processed at once when neighbouring bytes are checked (see the
/// module docs): the ring is sized from it.
pub const PIECE_BYTES: usize = 8192;
/// The limit reported when a PCRE subsignature could not run.
pub const THREAT_PCRE: &str = "Heuristics.Limits.Exceeded.PCRE";

#[derive(Debug, Clone, Copy)]
struct PatRef {
    chain: u32,
    seg: u16,
    len: u32,
    /// Index into [`LdbSet::nots`] of the negated alternatives to check, or `u32::MAX`.
    nots: u32,
}

struct Chain {
    slot: u32,
    /// Matched on the lower-cased view.
    lower: bool,
    /// The longest variant of each segment: an occurrence of segment k reported after one
    /// ending at `e` starts at `e` minus this or later.
    max_lens: Vec<u32>,
    offset: SigOffset,
    gaps: Vec<Gap>,
    segs: u16,
    /// What must border the match (`(B)`/`(L)` anchors, `::f` = a word boundary on both sides).
    left: Edge,
    right: Edge,
}

struct PcreProg {
    local: u8,
    regex: regex::bytes::Regex,
    offset: SigOffset,
    trigger: Expr,
    global: bool,
    encompass: bool,
}

struct Sig {
    name: String,
    tdb: Tdb,
    expr: Expr,
    first_slot: u32,
    subs: u8,
    pcres: Vec<PcreProg>,
    needs_pe: bool,
}

/// The form of the object a pattern is matched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// The bytes as they are.
    Raw = 0,
    /// ASCII lower-cased (for `::i`).
    Lower = 1,
    /// ClamAV's text normalisation (target 7).
    Text = 2,
    /// ClamAV's HTML normalisation (target 3).
    Html = 3,
}

const VIEWS: usize = 4;

/// The compiled logical signatures of one generation; shared read-only by all shards.
pub struct LdbSet {
    views: [LiteralSet; VIEWS],
    /// What each pattern of each view stands for (identical segments share a pattern).
    uses: [Uses; VIEWS],
    chains: Vec<Chain>,
    /// For each slot (global subsignature index): its signature and whether its offset is
    /// deferred.
    slot_sig: Vec<(u32, bool)>,
    slot_offset: Vec<SigOffset>,
    sigs: Vec<Sig>,
    has_pcre: bool,
    nots: Vec<Nots>,
    /// Bytes of the ring of recent bytes for the `::f`, `(B)`/`(L)` and `!(..)` checks (a
    /// power of two; 0 when no signature has one).
    ring_bytes: usize,
}

type Nots = Vec<(usize, Vec<Vec<u8>>)>;

/// The segments each pattern of one view stands for: `refs[at[p]..at[p + 1]]` for pattern `p`.
#[derive(Default)]
struct Uses {
    at: Vec<u32>,
    refs: Vec<PatRef>,
}

impl Uses {
    fn of(&self, pattern: u32) -> &[PatRef] {
        &self.refs[self.at[pattern as usize] as usize..self.at[pattern as usize + 1] as usize]
    }
}

/// The patterns of one view while the set is built: identical (bytes, mask) pairs of
/// different segments, chains and signatures become one pattern, so a segment common to many
/// signatures costs the literal matcher one pattern and one verification.
#[derive(Default)]
struct ViewBuilder {
    patterns: Vec<Pattern>,
    index: HashMap<(Vec<u8>, Option<Vec<u8>>), u32>,
    refs: Vec<Vec<PatRef>>,
}

impl ViewBuilder {
    fn add(&mut self, p: &crate::signatures::clamav::hex::HexPattern, chain: u32, nots: &mut Vec<Nots>) {
        for (seg, variants) in p.parts.iter().enumerate() {
            for v in variants {
                let exact = v.mask.iter().all(|&m| m == 0xFF);
                let n = if v.nots.is_empty() {
                    u32::MAX
                } else {
                    nots.push(v.nots.clone());
                    (nots.len() - 1) as u32
                };
                let key = (v.bytes.clone(), if exact { None } else { Some(v.mask.clone()) });
                let id = match self.index.get(&key) {
                    Some(&id) => id,
                    None => {
                        let id = self.patterns.len() as u32;
                        self.patterns.push(Pattern { bytes: key.0.clone(), mask: key.1.clone() });
                        self.refs.push(Vec::new());
                        self.index.insert(key, id);
                        id
                    }
                };
                self.refs[id as usize].push(PatRef { chain, seg: seg as u16, len: v.bytes.len() as u32, nots: n });
            }
        }
    }

    fn finish(self) -> (Vec<Pattern>, Uses) {
        let mut uses = Uses { at: Vec::with_capacity(self.refs.len() + 1), refs: Vec::new() };
        uses.at.push(0);
        for r in self.refs {
            uses.refs.extend(r);
            uses.at.push(uses.refs.len() as u32);
        }
        (self.patterns, uses)
    }
}

/// Compiles a PCRE subsignature's pattern with its flags.
pub fn compile_pcre(p: &crate::signatures::clamav::ldb::Pcre) -> Result<regex::bytes::Regex, String> {
    regex::bytes::RegexBuilder::new(&p.regex)
        .unicode(false)
        .case_insensitive(p.caseless)
        .dot_matches_new_line(p.dotall)
        .multi_line(p.multiline)
        .ignore_whitespace(p.extended)
        .swap_greed(p.ungreedy)
        .size_limit(1 << 22)
        .build()
        .map_err(|e| {
            format!(
                "the PCRE `{}` is not supported by the regex engine: {}",
                p.regex.escape_default(),
                e.to_string().lines().last().unwrap_or("")
            )
        })
}

impl LdbSet {
    /// Compiles `sigs`. A PCRE that does not compile was already reported by the loader,
    /// which calls [`compile_pcre`]; should one slip through, its signature is left out.
    pub fn new(sigs: Vec<LdbSignature>) -> Result<LdbSet, String> {
        let mut builders: [ViewBuilder; VIEWS] = Default::default();
        let mut chains = Vec::new();
        let mut slot_sig = Vec::new();
        let mut slot_offset = Vec::new();
        let mut out = Vec::with_capacity(sigs.len());
        let (mut has_pcre, mut has_fullword) = (false, false);
        let mut nots = Vec::new();
        'sig: for sig in sigs {
            let si = out.len() as u32;
            let first_slot = slot_sig.len() as u32;
            let mut pcres = Vec::new();
            let mut needs_pe = sig.tdb.entry_point.is_some() || sig.tdb.sections.is_some();
            let mut new_chains = Vec::new();
            for (local, sub) in sig.subsigs.iter().enumerate() {
                match sub {
                    Subsig::Body { offset, pattern, ascii, wide, nocase: ci, fullword } => {
                        needs_pe |= offset.needs_pe();
                        has_fullword |= *fullword || pattern.left != Edge::None || pattern.right != Edge::None;
                        let mut forms = Vec::new();
                        if *ascii {
                            forms.push(pattern.clone());
                        }
                        if *wide {
                            forms.push(pattern.wide());
                        }
                        let view = match sig.tdb.target {
                            Some(Target::Html) => View::Html,
                            Some(Target::Ascii) => View::Text,
                            _ if *ci => View::Lower,
                            _ => View::Raw,
                        };
                        for form in forms {
                            // Normalised views are lower-case, so their patterns are too.
                            let form = if view == View::Raw { form } else { form.lowered() };
                            new_chains.push((first_slot + local as u32, *offset, form, view, *fullword));
                        }
                    }
                    Subsig::Pcre(p) => {
                        let Ok(regex) = compile_pcre(p) else { continue 'sig };
                        needs_pe |= p.offset.needs_pe();
                        pcres.push(PcreProg {
                            local: local as u8,
                            regex,
                            offset: p.offset,
                            trigger: p.trigger.clone(),
                            global: p.global,
                            encompass: p.encompass,
                        });
                    }
                }
            }
            has_pcre |= !pcres.is_empty();
            for sub in &sig.subsigs {
                let (deferred, offset) = match sub {
                    Subsig::Body { offset, .. } => (!offset.streamable(), *offset),
                    Subsig::Pcre(p) => (true, p.offset),
                };
                slot_sig.push((si, deferred));
                slot_offset.push(offset);
            }
            for (slot, offset, form, view, fullword) in new_chains {
                let chain = chains.len() as u32;
                builders[view as usize].add(&form, chain, &mut nots);
                let (left, right) = if fullword { (Edge::Word, Edge::Word) } else { (form.left, form.right) };
                let max_lens =
                    form.parts.iter().map(|vs| vs.iter().map(|v| v.bytes.len() as u32).max().unwrap_or(0)).collect();
                chains.push(Chain {
                    slot,
                    lower: view == View::Lower,
                    max_lens,
                    offset,
                    segs: form.parts.len() as u16,
                    gaps: form.gaps,
                    left,
                    right,
                });
            }
            out.push(Sig {
                name: sig.name,
                tdb: sig.tdb,
                expr: sig.expr,
                first_slot,
                subs: sig.subsigs.len() as u8,
                pcres,
                needs_pe,
            });
        }
        let build = |p| LiteralSet::new(p).map_err(|e| format!("building the logical-signature matcher: {e:?}"));
        let [(raw, u0), (lower, u1), (text, u2), (html, u3)] = builders.map(ViewBuilder::finish);
        let views = [build(raw)?, build(lower)?, build(text)?, build(html)?];
        let uses = [u0, u1, u2, u3];
        let has_fullword = has_fullword || !nots.is_empty();
        // A check reads at most the longest pattern back from a match that the literal matcher
        // reports at most a piece and its staging after the match's end.
        let longest = views.iter().map(LiteralSet::max_len).max().unwrap_or(0);
        let ring_bytes =
            if has_fullword { (PIECE_BYTES + super::literal::STAGE_MAX + longest + 2).next_power_of_two() } else { 0 };
        Ok(LdbSet { views, uses, chains, slot_sig, slot_offset, sigs: out, has_pcre, nots, ring_bytes })
    }

    /// An empty set.
    pub fn empty() -> LdbSet {
        LdbSet::new(Vec::new()).unwrap_or_else(|_| unreachable!("an empty set always builds"))
    }

    /// Distinct patterns of all views (identical segments count once per view).
    pub fn patterns(&self) -> usize {
        self.uses.iter().map(|u| u.at.len() - 1).sum()
    }

    pub fn len(&self) -> usize {
        self.sigs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sigs.is_empty()
    }

    pub fn name(&self, sig: u32) -> &str {
        &self.sigs[sig as usize].name
    }

    /// Whether the scanner keeps a copy of each object (for PCRE subsignatures).
    pub fn needs_whole(&self) -> bool {
        self.has_pcre
    }
}

/// One segment of one chain seen in this object, with what the gap after it needs.
#[derive(Debug, Default)]
struct Partial {
    /// The earliest end (a `*` or `{n-}` gap, the chain's offset streamable).
    min_end: u64,
    /// Ends in reach of a bounded gap, tagged with the chain's start when its offset is
    /// deferred (0 otherwise).
    reach: Reach,
    /// The earliest end per chain start (a `*` or `{n-}` gap, the offset deferred).
    firsts: Firsts,
}

#[derive(Debug, Default)]
struct SlotState {
    count: u32,
    /// Matches `(start, end)` with a deferred offset, one per start (the earliest end).
    occurrences: Vec<(u64, u64)>,
}

/// An occurrence of a chain's last segment with a right edge to check, waiting for the byte
/// after it.
#[derive(Debug, Clone, Copy)]
struct Pending {
    pat: PatRef,
    end: u64,
}

/// Recent bytes of the object, for the checks on neighbouring bytes.
#[derive(Debug, Default)]
struct Ring {
    bytes: Vec<u8>,
    /// Bytes written so far (the size of the object).
    size: u64,
}

impl Ring {
    fn new(len: usize) -> Ring {
        Ring { bytes: vec![0; len], size: 0 }
    }

    fn push(&mut self, data: &[u8]) {
        if self.bytes.is_empty() {
            self.size += data.len() as u64;
            return;
        }
        let mask = self.bytes.len() - 1;
        let keep = data.len().min(self.bytes.len());
        let from = self.size + (data.len() - keep) as u64;
        for (i, &b) in data[data.len() - keep..].iter().enumerate() {
            self.bytes[(from as usize + i) & mask] = b;
        }
        self.size += data.len() as u64;
    }

    /// The byte at `pos`, if it has been written and is still held.
    fn at(&self, pos: u64) -> Option<u8> {
        (pos < self.size && pos + self.bytes.len() as u64 >= self.size)
            .then(|| self.bytes[pos as usize & (self.bytes.len() - 1)])
    }
}

/// Per-connection state for one [`LdbSet`]; reused across objects.
pub struct LdbStream {
    streams: [LiteralStream; VIEWS],
    text: TextNorm,
    html: TextNorm,
    hits: Vec<(u64, u32, u8)>,
    partials: HashMap<(u32, u16), Partial>,
    slots: HashMap<u32, SlotState>,
    /// Deferred matches recorded, by (slot, start).
    occurrence_starts: HashSet<(u32, u64)>,
    touched: Vec<u32>,
    pending: Vec<Pending>,
    /// Chain starts one occurrence continues (scratch).
    starts: Vec<u64>,
    head: Vec<u8>,
    whole: Vec<u8>,
    whole_fits: bool,
    whole_max: usize,
    /// The bytes as received.
    ring: Ring,
    lower: Vec<u8>,
    size: u64,
    limit: Option<&'static str>,
    counts: Vec<u32>,
    norm: Norm,
    partials_max: usize,
    ends_max: usize,
    /// Ends, chain starts and deferred matches held in all.
    ends: usize,
    overflowed: bool,
}

/// Which normalised view the current object is fed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Norm {
    /// Fewer than [`DECIDE_BYTES`] seen: not known yet.
    Undecided,
    View(usize),
    None,
}

/// How many leading bytes decide whether an object is HTML or text (what
/// [`filetype::detect`] looks at for those types).
const DECIDE_BYTES: usize = 512;

impl LdbStream {
    /// A stream for `set` with the default bounds of [`crate::limits`]; objects up to
    /// `whole_max` bytes are kept for PCRE subsignatures.
    pub fn new(set: &LdbSet, whole_max: usize) -> Self {
        Self::with_limits(set, whole_max, crate::limits::BODY_PARTIALS_MAX, crate::limits::BODY_PARTIAL_ENDS_MAX)
    }

    /// A stream holding at most `partials_max` partial matches and `ends_max` ends, chain
    /// starts and deferred matches in all.
    pub fn with_limits(set: &LdbSet, whole_max: usize, partials_max: usize, ends_max: usize) -> Self {
        LdbStream {
            streams: [
                LiteralStream::new(&set.views[0]),
                LiteralStream::new(&set.views[1]),
                LiteralStream::new(&set.views[2]),
                LiteralStream::new(&set.views[3]),
            ],
            text: TextNorm::new(false),
            html: TextNorm::new(true),
            hits: Vec::with_capacity(64),
            partials: HashMap::new(),
            slots: HashMap::new(),
            occurrence_starts: HashSet::new(),
            touched: Vec::new(),
            pending: Vec::new(),
            starts: Vec::new(),
            head: Vec::new(),
            whole: Vec::new(),
            whole_fits: false,
            whole_max,
            ring: Ring::new(set.ring_bytes),
            lower: Vec::new(),
            size: 0,
            limit: None,
            counts: Vec::with_capacity(64),
            norm: Norm::Undecided,
            partials_max,
            ends_max,
            ends: 0,
            overflowed: false,
        }
    }

    /// Starts a new object.
    pub fn reset(&mut self, set: &LdbSet) {
        for s in &mut self.streams {
            s.reset();
        }
        self.text.reset();
        self.html.reset();
        self.hits.clear();
        self.partials.clear();
        self.slots.clear();
        self.occurrence_starts.clear();
        self.touched.clear();
        self.pending.clear();
        self.head.clear();
        self.whole.clear();
        if self.whole.capacity() > 256 * 1024 {
            self.whole = Vec::new();
        }
        self.whole_fits = set.has_pcre;
        self.ring.size = 0;
        self.size = 0;
        self.limit = None;
        self.norm = Norm::Undecided;
        self.ends = 0;
        self.overflowed = false;
    }

    /// The limit that kept this object from being matched exactly (a PCRE that could not run,
    /// partial matches past their bound), if any.
    pub fn limit_hit(&self) -> Option<&'static str> {
        self.limit
    }

    /// Whether a bound on partial matches was reached on this object (then
    /// [`LdbStream::limit_hit`] names it): the caller applies the over-limit policy.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    fn overflow(&mut self) {
        self.overflowed = true;
        self.limit.get_or_insert(THREAT_PARTIALS);
    }

    /// Feeds the next bytes of the object.
    pub fn feed(&mut self, set: &LdbSet, chunk: &[u8]) {
        if set.is_empty() || chunk.is_empty() {
            return;
        }
        if set.ring_bytes == 0 {
            return self.feed_piece(set, chunk);
        }
        for piece in chunk.chunks(PIECE_BYTES) {
            self.feed_piece(set, piece);
        }
    }

    fn feed_piece(&mut self, set: &LdbSet, chunk: &[u8]) {
        let room = HEAD_BYTES.saturating_sub(self.head.len());
        let taken = room.min(chunk.len());
        self.head.extend_from_slice(&chunk[..taken]);
        if self.whole_fits {
            if self.whole.len() + chunk.len() <= self.whole_max {
                self.whole.extend_from_slice(chunk);
            } else {
                self.whole_fits = false;
                self.whole = Vec::new();
            }
        }
        self.ring.push(chunk);
        self.size += chunk.len() as u64;
        let hits = &mut self.hits;
        self.streams[0].feed(&set.views[0], chunk, &mut |p, end| hits.push((end, p, 0)));
        if !set.views[1].is_empty() {
            self.lower.clear();
            self.lower.extend(chunk.iter().map(u8::to_ascii_lowercase));
            self.streams[1].feed(&set.views[1], &self.lower, &mut |p, end| hits.push((end, p, 1)));
        }
        match self.norm {
            Norm::View(v) => self.feed_norm(set, v, chunk),
            Norm::Undecided if self.head.len() >= DECIDE_BYTES => {
                self.decide(set, DECIDE_BYTES);
                if let Norm::View(v) = self.norm {
                    // Replay everything so far: the head, and what of this chunk it could not hold.
                    let head = std::mem::take(&mut self.head);
                    self.feed_norm(set, v, &head);
                    self.head = head;
                    self.feed_norm(set, v, &chunk[taken..]);
                }
            }
            _ => {}
        }
        self.resolve_pending(set, false);
        self.join(set);
    }

    /// Ends the object; the first signature (in load order) that holds, if any.
    pub fn finish(&mut self, set: &LdbSet) -> Option<u32> {
        if set.is_empty() {
            return None;
        }
        if self.norm == Norm::Undecided {
            self.decide(set, self.head.len());
            if let Norm::View(v) = self.norm {
                let head = std::mem::take(&mut self.head);
                self.feed_norm(set, v, &head);
                self.head = head;
            }
        }
        if let Norm::View(v) = self.norm {
            self.lower.clear();
            if v == View::Text as usize {
                self.text.finish(&mut self.lower);
            } else {
                self.html.finish(&mut self.lower);
            }
            let vi = v as u8;
            let hits = &mut self.hits;
            self.streams[v].feed(&set.views[v], &self.lower, &mut |p, end| hits.push((end, p, vi)));
        }
        let hits = &mut self.hits;
        for v in 0..VIEWS {
            let vi = v as u8;
            self.streams[v].finish(&set.views[v], &mut |p, end| hits.push((end, p, vi)));
        }
        self.resolve_pending(set, false);
        self.join(set);
        self.resolve_pending(set, true);
        if self.touched.is_empty() {
            return None;
        }
        self.touched.sort_unstable();
        self.touched.dedup();
        let filetype = filetype::detect(&self.head);
        let mut pe_info: Option<Option<PeInfo>> = None;
        let touched = std::mem::take(&mut self.touched);
        let mut found = None;
        for &si in &touched {
            let sig = &set.sigs[si as usize];
            if sig.needs_pe && pe_info.is_none() {
                pe_info = Some(pe::parse(&self.head));
            }
            let pe_ref = pe_info.as_ref().and_then(|p| p.as_ref());
            if self.evaluate(sig, &set.slot_offset, filetype, pe_ref) {
                found = Some(si);
                break;
            }
        }
        self.touched = touched;
        found
    }

    /// Decides from the first `n` bytes which normalised view (if any) this object needs: only
    /// an object typed as HTML or text can match signatures for those targets, so the others
    /// never pay for normalising.
    fn decide(&mut self, set: &LdbSet, n: usize) {
        let view = match filetype::detect(&self.head[..n.min(self.head.len())]) {
            Some(Target::Html) => View::Html,
            Some(Target::Ascii) => View::Text,
            _ => {
                self.norm = Norm::None;
                return;
            }
        };
        self.norm = if set.views[view as usize].is_empty() { Norm::None } else { Norm::View(view as usize) };
    }

    /// Normalises `data` and matches the view `v` on it. Signatures for normalised targets
    /// have no checks on neighbouring bytes (the loader refuses them, see
    /// [`crate::signatures::clamav::ldb`]), so no ring is kept for the normalised text.
    fn feed_norm(&mut self, set: &LdbSet, v: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.lower.clear();
        if v == View::Text as usize {
            self.text.feed(data, &mut self.lower);
        } else {
            self.html.feed(data, &mut self.lower);
        }
        let vi = v as u8;
        let hits = &mut self.hits;
        self.streams[v].feed(&set.views[v], &self.lower, &mut |p, end| hits.push((end, p, vi)));
    }

    fn evaluate(
        &mut self,
        sig: &Sig,
        slot_offsets: &[SigOffset],
        filetype: Option<Target>,
        pe: Option<&PeInfo>,
    ) -> bool {
        let tdb = &sig.tdb;
        if let Some(t) = tdb.target {
            if !t.accepts(filetype) {
                return false;
            }
        }
        let within = |r: Option<(u64, u64)>, v: Option<u64>| r.is_none_or(|(a, b)| v.is_some_and(|v| v >= a && v <= b));
        if !within(tdb.file_size, Some(self.size))
            || !within(tdb.entry_point, pe.and_then(|p| p.ep_offset))
            || !within(tdb.sections, pe.map(|p| p.sections.len() as u64))
        {
            return false;
        }
        let facts = ObjectFacts { size: self.size, pe };
        self.counts.clear();
        for local in 0..sig.subs {
            let slot = sig.first_slot + u32::from(local);
            let offset = set_offset(slot_offsets, slot);
            let n = match self.slots.get(&slot) {
                None => 0,
                Some(s) if s.occurrences.is_empty() => s.count,
                Some(s) => s.occurrences.iter().filter(|&&(a, b)| offset.accepts(a, b, &facts)).count() as u32,
            };
            self.counts.push(n);
        }
        for p in &sig.pcres {
            if !p.trigger.eval(&self.counts) {
                continue;
            }
            if !self.whole_fits {
                self.limit = Some(THREAT_PCRE);
                continue;
            }
            let mut n = 0u32;
            for m in p.regex.find_iter(&self.whole) {
                let (start, end) = (m.start() as u64, m.end() as u64);
                let ok = p.offset.accepts(start, end, &facts)
                    && (!p.encompass || p.offset.accepts(end.saturating_sub(1).max(start), end, &facts));
                if ok {
                    n += 1;
                    if !p.global {
                        break;
                    }
                }
            }
            self.counts[usize::from(p.local)] = n;
        }
        sig.expr.eval(&self.counts)
    }

    fn join(&mut self, set: &LdbSet) {
        if self.hits.is_empty() {
            return;
        }
        self.hits.sort_unstable();
        let hits = std::mem::take(&mut self.hits);
        for &(end, pid, view) in &hits {
            for &r in set.uses[usize::from(view)].of(pid) {
                self.on_segment(set, r, end, false);
            }
        }
        self.hits = hits;
        self.hits.clear();
    }

    /// One occurrence of segment `r.seg` of chain `r.chain` ending at `end`. `at_end`: the
    /// object ended right after it (a right edge is then a boundary).
    fn on_segment(&mut self, set: &LdbSet, r: PatRef, end: u64, at_end: bool) {
        let chain = &set.chains[r.chain as usize];
        let Some(seg_start) = end.checked_sub(u64::from(r.len)) else { return };
        if r.nots != u32::MAX && !self.nots_hold(&set.nots[r.nots as usize], seg_start, chain) {
            return;
        }
        let k = usize::from(r.seg);
        let last = k + 1 == usize::from(chain.segs);
        if last && chain.right != Edge::None && !at_end {
            // The byte after the match decides; it may not have arrived yet.
            match self.ring.at(end) {
                None => {
                    self.pending.push(Pending { pat: r, end });
                    return;
                }
                Some(b) if !edge_ok(chain.right, b) => return,
                Some(_) => {}
            }
        }
        let deferred = !chain.offset.streamable();
        let mut starts = std::mem::take(&mut self.starts);
        starts.clear();
        if k == 0 {
            if !deferred && !chain.offset.accepts(seg_start, end, &ObjectFacts::default()) {
                return self.starts = starts;
            }
            if chain.left != Edge::None && !self.edge_before_ok(chain, seg_start) {
                return self.starts = starts;
            }
            // The chain's start matters afterwards only for a deferred offset.
            starts.push(if deferred { seg_start } else { 0 });
        } else {
            let Some(prev) = self.partials.get_mut(&(r.chain, r.seg - 1)) else { return self.starts = starts };
            match chain.gaps[k - 1] {
                Gap::Any | Gap::AtLeast(_) => {
                    let min = match chain.gaps[k - 1] {
                        Gap::AtLeast(min) => u64::from(min),
                        _ => 0,
                    };
                    if deferred {
                        prev.firsts.take_new(seg_start, min, |t| starts.push(t));
                    } else if prev.min_end.saturating_add(min) <= seg_start {
                        starts.push(0);
                    }
                }
                Gap::Range { min, max } => {
                    let (min, max) = (u64::from(min), u64::from(max));
                    // Later occurrences start at `end` minus the longest variant or later, so
                    // ends out of their reach stay so.
                    self.ends -= prev.reach.prune(end.saturating_sub(u64::from(chain.max_lens[k])), max);
                    if deferred {
                        prev.reach.each(seg_start, min, max, |t| starts.push(t));
                        starts.sort_unstable();
                        starts.dedup();
                    } else if prev.reach.any(seg_start, min, max) {
                        starts.push(0);
                    }
                }
            }
        }
        for &start in &starts {
            if last {
                self.record(set, chain.slot, deferred, start, end);
            } else {
                self.remember(chain, r, end, start);
            }
        }
        self.starts = starts;
    }

    /// Records that segment `r.seg` of `chain` ended at `end`, for a chain started at `tag`.
    fn remember(&mut self, chain: &Chain, r: PatRef, end: u64, tag: u64) {
        let key = (r.chain, r.seg);
        if !self.partials.contains_key(&key) {
            if self.partials.len() >= self.partials_max {
                // Nothing is evicted: this partial match is not recorded, and the over-limit
                // policy is told (MaxPartialMatches).
                return self.overflow();
            }
            self.partials.insert(key, Partial { min_end: end, ..Partial::default() });
        }
        let deferred = !chain.offset.streamable();
        let k = usize::from(r.seg);
        let (ends, ends_max) = (self.ends, self.ends_max);
        let Some(p) = self.partials.get_mut(&key) else { return };
        let added = match chain.gaps[k] {
            Gap::Any | Gap::AtLeast(_) if !deferred => {
                p.min_end = p.min_end.min(end);
                return;
            }
            Gap::Any | Gap::AtLeast(_) => {
                if !p.firsts.is_new(tag) {
                    return;
                }
                if ends >= ends_max {
                    return self.overflow();
                }
                p.firsts.push(end, tag)
            }
            Gap::Range { max, .. } => {
                // A later occurrence of the next segment starts at `end` minus its longest
                // variant or later: ends more than `max` before that are out of reach for good.
                let horizon = end.saturating_sub(u64::from(chain.max_lens[k + 1]));
                let dropped = p.reach.prune(horizon, u64::from(max));
                self.ends -= dropped;
                if p.reach.needs_run(end, tag) && self.ends >= ends_max {
                    return self.overflow();
                }
                p.reach.push(end, tag)
            }
        };
        if added {
            self.ends += 1;
        }
    }

    /// Whether the bytes at each negated position of a variant starting at `start` differ
    /// from every listed alternative (compared lower-cased for a `::i` subsignature).
    fn nots_hold(&self, nots: &Nots, start: u64, chain: &Chain) -> bool {
        let ring = &self.ring;
        nots.iter().all(|(pos, alts)| {
            !alts.iter().any(|alt| {
                alt.iter().enumerate().all(|(k, &want)| {
                    // The ring holds every byte of a match just reported (see the module docs).
                    let got = ring.at(start + (*pos + k) as u64);
                    debug_assert!(got.is_some(), "the ring is sized to hold every byte a check reads");
                    let Some(got) = got else { return false };
                    (if chain.lower { got.to_ascii_lowercase() } else { got }) == want
                })
            })
        })
    }

    /// Whether the byte before `start` (none at the start of the object) satisfies the
    /// chain's left edge.
    fn edge_before_ok(&self, chain: &Chain, start: u64) -> bool {
        if start == 0 {
            return true;
        }
        // The ring holds the byte before a first segment just reported (see the module docs).
        let before = self.ring.at(start - 1);
        debug_assert!(before.is_some(), "the ring is sized to hold every byte a check reads");
        before.is_some_and(|b| edge_ok(chain.left, b))
    }

    /// Retries the occurrences that waited for the byte after them; `at_end`: the object is
    /// over, so those still waiting end at its end.
    fn resolve_pending(&mut self, set: &LdbSet, at_end: bool) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        for p in &pending {
            self.on_segment(set, p.pat, p.end, at_end);
        }
        // A retry that still lacks its byte was pushed again.
    }

    fn record(&mut self, set: &LdbSet, slot: u32, deferred: bool, start: u64, end: u64) {
        let state = self.slots.entry(slot).or_default();
        let first = state.count == 0 && state.occurrences.is_empty();
        if deferred {
            // One match per start: the first seen has the earliest end, the best for `SEx`.
            if !self.occurrence_starts.contains(&(slot, start)) {
                if self.ends >= self.ends_max {
                    return self.overflow();
                }
                self.occurrence_starts.insert((slot, start));
                state.occurrences.push((start, end));
                self.ends += 1;
            }
        } else {
            state.count = state.count.saturating_add(1);
        }
        if first {
            self.touched.push(set.slot_sig[slot as usize].0);
        }
    }
}

fn set_offset(offsets: &[SigOffset], slot: u32) -> SigOffset {
    offsets.get(slot as usize).copied().unwrap_or(SigOffset::Any)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether the byte `b` next to a match satisfies the anchor `edge`.
fn edge_ok(edge: Edge, b: u8) -> bool {
    match edge {
        Edge::None => true,
        Edge::Word => !is_word(b),
        Edge::Line => b == b'\n' || b == b'\r',
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::{for_each_split, pieces};
    use crate::signatures::clamav::ldb::{ndb_as_ldb, parse_ldb_line};

    fn set(lines: &[&str]) -> LdbSet {
        let sigs = lines
            .iter()
            .map(|l| {
                if l.contains(';') { parse_ldb_line(l) } else { ndb_as_ldb(l) }.unwrap_or_else(|e| panic!("{l}: {e}"))
            })
            .collect();
        LdbSet::new(sigs).unwrap()
    }

    fn scan(set: &LdbSet, data: &[u8], cuts: &[usize]) -> Option<String> {
        let mut stream = LdbStream::new(set, 1 << 20);
        stream.reset(set);
        for piece in pieces(data, cuts) {
            stream.feed(set, piece);
        }
        stream.finish(set).map(|s| set.name(s).to_string())
    }

    /// The answer whole, at every split point and byte by byte must agree.
    fn all_ways(set: &LdbSet, data: &[u8]) -> Option<String> {
        let whole = scan(set, data, &[]);
        for_each_split(data.len(), |cuts| assert_eq!(scan(set, data, cuts), whole, "cuts {cuts:?}"));
        whole
    }

    #[test]
    fn expressions_and_counts_stream() {
        let s = set(&[
            "And;Target:0;0&1;616263;78797a",
            "Count;Engine:51-255,Target:0;0>2;515151",
            "Or;Target:0;(0|1)=2,2;4b4b4b;4c4c4c",
        ]);
        assert_eq!(all_ways(&s, b"..abc...xyz..").as_deref(), Some("And"));
        assert_eq!(all_ways(&s, b"..abc......"), None);
        assert_eq!(all_ways(&s, b"QQQ.QQQ.QQQ").as_deref(), Some("Count"));
        assert_eq!(all_ways(&s, b"QQQ.QQQ"), None);
        assert_eq!(all_ways(&s, b"KKK LLL").as_deref(), Some("Or"));
        assert_eq!(all_ways(&s, b"KKK KKK"), None, "two matches but one distinct");
    }

    #[test]
    fn gaps_alternatives_and_modifiers() {
        let s = set(&[
            "Gap;Target:0;0;4141{2-3}4242",
            "Alt;Target:0;0;6d(6e|6f70)71",
            "Nocase;Target:0;0;68656c6c6f::i",
            "Wide;Target:0;0;777a::w",
            "Full;Target:0;0;776f7264::f",
            "Not;Target:0;0;6e6f!(41|42)74",
            "NotCi;Target:0;0;786b!(6c)79::i",
            "Anchored;Target:0;0;(L)70717273(B)",
        ]);
        assert_eq!(all_ways(&s, b"pqrs").as_deref(), Some("Anchored"));
        assert_eq!(all_ways(&s, b"ab\npqrs, cd").as_deref(), Some("Anchored"));
        assert_eq!(all_ways(&s, b"ab pqrs cd"), None, "(L) needs a line start");
        assert_eq!(all_ways(&s, b"\npqrst"), None, "(B) needs a word end");
        assert_eq!(all_ways(&s, b"-noCt-").as_deref(), Some("Not"));
        assert_eq!(all_ways(&s, b"-noAt-"), None);
        assert_eq!(all_ways(&s, b"-noBt-"), None);
        assert_eq!(all_ways(&s, b"XKmY").as_deref(), Some("NotCi"));
        assert_eq!(all_ways(&s, b"XKLY"), None, "negation compared case-insensitively");
        assert_eq!(all_ways(&s, b"AA..BB").as_deref(), Some("Gap"));
        assert_eq!(all_ways(&s, b"AA....BB"), None);
        assert_eq!(all_ways(&s, b"-mnq-").as_deref(), Some("Alt"));
        assert_eq!(all_ways(&s, b"-mopq-").as_deref(), Some("Alt"));
        assert_eq!(all_ways(&s, b"-moq-"), None);
        assert_eq!(all_ways(&s, b"say HeLLo").as_deref(), Some("Nocase"));
        assert_eq!(all_ways(&s, b"w\0z\0").as_deref(), Some("Wide"));
        assert_eq!(all_ways(&s, b"wz"), None, "::w alone is wide only");
        assert_eq!(all_ways(&s, b"a word.").as_deref(), Some("Full"));
        assert_eq!(all_ways(&s, b"word").as_deref(), Some("Full"));
        assert_eq!(all_ways(&s, b"swordfish"), None);
        assert_eq!(all_ways(&s, b"words"), None);
    }

    #[test]
    fn offsets_and_target_types() {
        let pe = crate::scan::pe::build_test_pe(&[b"..entry-code..", b"LAST"], 2);
        let s = set(&[
            "AtEp;Target:1;0;EP+0:656e747279",
            "Eof;Target:0;0;EOF-4:4c415354",
            "Sect;Target:1,NumberOfSections:2;0;S1+0:4c415354",
            "Ndb.Typed:1:*:656e7472792d636f6465",
            "Ndb.Float:0:10,5:7a7a7a",
        ]);
        assert_eq!(all_ways(&s, &pe).as_deref(), Some("AtEp"));
        let mut shifted = pe.clone();
        shifted.extend_from_slice(b"tail");
        // EP+0 still holds in the shifted copy (the headers did not move).
        assert_eq!(scan(&s, &shifted, &[]).as_deref(), Some("AtEp"));
        let not_pe = b"...entry-code... LAST";
        assert_eq!(all_ways(&s, not_pe).as_deref(), Some("Eof"), "only the untyped EOF signature");
        assert_eq!(all_ways(&s, b"0123456789..zzz").as_deref(), Some("Ndb.Float"));
        assert_eq!(all_ways(&s, b"0123456789......zzz").as_deref(), None);
        let s2 = set(&["Sect;Target:1,NumberOfSections:2;0;S1+0:4c415354", "Ndb.Typed:1:*:656e7472792d636f6465"]);
        assert_eq!(scan(&s2, &pe, &[]).as_deref(), Some("Sect"));
        assert_eq!(scan(&s2, not_pe, &[]), None, "a PE-typed signature does not fire on text");
    }

    #[test]
    fn pcre_runs_when_its_trigger_holds() {
        let s = set(&["Re;Target:0;0&1;6b6579;0/ke+y[0-9]{2}/i"]);
        assert_eq!(all_ways(&s, b"xx KEEEY42 key").as_deref(), Some("Re"));
        assert_eq!(all_ways(&s, b"xx KEEEY4 key"), None);
        // Too big to keep: reported as a limit, not passed as clean in silence.
        let mut stream = LdbStream::new(&s, 8);
        stream.reset(&s);
        stream.feed(&s, b"xx KEEEY42 key");
        assert_eq!(stream.finish(&s), None);
        assert_eq!(stream.limit_hit(), Some(THREAT_PCRE));
    }
}
