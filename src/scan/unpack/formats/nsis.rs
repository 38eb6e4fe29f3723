//! NSIS (Nullsoft) installers: the data block an NSIS setup program carries after its PE
//! image, which the PE level hands over as its overlay (see [`super::overlay`]).
//!
//! The block starts with NSIS's "first header" (flags, `0xDEADBEEF`, `NullsoftInst`, the
//! length of the installer's script header and the length of the whole block, a CRC-32 at
//! its end unless the flags say there is none). What follows comes in one of two layouts:
//!
//! - **block by block** (NSIS's default): each item is a 32-bit length whose top bit says the
//!   item is compressed, then that many bytes, each compressed item a stream of its own;
//! - **solid** (`SetCompressor /SOLID`): one compressed stream, whose output is the items as
//!   32-bit lengths and bytes.
//!
//! The first item is the script header, the others the files the script installs, in order.
//! Each becomes a member (`[nsis-header]`, `[nsis-1]`, ...): file names live in the script's
//! string table, which is not interpreted. Streams are LZMA (NSIS writes the five property
//! bytes first) or raw deflate; NSIS's bzip2 is a variant of its own (no stream header, no
//! checksums) that no crate decodes, so it is `Heuristics.Unsupported.NSIS.Method`, never
//! silently clean. The layout is not recorded anywhere, so it is told by the bytes: see
//! [`Nsis::decide`].

use super::codec::{pump, Codec};
use crate::scan::unpack::{Emit, Event, Fault, Feed};
use std::ops::ControlFlow;

/// The first header's magic, after its 4-byte flags.
pub const MAGIC: &[u8; 16] = b"\xEF\xBE\xAD\xDENullsoftInst";
const FIRST_HEADER_BYTES: usize = 28;
/// The flag that says the block ends without a CRC-32.
const FLAG_NO_CRC: u32 = 4;
const COMPRESSED_BIT: u32 = 0x8000_0000;
/// Bytes looked at to choose the layout: the first header, an item's length and the first
/// bytes of a stream (LZMA's five property bytes).
const DECIDE_BYTES: usize = FIRST_HEADER_BYTES + 4 + 5;
/// Bytes looked at to choose a stream's method (bzip2's block magic is six).
const METHOD_BYTES: usize = 6;

const BROKEN: Fault = Fault::Broken("Heuristics.Broken.NSIS");
const UNSUPPORTED: Fault = Fault::Broken("Heuristics.Unsupported.NSIS.Method");

enum Phase {
    /// Gathering [`DECIDE_BYTES`] to read the first header and choose the layout.
    Head,
    /// Block by block: an item's 4-byte length.
    ItemLen,
    /// Block by block: a compressed item whose first bytes choose its method.
    ItemMethod { left: u64 },
    /// Block by block: `left` bytes of the open item to go, through the codec if it has one.
    Item { left: u64 },
    /// Solid: the first bytes of the one stream, to choose its method.
    SolidMethod,
    /// Solid: the stream, its output split into items by [`Items`].
    Solid,
    /// Past the data: the CRC-32, and whatever follows (the PE level scans those bytes).
    Done,
}

pub struct Nsis {
    phase: Phase,
    /// Bytes gathered for the phase that needs a few at once.
    staged: Vec<u8>,
    /// Offset of the next byte from the block's start, and where its data ends.
    pos: u64,
    data_end: u64,
    codec: Option<Codec>,
    /// The codec finished its stream; any byte of the item (or solid data) after it is broken.
    ended: bool,
    out: Box<[u8]>,
    items: Items,
    lzma_memory_max: u64,
}

