//! MIME: mail messages (mbox or RFC 5322), multipart bodies (attachments, and uploads'
//! `multipart/form-data`), and the transfer encodings base64 and quoted-printable.
//!
//! The entity's headers are read (folded lines joined) for its Content-Type (multipart and
//! its boundary, a `name`), Content-Disposition (`filename`) and Content-Transfer-Encoding.
//! A multipart body is split at its boundary lines, nested multiparts keep a stack of
//! boundaries (at most [`BOUNDARIES_MAX`] deep; deeper ones are read as content), and every
//! leaf part is a member, decoded as it arrives. A part that is a message (`message/rfc822`)
//! or uuencoded is emitted as it is, and the next level recognises it by its content. Lines
//! are handled in a bounded buffer: a line longer than [`LINE_BYTES_MAX`] cannot be a
//! boundary, so its bytes pass straight through as content.

use super::{Emit, Event, Fault, Feed};
use std::ops::ControlFlow;

/// A line held for boundary and header checks; longer lines are content.
pub const LINE_BYTES_MAX: usize = 1024;
/// The longest unfolded header kept (longer ones are cut).
const HEADER_BYTES_MAX: usize = 8 * 1024;
/// Nested multipart levels followed (RFC 2046 boundaries are at most 70 bytes).
pub const BOUNDARIES_MAX: usize = 16;
const BOUNDARY_BYTES_MAX: usize = 200;

/// A streaming base64 decoder that skips anything outside the alphabet (line breaks, blanks).
#[derive(Default)]
pub struct Base64 {
    acc: u32,
    n: u8,
}

fn b64_value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    }))
}

