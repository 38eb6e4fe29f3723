//! ClamAV's packed databases: `.cvd`, `.cld` and `.cud` files as freshclam leaves them.
//!
//! Each starts with a 512-byte text header, padded with spaces:
//! `ClamAV-VDB:build time:version:signatures:functionality level:MD5:digital signature:builder:stime`,
//! followed by a tar archive of ordinary database files (`main.ndb`, `main.hdb`, `daily.fp`,
//! ...), gzip-compressed in a `.cvd`/`.cud` and either compressed or plain in a `.cld`.
//!
//! What is checked, and why no more:
//!
//! * The header must have the `ClamAV-VDB` magic and its fields their shapes.
//! * For a `.cvd`, the MD5 in the header must be the MD5 of everything after the header. This
//!   catches a truncated or corrupted download, which is the failure that actually happens.
//! * The digital signature field of a `.cvd` is **not** verified. ClamAV signs the MD5 with
//!   Cisco Talos' RSA key in a scheme of its own (a custom base-64 alphabet and a raw RSA
//!   operation, not PKCS#1), and the public key is compiled into libclamav. Checking it here
//!   would mean carrying that key and re-implementing the scheme; an operator who needs
//!   provenance gets it from freshclam, which verifies every file it downloads, or from
//!   `sigtool --verify`. The field is read and kept only for the log.
//! * A `.cld` has no usable MD5: freshclam rewrites its archive when it applies incremental
//!   updates but keeps the header, so ClamAV does not check it either. A `.cud` is unsigned by
//!   definition; its MD5 is checked like a `.cvd`'s.

use md5::{Digest, Md5};
use std::io::Read;

/// Size of the text header in front of the archive.
pub const HEADER_BYTES: usize = 512;

/// The parsed header of a packed database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub build_time: String,
    pub version: u64,
    pub signatures: u64,
    pub flevel: u64,
    pub md5: String,
    pub builder: String,
}

/// One file inside the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Which packed kind a file is, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cvd,
    Cld,
    Cud,
}

/// Parses the header of a packed database.
pub fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!("shorter ({} bytes) than the {HEADER_BYTES}-byte header", bytes.len()));
    }
    let text = std::str::from_utf8(&bytes[..HEADER_BYTES]).map_err(|_| "the header is not text".to_string())?;
    let text = text.trim_end_matches([' ', '\0', '\n']);
    let fields: Vec<&str> = text.split(':').collect();
    if fields.first() != Some(&"ClamAV-VDB") {
        return Err("the header does not start with `ClamAV-VDB:`".to_string());
    }
    if fields.len() < 8 {
        return Err(format!("the header has {} fields; expected at least 8", fields.len()));
    }
    let number = |i: usize, what: &str| {
        fields[i].trim().parse::<u64>().map_err(|_| format!("the header's {what} `{}` is not a number", fields[i]))
    };
    Ok(Header {
        build_time: fields[1].to_string(),
        version: number(2, "version")?,
        signatures: number(3, "signature count")?,
        flevel: number(4, "functionality level")?,
        md5: fields[5].to_ascii_lowercase(),
        builder: fields[7].to_string(),
    })
}

/// Reads a packed database: checks the header (and the MD5 where it applies, see the module
/// documentation) and returns the files of its archive. `bytes_max` bounds the unpacked size.
pub fn unpack(bytes: &[u8], kind: Kind, bytes_max: u64) -> Result<(Header, Vec<Member>), String> {
    let header = parse_header(bytes)?;
    let archive = &bytes[HEADER_BYTES..];
    if kind != Kind::Cld {
        let digest: String = Md5::digest(archive).iter().map(|b| format!("{b:02x}")).collect();
        if digest != header.md5 {
            return Err(format!(
                "the MD5 of the archive is {digest} but the header says {}; the file is damaged or truncated",
                header.md5
            ));
        }
    }
    let members = if archive.starts_with(&[0x1f, 0x8b]) {
        read_tar(flate2::read::GzDecoder::new(archive), bytes_max)?
    } else {
        read_tar(archive, bytes_max)?
    };
    Ok((header, members))
}

fn read_tar(reader: impl Read, bytes_max: u64) -> Result<Vec<Member>, String> {
    let mut archive = tar::Archive::new(reader);
    let mut members = Vec::new();
    let mut total = 0u64;
    let entries = archive.entries().map_err(|e| format!("the archive cannot be read: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the archive cannot be read: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(|e| format!("a member name cannot be read: {e}"))?;
        let name = name.to_string_lossy().trim_start_matches("./").to_string();
        total = total.saturating_add(entry.size());
        if total > bytes_max {
            return Err(format!("the archive unpacks to more than {bytes_max} bytes"));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry.read_to_end(&mut bytes).map_err(|e| format!("{name}: cannot be unpacked: {e}"))?;
        members.push(Member { name, bytes });
    }
    Ok(members)
}

/// Builds a packed database from `files` (for tests and for tools that make fixtures):
/// the header with the right MD5, then the tar archive, gzipped unless `plain`.
pub fn build(files: &[(&str, &[u8])], version: u64, plain: bool) -> Vec<u8> {
    let mut tar_bytes = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut tar_bytes);
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).expect("tar into memory");
        }
        builder.finish().expect("tar into memory");
    }
    let archive = if plain {
        tar_bytes
    } else {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_bytes).expect("gzip into memory");
        gz.finish().expect("gzip into memory")
    };
    let md5: String = Md5::digest(&archive).iter().map(|b| format!("{b:02x}")).collect();
    let mut header =
        format!("ClamAV-VDB:04 Dec 2026 01-00 +0000:{version}:{}:90:{md5}:X:icapd-test:1796346000", files.len())
            .into_bytes();
    header.resize(HEADER_BYTES, b' ');
    header.extend_from_slice(&archive);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_gzip_and_plain() {
        let files: &[(&str, &[u8])] = &[("main.ndb", b"A:0:*:41424344\n"), ("main.info", b"x\n")];
        for plain in [false, true] {
            let cvd = build(files, 62, plain);
            let (h, members) = unpack(&cvd, if plain { Kind::Cld } else { Kind::Cvd }, 1 << 20).unwrap();
            assert_eq!((h.version, h.signatures, h.flevel, h.builder.as_str()), (62, 2, 90, "icapd-test"));
            let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(names, ["main.ndb", "main.info"]);
            assert_eq!(members[0].bytes, b"A:0:*:41424344\n");
        }
    }

    #[test]
    fn damaged_files_are_refused() {
        let mut cvd = build(&[("main.ndb", b"A:0:*:41424344\n")], 1, false);
        let last = cvd.len() - 1;
        cvd[last] ^= 1;
        assert!(unpack(&cvd, Kind::Cvd, 1 << 20).unwrap_err().contains("the file is damaged or truncated"));
        // A .cld's MD5 is not checked (freshclam rewrites the archive); the damaged gzip
        // trailer is still noticed by the decompressor or ignored, but never misread.
        assert!(unpack(&cvd[..300], Kind::Cvd, 1 << 20).unwrap_err().contains("header"));
        let mut bad = build(&[("a.ndb", b"")], 1, false);
        bad[..10].copy_from_slice(b"ClamAV-VDX");
        assert!(unpack(&bad, Kind::Cvd, 1 << 20).unwrap_err().contains("ClamAV-VDB"));
        let big = build(&[("a.ndb", &[b'#'; 4096])], 1, false);
        assert!(unpack(&big, Kind::Cvd, 1000).unwrap_err().contains("more than 1000 bytes"));
    }
}
