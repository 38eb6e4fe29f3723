//! The Debian package and the files it ships, checked so that the packaging cannot rot.
//!
//! One test builds the package from the binary under test with `packaging/build-deb`, checks
//! its control data and its file list, extracts it into a throwaway root, runs the extracted
//! binary with the extracted configuration, and verifies the extracted systemd unit. The
//! others pin down what would otherwise drift apart silently: the flags of `--help` against
//! the manual page, the defaults written in the shipped configuration against
//! [`Limits::default`], the sysctl file against the running kernel, the CPU script against a
//! fake /proc and /sys, and the maintainer scripts' promise to enable and start nothing on a
//! new install.

mod common;

use icapd::limits::Limits;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary folder, removed when the test ends (however it ends).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("icapd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Readable by everyone whatever the umask: the installed server runs as nobody.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd`, failing the test with its output unless it exits 0.
fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

fn help() -> String {
    text(&run_ok(Command::new(env!("CARGO_BIN_EXE_icapd")).arg("--help")).stdout)
}

/// Every `--flag` that `icapd --help` names.
fn help_flags() -> BTreeSet<String> {
    help()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.len() > 2 && w.starts_with("--") && w.as_bytes()[2].is_ascii_lowercase())
        .map(|w| w.trim_end_matches('-').to_string())
        .collect()
}

/// The manual page source with roff's escaped dashes and break points made plain.
fn man_source() -> String {
    std::fs::read_to_string(repo().join("packaging/icapd.8")).unwrap().replace("\\-", "-").replace("\\%", "")
}

/// The lines of one `.SH` section of the manual page.
fn man_section(name: &str) -> Vec<String> {
    let man = man_source();
    let mut lines = man.lines().skip_while(|l| l.trim() != format!(".SH {name}")).skip(1);
    let mut section = Vec::new();
    for line in lines.by_ref() {
        if line.starts_with(".SH ") {
            break;
        }
        section.push(line.to_string());
    }
    assert!(!section.is_empty(), "no .SH {name} section in packaging/icapd.8");
    section
}

