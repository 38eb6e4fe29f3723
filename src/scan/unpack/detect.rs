//! What container an object (or member) is, from its first bytes: never from a Content-Type
//! or a file name, which the sender chooses (a renamed zip is still a zip).
//!
//! The decision is made on the object's head, at most [`DETECT_BYTES`]: as soon as a magic
//! number at offset 0 of a streamed format is complete (a zip is known after four bytes, so
//! its first member is scanned as it arrives), otherwise when the head is full or the object
//! ends. It depends only on the bytes, never on how they were cut into pieces. An object that
//! is no container pays for copying its head and these comparisons, once.

use super::formats;
use super::whole;

/// Bytes of an object's start kept for detection (the random-access library looks at up to
/// this many, e.g. for a PDF header after some junk).
pub const DETECT_BYTES: usize = 4096;

/// The cpio header variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioKind {
    /// `070707`, octal ASCII fields (POSIX.1 "odc").
    Odc,
    /// `070701`/`070702`, hex ASCII fields (SVR4 "newc", and "crc" with a checksum).
    Newc,
    /// Old binary, little- or big-endian 16-bit words.
    BinLe,
    BinBe,
}

/// A container the layer opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gzip,
    Bzip2,
    Zstd,
    Xz,
    /// LZMA_Alone (`.lzma`).
    Lzma,
    Zip,
    Tar,
    Cpio(CpioKind),
    /// A mail message or MIME entity (headers, then a body that may be multipart).
    Mail,
    /// A bare multipart body (an upload's `multipart/form-data`): starts with a boundary line.
    Multipart,
    Uuencode,
    Binhex,
    /// Microsoft's `compress.exe` (SZDD) LZSS format.
    Szdd,
    /// An NSIS installer's data block (the overlay of its setup program).
    Nsis,
    /// InstallShield's file list (the overlay of its setup program).
    InstallShield,
    /// A PE (not UPX-packed) whose sections' file data ends at this offset: what follows, its
    /// overlay, is handed on as a member, where a self-extractor keeps its payload.
    PeOverlay(u64),
    /// Formats that need the whole object (see [`super::whole`]).
    Whole(whole::Kind),
}

/// The answer for a head so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detect {
    /// More bytes could change the answer.
    NeedMore,
    Container(Kind),
    /// Not a container: scanned as it is.
    Plain,
}

/// Magic numbers at offset 0 of the streamed formats; each decides as soon as it is complete.
const PREFIX_MAGICS: [(&[u8], Kind); 4] = [
    (b"PK\x03\x04", Kind::Zip),
    (b"\x28\xb5\x2f\xfd", Kind::Zstd),
    (b"\xfd7zXZ\x00", Kind::Xz),
    (b"SZDD\x88\xf0\x27\x33", Kind::Szdd),
];

/// LZMA_Alone has no magic: the usual properties byte (lc=3, lp=0, pb=2), a dictionary size
/// that is a power of two from 64 KiB to 1 GiB, and an unknown (all ones) or plausible size.
fn lzma_alone(head: &[u8]) -> bool {
    if head.len() < 13 || head[0] != 0x5d {
        return false;
    }
    let dict = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes"));
    let size = u64::from_le_bytes(head[5..13].try_into().expect("8 bytes"));
    dict.is_power_of_two() && (1 << 16..=1 << 30).contains(&dict) && (size == u64::MAX || size < 1 << 40)
}

/// cpio magics; short or plain text, so the first header must also parse (see [`cpio_header`]).
const CPIO_MAGICS: [(&[u8], CpioKind); 5] = [
    (b"070707", CpioKind::Odc),
    (b"070701", CpioKind::Newc),
    (b"070702", CpioKind::Newc),
    (b"\xc7\x71", CpioKind::BinLe),
    (b"\x71\xc7", CpioKind::BinBe),
];

