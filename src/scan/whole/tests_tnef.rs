//! TNEF fixtures.

use super::tests::*;
use super::*;

fn attr(level: u8, id: u32, data: &[u8]) -> Vec<u8> {
    let mut a = vec![level];
    a.extend_from_slice(&id.to_le_bytes());
    a.extend_from_slice(&(data.len() as u32).to_le_bytes());
    a.extend_from_slice(data);
    let sum = data.iter().fold(0u16, |s, &b| s.wrapping_add(b as u16));
    a.extend_from_slice(&sum.to_le_bytes());
    a
}

pub(super) fn tnef(attachments: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = 0x223E_9F78u32.to_le_bytes().to_vec();
    t.extend_from_slice(&0x1234u16.to_le_bytes());
    t.extend(attr(1, 0x0009_9006, &[1, 0, 1, 0])); // attTnefVersion
    t.extend(attr(1, 0x0001_8004, b"Subject\0"));
    for (name, data) in attachments {
        t.extend(attr(2, 0x0006_9002, &[0; 14]));
        t.extend(attr(2, 0x0001_8010, format!("{name}\0").as_bytes()));
        t.extend(attr(2, 0x0006_800F, data));
    }
    t
}

#[test]
fn attachments_are_members_with_names() {
    let t = tnef(&[("eicar.com", EICAR), ("notes.txt", b"clean")]);
    assert_eq!(detect(&t), Some(Kind::Tnef));
    let (r, c) = run(Kind::Tnef, &t, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members.len(), 2);
    assert_eq!((c.members[0].0.as_str(), c.members[0].1.as_slice()), ("eicar.com", EICAR));
    assert_eq!((c.members[1].0.as_str(), c.members[1].1.as_slice()), ("notes.txt", &b"clean"[..]));
}

#[test]
fn clean_tnef() {
    let (r, c) = run(Kind::Tnef, &tnef(&[("a.txt", b"hello")]), &LOOSE);
    assert_eq!(r, Ok(()));
    assert!(!has_member(&c, EICAR));
}

#[test]
fn truncated_is_broken() {
    let t = tnef(&[("eicar.com", EICAR)]);
    for cut in [3, 7, 20, t.len() - 1, t.len() - 10] {
        assert_eq!(run(Kind::Tnef, &t[..cut], &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.TNEF")), "cut {cut}");
    }
}

#[test]
fn limits_are_faults() {
    let t = tnef(&[("a", &[1u8; 3000]), ("b", b"b")]);
    assert_eq!(run(Kind::Tnef, &t, &Limits { member_bytes_max: 1000, ..LOOSE }).0, Err(Fault::Limit(LIMIT_FILE_SIZE)));
    assert_eq!(run(Kind::Tnef, &t, &Limits { members_max: 1, ..LOOSE }).0, Err(Fault::Limit(LIMIT_FILES)));
}

#[test]
fn title_after_data_still_names_it() {
    let mut t = 0x223E_9F78u32.to_le_bytes().to_vec();
    t.extend_from_slice(&0u16.to_le_bytes());
    t.extend(attr(2, 0x0006_9002, &[0; 14]));
    t.extend(attr(2, 0x0006_800F, EICAR));
    t.extend(attr(2, 0x0001_8010, b"late.com\0"));
    t.extend(attr(2, 0x0006_9002, &[0; 14]));
    t.extend(attr(2, 0x0006_800F, b"untitled"));
    t.extend_from_slice(b"\r\n");
    let (r, c) = run(Kind::Tnef, &t, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!((c.members[0].0.as_str(), c.members[0].1.as_slice()), ("late.com", EICAR));
    assert_eq!(c.members[1].0, "attachment2");
}
