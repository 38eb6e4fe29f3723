//! Every signature on one object: the scanners that run over the top-level body and, the same
//! way, over every member the container layer ([`super::unpack`]) extracts from it.
//!
//! An [`ObjectScan`] holds the per-object streams: the body matcher (`.ndb`), the digests
//! (`.hdb`/`.hsb`), a YARA block scanner lent from the shard's pool with its boundary feeder,
//! and the copy kept for whole-object YARA rules while it fits. Offsets, sizes and hashes are
//! relative to the object it was begun for, so a signature means the same on a member as on a
//! downloaded file. It is the one place that runs "all signatures on one object": a new kind of
//! signature is added here and reaches top-level bodies and members alike.
//!
//! The transaction-level things (URL rules, Content-Encoding, the received-byte and time
//! budgets, the preview) stay in [`super::engine::EngineInspector`].

use super::body::BodyStream;
use super::policy;
use super::shard_gen::{LentBlock, ShardGen};
use super::yara_stream::YaraFeeder;
use std::rc::Rc;

/// Capacity of the whole-object copy kept between objects; larger copies are freed.
const WHOLE_KEEP_BYTES: usize = 256 * 1024;

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
    hash: super::hash::HashStream,
    yara: Option<LentBlock>,
    feeder: YaraFeeder,
    /// A copy of the object for whole-object YARA rules, while it fits.
    whole: Vec<u8>,
    whole_fits: bool,
    whole_max: usize,
    /// Bytes of this object scanned so far.
    bytes: u64,
    found: Option<Hit>,
}

impl ObjectScan {
    pub fn new(sg: &Rc<ShardGen>, overlap: usize) -> ObjectScan {
        ObjectScan {
            body: BodyStream::new(&sg.gen.body),
            hash: super::hash::HashStream::new(),
            yara: None,
            feeder: YaraFeeder::new(overlap),
            whole: Vec::new(),
            whole_fits: false,
            whole_max: 0,
            bytes: 0,
            found: None,
            sg: sg.clone(),
        }
    }

    /// Starts a new object on generation `sg`. `yara_scanners_max` bounds the shard's pool of
    /// block scanners; `whole_max` the whole-object copy.
    pub fn begin(&mut self, sg: &Rc<ShardGen>, yara_scanners_max: usize, whole_max: usize) {
        self.yara = None;
        if !Rc::ptr_eq(sg, &self.sg) {
            self.body = BodyStream::new(&sg.gen.body);
            self.sg = sg.clone();
        }
        self.body.reset();
        self.feeder.reset();
        self.whole.clear();
        if self.whole.capacity() > WHOLE_KEEP_BYTES {
            // A big object's copy is not kept on an idle connection.
            self.whole = Vec::new();
        }
        self.bytes = 0;
        self.found = None;
        // Not `needed(content_length)`: a Content-Length header can lie, and a body longer than
        // it must not escape the hash signatures. Hashing stops past the largest signed size.
        self.hash.begin(self.sg.gen.hashes.needed(None));
        self.yara = self.sg.lend_block(yara_scanners_max);
        // Without a block scanner the streaming rules run with the whole-object ones at the end.
        let gen = &self.sg.gen;
        self.whole_fits = gen.yara.whole.is_some() || (self.yara.is_none() && gen.yara.stream.is_some());
        self.whole_max = whole_max;
    }

    /// Gives the lent YARA scanner back (the object ended early or was abandoned).
    pub fn end(&mut self) {
        self.yara = None;
    }

    /// Bytes of the current object scanned so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Runs every streaming scanner over the next bytes; the first hit, once certain.
    pub fn feed(&mut self, data: &[u8]) -> Option<Hit> {
        if self.found.is_some() {
            return self.found.clone();
        }
        self.bytes += data.len() as u64;
        if self.whole_fits {
            if self.whole.len() + data.len() <= self.whole_max {
                self.whole.extend_from_slice(data);
            } else {
                self.whole_fits = false;
                self.whole.clear();
            }
        }
        let gen = &self.sg.gen;
        if let Some(sig) = self.body.feed(&gen.body, data) {
            return self.conclude(Hit::Threat(gen.body.name(sig).into()));
        }
        let hashed_before = self.bytes - data.len() as u64;
        match gen.hashes.size_max() {
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

    /// The verdict of the scanners that conclude at the end of the object.
    pub fn finish(&mut self) -> Option<Hit> {
        if let Some(hit) = self.found.take() {
            return Some(hit);
        }
        let sg = self.sg.clone();
        let gen = &sg.gen;
        if let Some(sig) = self.body.finish(&gen.body) {
            self.yara = None;
            return Some(Hit::Threat(gen.body.name(sig).into()));
        }
        if let Some(name) = self.hash.finish(&gen.hashes) {
            self.yara = None;
            return Some(Hit::Threat(name.into()));
        }
        let timeout = Hit::Limit(policy::THREAT_TIME);
        if let Some(mut lent) = self.yara.take() {
            let flushed = self.feeder.finish(lent.scanner());
            if self.feeder.scanned_any() {
                lent.mark_used();
            }
            match flushed.and_then(|()| lent.finish()) {
                Ok(Some(name)) => return Some(Hit::Threat(name.into())),
                Ok(None) => {}
                Err(_) => return Some(timeout),
            }
        } else if self.whole_fits && gen.yara.stream.is_some() {
            match sg.scan_stream_rules(&self.whole) {
                Ok(Some(name)) => return Some(Hit::Threat(name.into())),
                Ok(None) => {}
                Err(_) => return Some(timeout),
            }
        }
        if self.whole_fits {
            match sg.scan_whole_rules(&self.whole) {
                Ok(Some(name)) => return Some(Hit::Threat(name.into())),
                Ok(None) => {}
                Err(_) => return Some(timeout),
            }
        }
        None
    }
}