/// The words of the tag lines (the line after each `.TP`) of a manual page section.
fn man_tags(section: &[String]) -> BTreeSet<String> {
    section
        .windows(2)
        .filter(|w| w[0].trim() == ".TP")
        .flat_map(|w| {
            w[1].split(|c: char| c.is_whitespace() || c == '"' || c == ',')
                .filter(|t| !t.is_empty() && !t.starts_with('.'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_flag_of_help_is_documented_in_the_manual_page() {
    let flags = help_flags();
    for flag in ["--config", "--listen", "--signatures", "--cpus", "--check", "--help"] {
        assert!(flags.contains(flag), "reading --help found {flags:?}, not {flag}");
    }
    let options = man_tags(&man_section("OPTIONS"));
    for flag in &flags {
        assert!(options.contains(flag), "{flag} from `icapd --help` has no entry under OPTIONS in packaging/icapd.8");
    }
    // And the other way round, so that a flag removed from the binary cannot live on in the
    // manual.
    for flag in options.iter().filter(|t| t.starts_with("--")) {
        assert!(flags.contains(flag), "packaging/icapd.8 documents {flag}, which `icapd --help` does not name");
    }
    for flag in ["--metrics", "--access-log", "--access-log-format"] {
        assert!(flags.contains(flag), "{flag} missing from --help");
    }
    let signals = man_tags(&man_section("SIGNALS"));
    for signal in ["SIGHUP", "SIGUSR1", "SIGTERM", "SIGINT"] {
        assert!(signals.contains(signal), "{signal} missing under SIGNALS");
    }
    let exits = man_tags(&man_section("EXIT STATUS"));
    for code in ["0", "1", "2"] {
        assert!(exits.contains(code), "exit status {code} missing under EXIT STATUS");
    }
}

#[test]
fn manual_page_renders_without_warnings() {
    let page = repo().join("packaging/icapd.8");
    let out = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(&page)
        .output()
        .expect("groff runs (Debian package groff-base)");
    assert!(out.status.success() && out.stderr.is_empty(), "groff: {}", String::from_utf8_lossy(&out.stderr));
}

/// `# key = value` lines of the shipped configuration (the documented defaults), by section.
fn config_defaults() -> Vec<(String, String, String)> {
    let config = std::fs::read_to_string(repo().join("packaging/icapd.toml")).unwrap();
    let mut section = String::new();
    let mut defaults = Vec::new();
    for line in config.lines() {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if let Some(rest) = line.strip_prefix("# ") {
            if let Some((key, value)) = rest.split_once(" = ") {
                if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                    defaults.push((section.clone(), key.to_string(), value.to_string()));
                }
            }
        }
    }
    defaults
}

/// Milliseconds in a `Duration`'s Debug form (`120s`, `1.5s`, `50ms`).
fn debug_millis(text: &str) -> u64 {
    if let Some(ms) = text.strip_suffix("ms") {
        ms.parse::<f64>().unwrap() as u64
    } else if let Some(s) = text.strip_suffix('s') {
        (s.parse::<f64>().unwrap() * 1000.0).round() as u64
    } else {
        panic!("unexpected duration {text}")
    }
}

/// `Limits::default()` as config keys and values: durations become `<name>_ms` in
/// milliseconds, as the configuration file writes them.
fn default_limits() -> BTreeMap<String, String> {
    let debug = format!("{:?}", Limits::default());
    let fields = debug.strip_prefix("Limits { ").and_then(|d| d.strip_suffix(" }")).expect("Limits Debug form");
    fields
        .split(", ")
        .map(|field| {
            let (name, value) = field.split_once(": ").unwrap();
            if value.parse::<u64>().is_ok() {
                (name.to_string(), value.to_string())
            } else {
                (format!("{name}_ms"), debug_millis(value).to_string())
            }
        })
        .collect()
}

#[test]
fn shipped_configuration_lists_every_limit_with_its_default() {
    let documented: BTreeMap<String, String> =
        config_defaults().into_iter().filter(|(s, _, _)| s == "limits").map(|(_, k, v)| (k, v)).collect();
    let real = default_limits();
    for (key, value) in &real {
        assert_eq!(documented.get(key), Some(value), "[limits] {key} in packaging/icapd.toml (default {value})");
    }
    for key in documented.keys() {
        assert!(real.contains_key(key), "[limits] {key} in packaging/icapd.toml is not a limit");
    }
    // Every key the file names, default or example, is described in the manual page.
    let config = std::fs::read_to_string(repo().join("packaging/icapd.toml")).unwrap();
    let man_keys = man_tags(&man_section("CONFIGURATION FILE"));
    for line in config.lines() {
        let line = line.trim_start_matches('#').trim_start();
        if let Some((key, _)) = line.split_once(" = ") {
            if key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                assert!(man_keys.contains(key), "config key {key} is not described in packaging/icapd.8");
            }
        }
    }
}

#[test]
fn shipped_configuration_with_every_default_written_out_is_accepted() {
    let scratch = Scratch::new("config-defaults");
    let config = std::fs::read_to_string(repo().join("packaging/icapd.toml")).unwrap();
    let defaults: BTreeSet<String> = config_defaults().into_iter().map(|(_, key, _)| key).collect();
    let mut written = 0;
    let mut out = String::new();
    for line in config.lines() {
        let uncommented = line
            .strip_prefix("# ")
            .filter(|rest| rest.split_once(" = ").is_some_and(|(key, _)| defaults.contains(key)));
        match uncommented {
            Some(rest) => {
                written += 1;
                out.push_str(rest);
            }
            None => {
                out.push_str(&line.replace("/var/lib/icapd/signatures", repo().join("signatures").to_str().unwrap()))
            }
        }
        out.push('\n');
    }
    assert!(written >= 30, "only {written} default lines found");
    let path = scratch.0.join("icapd.toml");
    std::fs::write(&path, out).unwrap();
    let check = run_ok(Command::new(env!("CARGO_BIN_EXE_icapd")).arg("--check").arg("--config").arg(&path));
    assert!(text(&check.stdout).contains("configuration ok: listen 0.0.0.0:1344"), "{}", text(&check.stdout));
}

/// One line of `dpkg-deb -c`: mode, owner, path.
struct Entry {
    mode: String,
    owner: String,
    path: String,
}

fn contents(deb: &Path) -> Vec<Entry> {
    text(&run_ok(Command::new("dpkg-deb").arg("-c").arg(deb)).stdout)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "odd dpkg-deb -c line: {line}");
            Entry {
                mode: fields[0].to_string(),
                owner: fields[1].to_string(),
                path: fields[5..].join(" ").trim_start_matches('.').to_string(),
            }
        })
        .collect()
}