/// Items in the solid stream's output: 4-byte lengths and bytes.
struct Items {
    /// The members started so far (the header is the first).
    count: u32,
    /// Bytes of the open item to go; `None` between items.
    left: Option<u64>,
    len: [u8; 4],
    len_got: usize,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// LZMA's properties as NSIS writes them: the usual `lc=3 lp=0 pb=2` byte and a dictionary
/// of whole 64 KiB units (NSIS sets it in MiB).
fn lzma_props(b: &[u8]) -> bool {
    b.len() >= 5 && b[0] == 0x5D && b[1] == 0 && b[2] == 0
}

fn member_name(n: u32) -> String {
    if n == 0 {
        "[nsis-header]".to_string()
    } else {
        format!("[nsis-{n}]")
    }
}

impl Nsis {
    pub fn new(out_bytes: usize, lzma_memory_max: u64) -> Nsis {
        Nsis {
            phase: Phase::Head,
            staged: Vec::with_capacity(DECIDE_BYTES),
            pos: 0,
            data_end: 0,
            codec: None,
            ended: false,
            out: vec![0; out_bytes].into_boxed_slice(),
            items: Items { count: 0, left: None, len: [0; 4], len_got: 0 },
            lzma_memory_max,
        }
    }

    /// The codec for a stream starting with `first` (all of it when shorter than
    /// [`METHOD_BYTES`]), and how many of those bytes are its properties rather than data.
    fn codec_for(&self, first: &[u8]) -> Result<(Codec, usize), Fault> {
        if lzma_props(first) {
            let codec = Codec::lzma1(&first[..5], self.lzma_memory_max).ok_or(UNSUPPORTED)?;
            return Ok((codec, 5));
        }
        if first.starts_with(b"1AY&SY") {
            return Err(UNSUPPORTED);
        }
        Ok((Codec::inflate(), 0))
    }

    /// Reads the first header and chooses the layout, from `head` (at most [`DECIDE_BYTES`],
    /// fewer only when the block ends sooner).
    ///
    /// Block by block, the bytes after the first header are an item's length, with the top
    /// bit set when (as by default) the script header is compressed, or equal to the header's
    /// own length when it is stored. A solid LZMA stream starts with its property byte `5D`
    /// and a dictionary whose third byte can also have the top bit set, so the two readings
    /// can agree on the length: a compressed item then starts with LZMA properties itself,
    /// which a solid stream's sixth byte never does.
    fn decide(&mut self, head: &[u8]) -> Result<(), Fault> {
        if head.len() < FIRST_HEADER_BYTES + 4 || &head[4..20] != MAGIC {
            return Err(BROKEN);
        }
        let flags = le32(head, 0);
        let header_len = le32(head, 20);
        let total = u64::from(le32(head, 24));
        let crc = if flags & FLAG_NO_CRC == 0 { 4 } else { 0 };
        if total < (FIRST_HEADER_BYTES + 4 + crc) as u64 {
            return Err(BROKEN);
        }
        self.data_end = total - crc as u64;
        let n = le32(head, FIRST_HEADER_BYTES);
        let after = &head[FIRST_HEADER_BYTES..];
        let solid_lzma = lzma_props(after);
        let item_lzma = lzma_props(&after[4..]);
        let fits = u64::from(n & !COMPRESSED_BIT) + 4 <= self.data_end - FIRST_HEADER_BYTES as u64;
        let by_block =
            if n & COMPRESSED_BIT != 0 { fits && (item_lzma || !solid_lzma) } else { n == header_len && fits };
        self.pos = FIRST_HEADER_BYTES as u64;
        self.phase = if by_block { Phase::ItemLen } else { Phase::SolidMethod };
        Ok(())
    }

    /// Block by block: `data` (within the open item) into the member.
    fn item_data(&mut self, data: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        let Some(codec) = self.codec.as_mut() else { return Ok(emit(Event::Data(data))) };
        if self.ended {
            // Bytes after the item's stream ended belong to no member.
            return if data.is_empty() { Ok(ControlFlow::Continue(())) } else { Err(BROKEN) };
        }
        let mut stop = false;
        let r = pump(codec, &mut self.out, data, &mut |piece| {
            stop = emit(Event::Data(piece)).is_break();
            stop
        })
        .map_err(|()| BROKEN)?;
        match r {
            None => Ok(ControlFlow::Break(())),
            Some((used, _)) if used < data.len() => Err(BROKEN),
            Some((_, ended)) => {
                self.ended = ended;
                Ok(ControlFlow::Continue(()))
            }
        }
    }

