//! The compiled-component cache: each plugin component is compiled once and
//! its machine code kept on disk, so a restart with an unchanged component
//! (an 18 MB Python one takes tens of seconds to compile) only loads it.
//!
//! Storage and lookup are wasmtime's own cache (`Config::cache`), because it
//! is the safe way in: loading precompiled code ourselves
//! (`Component::deserialize_file`) is `unsafe`, and this crate forbids it.
//! wasmtime names each entry by a SHA-256 of the component's bytes and the
//! engine's compilation settings (target, tunables, Cranelift flags), under
//! a directory named after the wasmtime version, and checks an entry it
//! reads: zstd frame, object header, engine compatibility; what fails is
//! recompiled and rewritten.
//!
//! Those checks do not cover a flipped byte inside the compressed code, so
//! this module adds one of its own: after compiling, it records each entry's
//! SHA-256 beside the cache (`sha256/`), and before compiling it removes any
//! entry whose digest is missing or differs. wasmtime then recompiles it and
//! the digest is recorded anew. An entry is never loaded unverified.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::{Cache, CacheConfig};

/// The cache directory `config` asks for: `plugin_cache_path`, "" meaning
/// `<data_path>/plugin-cache`, and "off" none.
pub fn cache_dir(config: &crate::config::Config) -> Option<PathBuf> {
    let dir = match config.plugin_cache_path.as_str() {
        "off" => return None,
        "" => config.data_path.join("plugin-cache"),
        path => PathBuf::from(path),
    };
    // wasmtime's cache wants an absolute path; `data_path` defaults to ".".
    Some(std::path::absolute(&dir).unwrap_or(dir))
}

/// One cache directory: wasmtime's entries and this module's digests.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    /// `<dir>/wasmtime`: wasmtime's cache directory (its worker deletes any
    /// file there it does not recognise, so the digests live beside it).
    wasmtime_dir: PathBuf,
    /// `<dir>/sha256`: one file per entry, named like it, holding its digest.
    digest_dir: PathBuf,
}

/// What `CompileCache::verify` did, for the log and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries whose digest matched: they will be loaded.
    pub kept: usize,
    /// Entries removed: digest missing or different (corrupt, truncated,
    /// or written by something that did not record one).
    pub removed: usize,
}

impl CompileCache {
    pub(crate) fn new(dir: &Path) -> CompileCache {
        CompileCache {
            wasmtime_dir: dir.join("wasmtime"),
            digest_dir: dir.join("sha256"),
        }
    }

    /// The wasmtime `Cache` for `Config::cache`, writing under this directory.
    pub(crate) fn wasmtime_cache(&self) -> anyhow::Result<Cache> {
        fs::create_dir_all(&self.wasmtime_dir)
            .with_context(|| format!("creating {}", self.wasmtime_dir.display()))?;
        let mut cfg = CacheConfig::new();
        cfg.with_directory(&self.wasmtime_dir)
            // wasmtime's worker recompresses an entry used this often, which
            // would change its bytes under its digest: never.
            .with_optimized_compression_usage_counter_threshold(u64::MAX);
        Cache::new(cfg).map_err(|e| anyhow::anyhow!("plugin compile cache: {e:#}"))
    }

    /// Every entry file: `<wasmtime_dir>/modules/<compiler-version>/<hash>`
    /// (wasmtime's `.stats` and `.wip-*` files have an extension; entries not).
    fn entries(&self) -> Vec<(PathBuf, PathBuf)> {
        let mut out = Vec::new();
        let Ok(versions) = fs::read_dir(self.wasmtime_dir.join("modules")) else {
            return out;
        };
        for version in versions.flatten() {
            let Ok(files) = fs::read_dir(version.path()) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                if path.extension().is_some() || !path.is_file() {
                    continue;
                }
                let digest = self
                    .digest_dir
                    .join(version.file_name())
                    .join(file.file_name());
                out.push((path, digest));
            }
        }
        out
    }

    /// Removes every entry whose recorded digest is missing or does not
    /// match its bytes, before the engine may read it.
    pub(crate) fn verify(&self) -> VerifyReport {
        let mut report = VerifyReport::default();
        for (entry, digest_file) in self.entries() {
            let ok = match (fs::read(&entry), fs::read_to_string(&digest_file)) {
                (Ok(bytes), Ok(want)) => hex(&Sha256::digest(&bytes)) == want.trim(),
                _ => false,
            };
            if ok {
                report.kept += 1;
                continue;
            }
            warn!(entry = %entry.display(),
                "plugin compile cache: entry does not match its recorded digest; removed, it will be recompiled");
            let _ = fs::remove_file(&entry);
            let _ = fs::remove_file(&digest_file);
            report.removed += 1;
        }
        report
    }

    /// Records the digest of every entry that has none (those just compiled).
    pub(crate) fn seal(&self) {
        for (entry, digest_file) in self.entries() {
            if digest_file.exists() {
                continue;
            }
            if let Err(e) = write_digest(&entry, &digest_file) {
                debug!(entry = %entry.display(), error = %e, "plugin compile cache: digest not recorded");
            }
        }
    }
}

fn write_digest(entry: &Path, digest_file: &Path) -> io::Result<()> {
    let bytes = fs::read(entry)?;
    if let Some(dir) = digest_file.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = digest_file.with_extension("tmp");
    fs::write(&tmp, hex(&Sha256::digest(&bytes)))?;
    fs::rename(&tmp, digest_file)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_directory_is_absolute_even_under_a_relative_data_path() {
        let config = crate::config::Config::default();
        assert_eq!(config.data_path, Path::new("."));
        let dir = cache_dir(&config).expect("on by default");
        assert!(dir.is_absolute(), "{}", dir.display());
        assert!(dir.ends_with("plugin-cache"));
        let off = crate::config::Config {
            plugin_cache_path: "off".into(),
            ..crate::config::Config::default()
        };
        assert_eq!(cache_dir(&off), None);
    }

    #[test]
    fn entries_without_a_matching_digest_are_removed() {
        let dir = std::env::temp_dir().join(format!("nsq-gw-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let cache = CompileCache::new(&dir);
        let modules = cache.wasmtime_dir.join("modules").join("wasmtime-x");
        fs::create_dir_all(&modules).expect("mkdir");
        fs::write(modules.join("good"), b"code").expect("write");
        fs::write(modules.join("good.stats"), b"usages = 1").expect("write");
        cache.seal();
        fs::write(modules.join("unsealed"), b"code").expect("write");
        assert_eq!(
            cache.verify(),
            VerifyReport {
                kept: 1,
                removed: 1
            }
        );
        fs::write(modules.join("good"), b"c0de").expect("write");
        assert_eq!(
            cache.verify(),
            VerifyReport {
                kept: 0,
                removed: 1
            }
        );
        assert!(!modules.join("good").exists());
        assert!(modules.join("good.stats").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
