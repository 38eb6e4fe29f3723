//! Loading a signature folder into one immutable [`Generation`].

use super::clamav::cvd;
use super::clamav::formats::{self, Format};
use super::clamav::ignore::{self, Ignores};
use super::clamav::ldb::{self, LdbSignature};
use super::hashsig::{parse_hash_db, parse_section_db, HashDbKind, HashSignature};
use super::ndb::{parse_ndb_line, NdbSignature};
use super::problem::{self, content_lines, Problem};
use super::urls::parse_urls;
use super::yara::{self, YaraSet};
use crate::scan::body::BodySet;
use crate::scan::hash::HashSet;
use crate::scan::ldb::{compile_pcre, LdbSet};
use crate::scan::literal::{LiteralSet, Pattern};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Largest signature file read (a guard against pointing `--signatures` at the wrong place).
pub const SIGNATURE_FILE_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// Options for [`load`].
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Sequence number of the generation (0 for the first).
    pub id: u64,
    /// `yara_overlap_bytes`: the longest match a streamed YARA rule may have; longer ones
    /// are evaluated on the whole object.
    pub yara_overlap_max: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { id: 0, yara_overlap_max: crate::limits::YARA_OVERLAP_BYTES }
    }
}

/// The URL and host deny list, compiled.
pub struct UrlSet {
    set: LiteralSet,
    names: Vec<String>,
}

impl UrlSet {
    /// The name of a rule matching `subject` (see [`super::urls::subject`]).
    pub fn first_match(&self, subject: &[u8]) -> Option<&str> {
        let mut found: Option<u32> = None;
        self.set.scan_window(subject, 0, &mut |id, _| {
            found = Some(found.map_or(id, |f| f.min(id)));
        });
        found.map(|id| self.names[id as usize].as_str())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Signatures loaded and lines skipped or disabled for one format, for logs and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormatCount {
    /// The extension (`ndb`, `ldb`, `cvd`, ...; for a packed database, its own files are
    /// counted under their formats and the `.cvd` itself counts files).
    pub format: String,
    pub loaded: usize,
    pub skipped: usize,
    /// Lines disabled by `.ign2`/`.ign`.
    pub disabled: usize,
}

/// Counts of what a generation holds, for logs and the status page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub body: usize,
    pub hashes: usize,
    pub yara_stream: usize,
    pub yara_preview: usize,
    pub yara_whole: usize,
    pub urls: usize,
    pub skipped_lines: usize,
    pub load_time: Duration,
    /// Logical signatures (`.ldb`, and `.ndb` lines with a target type or a deferred offset).
    pub logical: usize,
    /// Allowlist hashes (`.fp`, `.sfp`).
    pub allow: usize,
    /// PE section hashes (`.mdb`, `.msb`).
    pub sections: usize,
    /// PE import-table hashes (`.imp`).
    pub imports: usize,
    /// Per format, in [`formats::LOADED`] order, then the formats not loaded.
    pub formats: Vec<FormatCount>,
}

/// One compiled signature set.
pub struct Generation {
    pub id: u64,
    /// The options it was loaded with (a reload keeps them).
    pub options: LoadOptions,
    /// `icapd-` and 16 hex digits of a digest over every file's name and bytes: it changes
    /// exactly when the signature set (or the engine version) changes.
    pub istag: String,
    pub body: BodySet,
    pub hashes: HashSet,
    /// `.fp`/`.sfp`: an object with one of these hashes is clean whatever else matched.
    pub allow: HashSet,
    /// `.mdb`/`.msb`: PE section hashes.
    pub sections: HashSet,
    /// `.imp`: PE import-table hashes.
    pub imports: HashSet,
    pub ldb: LdbSet,
    pub yara: YaraSet,
    pub urls: UrlSet,
    pub summary: Summary,
    /// Lines that were reported and skipped.
    pub problems: Vec<Problem>,
    /// File-level lines: files not loaded and why, packed databases read, lines disabled.
    pub notes: Vec<String>,
}

impl Generation {
    /// What a load reports: the file-level notes, then one line per file and reason with
    /// the number of lines skipped for it (see [`problem::summarise`]); `--check -v` lists
    /// every skipped line as well.
    pub fn report_lines(&self) -> Vec<String> {
        let mut lines = self.notes.clone();
        lines.extend(problem::summarise(&self.problems));
        lines
    }
}

/// Whether a file of the folder is one the loader looks at (loaded or reported).
fn is_signature_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    formats::format_of(name) != Format::Other && path.is_file()
}