#[test]
fn debian_package_builds_installs_into_a_throwaway_root_and_verifies() {
    let scratch = Scratch::new("deb");
    let dir = &scratch.0;

    // Build from the binary under test. No compression: it is unpacked a moment later.
    let built = run_ok(
        Command::new("bash")
            .arg(repo().join("packaging/build-deb"))
            .arg("--out")
            .arg(dir)
            .args(["--compression", "none"])
            .arg(env!("CARGO_BIN_EXE_icapd")),
    );
    let deb = PathBuf::from(text(&built.stdout).lines().last().expect("build-deb prints the package path"));
    assert!(deb.is_file(), "{} missing", deb.display());

    // Control data.
    let arch = text(&run_ok(Command::new("dpkg").arg("--print-architecture")).stdout).trim().to_string();
    let field =
        |name: &str| text(&run_ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name)).stdout).trim().to_string();
    assert_eq!(field("Package"), "icapd");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    assert_eq!(field("Architecture"), arch);
    let depends = field("Depends");
    assert!(depends.contains("libc6 (>=") && depends.contains("adduser"), "Depends: {depends}");
    assert!(!field("Description").is_empty());
    let info = text(&run_ok(Command::new("dpkg-deb").arg("-I").arg(&deb)).stdout);
    for member in ["control", "conffiles", "md5sums", "postinst", "prerm", "postrm"] {
        assert!(info.lines().any(|l| l.split_whitespace().any(|w| w == member)), "no {member} in:\n{info}");
    }
    let control = dir.join("control");
    run_ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.lines().collect::<Vec<_>>(), ["/etc/icapd/icapd.toml", "/etc/logrotate.d/icapd"]);
    for script in ["postinst", "prerm", "postrm"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(control.join(script)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{script} mode {mode:o}");
    }

    // Contents: every expected path, with its mode; nothing writable by others, nothing setuid.
    let entries = contents(&deb);
    let mut expected: Vec<(String, &str)> = vec![
        ("/usr/bin/icapd".into(), "-rwxr-xr-x"),
        // Cargo builds every binary of the package before the integration tests, so
        // icapd-update sits next to the icapd under test and build-deb takes it along.
        ("/usr/bin/icapd-update".into(), "-rwxr-xr-x"),
        ("/lib/systemd/system/icapd-update.service".into(), "-rw-r--r--"),
        ("/lib/systemd/system/icapd-update.timer".into(), "-rw-r--r--"),
        ("/etc/icapd/icapd.toml".into(), "-rw-r--r--"),
        ("/etc/logrotate.d/icapd".into(), "-rw-r--r--"),
        ("/lib/systemd/system/icapd.service".into(), "-rw-r--r--"),
        ("/usr/share/man/man8/icapd.8.gz".into(), "-rw-r--r--"),
        ("/usr/share/doc/icapd/copyright".into(), "-rw-r--r--"),
        ("/usr/share/doc/icapd/README.md.gz".into(), "-rw-r--r--"),
        ("/usr/share/doc/icapd/README.tuning.md.gz".into(), "-rw-r--r--"),
        ("/usr/share/doc/icapd/examples/90-icapd.conf".into(), "-rw-r--r--"),
        ("/usr/share/doc/icapd/examples/cpu-affinity".into(), "-rwxr-xr-x"),
        ("/var/lib/icapd/signatures/".into(), "drwxr-xr-x"),
    ];
    let mut signature_files = 0;
    for f in std::fs::read_dir(repo().join("signatures")).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        if name != "README.md" {
            expected.push((format!("/var/lib/icapd/signatures/{name}"), "-rw-r--r--"));
            signature_files += 1;
        }
    }
    assert!(signature_files >= 5, "the repository's signatures/ has {signature_files} files");
    for (path, mode) in &expected {
        let entry = entries.iter().find(|e| &e.path == path).unwrap_or_else(|| panic!("{path} not in the package"));
        assert_eq!(&entry.mode, mode, "mode of {path}");
    }
    for e in &entries {
        assert_eq!(e.owner, "root/root", "owner of {}", e.path);
        let m = e.mode.as_bytes();
        assert!(m[5] != b'w' && m[8] != b'w', "{} is writable by group or others: {}", e.path, e.mode);
        assert!(!e.mode.contains('s') && !e.mode.contains('S'), "{} is setuid/setgid: {}", e.path, e.mode);
        if e.mode.starts_with('d') {
            assert_eq!(e.mode, "drwxr-xr-x", "directory {}", e.path);
        }
    }

    // Install into a throwaway root and run the installed binary with the installed config,
    // pointed at the installed signatures.
    let root = dir.join("root");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let installed = std::fs::read_to_string(root.join("etc/icapd/icapd.toml")).unwrap();
    assert_eq!(installed, std::fs::read_to_string(repo().join("packaging/icapd.toml")).unwrap());
    assert_eq!(installed.matches("\"/var/lib/icapd/signatures\"").count(), 1, "one signatures line");
    let rooted = installed
        .replace("\"/var/lib/icapd/signatures\"", &format!("\"{}\"", root.join("var/lib/icapd/signatures").display()));
    let config = dir.join("icapd.toml");
    std::fs::write(&config, rooted).unwrap();
    let binary = root.join("usr/bin/icapd");
    let version = run_ok(Command::new(&binary).arg("--version"));
    assert_eq!(text(&version.stdout).trim(), format!("icapd {}", env!("CARGO_PKG_VERSION")));
    let check = text(&run_ok(Command::new(&binary).arg("--check").arg("--config").arg(&config)).stdout);
    assert!(
        check.contains("icapd: signatures ok:") && check.contains("configuration ok: listen 0.0.0.0:1344"),
        "{check}"
    );
    assert!(!check.contains("skipped"), "the bundled signatures load without problems: {check}");
    let istag = check.split("ISTag ").nth(1).and_then(|t| t.split('"').nth(1)).expect("ISTag in --check").to_string();
    serve_as_unprivileged_user(&binary, &config, &istag);
    let man = run_ok(Command::new("gzip").arg("-dc").arg(root.join("usr/share/man/man8/icapd.8.gz")));
    assert_eq!(man.stdout, std::fs::read(repo().join("packaging/icapd.8")).unwrap(), "packaged man page");

    // Verify the installed unit. systemd-analyze checks that each command exists, so the copy
    // it checks has /usr/bin/icapd pointing at the installed binary (nothing else changes),
    // and MANPATH makes its Documentation=man:icapd(8) resolve to the installed page.
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/icapd.service")).unwrap();
    assert_eq!(unit, std::fs::read_to_string(repo().join("tuning/systemd/icapd.service")).unwrap());
    assert!(unit.contains("\nExecStart=/usr/bin/icapd --config /etc/icapd/icapd.toml\n"), "ExecStart");
    let units = dir.join("units");
    std::fs::create_dir_all(&units).unwrap();
    let unit_copy = units.join("icapd.service");
    std::fs::write(&unit_copy, unit.replace("/usr/bin/icapd", binary.to_str().unwrap())).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_copy)
        .env("MANPATH", root.join("usr/share/man"))
        .output()
        .expect("systemd-analyze runs (Debian package systemd)");
    let said = format!("{}{}", text(&verify.stdout), text(&verify.stderr));
    assert!(verify.status.success(), "systemd-analyze verify failed:\n{said}");
    let about_ours: Vec<&str> = said.lines().filter(|l| l.contains("icapd")).collect();
    assert!(about_ours.is_empty(), "systemd-analyze verify complains about the unit:\n{}", about_ours.join("\n"));
    // The sandbox stays tight: systemd's own exposure score (0-10, scaled by 10 here) must
    // stay at "OK" level, which fails if someone drops the hardening lines.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit_copy)
        .output()
        .unwrap();
    assert!(
        security.status.success(),
        "exposure above 2.0:\n{}",
        text(&security.stdout)
            .lines()
            .filter(|l| l.contains('✗') || l.contains("Overall"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Runs the installed binary the way the unit does: as an unprivileged user, with no
/// capabilities and no way to gain any, on the installed configuration and signatures. It
/// must start its shards (io_uring within the default locked-memory limit) and answer
/// OPTIONS with the ISTag of the installed set. Changing user needs root, as in CI; run
/// elsewhere, this step is left out with a note.
fn serve_as_unprivileged_user(binary: &Path, config: &Path, istag: &str) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the installed server was not started as an unprivileged user");
        return;
    }
    let port = common::free_port();
    let (mut child, rx) = common::spawn_with_stderr(
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs"])
            .args(["--inh-caps=-all", "--bounding-set=-all"])
            .arg(binary)
            .arg("--config")
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")]),
    );
    let log = common::lines_until_ready(&rx);
    let answer = if log.last().is_some_and(|l| l.contains("icapd: ready")) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        stream
            .write_all(
                b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\nEncapsulated: null-body=0\r\n\r\n",
            )
            .unwrap();
        common::read_response(&mut BufReader::new(stream)).ok()
    } else {
        None
    };
    let status = common::terminate(&mut child);
    let log = log.join("\n");
    let answer = answer.unwrap_or_else(|| panic!("the installed icapd did not serve as nobody:\n{log}"));
    assert_eq!(answer.status, 200, "{log}");
    assert_eq!(answer.header("ISTag"), Some(format!("\"{istag}\"").as_str()), "{}", answer.head);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit after SIGTERM:\n{log}");
}

