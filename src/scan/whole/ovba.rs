//! MS-OVBA compression (the VBA project's `dir` stream and module sources): a signature byte
//! 0x01, then chunks of at most 4096 decompressed bytes, each literal or LZ77-compressed with
//! copy tokens whose offset/length split depends on the position in the chunk. Written from
//! [MS-OVBA] 2.4.1.

use super::out::{broken, le16, le32, Put, R};

const BROKEN: &str = "Heuristics.Broken.VBA";
const CHUNK: usize = 4096;

/// Decompresses a compressed container into `put`, chunk by chunk (each chunk is bounded, so
/// memory is one chunk).
pub fn decompress(src: &[u8], put: &mut dyn Put) -> R {
    if src.first() != Some(&1) {
        return Err(broken(BROKEN));
    }
    let mut at = 1usize;
    let mut chunk = Vec::with_capacity(CHUNK);
    while at + 2 <= src.len() {
        let header = le16(src, at).unwrap_or(0);
        if (header >> 12) & 0x7 != 0b011 {
            return Err(broken(BROKEN));
        }
        let size = (header & 0x0FFF) as usize + 3;
        let end = (at + size).min(src.len());
        let body = &src[at + 2..end];
        chunk.clear();
        if header & 0x8000 == 0 {
            chunk.extend_from_slice(&body[..body.len().min(CHUNK)]);
        } else {
            decompress_chunk(body, &mut chunk)?;
        }
        put.put(&chunk)?;
        at = end;
    }
    Ok(())
}

fn decompress_chunk(body: &[u8], chunk: &mut Vec<u8>) -> R {
    let mut i = 0usize;
    while i < body.len() && chunk.len() < CHUNK {
        let flags = body[i];
        i += 1;
        for bit in 0..8 {
            if i >= body.len() || chunk.len() >= CHUNK {
                break;
            }
            if flags & (1 << bit) == 0 {
                chunk.push(body[i]);
                i += 1;
                continue;
            }
            let Some(token) = le16(body, i) else { return Err(broken(BROKEN)) };
            i += 2;
            let pos = chunk.len();
            let mut bits = 4u32;
            while (1usize << bits) < pos {
                bits += 1;
            }
            let len_mask = 0xFFFFu16 >> bits;
            let offset = ((token >> (16 - bits)) as usize) + 1;
            let length = ((token & len_mask) as usize) + 3;
            if offset > pos {
                return Err(broken(BROKEN));
            }
            for _ in 0..length {
                if chunk.len() >= CHUNK {
                    break;
                }
                let b = chunk[chunk.len() - offset];
                chunk.push(b);
            }
        }
    }
    Ok(())
}

/// Finds the source offset of the module whose stream is `stream` in a decompressed `dir`
/// stream: records are a u16 id and a u32 size, except PROJECTVERSION (0x0009), whose size
/// field says 4 but which carries 6 bytes.
pub fn module_offset(dir: &[u8], stream: &str) -> Option<u32> {
    let mut at = 0usize;
    let mut current = false;
    while let (Some(id), Some(size)) = (le16(dir, at), le32(dir, at + 2)) {
        let data_at = at + 6;
        let size = if id == 0x0009 { 6 } else { size as usize };
        let data = dir.get(data_at..data_at.checked_add(size)?)?;
        match id {
            0x001A => current = data.eq_ignore_ascii_case(stream.as_bytes()),
            0x0031 if current => return le32(data, 0),
            _ => {}
        }
        at = data_at + size;
    }
    None
}
