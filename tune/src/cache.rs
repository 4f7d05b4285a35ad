//! The per-platform tune cache: one JSON file per host fingerprint under the cache folder.
//!
//! Reading never trusts the file: a file that does not parse, was written by another bitnetc
//! version or format, or describes another host is reported in one line and ignored (the
//! kernels then use their defaults). Writing takes an exclusive lock on a side file, re-reads
//! the current file, merges this run's entries into it, writes a temporary file in the same
//! folder and renames it over the old one, so a crash never leaves half a file and two tuners
//! running at once both land their entries. A corrupt file is kept beside the new one
//! (`*.corrupt`) rather than silently lost.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::HostFingerprint;
use crate::params::{KernelKey, TunedParams};
use crate::TuneError;

/// Version of the file layout; bumped when it changes incompatibly.
pub const FORMAT: u32 = 1;

/// The version of bitnetc writing and reading caches.
pub const BITNETC_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One tuned kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The winning values (the default when nothing beat it beyond noise).
    pub params: TunedParams,
    /// Median time of the default, in nanoseconds per call (per token for a GEMM).
    pub default_ns: f64,
    /// Median time of the winner, same unit, measured in the same run.
    pub tuned_ns: f64,
    /// Candidates measured.
    pub candidates: usize,
    /// When it was tuned (seconds since the Unix epoch).
    pub tuned_at: u64,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    bitnetc_version: String,
    host: HostFingerprint,
    entries: BTreeMap<String, CacheEntry>,
}

/// The tuned parameters of this host, as read from its cache file plus this run's additions.
#[derive(Clone, Debug)]
pub struct TuneCache {
    path: PathBuf,
    host: HostFingerprint,
    entries: BTreeMap<String, CacheEntry>,
    added: BTreeSet<String>,
}

impl TuneCache {
    /// The default cache folder: `$XDG_CACHE_HOME/bitnetc` (or the platform's cache folder).
    pub fn default_dir() -> Option<PathBuf> {
        dirs::cache_dir().map(|d| d.join("bitnetc"))
    }

    /// The cache of `host` in `dir`, with one line per problem found in its file (the file is
    /// then ignored). A missing file is an empty cache, not a problem.
    pub fn open(dir: &Path, host: HostFingerprint) -> (TuneCache, Vec<String>) {
        let path = dir.join(format!("tune-{}-{}.json", host.arch, host.id()));
        let mut warnings = Vec::new();
        let entries = match read_file(&path, &host) {
            Ok(Some(entries)) => entries,
            Ok(None) => BTreeMap::new(),
            Err(problem) => {
                warnings.push(format!(
                    "warning: ignoring tune cache {}: {problem}",
                    path.display()
                ));
                BTreeMap::new()
            }
        };
        let cache = TuneCache {
            path,
            host,
            entries,
            added: BTreeSet::new(),
        };
        (cache, warnings)
    }

    /// A cache that lives only in memory (e.g. the parameters an ahead-of-time artifact was
    /// compiled with), keyed by [`KernelKey::id`].
    pub fn in_memory(host: HostFingerprint, entries: BTreeMap<String, CacheEntry>) -> TuneCache {
        TuneCache {
            path: PathBuf::new(),
            host,
            entries,
            added: BTreeSet::new(),
        }
    }

    /// All entries, by [`KernelKey::id`].
    pub fn entries(&self) -> &BTreeMap<String, CacheEntry> {
        &self.entries
    }

    /// The file this cache reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host it is for.
    pub fn host(&self) -> &HostFingerprint {
        &self.host
    }

    /// The entry of `key`, if there is a valid one.
    pub fn get(&self, key: &KernelKey) -> Option<&CacheEntry> {
        self.entries
            .get(&key.id())
            .filter(|e| e.params.kind() == key.kind && e.params.is_valid())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds or replaces the entry of `key` (in memory; [`TuneCache::save`] writes it).
    pub fn insert(&mut self, key: &KernelKey, entry: CacheEntry) {
        self.entries.insert(key.id(), entry);
        self.added.insert(key.id());
    }

    /// Merges this run's entries into the file on disk (see the module docs); returns one line
    /// per problem met with the file that was there (it is replaced, and kept as `*.corrupt`
    /// when it did not parse).
    pub fn save(&mut self) -> Result<Vec<String>, TuneError> {
        let err = |problem: String| TuneError::Cache {
            path: self.path.clone(),
            problem,
        };
        let dir = self
            .path
            .parent()
            .ok_or_else(|| err("no parent folder".into()))?
            .to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| err(format!("creating the folder: {e}")))?;
        let lock_path = self.path.with_extension("lock");
        let lock =
            File::create(&lock_path).map_err(|e| err(format!("creating the lock file: {e}")))?;
        lock.lock().map_err(|e| err(format!("locking: {e}")))?;
        let mut warnings = Vec::new();
        let mut merged = match read_file(&self.path, &self.host) {
            Ok(Some(entries)) => entries,
            Ok(None) => BTreeMap::new(),
            Err(problem) => {
                warnings.push(format!(
                    "warning: replacing tune cache {}: {problem}",
                    self.path.display()
                ));
                if problem.starts_with("unreadable") {
                    let aside = self.path.with_extension("json.corrupt");
                    let _ = std::fs::rename(&self.path, aside);
                }
                BTreeMap::new()
            }
        };
        for id in &self.added {
            if let Some(e) = self.entries.get(id) {
                merged.insert(id.clone(), e.clone());
            }
        }
        let file = CacheFile {
            format: FORMAT,
            bitnetc_version: BITNETC_VERSION.to_string(),
            host: self.host.clone(),
            entries: merged.clone(),
        };
        let text =
            serde_json::to_string_pretty(&file).map_err(|e| err(format!("encoding: {e}")))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| err(format!("creating a temporary file: {e}")))?;
        tmp.write_all(text.as_bytes())
            .and_then(|_| tmp.write_all(b"\n"))
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| err(format!("writing: {e}")))?;
        tmp.persist(&self.path)
            .map_err(|e| err(format!("replacing the file: {}", e.error)))?;
        drop(lock);
        self.entries = merged;
        self.added.clear();
        Ok(warnings)
    }
}

/// The entries of the file at `path` if it exists and is valid for `host`; `Err` says why not.
fn read_file(
    path: &Path,
    host: &HostFingerprint,
) -> Result<Option<BTreeMap<String, CacheEntry>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("unreadable: {e}")),
    };
    let file: CacheFile = serde_json::from_str(&text)
        .map_err(|e| format!("unreadable (corrupt or truncated): {e}"))?;
    if file.format != FORMAT {
        return Err(format!(
            "written in cache format {}, this bitnetc reads format {FORMAT}",
            file.format
        ));
    }
    if file.bitnetc_version != BITNETC_VERSION {
        return Err(format!(
            "written by bitnetc {}, this is {BITNETC_VERSION}",
            file.bitnetc_version
        ));
    }
    if file.host != *host {
        return Err(format!(
            "tuned on another host ({}, {} cores), this is {} with {} cores",
            file.host.cpu_model, file.host.cores, host.cpu_model, host.cores
        ));
    }
    Ok(Some(file.entries))
}
