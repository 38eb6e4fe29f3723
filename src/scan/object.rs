//! Every signature on one object: the scanners that run over the top-level body and, the same
//! way, over every member the container layer ([`super::unpack`]) extracts from it.
//!
//! An [`ObjectScan`] holds the per-object streams: the body matcher (`.ndb`), the digests
//! (`.hdb`/`.hsb`), a YARA block scanner lent from the shard's pool with its boundary feeder,
//! and the copy kept for whole-object YARA rules ([`super::spool`]: in memory, charged to the
//! shard's budget, up to `yara_whole_bytes_max`, in an unnamed spool file beyond). Offsets, sizes and hashes are
//! relative to the object it was begun for, so a signature means the same on a member as on a
//! downloaded file. It is the one place that runs "all signatures on one object": a new kind of
//! signature is added here and reaches top-level bodies and members alike.
//!
//! The transaction-level things (URL rules, Content-Encoding, the received-byte and time
//! budgets, the preview) stay in [`super::engine::EngineInspector`].

use super::body::BodyStream;
use super::hash::{HashSet, HashStream};
use super::imports::ImportStream;
use super::ldb::LdbStream;
use super::policy;
use super::sections::SectionStream;
use super::shard_gen::{LentBlock, ShardGen};
use super::spool::{Spool, SpoolError};
use super::unpack::WholeStore;
use super::yara_stream::YaraFeeder;
use std::rc::Rc;
use std::time::Duration;

/// What a scan concluded: a signature's name, or a limit (a YARA timeout) to hand to the
/// over-limit policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hit {
    Threat(Box<str>),
    Limit(&'static str),
}

/// The per-object scanning state; one per nesting level, reused for every object at it.
pub struct ObjectScan {
    sg: Rc<ShardGen>,
    body: BodyStream,
    hash: HashStream,
    // clamdb (issue 16): logical signatures, PE section hashes and the .fp/.sfp allowlist.
    ldb: LdbStream,
    sections: SectionStream,
    /// clamdb (issue 16): PE import-table hashes (`.imp`), read from a kept copy at the end.
    imports: ImportStream,
    allow_hash: HashStream,
    partials_max: usize,
    partial_ends_max: usize,
    yara: Option<LentBlock>,
    feeder: YaraFeeder,
    /// A copy of the object for whole-object YARA rules (in memory, or spooled to a file),
    /// while it can be kept.
    whole: Spool,
    whole_fits: bool,
    yara_scanners_max: usize,
    /// Bytes of this object scanned so far.
    bytes: u64,
    found: Option<Hit>,
    /// A limit that made one scanner stop while the others go on; the caller hands it to
    /// the over-limit policy (at once, via [`ObjectScan::take_skip`], and at the end).
    skipped: Option<&'static str>,
    /// `skipped` was set and not yet taken by the caller.
    skip_new: bool,
}

fn body_stream(sg: &ShardGen, partials_max: usize, partial_ends_max: usize) -> BodyStream {
    BodyStream::with_limits(&sg.gen.body, partials_max, partial_ends_max)
}