#[test]
fn sysctl_file_sets_only_known_keys_and_says_why_for_each() {
    let conf = std::fs::read_to_string(repo().join("tuning/sysctl/90-icapd.conf")).unwrap();
    let lines: Vec<&str> = conf.lines().collect();
    let mut settings = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(" = ").unwrap_or_else(|| panic!("not 'key = value': {line}"));
        let key = key.trim_start_matches('-');
        assert!(i > 0 && lines[i - 1].starts_with('#'), "{key} has no comment saying why");
        let proc = Path::new("/proc/sys").join(key.replace('.', "/"));
        let current = std::fs::read_to_string(&proc).unwrap_or_else(|e| panic!("{key}: {}: {e}", proc.display()));
        let want: Vec<&str> = value.split_whitespace().collect();
        assert_eq!(current.split_whitespace().count(), want.len(), "{key} takes {} values", current.trim());
        assert!(want.iter().all(|v| v.parse::<u64>().is_ok()), "{key} = {value}");
        settings += 1;
    }
    assert!(settings >= 6, "only {settings} settings");
}

/// A fake /proc and /sys: 8 CPUs in 4 cores (siblings n and n+4), eth0 with three MSI
/// vectors handled on CPUs 0, 2 and 3, of which the last never fired.
fn fake_tree(dir: &Path) -> (PathBuf, PathBuf) {
    let proc = dir.join("proc");
    let sys = dir.join("sys");
    let write = |path: PathBuf, content: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    };
    write(
        proc.join("interrupts"),
        "            CPU0  CPU1  CPU2  CPU3  CPU4  CPU5  CPU6  CPU7\n \
         24:    900     0     0     0     0     0     0     0  PCI-MSIX-0000:01:00.0  0-edge  eth0-TxRx-0\n \
         25:      0     0   800     0     0     0     0     0  PCI-MSIX-0000:01:00.0  1-edge  eth0-TxRx-1\n \
         26:      0     0     0     0     0     0     0     0  PCI-MSIX-0000:01:00.0  2-edge  eth0-config\n \
         LOC:    10    10    10    10    10    10    10    10  Local timer interrupts\n",
    );
    for (irq, cpu) in [(24, "0"), (25, "2"), (26, "3")] {
        write(proc.join(format!("irq/{irq}/smp_affinity_list")), "0-7\n");
        write(proc.join(format!("irq/{irq}/effective_affinity_list")), &format!("{cpu}\n"));
        write(sys.join(format!("class/net/eth0/device/msi_irqs/{irq}")), "msix\n");
    }
    write(proc.join("self/status"), "Name:\tbash\nCpus_allowed_list:\t0-7\n");
    write(sys.join("devices/system/cpu/online"), "0-7\n");
    for cpu in 0..8 {
        let core = cpu % 4;
        write(
            sys.join(format!("devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")),
            &format!("{core},{}\n", core + 4),
        );
    }
    write(sys.join("devices/system/node/node0/cpulist"), "0-7\n");
    std::fs::create_dir_all(sys.join("class/net/lo")).unwrap();
    (proc, sys)
}

