//! icapd-update: installs signed signature bundles for a running icapd, and makes them.
//!
//! The order of an update is what makes it safe: download (conditional, bounded), verify the
//! detached ed25519 signature against the configured public key, and only then unpack into a
//! fresh folder, compile it with the server's own loader, and swap it in with one rename. Any
//! failure before the swap leaves the running set and the store as they were, prints one line
//! and exits 1. The server picks the new folder up at its next poll (`reload_poll_ms`) or at
//! once on SIGHUP (`--reload-pid`); shards switch at request boundaries, so no transaction is
//! dropped, and the ISTag changes with the files.

mod bundle;
mod fetch;
mod keys;
mod store;

use icapd::config::{self, Parsed};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const USAGE: &str = "\
icapd-update: installs signed signature bundles for icapd, and makes them

USAGE:
    icapd-update --url URL --public-key FILE [--config FILE] [--signatures DIR]
                 [--sig-url URL] [--reload-pid PID|FILE] [--keep N]
    icapd-update --rollback [--config FILE] [--signatures DIR] [--reload-pid PID|FILE]
    icapd-update --gen-key PREFIX
    icapd-update --make-bundle DIR --key FILE -o BUNDLE

OPTIONS:
    --url URL            the bundle (.tar.gz), http:// or https://; asked for conditionally
    --sig-url URL        its detached signature [default: URL.sig]
    --public-key FILE    the publisher's ed25519 public key (64 hex digits)
    --config FILE        icapd's configuration: the signature folder and the [limits]
                         update_* keys are read from it
    --signatures DIR     the signature folder (wins over the configuration's)
    --reload-pid PID|FILE
                         send SIGHUP to this process (or the pid in FILE) after a swap;
                         without it the server notices within reload_poll_ms
    --keep N             previous versions kept for --rollback [default: 2]
    --rollback           point the signature folder at the previous version
    --gen-key PREFIX     write a new key pair: PREFIX.key (secret, mode 0600), PREFIX.pub
    --make-bundle DIR    bundle DIR's signature files into BUNDLE and sign it into BUNDLE.sig
    --key FILE           the secret key for --make-bundle
    -o BUNDLE            the bundle to write

Exit status: 0 installed or already current, 1 refused or failed (nothing changed), 2 usage.
";

#[derive(Default)]
struct Args {
    url: Option<String>,
    sig_url: Option<String>,
    public_key: Option<PathBuf>,
    config: Option<String>,
    signatures: Option<String>,
    reload_pid: Option<String>,
    keep: usize,
    rollback: bool,
    gen_key: Option<String>,
    make_bundle: Option<PathBuf>,
    key: Option<PathBuf>,
    out: Option<PathBuf>,
}

fn parse_args(argv: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args { keep: 2, ..Args::default() };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).ok_or(format!("{flag} needs a value"));
        match flag {
            "--url" => a.url = Some(value()?),
            "--sig-url" => a.sig_url = Some(value()?),
            "--public-key" => a.public_key = Some(value()?.into()),
            "--config" => a.config = Some(value()?),
            "--signatures" => a.signatures = Some(value()?),
            "--reload-pid" => a.reload_pid = Some(value()?),
            "--keep" => a.keep = value()?.parse().map_err(|_| "--keep needs a number".to_string())?,
            "--rollback" => a.rollback = true,
            "--gen-key" => a.gen_key = Some(value()?),
            "--make-bundle" => a.make_bundle = Some(value()?.into()),
            "--key" => a.key = Some(value()?.into()),
            "-o" | "--output" => a.out = Some(value()?.into()),
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown argument '{other}' (see --help)")),
        }
    }
    Ok(Some(a))
}

/// How a run ends: a usage error (2) or a refused update (1), each one line.
enum Failure {
    Usage(String),
    Refused(String),
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let code = match parse_args(&argv) {
        Ok(None) => {
            print!("{USAGE}");
            0
        }
        Ok(Some(args)) => match run(&args) {
            Ok(line) => {
                println!("icapd-update: {line}");
                0
            }
            Err(Failure::Refused(line)) => {
                eprintln!("icapd-update: {line}");
                1
            }
            Err(Failure::Usage(line)) => {
                eprintln!("icapd-update: {line}");
                2
            }
        },
        Err(e) => {
            eprintln!("icapd-update: {e}");
            2
        }
    };
    std::process::exit(code);
}

