//! The container layer: between the body stream and the scanners, so that every signature
//! runs on the object itself and on every member extracted from it, recursively.
//!
//! Each nesting level is a [`Level`]: the [`ObjectScan`] of the object at that depth (the
//! top-level body at depth 0, a member below), the object's head for detection
//! ([`detect`]), and, once the head says it is a container, the feeder that opens it. A
//! streamed format's feeder ([`Feed`]) is sans-IO like the chunk decoder: bytes in, member
//! events out (`Start(name)`, `Data`, `End`), resumable at any byte. A member's bytes go to
//! the next level's scanners as they are decoded, so a threat in the first member of a zip is
//! found before the rest of the zip has arrived. A member that is itself a container is opened
//! by the next level's feeder the same way. The levels form a chain of boxes allocated the
//! first time a connection needs that depth and reused after; the depth, and so the native
//! recursion through the chain, is bounded by `recursion_max`.
//!
//! Formats that need random access (detected by [`whole::detect`]) are buffered at their
//! level, bounded by `buffer_bytes_max` over the whole tree and charged to the shard's memory
//! budget ([`crate::budget`], use `container`), and handed to [`whole::extract`] when the
//! object ends; the members it emits go through the same tree. A buffer the budget refuses is
//! `Heuristics.Limits.Exceeded.MemoryBudget`, through the over-limit policy like the size bound.
//!
//! A zip the streamed reader cannot finish (a method it lacks, a local header that lies, sizes
//! only the central directory knows, an encrypted entry before others) is read again from its
//! central directory ([`whole::extract_zip`]). For that the level holds the record the stream
//! is reading, from its start ([`Feed::keep_from`]), at most `buffer_bytes_max` of it (a
//! longer record is given up, see [`Hold`]); when the stream fails the held bytes become a
//! buffer like a random-access format's, within the tree's buffering limit, the rest of the zip
//! is added, and at its end the central directory's entries are read, except those the stream
//! read in full ([`Feed::take_done`]). The member the stream had open is dropped unjudged and
//! read again whole, counted once.
//!
//! Limits and faults are handled by [`tree::Tree`]. A fault inside a container (broken,
//! truncated, encrypted) stops opening it, and the object's own scanners still run to its
//! end: only if they find nothing does the fault become the verdict.

pub mod detect;
pub(crate) mod formats;
pub mod tree;

pub(crate) mod mime;
pub(crate) mod uu;

use crate::scan::whole;
pub use tree::Tree;

use self::detect::{Detect, Kind, DETECT_BYTES};
use self::tree::Act;
use super::object::{Hit, ObjectScan};
use super::policy::{self as scan_policy, OverLimit};
use super::shard_gen::ShardGen;
use crate::budget::{Charge, ShardBudget, Use};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

/// Where every level's big buffers are charged and spooled: the shard's memory budget and the
/// spool directory for whole-object YARA copies (see [`super::spool`]).
#[derive(Clone, Debug)]
pub struct WholeStore {
    pub budget: Rc<ShardBudget>,
    pub spool_dir: Option<PathBuf>,
}

