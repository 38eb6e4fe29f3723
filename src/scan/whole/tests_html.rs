//! HTML data: URI fixtures.

use super::tests::*;
use super::*;

pub(super) fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn base64_data_uris_are_members() {
    let page = format!(
        "<html><body><a href=\"data:application/octet-stream;base64,{}\">x</a>\n<img src='data:image/png;base64,{}'></body></html>",
        b64(EICAR),
        b64(b"clean image")
    );
    assert_eq!(detect(page.as_bytes()), Some(Kind::Html));
    let (r, c) = run(Kind::Html, page.as_bytes(), &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members.len(), 2);
    assert_eq!(c.members[0].1, EICAR);
    assert_eq!(c.members[1].1, b"clean image");
}

#[test]
fn whitespace_and_percent_forms() {
    let enc = b64(EICAR);
    let (a, b) = enc.split_at(30);
    let page = format!("<a href=\"data:;BASE64,{a}\r\n {b}\">").replace('=', "%3D");
    let (r, c) = run(Kind::Html, page.as_bytes(), &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members[0].1, EICAR);
    let page = "<a href=\"data:text/html,%3Cscript%3Eevil%28%29%3C/script%3E\">";
    let (r, c) = run(Kind::Html, page.as_bytes(), &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members[0].1, b"<script>evil()</script>");
}

#[test]
fn clean_page_has_no_members() {
    let page = b"<!DOCTYPE html><html><p>data: none here, data:text/plain,hello</p></html>";
    assert_eq!(detect(page), Some(Kind::Html));
    let (r, c) = run(Kind::Html, page, &LOOSE);
    assert_eq!(r, Ok(()));
    assert!(c.members.is_empty());
}

#[test]
fn truncated_is_broken() {
    let page = format!("<a href=\"data:;base64,{}", b64(EICAR));
    let (r, c) = run(Kind::Html, page.as_bytes(), &LOOSE);
    assert_eq!(r, Err(Fault::Broken("Heuristics.Broken.HTML")));
    assert_eq!(c.members[0].1, EICAR, "emitted before the fault");
    let page = "<a href=\"data:;base64,QUJDR\">";
    assert_eq!(run(Kind::Html, page.as_bytes(), &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.HTML")));
}

#[test]
fn limits_are_faults() {
    let page = format!("<a href=\"data:;base64,{}\"><a href=\"data:;base64,QUJD\">", b64(&[7u8; 3000]));
    assert_eq!(
        run(Kind::Html, page.as_bytes(), &Limits { member_bytes_max: 1000, ..LOOSE }).0,
        Err(Fault::Limit(LIMIT_FILE_SIZE))
    );
    assert_eq!(run(Kind::Html, page.as_bytes(), &Limits { members_max: 1, ..LOOSE }).0, Err(Fault::Limit(LIMIT_FILES)));
}

#[test]
fn both_cases_and_many_markers() {
    let mut page = b"<html>".to_vec();
    for _ in 0..50_000 {
        page.extend_from_slice(b"data:x ");
    }
    page.extend_from_slice(format!("<a href=\"DATA:;base64,{}\">", b64(EICAR)).as_bytes());
    page.extend_from_slice(format!("<a href=\"data:;base64,{}\">", b64(b"second")).as_bytes());
    let (r, c) = run(Kind::Html, &page, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members.len(), 2);
    assert_eq!(c.members[0].1, EICAR);
    assert_eq!(c.members[1].1, b"second");
}