fn run(a: &Args) -> Result<String, Failure> {
    let usage = Failure::Usage;
    let refused = Failure::Refused;
    if let Some(prefix) = &a.gen_key {
        let key = keys::generate().map_err(refused)?;
        let (secret, public) = keys::write_pair(prefix, &key).map_err(refused)?;
        return Ok(format!("wrote {secret} (keep it secret) and {public} (install it on every node)"));
    }
    if let Some(dir) = &a.make_bundle {
        let key_path = a.key.as_ref().ok_or(usage("--make-bundle needs --key FILE".into()))?;
        let out = a.out.as_ref().ok_or(usage("--make-bundle needs -o BUNDLE".into()))?;
        let key = keys::read_secret(key_path).map_err(refused)?;
        // The publisher checks what it signs with the same loader as the nodes.
        let gen = icapd::signatures::load(dir, icapd::signatures::LoadOptions::default())
            .map_err(|e| refused(format!("{} does not compile: {e}", dir.display())))?;
        let (bytes, files) = bundle::make(dir).map_err(refused)?;
        let sig_path = PathBuf::from(format!("{}.sig", out.display()));
        bundle::write_atomically(out, &bytes).map_err(refused)?;
        bundle::write_atomically(&sig_path, format!("{}\n", keys::sign(&key, &bytes)).as_bytes()).map_err(refused)?;
        return Ok(format!(
            "wrote {} ({files} files, {} bytes) and {}; nodes will serve ISTag \"{}\"",
            out.display(),
            bytes.len(),
            sig_path.display(),
            gen.istag
        ));
    }
    let (signatures, limits) = node_config(a).map_err(usage)?;
    let store = store::Store::new(&signatures);
    let _lock = lock(store.root()).map_err(refused)?;
    if a.rollback {
        let v = store.rollback().map_err(|e| refused(format!("rollback refused: {e}")))?;
        reload(a).map_err(refused)?;
        return Ok(format!("{} now points at version {v}", signatures.display()));
    }
    let url = a.url.as_ref().ok_or(usage("--url is needed (or --rollback, --gen-key, --make-bundle)".into()))?;
    let key_path = a.public_key.as_ref().ok_or(usage("--public-key FILE is needed".into()))?;
    let key = keys::read_public(key_path).map_err(usage)?;
    let client = fetch::Client::new(limits.update_fetch_deadline, limits.update_bundle_bytes_max);
    let state = store.state().filter(|s| &s.url == url && store.current().is_some());
    let fetched = client
        .get(
            url,
            state.as_ref().and_then(|s| s.etag.as_deref()),
            state.as_ref().and_then(|s| s.last_modified.as_deref()),
        )
        .map_err(|e| refused(format!("download failed, signatures unchanged: {e}")))?;
    let (bytes, etag, last_modified) = match fetched {
        fetch::Fetched::NotModified => return Ok(up_to_date(&store)),
        fetch::Fetched::Body { bytes, etag, last_modified } => (bytes, etag, last_modified),
    };
    let sha = keys::hex(&Sha256::digest(&bytes));
    if state.as_ref().is_some_and(|s| s.sha256 == sha) {
        return Ok(up_to_date(&store));
    }
    let sig_url = a.sig_url.clone().unwrap_or_else(|| format!("{url}.sig"));
    let sig_text = match client.get(&sig_url, None, None) {
        Ok(fetch::Fetched::Body { bytes, .. }) => bytes,
        Ok(fetch::Fetched::NotModified) => return Err(refused(format!("{sig_url}: unexpected 304"))),
        Err(e) => return Err(refused(format!("signature download failed, signatures unchanged: {e}"))),
    };
    let sig = keys::parse_signature(&sig_text).map_err(|e| refused(format!("{sig_url}: {e}; signatures unchanged")))?;
    if !keys::verify(&key, &bytes, &sig) {
        return Err(refused(format!(
            "bad signature: {url} ({} bytes) does not verify against {}; signatures unchanged",
            bytes.len(),
            key_path.display()
        )));
    }
    let staged = store.staging().map_err(refused)?;
    let checked = check_staged(&bytes, &staged, &limits);
    let (files, gen) = match checked {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(refused(format!("bundle refused, signatures unchanged: {e}")));
        }
    };
    let previous = store.current();
    let new_state = store::State { url: url.clone(), etag, last_modified, sha256: sha };
    let version = store.install(&staged, Some(&new_state)).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        refused(format!("swap failed: {e}"))
    })?;
    store.prune(a.keep);
    reload(a).map_err(refused)?;
    let kept = match previous {
        Some(p) => format!("version {p} kept for --rollback"),
        None => "the previous folder kept as version 0 for --rollback".to_string(),
    };
    Ok(format!(
        "installed version {version} ({files} files, {} body, {} logical, {} hash, {} YARA, {} URL rules) into {}; ISTag \"{}\"; {kept}",
        gen.summary.body,
        gen.summary.logical,
        gen.summary.hashes + gen.summary.sections,
        gen.summary.yara_stream + gen.summary.yara_preview + gen.summary.yara_whole,
        gen.summary.urls,
        signatures.display(),
        gen.istag
    ))
}

