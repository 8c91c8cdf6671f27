//! Topic and channel metadata on disk: which durable topics and channels
//! exist and whether they are paused. Written atomically (temp file, fsync,
//! rename, fsync of the directory) after every change, read at startup.
//! Ephemeral topics and channels are never written.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// File name under `data_path`.
pub const METADATA_FILE: &str = "nsq-gateway.dat";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub version: String,
    pub topics: Vec<TopicMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub paused: bool,
    pub channels: Vec<ChannelMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMeta {
    pub name: String,
    pub paused: bool,
}

/// Reads and writes the metadata file of one data directory.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    /// Serialises writers so two concurrent saves cannot interleave on the
    /// temp file; whoever holds it writes the newest snapshot.
    write_lock: Mutex<()>,
}

impl MetadataStore {
    pub fn new(data_path: &Path) -> Self {
        MetadataStore {
            path: data_path.join(METADATA_FILE),
            write_lock: Mutex::new(()),
        }
    }

    /// The saved metadata, or `None` when there is no file yet.
    pub fn load(&self) -> io::Result<Option<Metadata>> {
        let text = match fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", self.path.display()),
            )
        })
    }

    /// Writes `snapshot()` atomically. The snapshot is taken under the write
    /// lock so the last writer always writes the latest state.
    pub fn save_with(&self, snapshot: impl FnOnce() -> Metadata) -> io::Result<()> {
        let _guard = crate::sync::lock(&self.write_lock);
        let meta = snapshot();
        let data = serde_json::to_vec_pretty(&meta).map_err(io::Error::other)?;
        let tmp = self.path.with_extension("dat.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // Make the rename itself durable.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nsqgw-meta-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn round_trips_and_missing_is_none() {
        let dir = tmpdir("rt");
        let store = MetadataStore::new(&dir);
        assert_eq!(store.load().expect("load"), None);
        let meta = Metadata {
            version: "x".into(),
            topics: vec![TopicMeta {
                name: "t".into(),
                paused: true,
                channels: vec![ChannelMeta {
                    name: "c".into(),
                    paused: false,
                }],
            }],
        };
        store.save_with(|| meta.clone()).expect("save");
        assert_eq!(store.load().expect("load"), Some(meta));
        assert!(!dir.join("nsq-gateway.dat.tmp").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_panic() {
        let dir = tmpdir("bad");
        fs::write(dir.join(METADATA_FILE), b"{not json").expect("write");
        let err = MetadataStore::new(&dir).load().expect_err("corrupt");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let _ = fs::remove_dir_all(&dir);
    }
}
