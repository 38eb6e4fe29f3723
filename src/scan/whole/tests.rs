//! Shared test helpers and the clamav-testfiles corpus checks; each format's own fixtures are in
//! its `tests_*` file.

use std::ops::ControlFlow;

use md5::{Digest, Md5};

use super::*;

/// A sink that keeps every member (name, bytes, whether it was ended).
#[derive(Default)]
pub struct Collect {
    pub members: Vec<(String, Vec<u8>, bool)>,
    pub stop_at: Option<usize>,
}

impl Sink for Collect {
    fn member_start(&mut self, name: &str) -> ControlFlow<()> {
        self.members.push((name.to_string(), Vec::new(), false));
        if self.stop_at == Some(self.members.len()) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
    fn member_data(&mut self, data: &[u8]) -> ControlFlow<()> {
        assert!(data.len() <= out::PIECE_BYTES);
        self.members.last_mut().expect("data before start").1.extend_from_slice(data);
        ControlFlow::Continue(())
    }
    fn member_end(&mut self) -> ControlFlow<()> {
        self.members.last_mut().expect("end before start").2 = true;
        ControlFlow::Continue(())
    }
}

pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

pub const LOOSE: Limits = Limits { member_bytes_max: 64 << 20, members_max: 10_000, ratio_max: 1_000 };

pub fn run(kind: Kind, data: &[u8], limits: &Limits) -> (Result<(), Fault>, Collect) {
    let mut c = Collect::default();
    let r = extract(kind, data, limits, &mut c);
    (r, c)
}

pub fn has_member(c: &Collect, needle: &[u8]) -> bool {
    c.members.iter().any(|m| memchr::memmem::find(&m.1, needle).is_some())
}

pub fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

const CORPUS: &str = "/usr/share/clamav-testfiles";
const CLAM_MD5: &str = "aa15bcf478d165efd2065190eb473bcb";

/// The corpus file, or `None` (with a note) where the package is not installed.
pub fn corpus(name: &str) -> Option<Vec<u8>> {
    match std::fs::read(format!("{CORPUS}/{name}")) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!("note: {CORPUS}/{name} absent (install clamav-testfiles); test skipped");
            None
        }
    }
}

/// Extracts `name`, recursing into members of a kind this module handles (as the caller would),
/// and returns every leaf and inner member seen, flattened.
pub fn extract_deep(kind: Kind, data: &[u8], depth: u32, all: &mut Vec<(String, Vec<u8>)>) {
    let (r, c) = run(kind, data, &LOOSE);
    assert!(r.is_ok(), "{kind:?}: {r:?}");
    for (name, bytes, _) in c.members {
        if depth < 4 {
            if let Some(k) = detect(&bytes[..bytes.len().min(4096)]) {
                extract_deep(k, &bytes, depth + 1, all);
            }
        }
        all.push((name, bytes));
    }
}

/// clam.exe's MD5 is the MD5 of some member, found by recursing as the caller does.
pub fn corpus_yields_clam(file: &str, kind: Kind) {
    let Some(data) = corpus(file) else { return };
    assert_eq!(detect(&data[..data.len().min(4096)]), Some(kind), "{file}");
    let mut all = Vec::new();
    extract_deep(kind, &data, 0, &mut all);
    let names: Vec<_> = all.iter().map(|m| (m.0.clone(), m.1.len())).collect();
    eprintln!("{file}: {names:?}");
    assert!(all.iter().any(|m| md5_hex(&m.1) == CLAM_MD5), "{file}: clam.exe not among {names:?}");
}

#[test]
fn corpus_ole_doc() {
    corpus_yields_clam("clam.ole.doc", Kind::Ole2);
}

#[test]
fn corpus_ppt() {
    corpus_yields_clam("clam.ppt", Kind::Ole2);
}

#[test]
fn corpus_pdf() {
    corpus_yields_clam("clam.pdf", Kind::Pdf);
}

#[test]
fn corpus_rtf() {
    corpus_yields_clam("clam.exe.rtf", Kind::Rtf);
}

#[test]
fn corpus_cab() {
    corpus_yields_clam("clam.cab", Kind::Cab);
}

#[test]
fn corpus_tnef() {
    corpus_yields_clam("clam.tnef", Kind::Tnef);
}

#[test]
fn corpus_html() {
    corpus_yields_clam("clam.exe.html", Kind::Html);
}

#[test]
fn corpus_7z() {
    corpus_yields_clam("clam.7z", Kind::SevenZip);
}

#[test]
fn corpus_chm() {
    corpus_yields_clam("clam.chm", Kind::Chm);
}

#[test]
fn corpus_upx_is_unpacked() {
    let (Some(packed), Some(clam)) = (corpus("clam-upx.exe"), corpus("clam.exe")) else { return };
    assert_eq!(detect(&packed), Some(Kind::Pe));
    let (r, c) = run(Kind::Pe, &packed, &LOOSE);
    assert_eq!(r, Ok(()));
    let image = &c.members.iter().find(|m| m.0 == "upx").expect("unpacked image").1;
    // The packed program carries clam.exe in its data: present whole once unpacked, and not
    // in the packed file.
    assert!(memchr::memmem::find(image, &clam).is_some(), "clam.exe in the unpacked image");
    assert!(memchr::memmem::find(&packed, &clam[..64]).is_none());
    // The code section's calls are back to relative form: the import thunk calls read
    // `FF 15` and the CRT's `E8` calls land inside the image.
    let calls = image.windows(5).filter(|w| w[0] == 0xE8).take(20).filter(|w| {
        let rel = i32::from_le_bytes([w[1], w[2], w[3], w[4]]);
        rel.unsigned_abs() < image.len() as u32
    });
    assert!(calls.count() > 0);
}