fn cpu_affinity(proc: &Path, sys: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo().join("tuning/cpu-affinity"))
        .args(args)
        .env("CPU_AFFINITY_PROC", proc)
        .env("CPU_AFFINITY_SYS", sys)
        .output()
        .unwrap()
}

#[test]
fn cpu_affinity_suggests_cpus_away_from_nic_interrupts_and_moves_them() {
    let scratch = Scratch::new("cpu-affinity");
    let (proc, sys) = fake_tree(&scratch.0);

    let show = cpu_affinity(&proc, &sys, &["show"]);
    let shown = text(&show.stdout);
    assert!(show.status.success(), "{}", text(&show.stderr));
    assert!(
        shown.contains("IRQs of eth0") && shown.contains("eth0-TxRx-1") && shown.contains("core with CPUs 1,5"),
        "{shown}"
    );
    assert!(!shown.contains("IRQs of lo"), "lo has no device: {shown}");

    // Busy IRQs on CPUs 0 and 2: those cores (0,4 and 2,6) are left out; IRQ 26 never fired.
    let suggest = text(&cpu_affinity(&proc, &sys, &["suggest", "eth0"]).stdout);
    assert!(suggest.lines().any(|l| l == "icapd --cpus 1,3,5,7"), "{suggest}");
    assert!(suggest.lines().any(|l| l == "CPUAffinity=1,3,5,7"), "{suggest}");
    let suggest = text(&cpu_affinity(&proc, &sys, &["suggest", "--exclude", "5-7"]).stdout);
    assert!(suggest.lines().any(|l| l == "icapd --cpus 1,3"), "{suggest}");

    // A CPU that is not online is refused before anything is written.
    let refused = cpu_affinity(&proc, &sys, &["irq-to", "9", "eth0"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("CPU 9 is not online"), "{}", text(&refused.stderr));
    assert_eq!(std::fs::read_to_string(proc.join("irq/24/smp_affinity_list")).unwrap(), "0-7\n");

    let moved = cpu_affinity(&proc, &sys, &["irq-to", "0,4", "eth0"]);
    assert!(moved.status.success(), "{}", text(&moved.stderr));
    for irq in [24, 25, 26] {
        assert_eq!(std::fs::read_to_string(proc.join(format!("irq/{irq}/smp_affinity_list"))).unwrap(), "0,4\n");
    }
    assert_eq!(cpu_affinity(&proc, &sys, &["frobnicate"]).status.code(), Some(2));
}

#[test]
fn cpu_affinity_show_is_safe_on_this_machine() {
    let out = Command::new("bash").arg(repo().join("tuning/cpu-affinity")).arg("show").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("online CPUs:"), "{}", text(&out.stdout));
}

