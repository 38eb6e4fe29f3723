//! Loading a signature folder into one immutable [`Generation`].

use super::hashsig::{parse_hash_db, HashDbKind};
use super::ndb::parse_ndb;
use super::problem::Problem;
use super::urls::parse_urls;
use super::yara::{self, YaraSet};
use crate::scan::body::BodySet;
use crate::scan::hash::HashSet;
use crate::scan::literal::{LiteralSet, Pattern};
use sha2::{Digest, Sha256};
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
    pub yara: YaraSet,
    pub urls: UrlSet,
    pub summary: Summary,
    /// Lines that were reported and skipped.
    pub problems: Vec<Problem>,
}

/// The signature files of `dir` (by extension), sorted by name.
fn signature_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read signature folder {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "yar" | "yara" | "ndb" | "hdb" | "hsb" | "urls") && path.is_file() {
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

/// Reads and compiles every signature file in `dir`. Fails (and the caller keeps the previous
/// generation) when a file cannot be read or a YARA file does not compile; malformed ClamAV
/// and URL lines are only reported.
pub fn load(dir: &Path, opts: LoadOptions) -> Result<Generation, String> {
    let started = Instant::now();
    let files = signature_files(dir)?;
    let mut digest = Sha256::new();
    digest.update(env!("CARGO_PKG_VERSION").as_bytes());
    let mut problems = Vec::new();
    let mut ndb = Vec::new();
    let mut hashes = Vec::new();
    let mut yar = Vec::new();
    let mut url_rules = Vec::new();
    for path in &files {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > SIGNATURE_FILE_BYTES_MAX {
            return Err(format!("{}: larger than {SIGNATURE_FILE_BYTES_MAX} bytes", path.display()));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        digest.update((name.len() as u64).to_le_bytes());
        digest.update(name.as_bytes());
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(&bytes);
        let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
        match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
            "ndb" => {
                let (sigs, p) = parse_ndb(&text, path);
                ndb.extend(sigs);
                problems.extend(p);
            }
            "hdb" | "hsb" => {
                let kind = if path.extension().is_some_and(|e| e == "hdb") { HashDbKind::Hdb } else { HashDbKind::Hsb };
                let (sigs, p) = parse_hash_db(&text, path, kind);
                hashes.extend(sigs);
                problems.extend(p);
            }
            "urls" => {
                let (rules, p) = parse_urls(&text, path);
                url_rules.extend(rules);
                problems.extend(p);
            }
            _ => yar.push((path.clone(), text)),
        }
    }
    let yara = yara::compile_with(&yar, opts.yara_overlap_max, &mut problems)?;
    let summary_counts = (ndb.len(), hashes.len(), url_rules.len());
    let body = BodySet::new(ndb)?;
    let hashes = HashSet::new(hashes);
    let names = url_rules.iter().map(|r| r.name.clone()).collect();
    let patterns = url_rules.into_iter().map(|r| Pattern { bytes: r.pattern, mask: None }).collect();
    let urls =
        UrlSet { set: LiteralSet::new(patterns).map_err(|e| format!("building the URL matcher: {e:?}"))?, names };
    let hex: String = digest.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
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
    };
    Ok(Generation { id: opts.id, options: opts, istag: format!("icapd-{hex}"), body, hashes, yara, urls, summary, problems })
}