/// Whether `head` starts with a well-formed cpio header of `kind` (`None`: too short to say).
/// A text file that happens to begin with `070707`, or a binary one with `c7 71`, is not
/// taken for an archive that would then be reported broken.
fn cpio_header(head: &[u8], kind: CpioKind, complete: bool) -> Option<bool> {
    let (len, digits): (usize, fn(&u8) -> bool) = match kind {
        CpioKind::Odc => (76, |b| (b'0'..=b'7').contains(b)),
        CpioKind::Newc => (110, u8::is_ascii_hexdigit),
        CpioKind::BinLe | CpioKind::BinBe => (26, |_| true),
    };
    if head.len() < len {
        return if complete { Some(false) } else { None };
    }
    if !head[..len].iter().all(digits) {
        return Some(false);
    }
    let namesize = match kind {
        CpioKind::Odc => usize::from_str_radix(std::str::from_utf8(&head[59..65]).ok()?, 8).ok()?,
        CpioKind::Newc => usize::from_str_radix(std::str::from_utf8(&head[94..102]).ok()?, 16).ok()?,
        CpioKind::BinLe => usize::from(u16::from_le_bytes([head[20], head[21]])),
        CpioKind::BinBe => usize::from(u16::from_be_bytes([head[20], head[21]])),
    };
    if !(2..=1024).contains(&namesize) {
        return Some(false);
    }
    match head.get(len..len + namesize) {
        // The name is NUL-terminated text.
        Some(name) => Some(name[namesize - 1] == 0 && name[..namesize - 1].iter().all(|&b| b >= 0x20 && b != 0x7f)),
        None if complete => Some(false),
        None => None,
    }
}

/// `tar`'s magic, at offset 257 of the first header ("ustar\0" POSIX, "ustar " GNU).
const TAR_MAGIC_AT: usize = 257;

/// Decides what `head` (the object's first bytes; `complete`: the whole object) is.
pub fn detect(head: &[u8], complete: bool) -> Detect {
    for (magic, kind) in PREFIX_MAGICS {
        if head.len() >= magic.len() && head.starts_with(magic) {
            return Detect::Container(kind);
        }
    }
    if head.len() >= 4 + formats::NSIS_MAGIC.len() && head[4..].starts_with(formats::NSIS_MAGIC) {
        return Detect::Container(Kind::Nsis);
    }
    if lzma_alone(head) {
        return Detect::Container(Kind::Lzma);
    }
    // gzip: magic, deflate, and no reserved flag bits.
    if head.len() >= 4 && head.starts_with(b"\x1f\x8b\x08") && head[3] & 0xe0 == 0 {
        return Detect::Container(Kind::Gzip);
    }
    for (magic, kind) in CPIO_MAGICS {
        if head.starts_with(magic) {
            match cpio_header(head, kind, complete) {
                Some(true) => return Detect::Container(Kind::Cpio(kind)),
                Some(false) => {}
                None => return Detect::NeedMore,
            }
        }
    }
    // bzip2: "BZh" + block size digit + the first block's magic (or an empty stream's end).
    if head.len() >= 10
        && head.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (head[4..10] == *b"\x31\x41\x59\x26\x53\x59" || head[4..10] == *b"\x17\x72\x45\x38\x50\x90")
    {
        return Detect::Container(Kind::Bzip2);
    }
    if head.len() >= TAR_MAGIC_AT + 5 && &head[TAR_MAGIC_AT..TAR_MAGIC_AT + 5] == b"ustar" {
        return Detect::Container(Kind::Tar);
    }
    if head.len() < DETECT_BYTES && !complete {
        return Detect::NeedMore;
    }
    match whole::detect(head) {
        // An HTML page is buffered and opened only when its head shows a `data:` URI: pages
        // are most of what a proxy sees, and an ordinary one must pay no more than the check.
        Some(whole::Kind::Html) if !has_data_uri(head) => {}
        Some(kind) => return Detect::Container(Kind::Whole(kind)),
        None => {}
    }
    if formats::starts_installshield_list(head) {
        return Detect::Container(Kind::InstallShield);
    }
    // A PE (other than UPX, unpacked whole above): its overlay may carry an SFX's payload.
    if let Some(at) = formats::overlay_offset(head) {
        return Detect::Container(Kind::PeOverlay(at));
    }
    if let Some(kind) = text_kind(head) {
        return Detect::Container(kind);
    }
    Detect::Plain
}

