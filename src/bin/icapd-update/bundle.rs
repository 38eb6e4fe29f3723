//! Signature bundles: a gzip-compressed tar of signature files, all at the top level.
//!
//! Writing one is deterministic (sorted names, owner 0, mode 0644, a fixed time stamp), so the
//! same folder gives the same bundle and the same signature on any publisher machine.
//!
//! Unpacking trusts nothing, even though it runs only after the signature verified: a leaked
//! publisher key must not become a way to write outside the new folder. Only regular files
//! with a plain name (no `/`, no `..`, no absolute path) are accepted; links, devices, FIFOs
//! and folders are refused; the count of members and the bytes they unpack to are bounded,
//! so a decompression bomb stops at the limit instead of filling the disk.

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::io::{Read, Write};
use std::path::{Component, Path};

use icapd::signatures::clamav::formats::{format_of, Format};

/// The time stamp every member gets when `SOURCE_DATE_EPOCH` is not set.
const FIXED_MTIME: u64 = 0;

/// Bounds on what a bundle may unpack to.
#[derive(Clone, Copy, Debug)]
pub struct UnpackLimits {
    pub files_max: usize,
    pub unpacked_bytes_max: u64,
}

/// Whether the server's loader looks at a file of this name (loads it, or reports it as a
/// format it does not load). Other files in a publisher's folder are left out of a bundle,
/// with a warning; the unpacking side accepts any plain name, since the loader decides.
fn is_signature_file(name: &str) -> bool {
    format_of(name) != Format::Other
}

/// The bytes of a `.tar.gz` holding every signature file at the top of `dir`.
pub fn make(dir: &Path) -> Result<(Vec<u8>, usize), String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().into_string().map_err(|n| format!("{n:?}: not a UTF-8 name"))?;
        let kind = entry.file_type().map_err(|e| format!("{name}: {e}"))?;
        if kind.is_file() && is_signature_file(&name) {
            names.push(name);
        } else {
            eprintln!("icapd-update: leaving {name} out of the bundle (not a signature file)");
        }
    }
    if names.is_empty() {
        return Err(format!("{} holds no signature files", dir.display()));
    }
    names.sort();
    let mtime = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse().ok()).unwrap_or(FIXED_MTIME);
    let gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    for name in &names {
        let bytes = std::fs::read(dir.join(name)).map_err(|e| format!("cannot read {name}: {e}"))?;
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, bytes.as_slice()).map_err(|e| format!("{name}: {e}"))?;
    }
    let gz = tar.into_inner().map_err(|e| format!("cannot finish the tar: {e}"))?;
    let bytes = gz.finish().map_err(|e| format!("cannot finish the gzip stream: {e}"))?;
    Ok((bytes, names.len()))
}

/// The plain file name of a member, or why it is refused.
fn member_name(path: &Path) -> Result<String, String> {
    let shown = path.display().to_string();
    let mut parts = path.components().filter(|c| !matches!(c, Component::CurDir));
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(name)), None) => {
            let name = name.to_str().ok_or(format!("member {shown:?} has a name that is not UTF-8"))?;
            if name.starts_with('.') {
                return Err(format!("member {shown:?} is a hidden file"));
            }
            Ok(name.to_string())
        }
        (Some(Component::RootDir | Component::Prefix(_)), _) => Err(format!("member {shown:?} has an absolute path")),
        _ if path.components().any(|c| matches!(c, Component::ParentDir)) => {
            Err(format!("member {shown:?} climbs out of the bundle (..)"))
        }
        _ => Err(format!("member {shown:?} is not at the top level of the bundle")),
    }
}

/// Unpacks `bundle` (the verified `.tar.gz` bytes) into the empty folder `into`. Returns the
/// number of files written.
pub fn unpack(bundle: &[u8], into: &Path, limits: UnpackLimits) -> Result<usize, String> {
    let mut archive = tar::Archive::new(GzDecoder::new(bundle));
    let mut files = 0usize;
    let mut total = 0u64;
    let entries = archive.entries().map_err(|e| format!("not a tar.gz bundle: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("corrupt bundle: {e}"))?;
        let path = entry.path().map_err(|e| format!("corrupt member name: {e}"))?.into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() && path.components().all(|c| matches!(c, Component::CurDir)) {
            continue; // "./", which tar(1) writes first
        }
        let name = member_name(&path)?;
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(format!("member {name:?} is not a regular file ({kind:?}); links and devices are refused"));
        }
        files += 1;
        if files > limits.files_max {
            return Err(format!("the bundle has more than update_files_max ({}) members", limits.files_max));
        }
        let size = entry.header().size().map_err(|e| format!("member {name:?}: {e}"))?;
        if total.saturating_add(size) > limits.unpacked_bytes_max {
            return Err(format!(
                "the bundle unpacks to more than update_unpacked_bytes_max ({})",
                limits.unpacked_bytes_max
            ));
        }
        total += size;
        let target = into.join(&name);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        // `take` bounds the copy even if the header's size lied.
        let copied = std::io::copy(&mut (&mut entry).take(size), &mut out)
            .map_err(|e| format!("corrupt bundle (member {name:?}): {e}"))?;
        if copied != size {
            return Err(format!("corrupt bundle: member {name:?} is cut short"));
        }
        out.sync_all().map_err(|e| format!("{}: {e}", target.display()))?;
    }
    // Anything after the end-of-archive blocks, or a gzip stream that does not end cleanly,
    // is a damaged bundle.
    let mut rest = archive.into_inner();
    let mut sink = [0u8; 512];
    loop {
        match rest.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => return Err(format!("corrupt bundle: {e}")),
        }
    }
    if files == 0 {
        return Err("the bundle holds no files".into());
    }
    Ok(files)
}

