//! The icapd binary: parse the configuration, start the shards, wait for signals. This is the
//! only place that exits the process.

use icapd::config::{self, Parsed};
use icapd::server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let allowed = server::cpus::allowed_cpus();
    let config = match config::parse(&args, &allowed) {
        Ok(Parsed::Run(c)) => *c,
        Ok(Parsed::Help) => {
            print!("{}", config::USAGE);
            return;
        }
        Ok(Parsed::Version) => {
            println!("icapd {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(e) => {
            eprintln!("icapd: {e}");
            std::process::exit(2);
        }
    };
    if config.check {
        if config.inspector == icapd::inspect::InspectorKind::Engine {
            match icapd::signatures::load(&config.signatures, icapd::signatures::LoadOptions::default()) {
                Ok(gen) => {
                    // One line per file and reason; `-v` lists every skipped line too.
                    for line in gen.report_lines() {
                        println!("icapd: signatures: {line}");
                    }
                    if config.verbose {
                        for p in &gen.problems {
                            println!("icapd: signatures: skipped {p}");
                        }
                    }
                    let s = &gen.summary;
                    println!(
                        "icapd: signatures ok: {} body, {} logical, {} hash, {} PE section hash, {} allowlist, {} YARA streaming + {} whole-object, {} URL rules; ISTag \"{}\"",
                        s.body, s.logical, s.hashes, s.sections, s.allow, s.yara_stream, s.yara_whole, s.urls, gen.istag
                    );
                }
                Err(e) => {
                    eprintln!("icapd: cannot load signatures: {e}");
                    std::process::exit(2);
                }
            }
        }
        if !config.tls.listen.is_empty() {
            if let Err(e) = icapd::server::tls::TlsServer::load(&config.tls) {
                eprintln!("icapd: {e}");
                std::process::exit(2);
            }
        }
        println!(
            "icapd: configuration ok: listen {}, {} shard(s) on CPUs {:?}, inspector {:?}",
            config.listen,
            config.cpus.len(),
            config.cpus,
            config.inspector
        );
        return;
    }
    std::process::exit(server::run(config));
}
