//! The NRV2B, NRV2D and NRV2E decompressors (the UCL algorithms UPX uses), with the 32-bit
//! little-endian bit buffer of UPX's i386 stubs. Written from the algorithms' description:
//! literals and matches are told apart by one bit; match offsets and lengths are Elias-gamma-
//! like codes read two bits at a time, offsets extended by a literal byte; offset code 2 reuses
//! the last offset; the offset 0xFFFFFFFF ends the stream.
//!
//! The output is one buffer (matches reach anywhere back), bounded by `cap`: past it the
//! result is a limit fault, never a larger allocation.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    B,
    D,
    E,
}

#[derive(Debug, PartialEq, Eq)]
pub enum NrvError {
    /// Input ran out, or a match reached before the start of the output.
    Broken,
    /// The output would pass the cap.
    Limit,
}

struct Bits<'a> {
    src: &'a [u8],
    at: usize,
    bb: u32,
    bc: u32,
}

impl Bits<'_> {
    fn bit(&mut self) -> Result<u32, NrvError> {
        if self.bc == 0 {
            let w = self.src.get(self.at..self.at + 4).ok_or(NrvError::Broken)?;
            self.bb = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            self.at += 4;
            self.bc = 32;
        }
        self.bc -= 1;
        Ok((self.bb >> self.bc) & 1)
    }
    fn byte(&mut self) -> Result<u8, NrvError> {
        let b = *self.src.get(self.at).ok_or(NrvError::Broken)?;
        self.at += 1;
        Ok(b)
    }
}

/// Gamma codes above this are not produced by any encoder (the end marker, offset 0xFFFFFFFF,
/// is the largest: 0x1000002 before its low byte): they are hostile input, and
/// stopping them keeps the arithmetic inside 32 bits.
const GAMMA_MAX: u32 = 0x0100_0002;

/// Decompresses `src` with `method` into a buffer of at most `cap` bytes. Returns the output.
pub fn decompress(method: Method, src: &[u8], cap: usize) -> Result<Vec<u8>, NrvError> {
    let mut out: Vec<u8> = Vec::new();
    let mut b = Bits { src, at: 0, bb: 0, bc: 0 };
    let mut last_off: u32 = 1;
    loop {
        while b.bit()? == 1 {
            if out.len() >= cap {
                return Err(NrvError::Limit);
            }
            out.push(b.byte()?);
        }
        let mut off: u32 = 1;
        match method {
            Method::B => loop {
                off = off * 2 + b.bit()?;
                if off > GAMMA_MAX {
                    return Err(NrvError::Broken);
                }
                if b.bit()? == 1 {
                    break;
                }
            },
            Method::D | Method::E => loop {
                off = off * 2 + b.bit()?;
                if b.bit()? == 1 {
                    break;
                }
                off = (off - 1) * 2 + b.bit()?;
                if off > GAMMA_MAX {
                    return Err(NrvError::Broken);
                }
            },
        }
        let mut len: u32;
        if off == 2 {
            off = last_off;
            len = if method == Method::B { 0 } else { b.bit()? };
        } else {
            let o = (off - 3).wrapping_mul(256).wrapping_add(b.byte()? as u32);
            if o == u32::MAX {
                return Ok(out);
            }
            if method == Method::B {
                len = 0;
                off = o + 1;
            } else {
                len = (o ^ u32::MAX) & 1;
                off = (o >> 1) + 1;
            }
            last_off = off;
        }
        let gamma_len = |b: &mut Bits, start: u32| -> Result<u32, NrvError> {
            let mut l = start;
            loop {
                l = l * 2 + b.bit()?;
                if l > GAMMA_MAX {
                    return Err(NrvError::Broken);
                }
                if b.bit()? == 1 {
                    return Ok(l);
                }
            }
        };
        match method {
            Method::B | Method::D => {
                if method == Method::B {
                    len = b.bit()?;
                }
                len = len * 2 + b.bit()?;
                if len == 0 {
                    len = gamma_len(&mut b, 1)? + 2;
                }
                len += u32::from(off > if method == Method::B { 0xD00 } else { 0x500 });
            }
            Method::E => {
                if len != 0 {
                    len = 1 + b.bit()?;
                } else if b.bit()? == 1 {
                    len = 3 + b.bit()?;
                } else {
                    len = gamma_len(&mut b, 1)? + 3;
                }
                len += u32::from(off > 0x500);
            }
        }
        let off = off as usize;
        if off > out.len() {
            return Err(NrvError::Broken);
        }
        let total = len as usize + 1;
        if out.len() + total > cap {
            return Err(NrvError::Limit);
        }
        for _ in 0..total {
            let v = out[out.len() - off];
            out.push(v);
        }
    }
}