/// Whether an allowlist hash could still match an object of which `bytes` have been seen.
pub(super) fn allow_could_match(allow: &HashSet, bytes: u64) -> bool {
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

impl ObjectScan {
    /// `partials_max`/`partial_ends_max` bound the body matcher's partial matches;
    /// `whole_max` the copies the logical signatures keep for their regexes and the in-memory
    /// part of the whole-object YARA copy, which `store` charges and spools.
    pub fn new(
        sg: &Rc<ShardGen>,
        partials_max: usize,
        partial_ends_max: usize,
        whole_max: usize,
        store: &WholeStore,
    ) -> ObjectScan {
        let ldb_whole_max = whole_max;
        ObjectScan {
            body: body_stream(sg, partials_max, partial_ends_max),
            hash: HashStream::new(),
            ldb: LdbStream::with_limits(&sg.gen.ldb, ldb_whole_max, partials_max, partial_ends_max),
            sections: SectionStream::new(),
            imports: ImportStream::new(ldb_whole_max),
            allow_hash: HashStream::new(),
            partials_max,
            partial_ends_max,
            yara: None,
            feeder: YaraFeeder::new(sg.gen.yara.overlap),
            whole: Spool::new(store.budget.clone(), whole_max, store.spool_dir.clone()),
            whole_fits: false,
            yara_scanners_max: 0,
            bytes: 0,
            found: None,
            skipped: None,
            skip_new: false,
            sg: sg.clone(),
        }
    }

    /// Starts a new object on generation `sg`. `yara_scanners_max` bounds the shard's pool of
    /// block scanners; `whole_max` the logical signatures' copy.
    pub fn begin(&mut self, sg: &Rc<ShardGen>, yara_scanners_max: usize, whole_max: usize) {
        self.yara = None;
        if !Rc::ptr_eq(sg, &self.sg) {
            self.body = body_stream(sg, self.partials_max, self.partial_ends_max);
            if self.feeder.span() != sg.gen.yara.overlap {
                self.feeder = YaraFeeder::new(sg.gen.yara.overlap);
            }
            self.ldb = LdbStream::with_limits(&sg.gen.ldb, whole_max, self.partials_max, self.partial_ends_max);
            self.sg = sg.clone();
        }
        self.body.reset();
        self.ldb.reset(&self.sg.gen.ldb);
        self.sections.reset();
        self.imports.reset(&self.sg.gen.imports);
        self.feeder.reset();
        self.skipped = None;
        self.skip_new = false;
        // A big object's copy is not kept on an idle connection (the spool frees it).
        self.whole.clear();
        self.bytes = 0;
        self.found = None;
        // Not `needed(content_length)`: a Content-Length header can lie, and a body longer than
        // it must not escape the hash signatures. Hashing stops past the largest signed size.
        self.hash.begin(self.sg.gen.hashes.needed(None));
        self.allow_hash.begin(self.sg.gen.allow.needed(None));
        self.yara = self.sg.lend_block(yara_scanners_max);
        // Without a block scanner the streaming rules run with the whole-object ones at the end.
        let gen = &self.sg.gen;
        self.whole_fits = gen.yara.has_whole() || (self.yara.is_none() && gen.yara.stream.is_some());
        self.yara_scanners_max = yara_scanners_max;
    }

    /// Gives the lent YARA scanner back and lets go of the whole-object copy (the object
    /// ended early or was abandoned).
    pub fn end(&mut self) {
        self.yara = None;
        self.whole.clear();
    }

    /// What a YARA evaluation decides, if anything: its threat, or `MaxScanTime` when it ran
    /// out of time. A cap on matches that left some rule's outcome unknown is a scanner limit
    /// like the others met at the end: a threat found elsewhere still names the object,
    /// otherwise the over-limit policy decides.
    fn yara_found(&mut self, result: Result<super::shard_gen::YaraFound, yara_x::ScanError>) -> Option<Hit> {
        let Ok(found) = result else { return Some(Hit::Limit(policy::THREAT_TIME)) };
        if found.saturated {
            self.skipped.get_or_insert(policy::THREAT_YARA_MATCHES);
        }
        found.rule.map(|name| Hit::Threat(name.into()))
    }

    /// Bytes of the current object scanned so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// One scanner cannot see the whole object: the others go on, and the caller decides
    /// by the over-limit policy (see [`ObjectScan::take_skip`]).
    fn skip(&mut self, threat: &'static str) {
        if self.skipped.is_none() {
            self.skipped = Some(threat);
            self.skip_new = true;
        }
    }

    /// A scanner limit met since the last call, for the caller's over-limit policy: under
    /// `block` it decides the object now, under `pass` the other scanners go on.
    pub fn take_skip(&mut self) -> Option<&'static str> {
        if !std::mem::take(&mut self.skip_new) {
            return None;
        }
        self.skipped
    }

    /// The scanner limit met on this object, if any (reported at its end).
    pub fn skipped(&self) -> Option<&'static str> {
        self.skipped
    }

    /// Whether an allowlist (`.fp`/`.sfp`) hash could still clear this object.
    pub fn allow_open(&self) -> bool {
        allow_could_match(&self.sg.gen.allow, self.bytes)
    }

    /// Matches the bytes the literal matcher still holds back (it stages tiny chunks), for a
    /// verdict at the end of a preview.
    pub fn flush(&mut self) -> Option<Hit> {
        if self.found.is_some() {
            return self.found.clone();
        }
        let sg = self.sg.clone();
        let sig = self.body.flush(&sg.gen.body)?;
        if self.allow_open() {
            return None;
        }
        self.conclude(Hit::Threat(sg.gen.body.name(sig).into()))
    }

    /// Runs every streaming scanner over the next bytes; the first hit, once certain.
    pub fn feed(&mut self, data: &[u8]) -> Option<Hit> {
        if self.found.is_some() {
            return self.found.clone();
        }
        self.bytes += data.len() as u64;
        let sg = self.sg.clone();
        let gen = &sg.gen;
        if self.yara.is_none() && self.whole_fits && gen.yara.stream.is_some() {
            // No block scanner was free at `begin`: another object may have given one back
            // since, and what came before is in the whole-object copy.
            if let Some(mut lent) = sg.lend_block(self.yara_scanners_max) {
                let fed = match self.whole.contents() {
                    Ok(whole) => self.feeder.feed(lent.scanner(), whole),
                    // The spool cannot be read back: the streaming rules cannot catch up.
                    Err(_) => {
                        self.skip(policy::THREAT_YARA_SCANNERS);
                        Ok(())
                    }
                };
                if self.feeder.scanned_any() {
                    lent.mark_used();
                }
                self.yara = Some(lent);
                if !gen.yara.has_whole() {
                    // The copy was kept only for the streaming rules.
                    self.whole_fits = false;
                    self.whole.clear();
                }
                if fed.is_err() {
                    return self.conclude(Hit::Limit(policy::THREAT_TIME));
                }
            }
        }
        if self.whole_fits {
            if let Err(e) = self.whole.push(data) {
                // Past memory with no spool, refused by the budget, or a failed spool write.
                self.whole_fits = false;
                self.whole.clear();
                if self.yara.is_none() && gen.yara.stream.is_some() {
                    self.skip(policy::THREAT_YARA_SCANNERS);
                }
                if gen.yara.has_whole() {
                    self.skip(match e {
                        SpoolError::Memory => policy::THREAT_MEMORY,
                        SpoolError::TooBig => policy::THREAT_YARA_WHOLE,
                    });
                }
            }
        }
        // clamdb (issue 16): while an allowlist hash could still match, a found body
        // signature waits for the end of the object (BodyStream keeps it found).
        let allow_open = allow_could_match(&gen.allow, self.bytes);
        if let Some(sig) = self.body.feed(&gen.body, data) {
            if !allow_open {
                return self.conclude(Hit::Threat(gen.body.name(sig).into()));
            }
        }
        self.ldb.feed(&gen.ldb, data);
        self.sections.feed(&gen.sections, data);
        self.imports.feed(data);
        let before = self.bytes - data.len() as u64;
        if allow_open {
            feed_bounded(&mut self.allow_hash, gen.allow.size_max(), before, data);
        }
        if self.body.overflowed() || self.ldb.overflowed() {
            self.skip(policy::THREAT_PARTIALS);
        }
        // One byte past the largest signed size is enough to rule every signature out.
        feed_bounded(&mut self.hash, gen.hashes.size_max(), before, data);
        if let Some(lent) = self.yara.as_mut() {
            let fed = self.feeder.feed(lent.scanner(), data);
            if self.feeder.scanned_any() {
                lent.mark_used();
            }
            if fed.is_err() {
                return self.conclude(Hit::Limit(policy::THREAT_TIME));
            }
        }
        None
    }

    fn conclude(&mut self, hit: Hit) -> Option<Hit> {
        self.yara = None;
        self.found = Some(hit.clone());
        Some(hit)
    }

    /// The verdict of the scanners that conclude at the end of the object; a signature
    /// match on an object whose hash is on the `.fp`/`.sfp` allowlist is clean (clamdb). A
    /// scanner limit met on the way is left in [`ObjectScan::skipped`] for the caller.
    /// `time_left` is what remains of the object's scan time, the timeout of the one-call
    /// whole-buffer YARA scans.
    pub fn finish(&mut self, time_left: Duration) -> Option<Hit> {
        let sg = self.sg.clone();
        let allowed = !sg.gen.allow.is_empty() && self.allow_hash.finish(&sg.gen.allow).is_some();
        let hit = self.finish_signatures(time_left);
        self.whole.clear();
        if allowed && self.skipped.is_none() && !matches!(hit, Some(Hit::Limit(_))) {
            return None;
        }
        hit
    }

    fn finish_signatures(&mut self, time_left: Duration) -> Option<Hit> {
        if let Some(hit) = self.found.take() {
            return Some(hit);
        }
        let sg = self.sg.clone();
        let gen = &sg.gen;
        let ldb = self.ldb.finish(&gen.ldb);
        if let Some(sig) = self.body.finish(&gen.body) {
            self.yara = None;
            return Some(Hit::Threat(gen.body.name(sig).into()));
        }
        if let Some(name) = self.hash.finish(&gen.hashes) {
            self.yara = None;
            return Some(Hit::Threat(name.into()));
        }
        if let Some(name) = self.sections.finish(&gen.sections) {
            self.yara = None;
            return Some(Hit::Threat(name.into()));
        }
        let imports = self.imports.finish(&gen.imports);
        if let Ok(Some(name)) = imports {
            self.yara = None;
            return Some(Hit::Threat(name.into()));
        }
        if let Some(sig) = ldb {
            self.yara = None;
            return Some(Hit::Threat(gen.ldb.name(sig).into()));
        }
        if let Some(mut lent) = self.yara.take() {
            let flushed = self.feeder.finish(lent.scanner());
            if self.feeder.scanned_any() {
                lent.mark_used();
            }
            if let Some(hit) = self.yara_found(flushed.and_then(|()| lent.finish(self.bytes))) {
                return Some(hit);
            }
        } else if self.whole_fits && gen.yara.stream.is_some() {
            let result = match self.whole.contents() {
                Ok(whole) => sg.scan_stream_rules(whole, time_left),
                Err(_) => return Some(Hit::Limit(policy::THREAT_YARA_WHOLE)),
            };
            if let Some(hit) = self.yara_found(result) {
                return Some(hit);
            }
        }
        if self.whole_fits && gen.yara.has_whole() {
            let result = match self.whole.contents() {
                Ok(whole) => sg.scan_whole_rules(whole, time_left),
                Err(_) => return Some(Hit::Limit(policy::THREAT_YARA_WHOLE)),
            };
            if let Some(hit) = self.yara_found(result) {
                return Some(hit);
            }
        }
        if self.body.overflowed() {
            self.skipped.get_or_insert(policy::THREAT_PARTIALS);
        }
        if let Some(threat) = self.ldb.limit_hit().or(imports.err()) {
            self.skipped.get_or_insert(threat);
        }
        None
    }
}
