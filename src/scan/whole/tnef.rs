//! TNEF (`winmail.dat`, `application/ms-tnef`): a signature and key, then attributes, each a
//! level byte, a u32 id (type in the high half), a u32 length, the data and a u16 checksum.
//! Every `attAttachData` is a member, named by its attachment's `attAttachTitle` (which may come
//! before or after the data; the data is held until the title or the next attachment). Written from
//! [MS-OXTNEF]. Attachments carried only inside MAPI property blocks (`attAttachment`,
//! embedded messages) are not unpacked; their bytes are still in the object the caller scans.

use super::out::{broken, le16, le32, Out, R};

pub const SIGNATURE: u32 = 0x223E_9F78;
const BROKEN: &str = "Heuristics.Broken.TNEF";

const ATT_ATTACH_REND_DATA: u16 = 0x9002;
const ATT_ATTACH_TITLE: u16 = 0x8010;
const ATT_ATTACH_DATA: u16 = 0x800F;

pub fn extract(data: &[u8], out: &mut Out) -> R {
    if le32(data, 0) != Some(SIGNATURE) || le16(data, 4).is_none() {
        return Err(broken(BROKEN));
    }
    let mut at = 6usize;
    let mut title: Option<String> = None;
    let mut pending: Option<&[u8]> = None;
    let mut n = 0u32;
    while at < data.len() {
        // Writers leave a line end or padding after the last attribute.
        if data[at..].iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            break;
        }
        let (Some(&level), Some(id), Some(len)) = (data.get(at), le32(data, at + 1), le32(data, at + 5)) else {
            flush(&mut pending, &title, &mut n, out)?;
            return Err(broken(BROKEN));
        };
        let end = (at + 9).checked_add(len as usize).filter(|&e| e + 2 <= data.len());
        let Some(end) = end.filter(|_| level == 1 || level == 2) else {
            flush(&mut pending, &title, &mut n, out)?;
            return Err(broken(BROKEN));
        };
        let value = &data[at + 9..end];
        match id as u16 {
            ATT_ATTACH_REND_DATA => {
                flush(&mut pending, &title, &mut n, out)?;
                title = None;
            }
            ATT_ATTACH_TITLE => {
                let raw = value.split(|&b| b == 0).next().unwrap_or(value);
                let s: String = raw.iter().map(|&b| b as char).collect();
                title = Some(s.rsplit(['\\', '/']).next().unwrap_or("").to_string()).filter(|s| !s.is_empty());
                flush(&mut pending, &title, &mut n, out)?;
            }
            ATT_ATTACH_DATA => {
                flush(&mut pending, &title, &mut n, out)?;
                pending = Some(value);
                if title.is_some() {
                    flush(&mut pending, &title, &mut n, out)?;
                }
            }
            _ => {}
        }
        at = end + 2;
    }
    flush(&mut pending, &title, &mut n, out)
}

fn flush(pending: &mut Option<&[u8]>, title: &Option<String>, n: &mut u32, out: &mut Out) -> R {
    if let Some(value) = pending.take() {
        *n += 1;
        let name = title.clone().unwrap_or_else(|| format!("attachment{n}"));
        out.member(&name, value)?;
    }
    Ok(())
}
