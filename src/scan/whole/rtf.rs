//! RTF: embedded objects (`\objdata`: hex, possibly mixed with `\bin` runs, holding an OLE1
//! object whose native data is usually an OLE2 file or a `Package`) and `\bin N` binary runs.
//!
//! One forward pass over the text, without recursion: control words are read as RTF defines
//! them (a backslash, letters, an optional signed number, an optional space), groups are only
//! counted. Inside `\objdata` every hex digit counts and everything else except `\bin` data is
//! skipped, as Word does, so objects split by junk control words or white space are still
//! whole. Members: `objdataN` (the OLE1 native data, or the raw object where the header does
//! not parse), `objdataN/<label>` (a Package's file), `binN`.

use super::ole2;
use super::out::{broken, le32, Buf, Out, R};

const BROKEN: &str = "Heuristics.Broken.RTF";

pub fn extract(data: &[u8], out: &mut Out) -> R {
    let cap = out.limits().member_bytes_max;
    let mut i = 0usize;
    let mut depth = 0u32;
    // The group depth at which the current \objdata ends, and its bytes so far.
    let mut obj: Option<(u32, Buf, Option<u8>)> = None;
    let mut objects = 0u32;
    let mut bins = 0u32;
    while i < data.len() {
        let b = data[i];
        match b {
            b'{' => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                i += 1;
                depth = depth.saturating_sub(1);
                if obj.as_ref().is_some_and(|o| depth < o.0) {
                    let (_, buf, _) = obj.take().expect("checked");
                    objects += 1;
                    emit_object(&buf.bytes, objects, out)?;
                }
            }
            b'\\' => {
                let (word, param, next) = control(data, i + 1);
                i = next;
                match word {
                    b"objdata" if obj.is_none() => obj = Some((depth, Buf::new(cap), None)),
                    b"bin" => {
                        let n = usize::try_from(param.unwrap_or(0)).unwrap_or(0);
                        let end = i.checked_add(n).filter(|&e| e <= data.len()).ok_or_else(|| broken(BROKEN))?;
                        let run = &data[i..end];
                        match obj.as_mut() {
                            Some((_, buf, _)) => super::out::Put::put(buf, run)?,
                            None if n > 0 => {
                                bins += 1;
                                out.member(&format!("bin{bins}"), run)?;
                            }
                            None => {}
                        }
                        i = end;
                    }
                    _ => {}
                }
            }
            _ => {
                if let Some((_, buf, high)) = obj.as_mut() {
                    if let Some(v) = (b as char).to_digit(16) {
                        match high.take() {
                            Some(h) => super::out::Put::put(buf, &[h << 4 | v as u8])?,
                            None => *high = Some(v as u8),
                        }
                    }
                }
                i += 1;
            }
        }
    }
    if let Some((_, buf, _)) = obj {
        // The file ended inside the object: what there is goes out, then the fault.
        emit_object(&buf.bytes, objects + 1, out)?;
        return Err(broken(BROKEN));
    }
    if depth > 0 && objects + bins > 0 {
        return Err(broken(BROKEN));
    }
    Ok(())
}

/// Reads a control word or symbol after a backslash at `at`: its letters (empty for a control
/// symbol), its numeric parameter, and where the text resumes.
fn control(data: &[u8], at: usize) -> (&[u8], Option<i64>, usize) {
    let mut i = at;
    while data.get(i).is_some_and(|b| b.is_ascii_alphabetic()) && i - at < 32 {
        i += 1;
    }
    let word = &data[at..i];
    if word.is_empty() {
        // A control symbol: `\'hh` carries two hex digits, the rest one character.
        return match data.get(at) {
            Some(b'\'') => (word, None, (at + 3).min(data.len())),
            Some(_) => (word, None, at + 1),
            None => (word, None, at),
        };
    }
    let num_at = i;
    if data.get(i) == Some(&b'-') {
        i += 1;
    }
    while data.get(i).is_some_and(|b| b.is_ascii_digit()) && i - num_at < 10 {
        i += 1;
    }
    let param = std::str::from_utf8(&data[num_at..i]).ok().and_then(|s| s.parse().ok());
    if data.get(i) == Some(&b' ') {
        i += 1;
    }
    (word, param, i)
}

/// An OLE1 object: version, format id (2: embedded), class name, topic and item names (each a
/// u32 length and the bytes), then the native data's size and the data. The native data goes
/// out as the member; a Package's file goes out as its own member as well.
fn emit_object(obj: &[u8], n: u32, out: &mut Out) -> R {
    let name = format!("objdata{n}");
    match ole1(obj) {
        Some((class, native)) => {
            out.member(&name, native)?;
            if class.eq_ignore_ascii_case(b"Package") {
                if let Some((label, payload)) = ole2::package(native) {
                    out.member(&format!("{name}/{label}"), payload)?;
                }
            }
            Ok(())
        }
        None if obj.is_empty() => Ok(()),
        None => out.member(&name, obj),
    }
}

fn ole1(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let _version = le32(b, 0)?;
    let format = le32(b, 4)?;
    if format != 2 {
        return None;
    }
    let mut at = 8usize;
    let mut strings = [&b[..0]; 3];
    for s in &mut strings {
        let len = le32(b, at)? as usize;
        *s = b.get(at + 4..(at + 4).checked_add(len)?)?;
        at += 4 + len;
    }
    let class = strings[0].strip_suffix(b"\0").unwrap_or(strings[0]);
    let size = le32(b, at)? as usize;
    let native = b.get(at + 4..)?;
    Some((class, &native[..size.min(native.len())]))
}
