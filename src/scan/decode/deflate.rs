//! `deflate`: RFC 9110 means a zlib stream (RFC 1950), but some servers send raw deflate
//! (RFC 1951) and browsers accept both, so both are decoded here.
//!
//! The form is told from the first two bytes, as browsers do: a valid zlib header (method 8, a
//! window of at most 32 KiB, no preset dictionary, and the check bits right) means zlib,
//! anything else raw deflate. Those two bytes are held until both have arrived, then given to
//! the inflater before the rest. zlib's Adler-32 trailer is checked by the inflater. Bytes
//! after the end of the stream are [`Fault::Broken`].

use super::{Fault, Step};
use flate2::{Decompress, FlushDecompress, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the first two bytes.
    Sniff,
    Inflate,
    Done,
}

pub struct DeflateDecoder {
    inflate: Decompress,
    state: State,
    head: [u8; 2],
    got: usize,
    /// How many of `head` the inflater has taken.
    fed: usize,
}

/// Whether two bytes are a zlib header a browser would accept.
fn is_zlib_header(cmf: u8, flg: u8) -> bool {
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && flg & 0x20 == 0 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

impl DeflateDecoder {
    pub fn new() -> DeflateDecoder {
        DeflateDecoder { inflate: Decompress::new(true), state: State::Sniff, head: [0; 2], got: 0, fed: 0 }
    }

    pub fn reset(&mut self) {
        self.state = State::Sniff;
        self.got = 0;
        self.fed = 0;
    }

    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Inflates `input` into `out`; returns (consumed, produced, stream ended or corrupt).
    /// The inflater counts what it used and wrote even when it fails, so the output made
    /// before a corrupt spot is returned with the fault.
    fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize, Result<bool, Fault>) {
        let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
        let status = self.inflate.decompress(input, out, FlushDecompress::None);
        let consumed = (self.inflate.total_in() - in_before) as usize;
        let produced = (self.inflate.total_out() - out_before) as usize;
        (consumed, produced, status.map(|s| s == Status::StreamEnd).map_err(|_| Fault::Broken))
    }

    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        let mut used = 0;
        let mut made = 0;
        if self.state == State::Sniff {
            let n = (2 - self.got).min(input.len());
            self.head[self.got..self.got + n].copy_from_slice(&input[..n]);
            self.got += n;
            used = n;
            if self.got < 2 {
                return Step::ok(used, 0);
            }
            self.inflate.reset(is_zlib_header(self.head[0], self.head[1]));
            self.state = State::Inflate;
        }
        if self.state == State::Inflate && self.fed < 2 {
            let head = self.head;
            let (c, p, ended) = self.inflate(&head[self.fed..], out);
            self.fed += c;
            made = p;
            match ended {
                Err(fault) => return Step::fault(used, made, fault),
                Ok(true) => {
                    if self.fed < 2 || used < input.len() {
                        return Step::fault(used, made, Fault::Broken);
                    }
                    self.state = State::Done;
                }
                Ok(false) => {}
            }
            if self.fed < 2 {
                return Step::ok(used, made);
            }
        }
        if self.state == State::Inflate {
            let (c, p, ended) = self.inflate(&input[used..], &mut out[made..]);
            used += c;
            made += p;
            match ended {
                Err(fault) => return Step::fault(used, made, fault),
                Ok(true) => self.state = State::Done,
                Ok(false) => {}
            }
        }
        if self.state == State::Done && used < input.len() {
            return Step::fault(used, made, Fault::Broken);
        }
        Step::ok(used, made)
    }
}