    /// Solid: `data` (within the data) through the stream, its output split into items.
    fn solid_data(&mut self, data: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        if self.ended {
            // Bytes after the solid stream ended belong to no member.
            return if data.is_empty() { Ok(ControlFlow::Continue(())) } else { Err(BROKEN) };
        }
        let codec = self.codec.as_mut().expect("the solid stream's codec is set up before its data");
        let items = &mut self.items;
        let mut flow = Ok(ControlFlow::Continue(()));
        let r = pump(codec, &mut self.out, data, &mut |piece| {
            flow = items.split(piece, emit);
            !matches!(flow, Ok(ControlFlow::Continue(())))
        })
        .map_err(|()| BROKEN)?;
        if flow?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
        match r {
            None => Ok(ControlFlow::Break(())),
            Some((used, _)) if used < data.len() => Err(BROKEN),
            Some((_, ended)) => {
                self.ended = ended;
                Ok(ControlFlow::Continue(()))
            }
        }
    }

    fn step(&mut self, input: &mut &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        let before_end = (self.data_end.saturating_sub(self.pos)) as usize;
        match self.phase {
            Phase::Head => {
                if self.stage(input, DECIDE_BYTES) {
                    return self.start_data(emit);
                }
                Ok(ControlFlow::Continue(()))
            }
            Phase::ItemLen => {
                let take = (4 - self.staged.len()).min(input.len()).min(before_end);
                if take == 0 {
                    // The data ended where an item could start: the block is complete.
                    self.phase = Phase::Done;
                    return Ok(ControlFlow::Continue(()));
                }
                self.staged.extend_from_slice(&input[..take]);
                *input = &input[take..];
                self.pos += take as u64;
                if self.staged.len() < 4 {
                    return Ok(ControlFlow::Continue(()));
                }
                let n = le32(&self.staged, 0);
                self.staged.clear();
                let left = u64::from(n & !COMPRESSED_BIT);
                if left > self.data_end - self.pos {
                    return Err(BROKEN);
                }
                let name = member_name(self.items.count);
                self.items.count += 1;
                self.codec = None;
                self.ended = false;
                let flow = emit(Event::Start(&name));
                self.phase = if n & COMPRESSED_BIT != 0 { Phase::ItemMethod { left } } else { Phase::Item { left } };
                self.close_empty_item(emit, flow)
            }
            Phase::ItemMethod { left } => {
                let want = (METHOD_BYTES as u64).min(left) as usize;
                if !self.stage(input, want) {
                    return Ok(ControlFlow::Continue(()));
                }
                let (first, props) = self.start_stream()?;
                self.phase = Phase::Item { left };
                let flow = self.item_data(&first[props..], emit);
                self.unstage(first);
                self.advance_item(want as u64, emit, flow?)
            }
            Phase::Item { left } => {
                let take = (left as usize).min(input.len());
                let flow = self.item_data(&input[..take], emit)?;
                *input = &input[take..];
                self.advance_item(take as u64, emit, flow)
            }
            Phase::SolidMethod => {
                if !self.stage(input, METHOD_BYTES.min(before_end)) {
                    return Ok(ControlFlow::Continue(()));
                }
                let (first, props) = self.start_stream()?;
                self.phase = Phase::Solid;
                self.pos += first.len() as u64;
                let flow = self.solid_data(&first[props..], emit);
                self.unstage(first);
                self.solid_end_check(flow)
            }
            Phase::Solid => {
                let take = before_end.min(input.len());
                let flow = self.solid_data(&input[..take], emit);
                *input = &input[take..];
                self.pos += take as u64;
                self.solid_end_check(flow)
            }
            Phase::Done => {
                *input = &[];
                Ok(ControlFlow::Continue(()))
            }
        }
    }

    /// Moves up to `want` bytes of `input` into the staging buffer; `true` once it holds them.
    fn stage(&mut self, input: &mut &[u8], want: usize) -> bool {
        let take = want.saturating_sub(self.staged.len()).min(input.len());
        self.staged.extend_from_slice(&input[..take]);
        *input = &input[take..];
        self.staged.len() >= want
    }

