//! A ClamAV user's database folder through the whole engine: packed databases, logical
//! signatures on ClamAV's own test file, allowlists and ignores, and what a load reports.

use super::engine::{EngineInspector, ScanCtx};
use super::policy::{Early204, OverLimit};
use super::unpack::EncryptedPolicy;
use super::ScanPolicy;
use crate::inspect::Verdict;
use crate::limits::Limits;
use crate::proto::testutil::for_each_split;
use crate::signatures::clamav::cvd;
use crate::signatures::{load, Generation, LoadOptions};
use md5::{Digest, Md5};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const EICAR: &[u8] = include_bytes!("../../tests/samples/eicar.com");
const CLAM_EXE: &str = "/usr/share/clamav-testfiles/clam.exe";

/// A private folder holding the given files; removed on drop.
struct Folder(PathBuf);

impl Folder {
    fn new(tag: &str, files: &[(&str, Vec<u8>)]) -> Folder {
        let dir = std::env::temp_dir().join(format!("icapd-clamdb-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        Folder(dir)
    }

    fn load(&self) -> Generation {
        load(&self.0, LoadOptions::default()).unwrap_or_else(|e| panic!("load: {e}"))
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn inspector(gen: Generation) -> EngineInspector {
    let policy =
        ScanPolicy { over_limit: OverLimit::Block, early_204: Early204::default(), encrypted: EncryptedPolicy::Block };
    EngineInspector::new(ScanCtx::new(Arc::new(gen), Limits::default().scan(), policy))
}

fn threat(inspector: &mut EngineInspector, body: &[u8], cuts: &[usize]) -> Option<String> {
    match crate::inspect::verdict_of(inspector, body, cuts) {
        Verdict::Infected { threat } => Some(threat.to_string()),
        _ => None,
    }
}

/// The verdict whole, at every split point and byte by byte (all must agree).
fn all_ways(inspector: &mut EngineInspector, body: &[u8]) -> Option<String> {
    let whole = threat(inspector, body, &[]);
    for_each_split(body.len(), |cuts| assert_eq!(threat(inspector, body, cuts), whole, "cuts {cuts:?}"));
    whole
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A logical signature written from clam.exe's bytes: its entry-point code, the
/// `CLAMessageBoxA` import inside section 0, and a PCRE on the section name.
const CLAM_LDB: &str = "Clamav.Test.File-6;Engine:51-255,Target:1,NumberOfSections:1,EntryPoint:64;0&1&2;\
                        EP+0:bb71104000{-4}33c050;SE0:434c414d657373616765426f7841;0&1/\\[CLAMAV\\]/\n";

#[test]
fn clam_exe_is_found_by_a_logical_signature_in_a_cvd() {
    let Ok(exe) = std::fs::read(CLAM_EXE) else {
        panic!("{CLAM_EXE} is missing: install Debian's clamav-testfiles (scripts/test does)");
    };
    let packed = cvd::build(
        &[("main.ldb", CLAM_LDB.as_bytes()), ("main.info", b"ClamAV-VDB:x\n"), ("COPYING", b"x")],
        62,
        false,
    );
    let folder = Folder::new("clamexe", &[("main.cvd", packed)]);
    let gen = folder.load();
    assert_eq!(gen.summary.logical, 1, "{:?}", gen.report_lines());
    assert!(gen.problems.is_empty(), "{:?}", gen.problems);
    let mut insp = inspector(gen);
    assert_eq!(all_ways(&mut insp, &exe).as_deref(), Some("Clamav.Test.File-6"));
    // The same bytes that are not a PE (headers damaged) are not the target.
    let mut damaged = exe.clone();
    damaged[0x100] = b'X';
    assert_eq!(threat(&mut insp, &damaged, &[]), None);
    assert_eq!(threat(&mut insp, b"CLAMessageBoxA [CLAMAV]", &[]), None);
}

#[test]
fn allowlist_clears_an_object_whatever_matched() {
    let eicar_ndb = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures/eicar.ndb")).unwrap();
    let other = b"some other file that holds X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let fp = format!("{}:{}:Eicar.Allowed\n", md5_hex(EICAR), EICAR.len());
    let folder = Folder::new("fp", &[("eicar.ndb", eicar_ndb.clone()), ("local.fp", fp.into_bytes())]);
    let gen = folder.load();
    assert_eq!(gen.summary.allow, 1);
    let mut insp = inspector(gen);
    assert_eq!(all_ways(&mut insp, EICAR), None, "listed in .fp: clean");
    assert_eq!(all_ways(&mut insp, other).as_deref(), Some("Eicar-Test-Signature"), "not listed: still found");
    // SHA-256 in .sfp, with `*` as the size.
    let sha: String = sha2::Sha256::digest(EICAR).iter().map(|b| format!("{b:02x}")).collect();
    let folder =
        Folder::new("sfp", &[("eicar.ndb", eicar_ndb), ("local.sfp", format!("{sha}:*:Eicar.Allowed\n").into_bytes())]);
    let mut insp = inspector(folder.load());
    assert_eq!(all_ways(&mut insp, EICAR), None);
}

#[test]
fn ign2_disables_a_signature_by_name_or_by_line() {
    let line = "Other.Sig:0:*:6f746865722d7369676e6174757265";
    let ndb = format!("Eicar-Test-Signature:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a\n{line}\n");
    let ign = format!("Eicar-Test-Signature\nOther.Sig:{}\n", md5_hex(line.as_bytes()));
    let folder = Folder::new("ign2", &[("a.ndb", ndb.into_bytes()), ("local.ign2", ign.into_bytes())]);
    let gen = folder.load();
    assert_eq!(gen.summary.body, 0);
    let disabled: usize = gen.summary.formats.iter().map(|f| f.disabled).sum();
    assert_eq!(disabled, 2);
    assert!(
        gen.report_lines().iter().any(|l| l.ends_with("a.ndb: 2 signatures disabled by .ign2/.ign")),
        "{:?}",
        gen.report_lines()
    );
    let mut insp = inspector(gen);
    assert_eq!(threat(&mut insp, EICAR, &[]), None);
    assert_eq!(threat(&mut insp, b"other-signature", &[]), None);
}

#[test]
fn a_big_file_of_unsupported_lines_reports_a_handful_of_lines() {
    let mut ndb = String::new();
    for i in 0..20_000 {
        ndb.push_str(&format!("Neg.Sig-{i}:0:*:3c7363726970743e{:02x}(B)(L)42\n", i % 256));
    }
    ndb.push_str("Good:0:*:676f6f642d7369676e6174757265\nBroken\n");
    let folder = Folder::new(
        "big",
        &[
            ("big.ndb", ndb.into_bytes()),
            ("daily.cbc", b"bytecode".to_vec()),
            ("daily.pdb", b"H:example.com\n".to_vec()),
            ("daily.hdu", b"x\n".to_vec()),
            ("README.md", b"not a database".to_vec()),
        ],
    );
    let gen = folder.load();
    assert_eq!(gen.problems.len(), 20_001);
    let lines = gen.report_lines();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l
            .contains("big.ndb: 20000 lines skipped: the anchor `…` at character N is not supported inside a pattern")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("daily.cbc: not loaded: bytecode")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("daily.pdb: not loaded: phishing")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("daily.hdu: not loaded: PUA")), "{lines:#?}");
    let ndb = gen.summary.formats.iter().find(|f| f.format == "ndb").unwrap();
    assert_eq!((ndb.loaded, ndb.skipped), (1, 20_001));
}

#[test]
fn packed_databases_newest_wins_and_damage_fails_the_load() {
    let old = cvd::build(&[("daily.ndb", b"Old.Sig:0:*:6f6c642d7369676e6174757265\n")], 10, false);
    let new = cvd::build(&[("daily.ndb", b"New.Sig:0:*:6e65772d7369676e6174757265\n")], 11, true);
    let folder = Folder::new("newest", &[("daily.cvd", old.clone()), ("daily.cld", new)]);
    let gen = folder.load();
    let lines = gen.report_lines();
    assert!(lines.iter().any(|l| l.contains("daily.cvd: not loaded") && l.contains("is newer")), "{lines:#?}");
    let mut insp = inspector(gen);
    assert_eq!(threat(&mut insp, b"a new-signature", &[]).as_deref(), Some("New.Sig"));
    assert_eq!(threat(&mut insp, b"an old-signature", &[]), None);
    let mut damaged = old;
    let n = damaged.len();
    damaged[n - 3] ^= 0x55;
    let folder = Folder::new("damaged", &[("daily.cvd", damaged)]);
    let err = load(&folder.0, LoadOptions::default()).err().unwrap();
    assert!(err.contains("daily.cvd") && err.contains("MD5"), "{err}");
}

#[test]
fn html_and_text_signatures_match_the_normalised_text() {
    let ndb = "Html.Sig:3:*:3c7363726970743e6576696c28\nText.Sig:7:*:6576696c20776f726473\n";
    let folder = Folder::new("norm", &[("t.ndb", ndb.as_bytes().to_vec())]);
    let gen = folder.load();
    assert_eq!(gen.summary.logical, 2, "{:?}", gen.problems);
    let mut insp = inspector(gen);
    assert_eq!(all_ways(&mut insp, b"<html><SCRIPT>EVIL(1)</script>").as_deref(), Some("Html.Sig"));
    assert_eq!(all_ways(&mut insp, b"<html>&lt;script&gt;evil(").as_deref(), Some("Html.Sig"));
    assert_eq!(all_ways(&mut insp, b"some EVIL \r\n\t  Words here").as_deref(), Some("Text.Sig"));
    assert_eq!(all_ways(&mut insp, b"\x00binary evil words"), None, "not text");
    // Long enough that the type is decided mid-stream and the head is replayed.
    let mut long = b"<html><body>".to_vec();
    long.extend(std::iter::repeat_n(b"padding text  ".as_slice(), 60).flatten());
    long.extend_from_slice(b"<Script>Evil(2)");
    assert_eq!(all_ways(&mut insp, &long).as_deref(), Some("Html.Sig"));
}

#[test]
fn typed_ndb_signatures_only_fire_on_their_file_type() {
    let ndb = "Pdf.Sig:10:*:6576696c2d706466\nElf.Sig:6:EOF-4:2d656c66\n";
    let folder = Folder::new("typed", &[("t.ndb", ndb.as_bytes().to_vec())]);
    let gen = folder.load();
    assert_eq!(gen.summary.logical, 2, "{:?}", gen.problems);
    let mut insp = inspector(gen);
    assert_eq!(all_ways(&mut insp, b"%PDF-1.4 evil-pdf").as_deref(), Some("Pdf.Sig"));
    assert_eq!(all_ways(&mut insp, b"text with evil-pdf"), None);
    assert_eq!(all_ways(&mut insp, b"\x7fELF....-elf").as_deref(), Some("Elf.Sig"));
    assert_eq!(all_ways(&mut insp, b"\x7fELF..-elf.."), None);
}

#[test]
fn clam_exe_section_hash_from_an_mdb() {
    let exe = std::fs::read(CLAM_EXE).expect("clamav-testfiles installed");
    // clam.exe's only section starts at 1, which the file alignment rounds down to 0.
    let mdb = format!("512:{}:Clamav.Test.Section-1\n", md5_hex(&exe[..512]));
    let folder = Folder::new("mdb", &[("t.mdb", mdb.into_bytes())]);
    let gen = folder.load();
    assert_eq!(gen.summary.sections, 1, "{:?}", gen.problems);
    let mut insp = inspector(gen);
    assert_eq!(all_ways(&mut insp, &exe).as_deref(), Some("Clamav.Test.Section-1"));
    // Cut inside its section table, it is no PE at all.
    assert_eq!(threat(&mut insp, &exe[..520], &[]), None);
}

#[test]
fn clam_exe_import_hash_from_an_imp() {
    let exe = std::fs::read(CLAM_EXE).expect("clamav-testfiles installed");
    let info = crate::scan::pe::parse(&exe).expect("clam.exe is a PE");
    let text = info.import_string(&exe, true).expect("its imports read");
    assert_eq!(text, "kernel32.exitprocess,user32.messageboxa");
    let imp = format!("{}:{}:Clamav.Test.Imports-1\n", md5_hex(text.as_bytes()), text.len());
    let folder = Folder::new("imp", &[("t.imp", imp.into_bytes())]);
    let gen = folder.load();
    assert_eq!(gen.summary.imports, 1, "{:?}", gen.problems);
    let mut insp = inspector(gen);
    assert_eq!(all_ways(&mut insp, &exe).as_deref(), Some("Clamav.Test.Imports-1"));
    let mut other = exe.clone();
    let at = other.windows(11).position(|w| w == b"ExitProcess").unwrap();
    other[at] = b'Q';
    assert_eq!(threat(&mut insp, &other, &[]), None);
}