/// The signature files of `dir` (by extension), sorted by name.
fn signature_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read signature folder {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        if is_signature_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// What identifies the folder's current contents cheaply (names, sizes, modification times),
/// for noticing changes without reading every file.
pub fn fingerprint(dir: &Path) -> Result<Vec<(PathBuf, u64, SystemTime)>, String> {
    signature_files(dir)?
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((p, meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
        })
        .collect()
}

/// One database file to parse: a loose file or a member of a packed database.
struct DbFile {
    /// The name used in reports (`dir/main.cvd/main.ndb` for a member).
    path: PathBuf,
    format: &'static str,
    text: String,
}

/// Everything parsed so far.
#[derive(Default)]
struct Loaded {
    problems: Vec<Problem>,
    notes: Vec<String>,
    counts: BTreeMap<String, FormatCount>,
    ndb: Vec<NdbSignature>,
    ldb: Vec<LdbSignature>,
    hashes: Vec<HashSignature>,
    allow: Vec<HashSignature>,
    sections: Vec<HashSignature>,
    imports: Vec<HashSignature>,
    yar: Vec<(PathBuf, String)>,
    url_rules: Vec<super::urls::UrlRule>,
}

impl Loaded {
    fn count(&mut self, format: &str) -> &mut FormatCount {
        self.counts
            .entry(format.to_string())
            .or_insert_with(|| FormatCount { format: format.to_string(), ..FormatCount::default() })
    }

    /// Records what a parser returned for one file.
    fn took(&mut self, format: &str, loaded: usize, problems: Vec<Problem>) {
        let c = self.count(format);
        c.loaded += loaded;
        c.skipped += problems.len();
        self.problems.extend(problems);
    }

    fn parse(&mut self, file: DbFile, ignores: &Ignores) {
        let DbFile { path, format, text } = file;
        let text = match ignore::name_field(format) {
            Some(name_of) if !ignores.is_empty() => {
                let (kept, disabled) = ignores.filter(&text, name_of);
                if disabled > 0 {
                    self.count(format).disabled += disabled;
                    let s = if disabled == 1 { "" } else { "s" };
                    self.notes.push(format!("{}: {disabled} signature{s} disabled by .ign2/.ign", path.display()));
                }
                kept
            }
            _ => text,
        };
        match format {
            "ndb" => {
                let mut problems = Vec::new();
                let mut n = 0;
                for (line_no, line) in content_lines(&text) {
                    match parse_ndb_line(line) {
                        Ok(sig) => {
                            self.ndb.push(sig);
                            n += 1;
                        }
                        Err(_) => match ldb::ndb_as_ldb(line).and_then(check_pcres) {
                            Ok(sig) => {
                                self.ldb.push(sig);
                                n += 1;
                            }
                            Err(message) => problems.push(Problem::new(&path, line_no, message)),
                        },
                    }
                }
                self.took(format, n, problems);
            }
            "ldb" => {
                let mut problems = Vec::new();
                let mut n = 0;
                for (line_no, line) in content_lines(&text) {
                    match ldb::parse_ldb_line(line).and_then(check_pcres) {
                        Ok(sig) => {
                            self.ldb.push(sig);
                            n += 1;
                        }
                        Err(message) => problems.push(Problem::new(&path, line_no, message)),
                    }
                }
                self.took(format, n, problems);
            }
            "hdb" | "hsb" | "fp" | "sfp" => {
                let kind = if matches!(format, "hdb" | "fp") { HashDbKind::Hdb } else { HashDbKind::Hsb };
                let (sigs, p) = parse_hash_db(&text, &path, kind);
                self.took(format, sigs.len(), p);
                if matches!(format, "fp" | "sfp") {
                    self.allow.extend(sigs);
                } else {
                    self.hashes.extend(sigs);
                }
            }
            "mdb" | "msb" => {
                let kind = if format == "mdb" { HashDbKind::Hdb } else { HashDbKind::Hsb };
                let (sigs, p) = parse_section_db(&text, &path, kind);
                self.took(format, sigs.len(), p);
                self.sections.extend(sigs);
            }
            "imp" => {
                let (sigs, p) = parse_hash_db(&text, &path, HashDbKind::Hsb);
                self.took(format, sigs.len(), p);
                self.imports.extend(sigs);
            }
            "urls" => {
                let (rules, p) = parse_urls(&text, &path);
                self.took(format, rules.len(), p);
                self.url_rules.extend(rules);
            }
            "yar" => {
                self.count(format).loaded += 1;
                self.yar.push((path, text));
            }
            // Ignores were applied in the first pass.
            _ => {}
        }
    }
}

/// Compiles the PCRE subsignatures once, so a pattern the regex engine refuses is reported
/// with its line instead of disappearing at build time.
fn check_pcres(sig: LdbSignature) -> Result<LdbSignature, String> {
    for (i, sub) in sig.subsigs.iter().enumerate() {
        if let ldb::Subsig::Pcre(p) = sub {
            compile_pcre(p).map_err(|e| format!("{}: subsignature {i}: {e}", sig.name))?;
        }
    }
    Ok(sig)
}

fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))
}

