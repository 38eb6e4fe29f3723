//! The one place members leave this module: [`Out`] wraps the caller's [`Sink`], counts members
//! and bytes, and turns a limit into a [`Fault`] the moment it is crossed.

use std::ops::ControlFlow;

use super::{Fault, Limits, Sink, LIMIT_FILES, LIMIT_FILE_SIZE, LIMIT_RATIO};

/// The largest piece of member data passed to [`Sink::member_data`] at once, and the size of the
/// output buffers the decoders fill.
pub const PIECE_BYTES: usize = 64 * 1024;

/// Why a walk stops: the sink asked (a threat was found), or a fault.
#[derive(Debug)]
pub enum Stop {
    Break,
    Fault(Fault),
}

impl From<Fault> for Stop {
    fn from(f: Fault) -> Self {
        Stop::Fault(f)
    }
}

pub type R<T = ()> = Result<T, Stop>;

/// A `Heuristics.Broken.*` stop.
pub fn broken(name: &'static str) -> Stop {
    Stop::Fault(Fault::Broken(name))
}

/// Something decoded bytes can be written to: a member ([`Out`]) or a bounded buffer ([`Buf`]).
pub trait Put {
    fn put(&mut self, data: &[u8]) -> R;
}

/// The member emitter with the limits.
pub struct Out<'a> {
    sink: &'a mut dyn Sink,
    limits: Limits,
    input_len: u64,
    members: u32,
    open: bool,
    member_bytes: u64,
    total_bytes: u64,
    work_bytes: u64,
    /// Set once the sink said `Break` or a limit stopped the extraction: a decoder that calls
    /// again (some crates ignore a stop between blocks) gets the stop again, and the sink never
    /// hears of another member.
    stopped: bool,
}

fn flow(c: ControlFlow<()>) -> R {
    match c {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Stop::Break),
    }
}

impl<'a> Out<'a> {
    pub fn new(sink: &'a mut dyn Sink, limits: &Limits, input_len: u64) -> Self {
        Out {
            sink,
            limits: *limits,
            input_len,
            members: 0,
            open: false,
            member_bytes: 0,
            total_bytes: 0,
            work_bytes: 0,
            stopped: false,
        }
    }

    /// The limits, for decoders that size their work by them.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Opens a member (ending one still open).
    pub fn start(&mut self, name: &str) -> R {
        self.not_stopped()?;
        if self.open {
            self.end()?;
        }
        if self.members >= self.limits.members_max {
            return self.stop(Err(Stop::Fault(Fault::Limit(LIMIT_FILES))));
        }
        self.members += 1;
        self.open = true;
        self.member_bytes = 0;
        let r = flow(self.sink.member_start(name));
        self.stop(r)
    }

    fn not_stopped(&self) -> R {
        if self.stopped {
            return Err(Stop::Break);
        }
        Ok(())
    }

    /// Passes `r` on, remembering a stop.
    fn stop(&mut self, r: R) -> R {
        if r.is_err() {
            self.stopped = true;
        }
        r
    }

    /// Appends to the open member, in pieces, checking the size and ratio limits first.
    pub fn data(&mut self, data: &[u8]) -> R {
        self.not_stopped()?;
        debug_assert!(self.open);
        for piece in data.chunks(PIECE_BYTES) {
            let n = piece.len() as u64;
            if self.member_bytes + n > self.limits.member_bytes_max {
                return self.stop(Err(Stop::Fault(Fault::Limit(LIMIT_FILE_SIZE))));
            }
            if self.total_bytes + n > self.limits.ratio_max.saturating_mul(self.input_len.max(1)) {
                return self.stop(Err(Stop::Fault(Fault::Limit(LIMIT_RATIO))));
            }
            self.member_bytes += n;
            self.total_bytes += n;
            let r = flow(self.sink.member_data(piece));
            self.stop(r)?;
        }
        Ok(())
    }

    /// Counts bytes decoded but not emitted (the part of a CAB folder before the file wanted,
    /// decoded again for files that overlap): that work is bounded by the same ratio as the
    /// output, so no layout makes the decoding quadratic without tripping the limit.
    pub fn work(&mut self, n: u64) -> R {
        self.work_bytes += n;
        if self.work_bytes > self.limits.ratio_max.saturating_mul(self.input_len.max(1)) {
            return Err(Stop::Fault(Fault::Limit(LIMIT_RATIO)));
        }
        Ok(())
    }

    /// Closes the open member.
    pub fn end(&mut self) -> R {
        self.not_stopped()?;
        if !self.open {
            return Ok(());
        }
        self.open = false;
        let r = flow(self.sink.member_end());
        self.stop(r)
    }

    /// A whole member from bytes already in memory.
    pub fn member(&mut self, name: &str, data: &[u8]) -> R {
        self.start(name)?;
        self.data(data)?;
        self.end()
    }
}

impl Put for Out<'_> {
    fn put(&mut self, data: &[u8]) -> R {
        self.data(data)
    }
}

/// A buffer for an intermediate stage (one filter of a PDF chain, an RTF object's hex), held to
/// the member size limit so it is bounded like the members themselves.
pub struct Buf {
    pub bytes: Vec<u8>,
    cap: u64,
}

impl Buf {
    pub fn new(cap: u64) -> Self {
        Buf { bytes: Vec::new(), cap }
    }
}

impl Put for Buf {
    fn put(&mut self, data: &[u8]) -> R {
        if (self.bytes.len() + data.len()) as u64 > self.cap {
            return Err(Stop::Fault(Fault::Limit(LIMIT_FILE_SIZE)));
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }
}

/// Little-endian readers that return `None` past the end, for the hand-written parsers.
pub fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

pub fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

pub fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}