#[test]
fn maintainer_scripts_enable_and_start_nothing_on_a_new_install() {
    let scratch = Scratch::new("maint");
    let bin = scratch.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = scratch.0.join("calls");
    // Stand-ins for the system tools the scripts call: each records its arguments. `getent`
    // finds no icapd user and `deb-systemd-helper` knows nothing about the unit, as on a
    // machine that never had the package.
    let stub = |name: &str, status: i32| {
        use std::os::unix::fs::PermissionsExt;
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho \"{name} $*\" >>\"{}\"\nexit {status}\n", log.display()))
            .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    for (name, status) in
        [("getent", 2), ("adduser", 0), ("deb-systemd-helper", 1), ("deb-systemd-invoke", 0), ("systemctl", 0)]
    {
        stub(name, status);
    }
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let postinst = repo().join("packaging/debian/postinst");
    run_ok(Command::new("sh").arg(&postinst).args(["configure", ""]).env("PATH", &path));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.lines().any(|l| l.starts_with("adduser --system --group") && l.ends_with(" icapd")),
        "the icapd system user is created: {calls}"
    );
    assert!(calls.contains("deb-systemd-helper update-state icapd.service"), "{calls}");
    assert!(!calls.contains(" enable ") && !calls.contains(" start ") && !calls.contains("restart"), "{calls}");

    // An upgrade on a machine where the administrator enabled icapd keeps it enabled, and the
    // user is not created twice.
    std::fs::remove_file(&log).unwrap();
    stub("getent", 0);
    stub("deb-systemd-helper", 0);
    run_ok(Command::new("sh").arg(&postinst).args(["configure", "0.0.9-1"]).env("PATH", &path));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(!calls.contains("adduser"), "{calls}");
    assert!(calls.contains("deb-systemd-helper enable icapd.service"), "{calls}");

    for script in ["postinst", "prerm", "postrm"] {
        run_ok(Command::new("sh").arg("-n").arg(repo().join("packaging/debian").join(script)));
    }
}
