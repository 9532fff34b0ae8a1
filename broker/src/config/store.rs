//! Config files re-read when they change on disk; a file that cannot be parsed keeps the last good version.

use super::{BrokerConfig, IniDocument};
use crate::profiles::ProfileSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    length: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: metadata.modified().ok(),
        length: metadata.len(),
        inode: metadata.ino(),
    })
}

/// One loaded version of both files.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `x2gobroker.conf`, or why it has never loaded.
    pub config: Result<Arc<BrokerConfig>, String>,
    /// The session profiles file, or why it has never loaded.
    pub profiles: Result<Arc<IniDocument>, String>,
    /// The profiles of `profiles`, built on first use.
    built: OnceLock<Arc<ProfileSet>>,
}

impl Snapshot {
    /// One version of both files.
    pub fn new(
        config: Result<Arc<BrokerConfig>, String>,
        profiles: Result<Arc<IniDocument>, String>,
    ) -> Snapshot {
        Snapshot {
            config,
            profiles,
            built: OnceLock::new(),
        }
    }

    /// The session profiles, built once for this version of the file.
    pub fn profile_set(&self) -> Result<&ProfileSet, String> {
        let document = self.profiles.as_ref().map_err(String::clone)?;
        Ok(self
            .built
            .get_or_init(|| Arc::new(ProfileSet::build(document))))
    }
}

#[derive(Debug)]
struct Watched<T> {
    path: Option<PathBuf>,
    stamp: Option<FileStamp>,
    value: Result<Arc<T>, String>,
}

impl<T> Watched<T> {
    /// Re-reads the file if its stamp changed; returns true when the value changed.
    fn refresh(&mut self, parse: impl Fn(&str) -> Result<T, String>, what: &str) -> bool {
        let Some(path) = self.path.clone() else {
            return false;
        };
        let current = stamp(&path);
        if current == self.stamp {
            return false;
        }
        self.stamp = current;
        let text = match current {
            // A missing file is an empty one, as in the reference.
            None => String::new(),
            Some(_) => match std::fs::read(&path) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "cannot read {what}");
                    if self.value.is_err() {
                        self.value = Err(format!("cannot read {}: {error}", path.display()));
                    }
                    return false;
                }
            },
        };
        match parse(&text) {
            Ok(value) => {
                tracing::info!(path = %path.display(), "loaded {what}");
                self.value = Ok(Arc::new(value));
                true
            }
            Err(error) => {
                if self.value.is_ok() {
                    tracing::error!(path = %path.display(), %error,
                        "{what} cannot be parsed; the last good version keeps serving");
                } else {
                    tracing::error!(path = %path.display(), %error,
                        "{what} cannot be parsed and no good version exists: requests fail with 500");
                    self.value = Err(format!("{}: {error}", path.display()));
                }
                false
            }
        }
    }
}

#[derive(Debug)]
struct State {
    config: Watched<BrokerConfig>,
    profiles: Watched<IniDocument>,
    snapshot: Arc<Snapshot>,
}

/// The broker's view of its two config files, cheap to query on every request.
#[derive(Debug)]
pub struct ConfigStore {
    state: Mutex<State>,
}

impl ConfigStore {
    /// Watches `config_path` and `profiles_path` (either may be absent: then it is empty).
    pub fn open(config_path: Option<PathBuf>, profiles_path: Option<PathBuf>) -> ConfigStore {
        let mut state = State {
            config: Watched {
                path: config_path,
                stamp: None,
                value: Err("not loaded yet".to_string()),
            },
            profiles: Watched {
                path: profiles_path,
                stamp: None,
                value: Err("not loaded yet".to_string()),
            },
            snapshot: Arc::new(Snapshot::new(
                Ok(Arc::new(BrokerConfig::default())),
                Ok(Arc::new(IniDocument::default())),
            )),
        };
        // Force the first read even when the file is missing.
        state.config.stamp = Some(FileStamp {
            modified: None,
            length: u64::MAX,
            inode: 0,
        });
        state.profiles.stamp = state.config.stamp;
        let store = ConfigStore {
            state: Mutex::new(state),
        };
        store.current();
        store
    }

