//! A PE's overlay: the bytes after its last section, where self-extracting archives and
//! installers keep their payload (a zip, 7z or cabinet SFX, an NSIS installer's data, another
//! PE appended by a dropper). The PE itself is scanned as it is by its own level; this feeder
//! skips to the overlay and hands it on, from its first byte, as the member `[overlay]`
//! ([`Event::Embedded`]), which the next level types like any member but by strong magics only
//! ([`crate::scan::unpack::detect::is_strong`]). Nothing is buffered.
//!
//! Why from its first byte, with no look at it first: the overlay's bytes are scanned both by
//! the PE's level and by the member's, and which of the two finds a threat first is the place
//! reported. The member is always fed a piece before its container's scanners see it, so the
//! member wins however the bytes were cut; a member started only after a look at its head
//! would lose to the container when the head came in small pieces and win when it came whole.
//! The cost is that an overlay with no payload (Authenticode certificates, padding) is scanned
//! twice; it is usually a few KiB.
//!
//! Why strong magics only: a member typed by a weak one (text that reads as mail headers, a
//! byte that reads as LZMA properties) would be reported broken and block an ordinary program.

use crate::scan::pe;
use crate::scan::unpack::{Emit, Event, Fault, Feed};
use std::ops::ControlFlow;

/// The member's name.
pub const NAME: &str = "[overlay]";

pub struct Overlay {
    /// The overlay's offset, and the offset of the next byte.
    at: u64,
    pos: u64,
    started: bool,
}

/// The overlay's offset in the PE whose headers `head` holds: the end of its last section's
/// file data. `None` when `head` is no PE (or its section table lies beyond `head`), or it has
/// no section with file data.
pub fn overlay_offset(head: &[u8]) -> Option<u64> {
    let info = pe::parse(head)?;
    let end = info.sections.iter().filter(|s| s.raw_size > 0).map(|s| s.raw_offset + s.raw_size).max()?;
    (end > 0).then_some(end)
}

impl Overlay {
    pub fn new(at: u64) -> Overlay {
        Overlay { at, pos: 0, started: false }
    }
}

impl Feed for Overlay {
    fn feed(&mut self, input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        let skip = (self.at.saturating_sub(self.pos)).min(input.len() as u64) as usize;
        self.pos += skip as u64;
        let rest = &input[skip..];
        if rest.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        if !self.started {
            self.started = true;
            if emit(Event::Embedded(NAME)).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(emit(Event::Data(rest)))
    }

    fn finish(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        // A PE that ends where its sections do, or before (a truncated image is the PE
        // level's business, not a container fault), has no overlay.
        Ok(if self.started { emit(Event::End) } else { ControlFlow::Continue(()) })
    }
}