    /// A stream's staged first bytes choose its codec. They are returned, with how many of
    /// them are properties, for the caller to decode the rest and [`Nsis::unstage`] them.
    fn start_stream(&mut self) -> Result<(Vec<u8>, usize), Fault> {
        let (codec, props) = self.codec_for(&self.staged)?;
        self.codec = Some(codec);
        Ok((std::mem::take(&mut self.staged), props))
    }

    /// Gives the staging buffer back, empty.
    fn unstage(&mut self, mut first: Vec<u8>) {
        first.clear();
        self.staged = first;
    }

    /// The first header is read: the data starts with the bytes staged after it.
    fn start_data(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        let head = std::mem::take(&mut self.staged);
        self.decide(&head)?;
        let mut rest = &head[FIRST_HEADER_BYTES..];
        while !rest.is_empty() {
            if self.step(&mut rest, emit)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// An item of length zero ends as it starts.
    fn close_empty_item(&mut self, emit: &mut Emit<'_>, flow: ControlFlow<()>) -> Result<ControlFlow<()>, Fault> {
        if flow.is_break() {
            return Ok(flow);
        }
        if let Phase::Item { left: 0 } | Phase::ItemMethod { left: 0 } = self.phase {
            self.phase = Phase::ItemLen;
            return Ok(emit(Event::End));
        }
        Ok(ControlFlow::Continue(()))
    }

    /// `n` bytes of the open item were used.
    fn advance_item(&mut self, n: u64, emit: &mut Emit<'_>, flow: ControlFlow<()>) -> Result<ControlFlow<()>, Fault> {
        self.pos += n;
        if flow.is_break() {
            return Ok(flow);
        }
        let Phase::Item { left } = self.phase else { unreachable!("only items advance") };
        let left = left - n;
        if left > 0 {
            self.phase = Phase::Item { left };
            return Ok(ControlFlow::Continue(()));
        }
        // A compressed item must have been a whole stream, or at least decoded to its end
        // without a fault (NSIS's LZMA streams carry no end marker).
        self.phase = Phase::ItemLen;
        self.codec = None;
        Ok(emit(Event::End))
    }

    fn solid_end_check(&mut self, flow: Result<ControlFlow<()>, Fault>) -> Result<ControlFlow<()>, Fault> {
        let flow = flow?;
        if flow.is_continue() && self.pos >= self.data_end {
            self.phase = Phase::Done;
        }
        Ok(flow)
    }
}

impl Items {
    /// The stream's next output `piece`.
    fn split(&mut self, mut piece: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        while !piece.is_empty() {
            match self.left {
                None => {
                    let take = (4 - self.len_got).min(piece.len());
                    self.len[self.len_got..self.len_got + take].copy_from_slice(&piece[..take]);
                    self.len_got += take;
                    piece = &piece[take..];
                    if self.len_got < 4 {
                        continue;
                    }
                    self.len_got = 0;
                    let n = u32::from_le_bytes(self.len);
                    if n & COMPRESSED_BIT != 0 {
                        // Inside a solid stream nothing is compressed again.
                        return Err(BROKEN);
                    }
                    let name = member_name(self.count);
                    self.count += 1;
                    if emit(Event::Start(&name)).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                    if n == 0 {
                        if emit(Event::End).is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    } else {
                        self.left = Some(u64::from(n));
                    }
                }
                Some(left) => {
                    let take = (left as usize).min(piece.len());
                    if emit(Event::Data(&piece[..take])).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                    piece = &piece[take..];
                    let left = left - take as u64;
                    if left == 0 {
                        self.left = None;
                        if emit(Event::End).is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    } else {
                        self.left = Some(left);
                    }
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

impl Feed for Nsis {
    fn feed(&mut self, mut input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        while !input.is_empty() {
            if self.step(&mut input, emit)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        if let Phase::Head = self.phase {
            // A block shorter than DECIDE_BYTES: decide on what there is.
            if self.start_data(emit)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        if let Phase::ItemLen = self.phase {
            if self.staged.is_empty() && self.pos >= self.data_end {
                self.phase = Phase::Done;
            }
        }
        match self.phase {
            Phase::Done if self.items.left.is_none() && self.items.len_got == 0 => Ok(ControlFlow::Continue(())),
            // The block ended before its own length said it would, or inside an item.
            _ => Err(BROKEN),
        }
    }
}
