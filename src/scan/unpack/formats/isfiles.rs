//! InstallShield's file list: what an InstallShield setup program carries after its PE image
//! (the overlay, see [`super::overlay`]): one entry per file, each four NUL-terminated text
//! fields (the file's name, its path on the install medium, a version, its size in decimal)
//! followed by the file's bytes, to the end of the object. Each file is a member under its
//! name (`data1.cab`, `setup.exe`, or the payload itself where the setup stores it loose).
//!
//! InstallShield's own cabinets (`data1.cab`, magic `ISc(`) are members like any file, but
//! what they hold is not read: their format is InstallShield's and no crate decodes it.

use crate::scan::unpack::{Emit, Event, Fault, Feed};
use std::ops::ControlFlow;

const BROKEN: Fault = Fault::Broken("Heuristics.Broken.InstallShield");
/// The longest each field may be (name, path, version, size), without its NUL.
const FIELD_BYTES_MAX: [usize; 4] = [260, 520, 32, 12];

/// Whether `head` (an object's first bytes) starts with a well-formed entry: a name of
/// printable bytes without a separator, a path that ends with that name, a version of digits
/// and dots, and a decimal size, each NUL-terminated. Data that happens to look so is as
/// unlikely as a magic number.
pub fn starts_list(head: &[u8]) -> bool {
    let mut fields: [&[u8]; 4] = [&[]; 4];
    let mut rest = head;
    for (i, max) in FIELD_BYTES_MAX.iter().enumerate() {
        let Some(nul) = memchr::memchr(0, &rest[..rest.len().min(max + 1)]) else { return false };
        fields[i] = &rest[..nul];
        rest = &rest[nul + 1..];
    }
    let [name, path, version, size] = fields;
    let printable = |f: &[u8]| f.iter().all(|&b| (0x20..0x7f).contains(&b));
    !name.is_empty()
        && printable(name)
        && !name.iter().any(|&b| b == b'\\' || b == b'/')
        && printable(path)
        && path.len() >= name.len()
        && path[path.len() - name.len()..].eq_ignore_ascii_case(name)
        && !version.is_empty()
        && version.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        && !size.is_empty()
        && size.iter().all(u8::is_ascii_digit)
}

pub struct IsFiles {
    /// The entry's fields so far; `field` is the one being read.
    fields: [Vec<u8>; 4],
    field: usize,
    /// Bytes of the open file to go; `None` while reading an entry's fields.
    left: Option<u64>,
}

impl IsFiles {
    pub fn new() -> IsFiles {
        IsFiles { fields: Default::default(), field: 0, left: None }
    }

    /// The entry's fields are complete: its file begins.
    fn open_file(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        let size = std::str::from_utf8(&self.fields[3]).ok().and_then(|s| s.parse::<u64>().ok()).ok_or(BROKEN)?;
        let name = String::from_utf8_lossy(&self.fields[0]).into_owned();
        for f in &mut self.fields {
            f.clear();
        }
        self.field = 0;
        if emit(Event::Start(&name)).is_break() {
            return Ok(ControlFlow::Break(()));
        }
        if size == 0 {
            return Ok(emit(Event::End));
        }
        self.left = Some(size);
        Ok(ControlFlow::Continue(()))
    }
}

impl Feed for IsFiles {
    fn feed(&mut self, mut input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        while !input.is_empty() {
            match self.left {
                Some(left) => {
                    let take = (left.min(input.len() as u64)) as usize;
                    let flow = emit(Event::Data(&input[..take]));
                    input = &input[take..];
                    let left = left - take as u64;
                    self.left = (left > 0).then_some(left);
                    if flow.is_break() {
                        return Ok(flow);
                    }
                    if left == 0 && emit(Event::End).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                None => {
                    let max = FIELD_BYTES_MAX[self.field];
                    let field = &mut self.fields[self.field];
                    match memchr::memchr(0, input) {
                        Some(nul) => {
                            if field.len() + nul > max {
                                return Err(BROKEN);
                            }
                            field.extend_from_slice(&input[..nul]);
                            input = &input[nul + 1..];
                            self.field += 1;
                            if self.field == 4 && self.open_file(emit)?.is_break() {
                                return Ok(ControlFlow::Break(()));
                            }
                        }
                        None => {
                            if field.len() + input.len() > max {
                                return Err(BROKEN);
                            }
                            field.extend_from_slice(input);
                            input = &[];
                        }
                    }
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&mut self, _emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        // The list runs to the end of the object: it must end between entries.
        if self.left.is_some() || self.field > 0 || !self.fields[0].is_empty() {
            return Err(BROKEN);
        }
        Ok(ControlFlow::Continue(()))
    }
}