/// Unpacks into `staged` and compiles it exactly as the server will.
fn check_staged(
    bytes: &[u8],
    staged: &Path,
    limits: &icapd::limits::Limits,
) -> Result<(usize, icapd::signatures::Generation), String> {
    let unpack_limits = bundle::UnpackLimits {
        files_max: limits.update_files_max,
        unpacked_bytes_max: limits.update_unpacked_bytes_max,
    };
    let files = bundle::unpack(bytes, staged, unpack_limits)?;
    let gen = icapd::signatures::load(staged, icapd::signatures::LoadOptions::default())
        .map_err(|e| format!("it does not compile: {e}"))?;
    let s = &gen.summary;
    if s.body + s.hashes + s.yara_stream + s.yara_preview + s.yara_whole + s.urls + s.logical + s.sections == 0 {
        return Err("it holds no signatures (the server would scan with nothing)".into());
    }
    for line in gen.report_lines() {
        eprintln!("icapd-update: signatures: {line}");
    }
    Ok((files, gen))
}

fn up_to_date(store: &store::Store) -> String {
    match store.current() {
        Some(v) => format!("up to date (version {v})"),
        None => "up to date".into(),
    }
}

/// The signature folder and limits, from icapd's own configuration parser.
fn node_config(a: &Args) -> Result<(PathBuf, icapd::limits::Limits), String> {
    let mut args: Vec<String> = vec!["--inspector".into(), "null".into()];
    if let Some(c) = &a.config {
        args.extend(["--config".into(), c.clone()]);
    }
    if let Some(s) = &a.signatures {
        args.extend(["--signatures".into(), s.clone()]);
    }
    match config::parse(&args, &[0])? {
        Parsed::Run(c) => Ok((c.signatures, c.limits)),
        _ => Err("unexpected configuration".into()),
    }
}

/// One update at a time per store (a timer run and a manual run may overlap).
fn lock(root: &Path) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let path = root.join("lock");
    let f = std::fs::File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!("another icapd-update holds {}", path.display()));
    }
    Ok(f)
}

/// SIGHUP to `--reload-pid` (a number, or a file holding one).
fn reload(a: &Args) -> Result<(), String> {
    let Some(spec) = &a.reload_pid else { return Ok(()) };
    let text = match spec.parse::<i32>() {
        Ok(_) => spec.clone(),
        Err(_) => std::fs::read_to_string(spec).map_err(|e| format!("swapped, but cannot read {spec}: {e}"))?,
    };
    let pid: i32 = text.trim().parse().map_err(|_| format!("swapped, but {spec} holds no pid"))?;
    // SAFETY: kill(2) with a positive pid and a valid signal.
    if pid <= 0 || unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(format!("swapped, but cannot signal pid {pid}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
