//! Writes the fuzz target's seed corpus (`fuzz/corpus/whole/`) from this module's own fixtures:
//! `cargo test --lib scan::whole::tests_seeds -- --ignored`. Each seed is the fuzz input layout
//! (flags byte = the kind's index in `Kind::ALL`, no split bytes, then the object).

use super::*;

#[test]
#[ignore]
fn write_fuzz_seeds() {
    use super::tests::EICAR;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/whole");
    std::fs::create_dir_all(dir).unwrap();
    let seeds: Vec<(&str, Kind, Vec<u8>)> = vec![
        ("ole2", Kind::Ole2, super::tests_ole2::build(&[("/WordDocument", b"text"), ("/Macros/Mod", EICAR)])),
        (
            "pdf",
            Kind::Pdf,
            super::tests_pdf::pdf(
                &[("/Filter /FlateDecode", &super::tests_pdf::zlib(EICAR)), ("/Filter /AHx", b"41 42>")],
                "",
            ),
        ),
        (
            "rtf",
            Kind::Rtf,
            super::tests_rtf::rtf_with(&super::tests_rtf::hex(&super::tests_rtf::ole1("Package", EICAR))),
        ),
        (
            "cab",
            Kind::Cab,
            super::tests_cab::build(::cab::CompressionType::MsZip, &[("a.txt", b"aaaaaaaaaaaa"), ("e.com", EICAR)]),
        ),
        ("tnef", Kind::Tnef, super::tests_tnef::tnef(&[("e.com", EICAR)])),
        ("html", Kind::Html, format!("<a href=\"data:;base64,{}\">", super::tests_html::b64(EICAR)).into_bytes()),
        ("7z", Kind::SevenZip, super::tests_7z::build(&[("e.com", EICAR), ("b.txt", b"bbbb")], None)),
        ("chm", Kind::Chm, super::tests_chm::chm(&[("/e.htm", EICAR)])),
        ("upx", Kind::Pe, super::tests_upx::pe(&super::tests_upx::nrv2b_literals(EICAR), Some(2))),
    ];
    for (name, kind, object) in seeds {
        let index = Kind::ALL.iter().position(|&k| k == kind).unwrap() as u8;
        let mut seed = vec![index, 0];
        seed.extend_from_slice(&object);
        std::fs::write(format!("{dir}/{name}"), seed).unwrap();
    }
}