/// One event of a container feeder.
#[derive(Debug)]
pub enum Event<'a> {
    /// A member begins; its name as the container gives it (may be empty).
    Start(&'a str),
    /// A member that is a region of its container's own bytes (a PE's overlay) begins: it is
    /// typed by strong magics only ([`detect::is_strong`]), since a weak one there would call
    /// an ordinary file broken.
    Embedded(&'a str),
    /// The next bytes of the open member, decoded.
    Data(&'a [u8]),
    /// The open member ended.
    End,
}

/// Where a feeder sends its events; `Break` asks it to stop at once.
pub type Emit<'a> = dyn FnMut(Event<'_>) -> ControlFlow<()> + 'a;

/// Why a container could not be read to its end; the name is the threat name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Encrypted(&'static str),
    Broken(&'static str),
    Limit(&'static str),
}

impl From<whole::Fault> for Fault {
    fn from(f: whole::Fault) -> Fault {
        match f {
            whole::Fault::Encrypted(n) => Fault::Encrypted(n),
            whole::Fault::Broken(n) => Fault::Broken(n),
            whole::Fault::Limit(n) => Fault::Limit(n),
        }
    }
}

/// A streamed container format: bytes in, member events out. `feed` may be given any split of
/// the container's bytes; `finish` is called at its end and reports a truncated container.
pub trait Feed {
    fn feed(&mut self, input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault>;
    fn finish(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault>;

    /// For a format that a random-access reader can take over when the stream fails (zip,
    /// from its central directory): the offset, counted from the container's first byte, of
    /// the earliest byte that reader could still need from this stream. `None`: nothing is to
    /// be kept (no such reader, or the stream is past the point where one could help).
    fn keep_from(&self) -> Option<u64> {
        None
    }

    /// The entries the stream read in full, which the random-access reader must not scan
    /// again (taken once, when it takes over).
    fn take_done(&mut self) -> Vec<whole::ZipDone> {
        Vec::new()
    }
}

/// The container layer's bounds (see [`crate::limits`] for defaults and reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    pub recursion_max: u32,
    pub files_max: u32,
    pub file_bytes_max: u64,
    pub scan_bytes_max: u64,
    pub ratio_max: u64,
    pub ratio_floor_bytes: u64,
    pub buffer_bytes_max: u64,
    pub lzma_memory_bytes_max: u64,
}

/// What to do with encrypted members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncryptedPolicy {
    Block,
    Pass,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub over_limit: OverLimit,
    pub encrypted: EncryptedPolicy,
}

/// Settings every level's scanners are begun with.
#[derive(Clone, Copy, Debug)]
struct ScanSettings {
    partials_max: usize,
    partial_ends_max: usize,
    yara_scanners_max: usize,
    whole_max: usize,
}

enum State {
    /// Collecting the head.
    Sniffing,
    /// Not a container (or no longer opened): only the object's own scanners run.
    Plain,
    Stream(Box<dyn Feed>),
    Whole(whole::Kind),
    /// A zip whose stream failed, buffered in the level's hold to be read from its central
    /// directory; the entries the stream read in full, sorted.
    Central(Vec<whole::ZipDone>),
}

/// A streamed zip's bytes from `base` on, kept in case its central directory has to be read.
///
/// After every call of the feeder the hold is exactly the record being read, from its start
/// ([`Feed::keep_from`]) to the last byte fed, however the bytes were cut; a record longer than
/// `buffer_bytes_max` is given up (`missing`) until the next record begins, whose bytes are
/// then the tail of the chunk just fed. So whether a zip can be rescued does not depend on how
/// its bytes arrived. The bound is per nesting level: a hold is only the record in progress,
/// and becomes part of the tree's buffering budget only when it is used.
#[derive(Default)]
struct Hold {
    on: bool,
    base: u64,
    bytes: Vec<u8>,
    /// Bytes fed to the feeder so far.
    fed: u64,
    /// The start of a record whose bytes were given up.
    missing: Option<u64>,
}

impl Hold {
    /// Keeps the next bytes fed (before the feeder sees them).
    fn push(&mut self, data: &[u8]) {
        if !self.on {
            return;
        }
        self.fed += data.len() as u64;
        if self.missing.is_none() {
            self.bytes.extend_from_slice(data);
        }
    }

    /// After a call of the feeder that was given `data`: keep only the record from
    /// `keep_from` on (`None`: nothing), within `max` bytes.
    fn settle(&mut self, keep_from: Option<u64>, data: &[u8], max: u64) {
        if !self.on {
            return;
        }
        let Some(keep) = keep_from else {
            self.clear();
            return;
        };
        match self.missing {
            Some(gone) if keep <= gone => return,
            Some(_) => {
                // A new record began in this chunk: its bytes are the chunk's tail.
                let chunk_at = self.fed - data.len() as u64;
                let Some(from) = keep.checked_sub(chunk_at) else {
                    self.missing = Some(keep);
                    return;
                };
                self.bytes.clear();
                self.bytes.extend_from_slice(&data[usize::try_from(from).unwrap_or(usize::MAX).min(data.len())..]);
                self.base = keep;
                self.missing = None;
            }
            None => {
                let n = usize::try_from(keep.saturating_sub(self.base)).unwrap_or(usize::MAX).min(self.bytes.len());
                if n > 0 {
                    self.bytes.drain(..n);
                    self.base += n as u64;
                }
            }
        }
        if self.bytes.len() as u64 > max {
            self.bytes.clear();
            self.missing = Some(keep);
        }
    }

    fn clear(&mut self) {
        self.on = false;
        self.base = 0;
        self.fed = 0;
        self.missing = None;
        self.bytes.clear();
        if self.bytes.capacity() > BUF_KEEP_BYTES {
            self.bytes = Vec::new();
        }
    }
}

/// The member a level's container has open.
#[derive(Default)]
struct Member {
    open: bool,
    /// Its remaining bytes are not scanned (over MaxFileSize, or too deep).
    skip: bool,
    bytes: u64,
    /// Length of the tree's path before this member's name.
    path_len: usize,
}

/// One nesting level.
struct Level {
    scan: ObjectScan,
    head: Vec<u8>,
    /// The object is a region of its container's bytes ([`Event::Embedded`]).
    embedded: bool,
    /// How much of the head the object's own scanners have had (see [`Level::feed`]).
    head_scanned: usize,
    /// What the object's own scanners found while its members were still to be fed, and the
    /// place to name ([`Level::scan_own`]).
    held: Option<(Hit, Option<String>)>,
    state: State,
    /// The object's name, for naming members that have none (a gzip's content).
    name: String,
    /// Buffer of a random-access format, and what it is charged to the budget.
    buf: Vec<u8>,
    buf_charge: Option<Charge>,
    /// A fault that stopped the container; decides the object if its scanners find nothing.
    fault: Option<Fault>,
    /// A streamed zip's bytes, held in case (see the module's doc), and once its stream
    /// failed, the buffer its central directory is read from.
    hold: Hold,
    member: Member,
    child: Option<Box<Level>>,
}

/// Capacity of a level's whole-format buffer kept between objects.
const BUF_KEEP_BYTES: usize = 256 * 1024;

impl Level {
    fn new(sg: &Rc<ShardGen>, s: ScanSettings, store: &WholeStore) -> Level {
        Level {
            scan: ObjectScan::new(sg, s.partials_max, s.partial_ends_max, s.whole_max, store),
            head: Vec::with_capacity(DETECT_BYTES),
            embedded: false,
            head_scanned: 0,
            held: None,
            state: State::Sniffing,
            name: String::new(),
            buf: Vec::new(),
            buf_charge: None,
            fault: None,
            hold: Hold::default(),
            member: Member::default(),
            child: None,
        }
    }

    fn begin(&mut self, sg: &Rc<ShardGen>, s: ScanSettings, name: &str, embedded: bool) {
        self.scan.begin(sg, s.yara_scanners_max, s.whole_max);
        self.embedded = embedded;
        self.head.clear();
        self.head_scanned = 0;
        self.held = None;
        self.state = State::Sniffing;
        self.name.clear();
        self.name.push_str(&name[..floor_char(name, tree::NAME_BYTES_MAX)]);
        self.release_buf();
        self.fault = None;
        self.hold.clear();
        self.member = Member::default();
    }

    /// Empties the random-access buffer, frees a big one and settles its charge.
    fn release_buf(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > BUF_KEEP_BYTES {
            self.buf = Vec::new();
        }
        if let Some(c) = self.buf_charge.as_mut() {
            c.resize(self.buf.capacity());
        }
    }

    /// Makes room for `more` bytes in the random-access buffer if the budget pays for it.
    fn reserve_buf(&mut self, more: usize, budget: &Rc<ShardBudget>) -> bool {
        let need = self.buf.len() + more;
        if need <= self.buf.capacity() {
            return true;
        }
        let cap = need.max(2 * self.buf.capacity());
        let charged = match self.buf_charge.as_mut() {
            Some(c) => c.resize(cap),
            None => budget.try_charge(Use::Container, cap).map(|c| self.buf_charge = Some(c)).is_some(),
        };
        if charged {
            self.buf.reserve_exact(cap - self.buf.len());
        }
        charged
    }

    /// The next bytes of this level's object. Members go first, so that a member stored
    /// as it is (tar, a stored zip entry) is named as the place of a find in both.
    ///
    /// The top-level object (`depth` 0) is also typed before its own scanners see its head:
    /// while it is being typed (at most [`DETECT_BYTES`]) it has no members, and a threat
    /// stored as it is inside the head (a PE's overlay, a multipart body's part) would
    /// otherwise be named in the object when the head trickles in and in the member when it
    /// comes at once. Once typed, the head goes to the members and then, as one piece, to the
    /// object's scanners ([`Level::scan_head`]), whichever pieces it came in. A member level
    /// scans its head as it comes: its bytes are already behind its container's, and holding
    /// them back would let the container's scanners find a stored member's threat first.
    fn feed(&mut self, data: &[u8], cx: &mut Cx<'_>, depth: u32) -> ControlFlow<()> {
        let top = depth == 0;
        let mut rest = data;
        if let State::Sniffing = self.state {
            let take = (DETECT_BYTES - self.head.len()).min(rest.len());
            self.head.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            match detect::detect_embedded(&self.head, false, self.embedded) {
                Detect::NeedMore if top => return ControlFlow::Continue(()),
                Detect::NeedMore => return self.scan_head(cx.tree, depth),
                found => {
                    self.start(found, cx);
                    let head = std::mem::take(&mut self.head);
                    let flow = self.open(&head, cx, depth);
                    self.head = head;
                    flow?;
                    if !top {
                        self.open(rest, cx, depth)?;
                        self.scan_head(cx.tree, depth)?;
                        return self.scan_own(rest, cx.tree, depth);
                    }
                    self.scan_head(cx.tree, depth)?;
                }
            }
        }
        self.open(rest, cx, depth)?;
        self.scan_own(rest, cx.tree, depth)
    }

    /// Reports what the object's own scanners found and [`Level::scan_own`] held, if nothing
    /// was found before it.
    fn release_held(&mut self, tree: &mut Tree) -> ControlFlow<()> {
        match self.held.take() {
            Some((hit, at)) => {
                tree.found_at(hit, at);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    }

    /// Gives the head's bytes that the object's own scanners have not had yet to them: once
    /// the object is typed and its members have had the head, or when a preview ends.
    fn scan_head(&mut self, tree: &mut Tree, depth: u32) -> ControlFlow<()> {
        let head = std::mem::take(&mut self.head);
        let from = self.head_scanned.min(head.len());
        self.head_scanned = head.len();
        let flow = self.scan_own(&head[from..], tree, depth);
        self.head = head;
        flow
    }

    /// `data` through the object's own scanners.
    ///
    /// What they find in a streamed container is held until its members have had all of it
    /// ([`Level::release_held`], at the container's end): a member is fed each piece before
    /// the container's scanners, so when the whole container comes in one piece every member
    /// has been scanned before the container's own find. Holding it keeps the place named the
    /// same however the bytes were cut: a member's find, if any, comes first.
    fn scan_own(&mut self, data: &[u8], tree: &mut Tree, depth: u32) -> ControlFlow<()> {
        if data.is_empty() || self.held.is_some() {
            return ControlFlow::Continue(());
        }
        if let Some(hit) = self.scan.feed(data) {
            if let State::Stream(_) = self.state {
                // The container's own place: without the member open in it, if any.
                let own = if self.member.open { &tree.path[..self.member.path_len] } else { &tree.path[..] };
                self.held = Some((hit, (depth > 0).then(|| own.to_string())));
                return ControlFlow::Continue(());
            }
            tree.found(hit, depth);
            return ControlFlow::Break(());
        }
        if let Some(threat) = self.scan.take_skip() {
            // A scanner cannot see the whole object: under `block` that decides it now,
            // under `pass` the limit is recorded and the other scanners go on.
            if let Act::Stop = tree.over(threat, depth) {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// Starts opening the object as `found`.
    fn start(&mut self, found: Detect, cx: &mut Cx<'_>) {
        self.state = match found {
            Detect::Container(Kind::Whole(kind)) => State::Whole(kind),
            Detect::Container(kind) => match formats::feeder(kind, &self.name, cx) {
                Some(feeder) => {
                    self.hold.on = feeder.keep_from().is_some();
                    State::Stream(feeder)
                }
                None => {
                    self.fault.get_or_insert(Fault::Broken("Heuristics.Broken.Decoder"));
                    State::Plain
                }
            },
            _ => State::Plain,
        };
    }

    /// Feeds the container's opener (after the head was decided).
    fn open(&mut self, data: &[u8], cx: &mut Cx<'_>, depth: u32) -> ControlFlow<()> {
        if data.is_empty() {
            return ControlFlow::Continue(());
        }
        match &mut self.state {
            State::Sniffing | State::Plain => ControlFlow::Continue(()),
            State::Whole(_) => {
                cx.tree.buffered += data.len() as u64;
                let over = if cx.tree.buffered > cx.tree.limits.buffer_bytes_max {
                    Some(tree::THREAT_BUFFER)
                } else if !self.reserve_buf(data.len(), &cx.store.budget) {
                    Some(scan_policy::THREAT_MEMORY)
                } else {
                    None
                };
                if let Some(threat) = over {
                    cx.tree.buffered = cx.tree.buffered.saturating_sub(self.buf.len() as u64 + data.len() as u64);
                    self.release_buf();
                    self.state = State::Plain;
                    return act(cx.tree.over(threat, depth));
                }
                self.buf.extend_from_slice(data);
                ControlFlow::Continue(())
            }
            State::Central(_) => self.buffer_central(data, cx, depth),
            State::Stream(feeder) => {
                self.hold.push(data);
                let (child, member) = (&mut self.child, &mut self.member);
                let result = feeder.feed(data, &mut |ev| on_event(child, member, cx, depth + 1, ev));
                self.after_stream(result, data, cx, depth)
            }
        }
    }

    /// A streamed feeder's answer to `data`: a zip that failed is read from its central
    /// directory if the record it failed in is held; otherwise [`Level::settle`].
    fn after_stream(
        &mut self,
        result: Result<ControlFlow<()>, Fault>,
        data: &[u8],
        cx: &mut Cx<'_>,
        depth: u32,
    ) -> ControlFlow<()> {
        let State::Stream(feeder) = &mut self.state else { return self.settle(result, cx, depth) };
        let rescuable = matches!(result, Ok(ControlFlow::Continue(())) | Err(Fault::Broken(_) | Fault::Encrypted(_)));
        if !self.hold.on || !rescuable {
            return self.settle(result, cx, depth);
        }
        self.hold.settle(feeder.keep_from(), data, cx.tree.limits.buffer_bytes_max);
        let Err(fault) = result else { return ControlFlow::Continue(()) };
        if !self.hold.on {
            // Failed where a central-directory reader cannot help (in the central directory).
            return self.settle(Err(fault), cx, depth);
        }
        let done = feeder.take_done();
        self.rescue(fault, done, cx, depth)
    }

    /// The stream failed with `fault`: the held record and what follows become the buffer the
    /// central directory is read from at the end. The stream's fault stands, and the zip is
    /// `MaxBufferSize`, if they cannot be held.
    fn rescue(&mut self, fault: Fault, done: Vec<whole::ZipDone>, cx: &mut Cx<'_>, depth: u32) -> ControlFlow<()> {
        if self.member.open {
            // Read again, whole, from the central directory: what it got is not judged.
            self.member.open = false;
            if let Some(level) = self.child.as_deref_mut() {
                level.end(cx.tree);
            }
            cx.tree.path.truncate(self.member.path_len);
            cx.tree.members = cx.tree.members.saturating_sub(1);
        }
        self.fault = Some(fault);
        if self.hold.missing.is_some() {
            self.hold.clear();
            self.state = State::Plain;
            return act(cx.tree.over(tree::THREAT_BUFFER, depth));
        }
        self.hold.on = false;
        cx.tree.buffered += self.hold.bytes.len() as u64;
        self.state = State::Central(done);
        self.buffer_central(&[], cx, depth)
    }

    /// Adds `data` to a zip buffered for its central directory, within the tree's buffering
    /// limit; past it the zip is `MaxBufferSize` (and the stream's fault stays recorded).
    fn buffer_central(&mut self, data: &[u8], cx: &mut Cx<'_>, depth: u32) -> ControlFlow<()> {
        cx.tree.buffered += data.len() as u64;
        if cx.tree.buffered > cx.tree.limits.buffer_bytes_max {
            cx.tree.buffered = cx.tree.buffered.saturating_sub(self.hold.bytes.len() as u64 + data.len() as u64);
            self.hold.clear();
            self.state = State::Plain;
            return act(cx.tree.over(tree::THREAT_BUFFER, depth));
        }
        self.hold.bytes.extend_from_slice(data);
        ControlFlow::Continue(())
    }

    /// Reads the zip held for its central directory: its result replaces the stream's fault.
    fn read_central(&mut self, done: &[whole::ZipDone], cx: &mut Cx<'_>, depth: u32) -> ControlFlow<()> {
        let limits = self.whole_limits(cx);
        let held_max = cx.tree.limits.buffer_bytes_max.saturating_sub(cx.tree.buffered);
        let lzma_max = cx.tree.limits.lzma_memory_bytes_max;
        let hold = std::mem::take(&mut self.hold);
        let mut sink = WholeSink { child: &mut self.child, member: &mut self.member, cx, depth: depth + 1 };
        let result = whole::extract_zip(&hold.bytes, hold.base, done, held_max, lzma_max, &limits, &mut sink);
        let result = result.map_err(Fault::from).map(|()| sink.stopped());
        cx.tree.buffered = cx.tree.buffered.saturating_sub(hold.bytes.len() as u64);
        self.hold = hold;
        self.hold.clear();
        self.fault = None;
        self.settle(result, cx, depth)
    }

    /// The random-access library's limits for this level, from what the tree has left.
    fn whole_limits(&self, cx: &Cx<'_>) -> whole::Limits {
        whole::Limits {
            member_bytes_max: cx.tree.limits.file_bytes_max,
            members_max: cx.tree.limits.files_max.saturating_sub(cx.tree.members),
            ratio_max: cx.tree.limits.ratio_max,
        }
    }

    /// What a feeder's answer means for this level: a find stops everything; a skipped or
    /// faulty container is no longer opened (the object's own scanners go on).
    fn settle(&mut self, result: Result<ControlFlow<()>, Fault>, cx: &mut Cx<'_>, depth: u32) -> ControlFlow<()> {
        match result {
            Ok(ControlFlow::Continue(())) => return ControlFlow::Continue(()),
            Ok(ControlFlow::Break(())) if cx.tree.hit.is_some() => return ControlFlow::Break(()),
            Ok(ControlFlow::Break(())) => {}
            Err(fault) => {
                self.fault.get_or_insert(fault);
            }
        }
        // Abandoned: close the open member (what it got is still judged).
        self.state = State::Plain;
        self.hold.clear();
        if self.member.open {
            let flow = on_event(&mut self.child, &mut self.member, cx, depth + 1, Event::End);
            if flow.is_break() && cx.tree.hit.is_some() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// The object ended: open what is left, then its own end-of-object scanners, then a
    /// fault, if any, decides.
    fn finish(&mut self, cx: &mut Cx<'_>, depth: u32) -> ControlFlow<()> {
        if let State::Sniffing = self.state {
            let found = detect::detect_embedded(&self.head, true, self.embedded);
            self.start(found, cx);
            let head = std::mem::take(&mut self.head);
            let flow = self.open(&head, cx, depth);
            self.head = head;
            flow?;
        }
        if let State::Stream(feeder) = &mut self.state {
            let (child, member) = (&mut self.child, &mut self.member);
            let result = feeder.finish(&mut |ev| on_event(child, member, cx, depth + 1, ev));
            self.after_stream(result, &[], cx, depth)?;
        }
        // After the streamed members' ends, so that an object typed only at its end (shorter
        // than its head) has its members judged first, as when it is typed sooner.
        self.scan_head(cx.tree, depth)?;
        self.release_held(cx.tree)?;
        match &mut self.state {
            State::Central(done) => {
                let done = std::mem::take(done);
                self.read_central(&done, cx, depth)?;
            }
            State::Whole(kind) => {
                let kind = *kind;
                let limits = self.whole_limits(cx);
                let buf = std::mem::take(&mut self.buf);
                let mut sink = WholeSink { child: &mut self.child, member: &mut self.member, cx, depth: depth + 1 };
                let result =
                    whole::extract(kind, &buf, &limits, &mut sink).map_err(Fault::from).map(|()| sink.stopped());
                cx.tree.buffered = cx.tree.buffered.saturating_sub(buf.len() as u64);
                self.buf = buf;
                self.release_buf();
                self.settle(result, cx, depth)?;
            }
            _ => {}
        }
        self.state = State::Plain;
        self.hold.clear();
        if let Some(hit) = self.scan.finish(cx.time_left) {
            cx.tree.found(hit, depth);
            return ControlFlow::Break(());
        }
        if let Some(threat) = self.scan.skipped() {
            if let Act::Stop = cx.tree.over(threat, depth) {
                return ControlFlow::Break(());
            }
        }
        if let Some(fault) = self.fault.take() {
            return act(cx.tree.fault(fault, depth));
        }
        ControlFlow::Continue(())
    }

    /// The object was cut short (the transaction ended early, or the member is no longer
    /// scanned): give lent scanners and the tree's buffering budget back.
    fn end(&mut self, tree: &mut Tree) {
        let mut level = Some(self);
        while let Some(l) = level {
            // A find already made stands, cut short or not.
            let _ = l.release_held(tree);
            l.scan.end();
            if matches!(l.state, State::Whole(_)) {
                tree.buffered = tree.buffered.saturating_sub(l.buf.len() as u64);
            }
            l.release_buf();
            if matches!(l.state, State::Central(_)) {
                tree.buffered = tree.buffered.saturating_sub(l.hold.bytes.len() as u64);
                l.hold.clear();
            }
            l.hold.clear();
            l.state = State::Plain;
            level = l.child.as_deref_mut();
        }
    }
}

fn act(a: Act) -> ControlFlow<()> {
    match a {
        Act::Stop => ControlFlow::Break(()),
        Act::Skip => ControlFlow::Continue(()),
    }
}

/// The largest char boundary of `s` at or below `max`.
fn floor_char(s: &str, max: usize) -> usize {
    let mut n = max.min(s.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// What every level needs besides itself.
struct Cx<'a> {
    tree: &'a mut Tree,
    sg: &'a Rc<ShardGen>,
    settings: ScanSettings,
    store: &'a WholeStore,
    /// What remains of the object's scan time (for the whole-buffer YARA scans at the end).
    time_left: Duration,
}

/// Routes one event of the container at `depth - 1` to the member level at `depth`.
/// `Break` without a hit asks the container's feeder to stop: the container is skipped.
fn on_event(
    child: &mut Option<Box<Level>>,
    member: &mut Member,
    cx: &mut Cx<'_>,
    depth: u32,
    ev: Event<'_>,
) -> ControlFlow<()> {
    let embedded = matches!(ev, Event::Embedded(_));
    match ev {
        Event::Start(name) | Event::Embedded(name) => {
            if member.open {
                // A feeder that starts a member without ending the last one ends it here.
                on_event(child, member, cx, depth, Event::End)?;
            }
            *member = Member { open: true, skip: false, bytes: 0, path_len: cx.tree.path.len() };
            tree::push_name(&mut cx.tree.path, name);
            cx.tree.members += 1;
            if cx.tree.members > cx.tree.limits.files_max {
                // Stop (block) or stop opening this container (pass).
                member.skip = true;
                cx.tree.over(tree::THREAT_FILES, depth);
                return ControlFlow::Break(());
            }
            if depth > cx.tree.limits.recursion_max {
                // Too deep to scan: skipped, and decides the object only if nothing else does.
                member.skip = true;
                cx.tree.defer(tree::THREAT_RECURSION);
                return ControlFlow::Continue(());
            }
            let level = child.get_or_insert_with(|| Box::new(Level::new(cx.sg, cx.settings, cx.store)));
            level.begin(cx.sg, cx.settings, name, embedded);
            ControlFlow::Continue(())
        }
        Event::Data(data) => {
            if !member.open {
                return ControlFlow::Continue(());
            }
            if cx.tree.extract(data.len(), depth).is_some() {
                // Over the per-object totals: stop (block) or stop opening this container.
                return ControlFlow::Break(());
            }
            if member.skip {
                return ControlFlow::Continue(());
            }
            member.bytes += data.len() as u64;
            if member.bytes > cx.tree.limits.file_bytes_max {
                // What was scanned of it stays scanned; the rest is skipped.
                member.skip = true;
                if let Some(level) = child.as_deref_mut() {
                    level.end(cx.tree);
                }
                cx.tree.defer(tree::THREAT_FILE_SIZE);
                return ControlFlow::Continue(());
            }
            let level = child.as_deref_mut().expect("begun at Start");
            level.feed(data, cx, depth)
        }
        Event::End => {
            if !member.open {
                return ControlFlow::Continue(());
            }
            member.open = false;
            let flow = if member.skip {
                ControlFlow::Continue(())
            } else {
                child.as_deref_mut().expect("begun at Start").finish(cx, depth)
            };
            cx.tree.path.truncate(member.path_len);
            flow
        }
    }
}

/// The random-access library's members, routed like a feeder's events.
struct WholeSink<'a, 'c> {
    child: &'a mut Option<Box<Level>>,
    member: &'a mut Member,
    cx: &'a mut Cx<'c>,
    depth: u32,
}

impl WholeSink<'_, '_> {
    /// The library stops quietly when the sink says stop: whether it did, and so why it ended.
    fn stopped(&self) -> ControlFlow<()> {
        if self.cx.tree.hit.is_some() || self.member.open {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl whole::Sink for WholeSink<'_, '_> {
    fn member_start(&mut self, name: &str) -> ControlFlow<()> {
        on_event(self.child, self.member, self.cx, self.depth, Event::Start(name))
    }
    fn member_data(&mut self, data: &[u8]) -> ControlFlow<()> {
        on_event(self.child, self.member, self.cx, self.depth, Event::Data(data))
    }
    fn member_end(&mut self) -> ControlFlow<()> {
        on_event(self.child, self.member, self.cx, self.depth, Event::End)
    }
}

/// The container layer for one connection: the top-level object's level and the tree.
pub struct Unpacker {
    root: Level,
    tree: Tree,
    settings: ScanSettings,
    store: WholeStore,
}

impl Unpacker {
    pub fn new(
        sg: &Rc<ShardGen>,
        limits: UnpackLimits,
        policy: Policy,
        partials: (usize, usize),
        yara_scanners_max: usize,
        whole_max: usize,
        store: WholeStore,
    ) -> Unpacker {
        let (partials_max, partial_ends_max) = partials;
        let settings = ScanSettings { partials_max, partial_ends_max, yara_scanners_max, whole_max };
        Unpacker { root: Level::new(sg, settings, &store), tree: Tree::new(limits, policy), settings, store }
    }

    /// Starts a top-level object named `name` (from its URL; may be empty), under the
    /// transaction's over-limit policy (the operator's `strict` blocks whatever the setting).
    pub fn begin(&mut self, sg: &Rc<ShardGen>, name: &str, over_limit: OverLimit) {
        self.root.end(&mut self.tree);
        self.tree.reset(name);
        self.tree.policy.over_limit = over_limit;
        self.root.begin(sg, self.settings, name, false);
    }

    /// The next bytes of the top-level object; a hit once one is certain. `time_left` is what
    /// remains of the object's scan time (members that end here are judged with it).
    pub fn feed(&mut self, sg: &Rc<ShardGen>, data: &[u8], time_left: Duration) -> Option<Hit> {
        if let Some(hit) = &self.tree.hit {
            return Some(hit.clone());
        }
        self.tree.input += data.len() as u64;
        let mut cx = Cx { tree: &mut self.tree, sg, settings: self.settings, store: &self.store, time_left };
        if self.root.feed(data, &mut cx, 0).is_break() {
            self.root.end(cx.tree);
        }
        self.tree.hit.clone()
    }

    /// The object ended; `time_left` is what remains of its scan time.
    pub fn finish(&mut self, sg: &Rc<ShardGen>, time_left: Duration) -> Option<Hit> {
        if let Some(hit) = &self.tree.hit {
            return Some(hit.clone());
        }
        let mut cx = Cx { tree: &mut self.tree, sg, settings: self.settings, store: &self.store, time_left };
        let _ = self.root.finish(&mut cx, 0);
        self.root.end(cx.tree);
        self.tree.settle_pending();
        self.tree.hit.clone()
    }

    /// At the end of a preview: matches what the top object's body matcher holds back.
    pub fn flush(&mut self) -> Option<Hit> {
        if let Some(hit) = &self.tree.hit {
            return Some(hit.clone());
        }
        if let State::Sniffing = self.root.state {
            // The preview's verdict needs every byte of it scanned, typed or not.
            if self.root.scan_head(&mut self.tree, 0).is_break() {
                self.root.end(&mut self.tree);
                return self.tree.hit.clone();
            }
        }
        if self.root.release_held(&mut self.tree).is_break() {
            self.root.end(&mut self.tree);
            return self.tree.hit.clone();
        }
        let hit = self.root.scan.flush()?;
        self.tree.found(hit, 0);
        self.root.end(&mut self.tree);
        self.tree.hit.clone()
    }

    /// Whether an allowlist hash could still clear the top object.
    pub fn allow_open(&self) -> bool {
        self.root.scan.allow_open()
    }

    /// The transaction ended before the object did.
    pub fn end(&mut self) {
        self.root.end(&mut self.tree);
    }

    /// The member path of the find, when it was inside a container.
    pub fn found_in(&self) -> Option<&str> {
        self.tree.found_in.as_deref()
    }

    /// The first container limit or fault met, whatever the policy made of it.
    pub fn limit(&self) -> Option<&'static str> {
        self.tree.limit
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_central;
#[cfg(test)]
mod tests_sfx;
