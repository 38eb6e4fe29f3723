//! Inflate (raw deflate or zlib) from a slice into a [`Put`], through a fixed output buffer, so
//! the output is limited as it is produced. flate2's pure-Rust backend does the decoding.

use flate2::{Decompress, FlushDecompress, Status};

use super::out::{broken, Put, PIECE_BYTES, R};

/// Inflates `input` into `put`. Returns the input bytes consumed. A stream that ends before its
/// final block is `Broken(name)`, unless `lenient` (PDF readers accept a missing end), in which
/// case what was decoded stands.
pub fn inflate(input: &[u8], zlib: bool, lenient: bool, name: &'static str, put: &mut dyn Put) -> R<usize> {
    let mut d = Decompress::new(zlib);
    let mut buf = vec![0u8; PIECE_BYTES];
    loop {
        let in_before = d.total_in() as usize;
        let out_before = d.total_out();
        let status = d.decompress(&input[in_before..], &mut buf, FlushDecompress::None);
        let produced = (d.total_out() - out_before) as usize;
        if produced > 0 {
            put.put(&buf[..produced])?;
        }
        let consumed = d.total_in() as usize - in_before;
        match status {
            Ok(Status::StreamEnd) => return Ok(d.total_in() as usize),
            Ok(_) if consumed > 0 || produced > 0 => {}
            // No progress: the input ran out before the end of the stream.
            Ok(_) | Err(_) => {
                return if lenient && d.total_out() > 0 { Ok(d.total_in() as usize) } else { Err(broken(name)) };
            }
        }
    }
}