impl Base64 {
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &c in input {
            if c == b'=' {
                self.flush(out);
                continue;
            }
            let Some(v) = b64_value(c) else { continue };
            self.acc = (self.acc << 6) | v;
            self.n += 1;
            if self.n == 4 {
                out.extend_from_slice(&self.acc.to_be_bytes()[1..]);
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    /// Padding or the end: the bytes the last, partial group holds.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        match self.n {
            2 => out.push((self.acc >> 4) as u8),
            3 => out.extend_from_slice(&((self.acc >> 2) as u16).to_be_bytes()),
            _ => {}
        }
        self.acc = 0;
        self.n = 0;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cte {
    Raw,
    Base64,
    QuotedPrintable,
}

/// Quoted-printable, one line at a time (a line ending in `=` continues on the next).
fn qp_line(line: &[u8], out: &mut Vec<u8>) -> bool {
    let line = line.trim_ascii_end();
    let (line, soft) = match line.strip_suffix(b"=") {
        Some(l) => (l, true),
        None => (line, false),
    };
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c == b'=' && i + 2 < line.len() + 1 {
            let hex = line
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    soft
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The first line of a bare multipart body gives its boundary.
    FirstLine,
    Headers,
    /// Before the first boundary of a multipart, or after its closing one.
    Skip,
    Body,
}

/// What the headers of the entity being read said.
#[derive(Default)]
struct Entity {
    multipart: bool,
    boundary: Vec<u8>,
    cte: Option<Cte>,
    name: String,
}

pub struct Mime {
    phase: Phase,
    line: Vec<u8>,
    /// Inside a line longer than `LINE_BYTES_MAX` (passed through as content).
    long: bool,
    header: Vec<u8>,
    entity: Entity,
    boundaries: Vec<Vec<u8>>,
    part_open: bool,
    cte: Cte,
    b64: Base64,
    /// The line break after the last content line: emitted only if more content follows, for
    /// the break before a boundary belongs to the boundary.
    pending_eol: &'static [u8],
    out: Vec<u8>,
    parts: u32,
    top: bool,
}

impl Mime {
    /// A mail or MIME entity (headers first).
    pub fn mail() -> Mime {
        Mime::with(Phase::Headers)
    }

    /// A bare multipart body, starting at its first boundary line.
    pub fn multipart() -> Mime {
        Mime::with(Phase::FirstLine)
    }

    fn with(phase: Phase) -> Mime {
        Mime {
            phase,
            line: Vec::with_capacity(LINE_BYTES_MAX),
            long: false,
            header: Vec::with_capacity(256),
            entity: Entity::default(),
            boundaries: Vec::new(),
            part_open: false,
            cte: Cte::Raw,
            b64: Base64::default(),
            pending_eol: b"",
            out: Vec::with_capacity(4096),
            parts: 0,
            top: true,
        }
    }

    fn content(&mut self, bytes: &[u8], emit: &mut Emit<'_>) -> ControlFlow<()> {
        self.out.clear();
        match self.cte {
            Cte::Base64 => self.b64.decode(bytes, &mut self.out),
            Cte::Raw => {
                self.out.extend_from_slice(self.pending_eol);
                self.out.extend_from_slice(bytes);
            }
            Cte::QuotedPrintable => {}
        }
        self.pending_eol = b"";
        if self.out.is_empty() {
            return ControlFlow::Continue(());
        }
        emit(Event::Data(&self.out))
    }

    /// A complete content line (without its break, which is `eol`).
    fn content_line(&mut self, line: &[u8], eol: &'static [u8], emit: &mut Emit<'_>) -> ControlFlow<()> {
        match self.cte {
            Cte::QuotedPrintable => {
                self.out.clear();
                self.out.extend_from_slice(self.pending_eol);
                let soft = qp_line(line, &mut self.out);
                self.pending_eol = if soft { b"" } else { b"\r\n" };
                if self.out.is_empty() {
                    return ControlFlow::Continue(());
                }
                emit(Event::Data(&self.out))
            }
            _ => {
                self.content(line, emit)?;
                self.pending_eol = eol;
                ControlFlow::Continue(())
            }
        }
    }

    fn end_part(&mut self, emit: &mut Emit<'_>) -> ControlFlow<()> {
        if !self.part_open {
            return ControlFlow::Continue(());
        }
        self.part_open = false;
        self.pending_eol = b"";
        if self.cte == Cte::Base64 {
            self.out.clear();
            self.b64.flush(&mut self.out);
            if !self.out.is_empty() {
                emit(Event::Data(&self.out))?;
            }
        }
        emit(Event::End)
    }

    /// A header line is complete: keep what matters.
    fn header_done(&mut self) {
        let h = std::mem::take(&mut self.header);
        if let Some(colon) = memchr::memchr(b':', &h) {
            let (name, value) = (h[..colon].trim_ascii(), h[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-type") {
                let lower = value.to_ascii_lowercase();
                self.entity.multipart = lower.starts_with(b"multipart/");
                if let Some(b) = param(value, b"boundary") {
                    self.entity.boundary = b[..b.len().min(BOUNDARY_BYTES_MAX)].to_vec();
                }
                if let Some(n) = param(value, b"name") {
                    if self.entity.name.is_empty() {
                        self.entity.name = String::from_utf8_lossy(n).into_owned();
                    }
                }
            } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
                let v = value.to_ascii_lowercase();
                self.entity.cte = Some(match v.trim_ascii() {
                    b"base64" => Cte::Base64,
                    b"quoted-printable" => Cte::QuotedPrintable,
                    _ => Cte::Raw,
                });
            } else if name.eq_ignore_ascii_case(b"content-disposition") {
                if let Some(n) = param(value, b"filename") {
                    self.entity.name = String::from_utf8_lossy(n).into_owned();
                }
            }
        }
        self.header = h;
        self.header.clear();
    }

    /// The blank line after an entity's headers.
    fn headers_end(&mut self, emit: &mut Emit<'_>) -> ControlFlow<()> {
        if !self.header.is_empty() {
            self.header_done();
        }
        let entity = std::mem::take(&mut self.entity);
        self.top = false;
        if entity.multipart && !entity.boundary.is_empty() && self.boundaries.len() < BOUNDARIES_MAX {
            self.boundaries.push(entity.boundary);
            self.phase = Phase::Skip;
            return ControlFlow::Continue(());
        }
        self.parts += 1;
        self.cte = entity.cte.unwrap_or(Cte::Raw);
        self.b64 = Base64::default();
        self.pending_eol = b"";
        self.part_open = true;
        self.phase = Phase::Body;
        let name = if entity.name.is_empty() { format!("part{}", self.parts) } else { entity.name };
        emit(Event::Start(&name))
    }

    /// Which open boundary a line is, if any: its depth in the stack and whether it closes.
    fn boundary_of(&self, line: &[u8]) -> Option<(usize, bool)> {
        let rest = line.strip_prefix(b"--")?;
        self.boundaries.iter().enumerate().rev().find_map(|(i, b)| {
            let after = rest.strip_prefix(&b[..])?.trim_ascii_end();
            match after {
                b"" => Some((i, false)),
                b"--" => Some((i, true)),
                _ => None,
            }
        })
    }

    /// A complete line (without the break `eol`).
    fn line_done(&mut self, line: &[u8], eol: &'static [u8], emit: &mut Emit<'_>) -> ControlFlow<()> {
        let bare = line.strip_suffix(b"\r").unwrap_or(line);
        let eol: &'static [u8] = if bare.len() < line.len() { b"\r\n" } else { eol };
        if self.phase == Phase::FirstLine {
            if let Some(b) = bare.strip_prefix(b"--") {
                let b = b.trim_ascii_end();
                self.boundaries.push(b[..b.len().min(BOUNDARY_BYTES_MAX)].to_vec());
            }
            self.phase = Phase::Skip;
        }
        if let Some((depth, closing)) = self.boundary_of(bare) {
            self.end_part(emit)?;
            self.boundaries.truncate(depth + 1);
            if closing {
                self.boundaries.pop();
                self.phase = Phase::Skip;
            } else {
                self.entity = Entity::default();
                self.header.clear();
                self.phase = Phase::Headers;
            }
            return ControlFlow::Continue(());
        }
        match self.phase {
            Phase::Headers => {
                if bare.is_empty() {
                    return self.headers_end(emit);
                }
                if self.top && self.header.is_empty() && bare.starts_with(b"From ") {
                    return ControlFlow::Continue(()); // the mbox separator line
                }
                if bare[0] == b' ' || bare[0] == b'\t' {
                    let room = HEADER_BYTES_MAX.saturating_sub(self.header.len()).min(bare.len());
                    self.header.extend_from_slice(&bare[..room]);
                } else {
                    if !self.header.is_empty() {
                        self.header_done();
                    }
                    let room = HEADER_BYTES_MAX.min(bare.len());
                    self.header.extend_from_slice(&bare[..room]);
                }
                ControlFlow::Continue(())
            }
            Phase::Body => self.content_line(bare, eol, emit),
            Phase::Skip | Phase::FirstLine => ControlFlow::Continue(()),
        }
    }
}

/// The value of parameter `name` in a header value (`; name="value"` or `; name=value`).
fn param<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    value.split(|&b| b == b';').skip(1).find_map(|p| {
        let p = p.trim_ascii();
        let eq = memchr::memchr(b'=', p)?;
        if !p[..eq].trim_ascii().eq_ignore_ascii_case(name) {
            return None;
        }
        let v = p[eq + 1..].trim_ascii();
        Some(v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v))
    })
}

impl Feed for Mime {
    fn feed(&mut self, mut input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        while !input.is_empty() {
            let nl = memchr::memchr(b'\n', input);
            let piece = &input[..nl.unwrap_or(input.len())];
            if self.long {
                // The rest of an over-long line: content, or nothing.
                if self.phase == Phase::Body && self.cte != Cte::QuotedPrintable && self.content(piece, emit).is_break()
                {
                    return Ok(ControlFlow::Break(()));
                }
                if nl.is_some() {
                    self.long = false;
                    self.pending_eol = if piece.ends_with(b"\r") { b"\r\n" } else { b"\n" };
                }
            } else if self.line.len() + piece.len() > LINE_BYTES_MAX {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(piece);
                if self.phase == Phase::Body {
                    let flow = if self.cte == Cte::QuotedPrintable {
                        self.content_line(&line, b"\n", emit)
                    } else {
                        self.content(&line, emit)
                    };
                    if flow.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                line.clear();
                self.line = line;
                self.long = nl.is_none();
                if nl.is_some() {
                    self.pending_eol = if piece.ends_with(b"\r") { b"\r\n" } else { b"\n" };
                }
            } else if nl.is_some() {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(piece);
                let flow = self.line_done(&line, b"\n", emit);
                line.clear();
                self.line = line;
                if flow.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            } else {
                self.line.extend_from_slice(piece);
            }
            input = &input[nl.map_or(input.len(), |i| i + 1)..];
        }
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            if self.line_done(&line, b"", emit).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        if self.phase == Phase::Headers && (!self.header.is_empty() || self.top) {
            // Headers without a body: the entity is empty.
            if self.headers_end(emit).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        // A missing closing boundary is common in real mail and not treated as a fault.
        Ok(self.end_part(emit))
    }
}