/// [`detect`] for a member that is a region of its container's own bytes (`embedded`, a PE's
/// overlay): only a container with a strong magic ([`is_strong`]) is opened there.
pub fn detect_embedded(head: &[u8], complete: bool, embedded: bool) -> Detect {
    match detect(head, complete) {
        Detect::Container(kind) if embedded && !is_strong(kind) => Detect::Plain,
        found => found,
    }
}

/// Whether `kind` is recognised by a magic that ordinary data does not carry by chance: the
/// archive and compression formats with a signature of four bytes or more, NSIS's data block,
/// InstallShield's file list (four fields of a strict shape), and a PE (whose headers must
/// also parse). Text containers, cpio, `.lzma` (no magic at all),
/// PDF, RTF and HTML are not.
pub fn is_strong(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Zip
            | Kind::Gzip
            | Kind::Bzip2
            | Kind::Xz
            | Kind::Zstd
            | Kind::Tar
            | Kind::Szdd
            | Kind::Nsis
            | Kind::InstallShield
            | Kind::PeOverlay(_)
            | Kind::Whole(
                whole::Kind::SevenZip | whole::Kind::Cab | whole::Kind::Ole2 | whole::Kind::Chm | whole::Kind::Pe
            )
    )
}

/// Whether `head` holds `data:` in any case (an HTML `data:` URI starts so).
fn has_data_uri(head: &[u8]) -> bool {
    head.windows(5).any(|w| w.eq_ignore_ascii_case(b"data:"))
}

/// The text containers, recognised in the head: binhex's banner, a uuencode `begin` line,
/// a boundary line followed by part headers, or a block of mail headers.
fn text_kind(head: &[u8]) -> Option<Kind> {
    // BinHex: the banner at the start of a line, then (after blanks) the colon of the data.
    if let Some(at) = memchr::memmem::find(head, b"(This file must be converted with BinHex") {
        let line_start = at == 0 || head[at - 1] == b'\n';
        let after = &head[at..];
        let data = memchr::memchr(b'\n', after).map(|nl| after[nl..].trim_ascii_start());
        if line_start && data.is_some_and(|d| d.starts_with(b":")) {
            return Some(Kind::Binhex);
        }
    }
    if head.starts_with(b"begin ") && super::uu::begin_line(first_line(head)).is_some() {
        return Some(Kind::Uuencode);
    }
    if head.starts_with(b"--") {
        let line = first_line(head).trim_ascii_end();
        let rest = &head[first_line(head).len()..];
        let rest = rest.strip_prefix(b"\n").unwrap_or(rest);
        if (3..=74).contains(&line.len()) && !line.contains(&b' ') && header_name(first_line(rest)).is_some() {
            return Some(Kind::Multipart);
        }
    }
    if is_mail(head) {
        return Some(Kind::Mail);
    }
    None
}

/// The line at the start of `data`, without its `\n`.
fn first_line(data: &[u8]) -> &[u8] {
    &data[..memchr::memchr(b'\n', data).unwrap_or(data.len())]
}