/// Writes `bytes` to `path` through a temporary name, so a reader never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let tar = b.into_inner().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    /// A raw ustar header: the tar crate's builder refuses `..` and absolute names itself, and
    /// an attacker's bundle would not.
    fn raw_member(name: &str, kind: u8, data: &[u8]) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn raw_bundle(members: &[Vec<u8>]) -> Vec<u8> {
        let mut tar: Vec<u8> = members.concat();
        tar.extend_from_slice(&[0u8; 1024]);
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    struct Dir(std::path::PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("icapd-update-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const LIMITS: UnpackLimits = UnpackLimits { files_max: 8, unpacked_bytes_max: 1 << 20 };

    #[test]
    fn a_made_bundle_unpacks_to_the_same_files_and_is_reproducible() {
        let src = Dir::new("make-src");
        std::fs::write(src.0.join("a.ndb"), "Sig:0:*:414243\n").unwrap();
        std::fs::write(src.0.join("b.hdb"), "44d88612fea8a8f36de82e1278abb02f:68:EICAR\n").unwrap();
        std::fs::write(src.0.join("notes.txt"), "left out").unwrap();
        let (bundle, n) = make(&src.0).unwrap();
        assert_eq!(n, 2);
        assert_eq!(make(&src.0).unwrap().0, bundle, "the same folder gives the same bytes");
        let out = Dir::new("make-out");
        assert_eq!(unpack(&bundle, &out.0, LIMITS).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(out.0.join("a.ndb")).unwrap(), "Sig:0:*:414243\n");
        assert!(!out.0.join("notes.txt").exists());
    }

    #[test]
    fn traversal_absolute_paths_links_devices_and_folders_are_refused() {
        let cases: [(Vec<u8>, &str); 6] = [
            (raw_bundle(&[raw_member("../evil.ndb", b'0', b"x")]), "climbs out"),
            (raw_bundle(&[raw_member("a/../../evil.ndb", b'0', b"x")]), "climbs out"),
            (raw_bundle(&[raw_member("/etc/evil.ndb", b'0', b"x")]), "absolute"),
            (raw_bundle(&[raw_member("link.ndb", b'2', b"")]), "not a regular file"),
            (raw_bundle(&[raw_member("dev.ndb", b'3', b"")]), "not a regular file"),
            (raw_bundle(&[raw_member("sub/x.ndb", b'0', b"x")]), "top level"),
        ];
        for (bundle, why) in cases {
            let out = Dir::new("evil");
            let err = unpack(&bundle, &out.0, LIMITS).unwrap_err();
            assert!(err.contains(why), "{err} (want {why})");
            assert!(!out.0.parent().unwrap().join("evil.ndb").exists());
        }
    }

    #[test]
    fn counts_sizes_and_damage_are_bounded() {
        let many: Vec<Vec<u8>> = (0..9).map(|i| raw_member(&format!("f{i}.ndb"), b'0', b"x")).collect();
        let out = Dir::new("many");
        assert!(unpack(&raw_bundle(&many), &out.0, LIMITS).unwrap_err().contains("update_files_max"));
        let big = tar_gz(|b| {
            let mut h = tar::Header::new_ustar();
            h.set_size(2 << 20);
            h.set_mode(0o644);
            b.append_data(&mut h, "big.ndb", std::io::repeat(b'A').take(2 << 20)).unwrap();
        });
        let out = Dir::new("big");
        assert!(unpack(&big, &out.0, LIMITS).unwrap_err().contains("update_unpacked_bytes_max"));
        let good = raw_bundle(&[raw_member("a.ndb", b'0', &[b'A'; 2000])]);
        for cut in [10, good.len() / 2, good.len() - 3] {
            let out = Dir::new("cut");
            assert!(unpack(&good[..cut], &out.0, LIMITS).is_err(), "cut at {cut}");
        }
    }
}
