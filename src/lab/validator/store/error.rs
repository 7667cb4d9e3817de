//! Why the store could not be read or written.

use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil;

/// Why the store could not be read or written. `Display` names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: fsutil::ReadError,
    },
    #[error("{} is not valid JSON: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{} is not a JSON list of objects: {detail}", path.display())]
    Format { path: PathBuf, detail: String },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot lock {}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// The error with the file name instead of its full path: what a miner is told (the reason
    /// travels over plain HTTP to whoever asked).
    pub fn brief(&self) -> String {
        let full = crate::secret::error_chain(self);
        match self.path().and_then(|p| Some((p.to_str()?, p.file_name()?.to_str()?))) {
            Some((path, name)) => full.replacen(path, name, 1),
            None => full,
        }
    }

    fn path(&self) -> Option<&Path> {
        match self {
            StoreError::Read { path, .. }
            | StoreError::Corrupt { path, .. }
            | StoreError::Format { path, .. }
            | StoreError::Write { path, .. }
            | StoreError::Lock { path, .. } => Some(path),
            StoreError::Task(_) => None,
        }
    }

    /// A copy for each caller of a failed batch (`io::Error` is not `Clone`: kind and text are kept).
    pub(super) fn duplicate(&self) -> StoreError {
        let io = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            StoreError::Read { path, source } => {
                let source = match source {
                    fsutil::ReadError::Io(e) => fsutil::ReadError::Io(io(e)),
                    fsutil::ReadError::NotRegular(kind) => fsutil::ReadError::NotRegular(kind),
                    fsutil::ReadError::TooLarge { cap } => fsutil::ReadError::TooLarge { cap: *cap },
                    fsutil::ReadError::NotUtf8 => fsutil::ReadError::NotUtf8,
                };
                StoreError::Read { path: path.clone(), source }
            }
            StoreError::Corrupt { path, detail } => StoreError::Corrupt { path: path.clone(), detail: detail.clone() },
            StoreError::Format { path, detail } => StoreError::Format { path: path.clone(), detail: detail.clone() },
            StoreError::Write { path, source } => StoreError::Write { path: path.clone(), source: io(source) },
            StoreError::Lock { path, source } => StoreError::Lock { path: path.clone(), source: io(source) },
            StoreError::Task(t) => StoreError::Task(t.clone()),
        }
    }

    /// Bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Read { .. } => "read",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Format { .. } => "format",
            StoreError::Write { .. } => "write",
            StoreError::Lock { .. } => "lock",
            StoreError::Task(_) => "task",
        }
    }
}
