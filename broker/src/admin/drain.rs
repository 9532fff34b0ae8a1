//! Drain state: the servers an admin took out of rotation, kept in one file of the state directory, written atomically, read at start-up.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// What the drain file holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct DrainFile {
    /// The drained servers, by profile host name.
    drained: BTreeSet<String>,
}

/// Why a drain change was not made.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("this broker keeps no drain state (no state file)")]
    ReadOnly,
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The drained servers (one owner; the farm's balancer gets copies) and their file.
#[derive(Debug)]
pub struct DrainStore {
    /// Where changes are written; `None`: read only (the one-shot SSH broker mode).
    file: Option<PathBuf>,
    drained: RwLock<BTreeSet<String>>,
}

impl DrainStore {
    /// The state in `file` (none drained when it does not exist; a file that cannot be read
    /// or parsed is logged and left as it is until the next change). `writable`: whether
    /// changes are written back.
    pub fn load(file: PathBuf, writable: bool) -> DrainStore {
        let drained = match std::fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<DrainFile>(&bytes) {
                Ok(state) => state.drained,
                Err(error) => {
                    tracing::error!(file = %file.display(), %error, "drain state unreadable: no server is drained until the next drain");
                    BTreeSet::new()
                }
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(error) => {
                tracing::error!(file = %file.display(), %error, "drain state unreadable: no server is drained until the next drain");
                BTreeSet::new()
            }
        };
        if !drained.is_empty() {
            tracing::info!(servers = ?drained, "drained servers (from the state file)");
        }
        DrainStore {
            file: writable.then_some(file),
            drained: RwLock::new(drained),
        }
    }

    /// A store with nothing drained and no file (tests, brokers without a state directory).
    pub fn in_memory() -> DrainStore {
        DrainStore {
            file: None,
            drained: RwLock::new(BTreeSet::new()),
        }
    }

    /// The drained servers now.
    pub fn drained(&self) -> BTreeSet<String> {
        self.drained
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether `server` is drained.
    pub fn is_drained(&self, server: &str) -> bool {
        self.drained
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(server)
    }

    /// Drains (`true`) or undrains `server`; the file is written before the change is made,
    /// so a change that could not be kept is not made. Answers whether anything changed.
    pub fn set(&self, server: &str, drain: bool) -> Result<bool, DrainError> {
        let mut drained = self
            .drained
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if drained.contains(server) == drain {
            return Ok(false);
        }
        let mut next = drained.clone();
        if drain {
            next.insert(server.to_string());
        } else {
            next.remove(server);
        }
        let file = self.file.as_ref().ok_or(DrainError::ReadOnly)?;
        write_atomically(
            file,
            &DrainFile {
                drained: next.clone(),
            },
        )
        .map_err(|source| DrainError::Write {
            path: file.display().to_string(),
            source,
        })?;
        *drained = next;
        Ok(true)
    }

    /// Takes `servers` as the drained set (a cluster's shared table, read by this broker):
    /// kept in memory at once, and in the file when this store writes one (a write that fails
    /// is logged; the shared table stays the truth). Answers whether anything changed.
    pub fn replace(&self, servers: BTreeSet<String>) -> bool {
        let mut drained = self
            .drained
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *drained == servers {
            return false;
        }
        if let Some(file) = &self.file {
            let state = DrainFile {
                drained: servers.clone(),
            };
            if let Err(error) = write_atomically(file, &state) {
                tracing::error!(file = %file.display(), %error, "drain state not written");
            }
        }
        *drained = servers;
        true
    }
}

/// Writes `state` to a temporary file beside `file`, syncs it, renames it over `file` and
/// syncs the directory: a crash leaves the old or the new state, never a torn one.
fn write_atomically(file: &Path, state: &DrainFile) -> std::io::Result<()> {
    let directory = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory)?;
    let mut temporary = tempfile::NamedTempFile::new_in(directory)?;
    serde_json::to_writer_pretty(&mut temporary, state)?;
    temporary.write_all(b"\n")?;
    temporary.as_file().sync_all()?;
    temporary.persist(file).map_err(|error| error.error)?;
    std::fs::File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_survive_a_new_store_and_only_changes_are_written() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("state/drained.test.json");
        let store = DrainStore::load(file.clone(), true);
        assert!(store.drained().is_empty());
        assert!(store.set("ts03", true).unwrap());
        assert!(!store.set("ts03", true).unwrap(), "already drained");
        assert!(store.set("ts01", true).unwrap());
        assert!(store.is_drained("ts03"));
        let again = DrainStore::load(file.clone(), true);
        assert_eq!(
            again.drained(),
            BTreeSet::from(["ts01".into(), "ts03".into()])
        );
        assert!(again.set("ts03", false).unwrap());
        assert_eq!(
            DrainStore::load(file.clone(), true).drained(),
            BTreeSet::from(["ts01".to_string()])
        );
        // nothing but the state file is left in the directory (no temporary files)
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["drained.test.json"]);
    }

    #[test]
    fn a_change_that_cannot_be_written_is_not_made() {
        let directory = tempfile::tempdir().unwrap();
        // the state directory is a file: nothing can be written under it
        let blocker = directory.path().join("blocker");
        std::fs::write(&blocker, "").unwrap();
        let store = DrainStore::load(blocker.join("drained.json"), true);
        let error = store.set("ts01", true).unwrap_err();
        assert!(error.to_string().starts_with("cannot write"), "{error}");
        assert!(!store.is_drained("ts01"));
        let read_only = DrainStore::load(directory.path().join("none.json"), false);
        assert!(matches!(
            read_only.set("ts01", true),
            Err(DrainError::ReadOnly)
        ));
    }

    #[test]
    fn a_broken_file_drains_nothing_and_is_replaced_by_the_next_change() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("drained.json");
        std::fs::write(&file, "{not json").unwrap();
        let store = DrainStore::load(file.clone(), true);
        assert!(store.drained().is_empty());
        store.set("ts02", true).unwrap();
        assert!(DrainStore::load(file, true).is_drained("ts02"));
    }
}
