//! Interop with c-icap's own client (`c-icap-client`, Debian package c-icap): OPTIONS, RESPMOD
//! with and without preview and 204, REQMOD, clean and infected bodies. The test command
//! installs the package; a missing client fails the test rather than skipping it.

mod common;

use common::*;
use std::process::Command;

fn client(server: &Server, args: &[&str]) -> (String, Option<Vec<u8>>) {
    let out_file = server.dir.join(format!("out-{}", args.join("_").replace('/', "_")));
    let _ = std::fs::remove_file(&out_file);
    let port = server.port.to_string();
    let output = Command::new("c-icap-client")
        .args(["-i", "127.0.0.1", "-p", &port, "-v"])
        .args(args)
        .arg("-o")
        .arg(&out_file)
        .output()
        .expect("c-icap-client must be installed (apt-get install c-icap); the test command installs it");
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    (text, std::fs::read(&out_file).ok())
}

#[test]
fn c_icap_client_interop() {
    let server = Server::start(&["--shards", "2", "--inspector", "test"], None);
    let clean = server.dir.join("clean.bin");
    let infected = server.dir.join("infected.bin");
    let clean_bytes = pseudo_random(300_000, 11);
    std::fs::write(&clean, &clean_bytes).unwrap();
    // Smaller than the hold-back window: always answerable with a block page.
    std::fs::write(
        &infected,
        [pseudo_random(10_000, 12), icapd::inspect::TEST_MARKER.to_vec(), pseudo_random(100, 13)].concat(),
    )
    .unwrap();
    // Larger than the window and without 204: the echo has started when the threat shows up.
    let late = server.dir.join("late.bin");
    let late_bytes =
        [pseudo_random(200_000, 14), icapd::inspect::TEST_MARKER.to_vec(), pseudo_random(100, 15)].concat();
    std::fs::write(&late, &late_bytes).unwrap();
    let (clean, infected, late) = (clean.to_str().unwrap(), infected.to_str().unwrap(), late.to_str().unwrap());

    let (text, _) = client(&server, &["-s", "avscan"]);
    assert!(
        text.contains("ICAP/1.0 200 OK") && text.contains("Preview: 1024") && text.contains("Allow 204: Yes"),
        "{text}"
    );

    for service in ["respmod", "avscan", "srv_clamav", "virus_scan"] {
        // With preview and 204: a clean file is answered 204 (no output file body).
        let (text, _) = client(&server, &["-s", service, "-f", clean]);
        assert!(text.contains("ICAP/1.0 204"), "{service}: {text}");
        // Without 204: the body comes back byte-exact.
        for extra in [&["-no204"][..], &["-no204", "-nopreview"][..]] {
            let args = [&["-s", service, "-f", clean][..], extra].concat();
            let (text, out) = client(&server, &args);
            assert!(text.contains("ICAP/1.0 200 OK"), "{args:?}: {text}");
            assert!(out.as_deref() == Some(&clean_bytes[..]), "{args:?}: echo differs");
        }
        // Infected, with and without preview: the block page.
        for extra in [&[][..], &["-nopreview"][..], &["-no204"][..]] {
            let args = [&["-s", service, "-f", infected][..], extra].concat();
            let (text, out) = client(&server, &args);
            assert!(
                text.contains("X-Infection-Found: Type=0; Resolution=2; Threat=Icapd.Test.Marker;"),
                "{args:?}: {text}"
            );
            assert!(String::from_utf8_lossy(&out.unwrap_or_default()).contains("Access blocked"), "{args:?}");
        }
    }

    // A threat found after the echo started: the object never arrives whole.
    let (text, out) = client(&server, &["-s", "avscan", "-f", late, "-no204"]);
    assert!(text.contains("ICAP/1.0 200 OK"), "{text}");
    let got = out.map_or(0, |o| o.len());
    assert!(got < late_bytes.len() - 16 * 1024, "{got} of {} bytes delivered", late_bytes.len());
    // With 204 allowed nothing has to go back before the verdict, so the block page is given.
    let (text, _) = client(&server, &["-s", "avscan", "-f", late]);
    assert!(text.contains("X-Infection-Found"), "{text}");

    // REQMOD: a clean upload passes (204), an infected one gets an HTTP 403 response.
    let (text, _) = client(&server, &["-s", "reqmod", "-req", "http://origin.test/upload", "-f", clean]);
    assert!(text.contains("ICAP/1.0 204"), "{text}");
    let (text, _) = client(&server, &["-s", "reqmod", "-req", "http://origin.test/upload", "-f", infected]);
    assert!(text.contains("X-Infection-Found") && text.contains("HTTP/1.1 403 Forbidden"), "{text}");
}

/// The same client against the signature engine with the bundled set: EICAR and clean files,
/// RESPMOD with and without preview and 204, and REQMOD uploads.
#[test]
fn c_icap_client_with_the_bundled_signatures() {
    let sigs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures");
    let server = Server::start(&["--shards", "2", "--signatures", sigs.to_str().unwrap()], None);
    let eicar = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples/eicar.com");
    let clean = server.dir.join("clean.bin");
    let clean_bytes = pseudo_random(150_000, 21);
    std::fs::write(&clean, &clean_bytes).unwrap();
    let (eicar, clean) = (eicar.to_str().unwrap(), clean.to_str().unwrap());

    let (text, _) = client(&server, &["-s", "srv_clamav"]);
    assert!(text.contains("ISTag: \"icapd-"), "{text}");
    for extra in [&[][..], &["-nopreview"][..], &["-no204"][..], &["-no204", "-nopreview"][..]] {
        let args = [&["-s", "avscan", "-f", eicar][..], extra].concat();
        let (text, out) = client(&server, &args);
        assert!(
            text.contains("X-Infection-Found: Type=0; Resolution=2; Threat=Eicar-Test-Signature;"),
            "{args:?}: {text}"
        );
        assert!(String::from_utf8_lossy(&out.unwrap_or_default()).contains("Eicar-Test-Signature"), "{args:?}");
        let args = [&["-s", "avscan", "-f", clean][..], extra].concat();
        let (text, out) = client(&server, &args);
        if extra.contains(&"-no204") {
            assert!(text.contains("ICAP/1.0 200 OK") && out.as_deref() == Some(&clean_bytes[..]), "{args:?}: {text}");
        } else {
            assert!(text.contains("ICAP/1.0 204"), "{args:?}: {text}");
        }
    }
    let (text, _) = client(&server, &["-s", "reqmod", "-req", "http://origin.test/upload", "-f", eicar]);
    assert!(text.contains("Threat=Eicar-Test-Signature;") && text.contains("HTTP/1.1 403 Forbidden"), "{text}");
    let (text, _) = client(&server, &["-s", "reqmod", "-req", "http://origin.test/upload", "-f", clean]);
    assert!(text.contains("ICAP/1.0 204"), "{text}");
}
