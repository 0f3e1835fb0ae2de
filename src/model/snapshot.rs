//! Snapshots: the read model and its offsets saved together, so that a restart resumes from
//! the saved offsets instead of replaying the whole log.
//!
//! Written to a temporary file, fsynced, then renamed over the old one (and the directory
//! fsynced), so a crash at any moment leaves either the old snapshot or the new one, never a
//! torn file. The topic layout is saved with it: a snapshot taken for other topics (another
//! prefix, another partition count) is ignored rather than misapplied.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ReadModel;
use crate::kafka::TopicLayout;

/// Bumped whenever the saved shape changes incompatibly; an older snapshot is then ignored
/// (the log is replayed), never misread.
const FORMAT_VERSION: u32 = 1;
const FILE_NAME: &str = "snapshot.json";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {path} is unreadable: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Serialize)]
struct SavedRef<'a> {
    format: u32,
    topics: &'a TopicLayout,
    model: &'a ReadModel,
}

#[derive(Deserialize)]
struct Saved {
    format: u32,
    topics: TopicLayout,
    model: ReadModel,
}

pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Serialises the model (cheap to call under the model's lock: no I/O).
pub fn encode(model: &ReadModel, topics: &TopicLayout) -> Vec<u8> {
    serde_json::to_vec(&SavedRef {
        format: FORMAT_VERSION,
        topics,
        model,
    })
    .expect("the read model always serialises")
}

/// Writes an encoded snapshot atomically into `dir`.
pub fn write(dir: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let target = path_in(dir);
    let temporary = dir.join(format!("{FILE_NAME}.tmp"));
    let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(bytes).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    drop(file);
    std::fs::rename(&temporary, &target).map_err(io(&target))?;
    // Make the rename itself durable.
    if let Ok(directory) = std::fs::File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// What loading found.
#[derive(Debug)]
pub enum Loaded {
    /// A usable snapshot.
    Model(Box<ReadModel>),
    /// No snapshot yet.
    Missing,
    /// A snapshot for another layout or format: ignored, with the reason.
    Ignored(String),
}

/// Loads the snapshot in `dir` if it matches `topics`.
pub fn load(dir: &Path, topics: &TopicLayout) -> Result<Loaded, SnapshotError> {
    let path = path_in(dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(source) => return Err(SnapshotError::Io { path, source }),
    };
    let saved: Saved = match serde_json::from_slice(&bytes) {
        Ok(saved) => saved,
        Err(source) => return Err(SnapshotError::Corrupt { path, source }),
    };
    if saved.format != FORMAT_VERSION {
        return Ok(Loaded::Ignored(format!(
            "format {} (this version reads {FORMAT_VERSION})",
            saved.format
        )));
    }
    if &saved.topics != topics {
        return Ok(Loaded::Ignored(format!(
            "taken for topics {:?}, now {:?}",
            saved.topics.topics, topics.topics
        )));
    }
    let mut model = saved.model;
    model.rebuild_indexes();
    Ok(Loaded::Model(Box::new(model)))
}