/// The lowercase-insensitive field name of a header line (`Name: value`), if it is one.
fn header_name(line: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', line)?;
    let name = &line[..colon];
    (!name.is_empty() && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')).then_some(name)
}

/// Headers that mark a mail message or MIME entity.
const MAIL_HEADERS: [&[u8]; 12] = [
    b"from",
    b"to",
    b"subject",
    b"received",
    b"return-path",
    b"delivered-to",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"date",
    b"x-mailer",
];

/// A mail: an optional mbox `From ` line, then header lines only (continuations allowed) up
/// to a blank line or the end of the head, with at least two of [`MAIL_HEADERS`].
fn is_mail(head: &[u8]) -> bool {
    let mut rest = head;
    if rest.starts_with(b"From ") {
        rest = &rest[(first_line(rest).len() + 1).min(rest.len())..];
    }
    let mut known = 0;
    let mut lines = 0;
    while !rest.is_empty() {
        let line = first_line(rest);
        let full = line.len() == rest.len();
        rest = &rest[(line.len() + 1).min(rest.len())..];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if full && !rest.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if lines == 0 {
                return false;
            }
            continue;
        }
        match header_name(line) {
            Some(name) => {
                lines += 1;
                known += usize::from(MAIL_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)));
            }
            // The head may end inside the last line; anything else is not a header block.
            None if full => break,
            None => return false,
        }
    }
    known >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_decides_as_soon_as_complete() {
        assert_eq!(detect(b"PK\x03", false), Detect::NeedMore);
        assert_eq!(detect(b"PK\x03\x04", false), Detect::Container(Kind::Zip));
        assert_eq!(detect(b"\x1f\x8b\x08\x00", false), Detect::Container(Kind::Gzip));
        assert_eq!(detect(b"MZ\x90\x00", true), Detect::Plain);
        assert_eq!(detect(b"hello", false), Detect::NeedMore);
        assert_eq!(detect(b"hello", true), Detect::Plain);
        let mut tar = vec![0u8; 600];
        tar[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(detect(&tar, false), Detect::Container(Kind::Tar));
    }

    #[test]
    fn text_containers() {
        let mail = b"From: a@b\r\nTo: c@d\r\nSubject: x\r\n\r\nbody";
        assert_eq!(detect(mail, true), Detect::Container(Kind::Mail));
        assert_eq!(detect(b"Just: one header\r\n\r\nbody", true), Detect::Plain);
        assert_eq!(detect(b"<html><body>From: me</body></html>", true), Detect::Plain);
        let page = b"<html><body><a href=\"DATA:application/x;base64,TVo=\">x</a></body></html>";
        assert_eq!(detect(page, true), Detect::Container(Kind::Whole(whole::Kind::Html)));
        let form = b"--xyz123\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\ndata\r\n--xyz123--\r\n";
        assert_eq!(detect(form, true), Detect::Container(Kind::Multipart));
        assert_eq!(detect(b"begin 644 a.exe\nM\nend\n", true), Detect::Container(Kind::Uuencode));
        assert_eq!(detect(b"(This file must be converted with BinHex 4.0)\n:", true), Detect::Container(Kind::Binhex));
        assert_eq!(detect(b"a note: (This file must be converted with BinHex 4.0)\n:", true), Detect::Plain);
    }

    #[test]
    fn weak_magics_need_a_well_formed_header() {
        // Phone numbers and random bytes are not cpio archives.
        assert_eq!(detect(b"0707070707 call me\n", true), Detect::Plain);
        assert_eq!(detect(b"0707070707 call me\n", false), Detect::NeedMore);
        assert_eq!(detect(b"\xc7\x71 random bytes that go on for a while....", true), Detect::Plain);
        let mut odc = b"070707".to_vec();
        odc.extend_from_slice(
            format!(
                "{:06o}{:06o}{:06o}{:06o}{:06o}{:06o}{:06o}{:011o}{:06o}{:011o}",
                0, 1, 0o100644, 0, 0, 1, 0, 0, 2, 0
            )
            .as_bytes(),
        );
        odc.extend_from_slice(b"a\0");
        assert_eq!(detect(&odc[..70], false), Detect::NeedMore);
        assert_eq!(detect(&odc, false), Detect::Container(Kind::Cpio(CpioKind::Odc)));
        assert_eq!(detect(b"\x1f\x8b\x08\xff", true), Detect::Plain);
    }
}