    /// A store over fixed texts (tests, the embedded default).
    pub fn from_texts(config: &str, profiles: &str) -> Result<ConfigStore, String> {
        let config = BrokerConfig::parse(config).map_err(|error| error.to_string())?;
        let profiles = IniDocument::parse(profiles).map_err(|error| error.to_string())?;
        let snapshot = Arc::new(Snapshot::new(
            Ok(Arc::new(config.clone())),
            Ok(Arc::new(profiles.clone())),
        ));
        Ok(ConfigStore {
            state: Mutex::new(State {
                config: Watched {
                    path: None,
                    stamp: None,
                    value: Ok(Arc::new(config)),
                },
                profiles: Watched {
                    path: None,
                    stamp: None,
                    value: Ok(Arc::new(profiles)),
                },
                snapshot,
            }),
        })
    }

    /// The current files, re-read first if they changed on disk.
    pub fn current(&self) -> Arc<Snapshot> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let config_changed = state.config.refresh(
            |text| BrokerConfig::parse(text).map_err(|error| error.to_string()),
            "broker configuration",
        );
        let profiles_changed = state.profiles.refresh(
            |text| {
                let document = IniDocument::parse(text).map_err(|error| error.to_string())?;
                for problem in crate::profiles::id_warnings(&document) {
                    tracing::warn!("{problem}");
                }
                Ok(document)
            },
            "session profiles",
        );
        let config_failed = state.config.value.is_err() != state.snapshot.config.is_err();
        let profiles_failed = state.profiles.value.is_err() != state.snapshot.profiles.is_err();
        if config_changed || profiles_changed || config_failed || profiles_failed {
            state.snapshot = Arc::new(Snapshot::new(
                state.config.value.clone(),
                state.profiles.value.clone(),
            ));
        }
        state.snapshot.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rereads_changed_files_and_keeps_the_last_good_version() {
        let directory = tempfile::tempdir().unwrap();
        let config_path = directory.path().join("x2gobroker.conf");
        let profiles_path = directory.path().join("profiles.ini");
        std::fs::write(&config_path, "[global]\nauth-timeout = 5\n").unwrap();
        let store = ConfigStore::open(Some(config_path.clone()), Some(profiles_path.clone()));
        let first = store.current();
        let config = first.config.as_ref().unwrap();
        assert_eq!(config.global_str("auth-timeout").unwrap(), "5");
        assert!(first.profiles.as_ref().unwrap().sections.is_empty());

        std::fs::write(&config_path, "[global]\nauth-timeout = 77\n").unwrap();
        std::fs::write(&profiles_path, "[p]\nhost = a\n").unwrap();
        let second = store.current();
        assert_eq!(
            second
                .config
                .as_ref()
                .unwrap()
                .global_str("auth-timeout")
                .unwrap(),
            "77"
        );
        assert_eq!(second.profiles.as_ref().unwrap().sections.len(), 1);

        std::fs::write(&config_path, "[global]\nbroken line without delimiter\n").unwrap();
        let third = store.current();
        assert_eq!(
            third
                .config
                .as_ref()
                .unwrap()
                .global_str("auth-timeout")
                .unwrap(),
            "77",
            "the last good version keeps serving"
        );
    }

    #[test]
    fn an_unparsable_first_version_fails_until_fixed() {
        let directory = tempfile::tempdir().unwrap();
        let config_path = directory.path().join("x2gobroker.conf");
        std::fs::write(&config_path, "[global]\nx = 1\nx = 2\n").unwrap();
        let store = ConfigStore::open(Some(config_path.clone()), None);
        assert!(store.current().config.is_err());
        std::fs::write(&config_path, "[global]\nx = 1\n").unwrap();
        assert!(store.current().config.is_ok());
    }
}