/// Reads and compiles every signature file in `dir`. Fails (and the caller keeps the previous
/// generation) when a file cannot be read, a packed database is damaged or a YARA file does
/// not compile; malformed ClamAV and URL lines are only reported.
pub fn load(dir: &Path, opts: LoadOptions) -> Result<Generation, String> {
    let started = Instant::now();
    let files = signature_files(dir)?;
    let mut digest = Sha256::new();
    digest.update(env!("CARGO_PKG_VERSION").as_bytes());
    let mut loaded = Loaded::default();
    let mut db_files = Vec::new();
    // Of `daily.cvd` and `daily.cld`, ClamAV uses the newer; so does icapd.
    let mut packed: BTreeMap<String, (u64, PathBuf)> = BTreeMap::new();
    let mut unpacked: Vec<(PathBuf, String, Vec<cvd::Member>)> = Vec::new();
    for path in &files {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > SIGNATURE_FILE_BYTES_MAX {
            return Err(format!("{}: larger than {SIGNATURE_FILE_BYTES_MAX} bytes", path.display()));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let format = match formats::format_of(&name) {
            Format::Loaded(f) => f,
            Format::NotLoaded(reason) => {
                let ext = name.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
                loaded.count(&ext).skipped += 1;
                loaded.notes.push(format!("{}: not loaded: {reason}", path.display()));
                continue;
            }
            Format::Other => continue,
        };
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        digest.update((name.len() as u64).to_le_bytes());
        digest.update(name.as_bytes());
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(&bytes);
        if matches!(format, "cvd" | "cld" | "cud") {
            let kind = match format {
                "cvd" => cvd::Kind::Cvd,
                "cld" => cvd::Kind::Cld,
                _ => cvd::Kind::Cud,
            };
            let (header, members) =
                cvd::unpack(&bytes, kind, SIGNATURE_FILE_BYTES_MAX).map_err(|e| format!("{}: {e}", path.display()))?;
            let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s).to_string();
            if let Some((version, other)) = packed.get(&stem) {
                if *version >= header.version {
                    loaded.notes.push(format!(
                        "{}: not loaded: {} (version {version}) is newer or the same",
                        path.display(),
                        other.display()
                    ));
                    continue;
                }
                loaded.notes.push(format!(
                    "{}: not loaded: {} (version {}) is newer",
                    other.display(),
                    path.display(),
                    header.version
                ));
                unpacked.retain(|(p, _, _)| p != other);
                loaded.count(format).loaded -= 1;
            }
            packed.insert(stem, (header.version, path.clone()));
            loaded.count(format).loaded += 1;
            let check = if kind == cvd::Kind::Cld {
                "MD5 not checked for .cld, digital signature not verified"
            } else {
                "MD5 ok, digital signature not verified"
            };
            let note = format!(
                "{}: version {}, built {}, {} signatures, functionality level {}, by {}; {check}",
                path.display(),
                header.version,
                header.build_time,
                header.signatures,
                header.flevel,
                header.builder
            );
            unpacked.push((path.clone(), note, members));
            continue;
        }
        db_files.push(DbFile { path: path.clone(), format, text: text_of(path, bytes)? });
    }
    for (path, note, members) in unpacked {
        loaded.notes.push(note);
        for member in members {
            let inner = path.join(&member.name);
            match formats::format_of(&member.name) {
                Format::Loaded(f) if !matches!(f, "cvd" | "cld" | "cud") => {
                    db_files.push(DbFile { path: inner.clone(), format: f, text: text_of(&inner, member.bytes)? })
                }
                Format::NotLoaded(reason) => {
                    let ext = member.name.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
                    loaded.count(&ext).skipped += 1;
                    loaded.notes.push(format!("{}: not loaded: {reason}", inner.display()));
                }
                // COPYING and other members that are not databases.
                _ => {}
            }
        }
    }
    // First pass: the ignores, which apply to every other file wherever it comes from.
    let mut ignores = Ignores::default();
    for f in db_files.iter().filter(|f| matches!(f.format, "ign2" | "ign")) {
        let (n, p) = ignores.add(&f.text, &f.path, f.format == "ign");
        loaded.took(f.format, n, p);
    }
    for f in db_files.into_iter().filter(|f| !matches!(f.format, "ign2" | "ign")) {
        loaded.parse(f, &ignores);
    }
    let Loaded { mut problems, notes, counts, ndb, ldb, hashes, allow, sections, imports, yar, url_rules } = loaded;
    let yara = yara::compile_with(&yar, opts.yara_overlap_max, &mut problems)?;
    let summary_counts = (ndb.len(), hashes.len(), url_rules.len(), ldb.len(), allow.len(), sections.len());
    let body = BodySet::new(ndb)?;
    let ldb = LdbSet::new(ldb)?;
    let hashes = HashSet::new(hashes);
    let allow = HashSet::new(allow);
    let sections = HashSet::new(sections);
    let imports_count = imports.len();
    let imports = HashSet::new(imports);
    let names = url_rules.iter().map(|r| r.name.clone()).collect();
    let patterns = url_rules.into_iter().map(|r| Pattern { bytes: r.pattern, mask: None }).collect();
    let urls =
        UrlSet { set: LiteralSet::new(patterns).map_err(|e| format!("building the URL matcher: {e:?}"))?, names };
    let hex: String = digest.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
    let mut formats_out: Vec<FormatCount> = Vec::new();
    for f in formats::LOADED {
        if let Some(c) = counts.get(*f) {
            formats_out.push(c.clone());
        }
    }
    formats_out.extend(counts.values().filter(|c| !formats::LOADED.contains(&c.format.as_str())).cloned());
    let summary = Summary {
        files: files.len(),
        body: summary_counts.0,
        hashes: summary_counts.1,
        yara_stream: yara.stream_rules,
        yara_preview: yara.preview_rules,
        yara_whole: yara.whole_rules,
        urls: summary_counts.2,
        skipped_lines: problems.len(),
        load_time: started.elapsed(),
        logical: summary_counts.3,
        allow: summary_counts.4,
        sections: summary_counts.5,
        imports: imports_count,
        formats: formats_out,
    };
    Ok(Generation {
        id: opts.id,
        options: opts,
        istag: format!("icapd-{hex}"),
        body,
        hashes,
        allow,
        sections,
        imports,
        ldb,
        yara,
        urls,
        summary,
        problems,
        notes,
    })
}
