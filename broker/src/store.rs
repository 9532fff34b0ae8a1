//! Config files re-read when they change on disk (noticed through inotify, else a stat per request); a file that cannot be parsed keeps the last good version.

use crate::config::{BrokerConfig, IniDocument};
use crate::profiles::ProfileSet;
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
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
    /// The profiles of `profiles` with their broker settings under `config`, built on first
    /// use.
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

    /// The session profiles with their broker settings, built once for this version of
    /// both files.
    pub fn profile_set(&self) -> Result<&ProfileSet, String> {
        let config = self.config.as_ref().map_err(String::clone)?;
        let document = self.profiles.as_ref().map_err(String::clone)?;
        Ok(self
            .built
            .get_or_init(|| Arc::new(ProfileSet::build(document, config))))
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

/// Tells with one non-blocking `read` whether anything happened in the directories of the
/// config files since the last look (inotify events are queued when the write happens, so a
/// request after a change always sees it). Only used where that is exact: regular files, not
/// symlinks (a symlink's target may live and change elsewhere); else every request stats.
#[derive(Debug)]
struct ChangeWatch {
    inotify: Inotify,
}

impl ChangeWatch {
    /// A watch on the directories of `paths`, or `None` where stat-per-request is needed.
    fn new(paths: &[&Path]) -> Option<ChangeWatch> {
        if paths.is_empty() || paths.iter().any(|path| is_symlink(path)) {
            return None;
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let events = AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        for path in paths {
            let directory = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            inotify.add_watch(directory, events).ok()?;
        }
        Some(ChangeWatch { inotify })
    }

    /// `Some(true)` when something may have changed, `Some(false)` when nothing did, `None`
    /// when the watch can no longer tell (a directory went away, events were lost).
    fn changed(&self) -> Option<bool> {
        match self.inotify.read_events() {
            Ok(events) => {
                let lost = AddWatchFlags::IN_IGNORED
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF
                    | AddWatchFlags::IN_Q_OVERFLOW;
                if events.iter().any(|event| event.mask.intersects(lost)) {
                    return None;
                }
                Some(!events.is_empty())
            }
            Err(Errno::EAGAIN) => Some(false),
            Err(_) => None,
        }
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.file_type().is_symlink())
}

#[derive(Debug)]
struct State {
    config: Watched<BrokerConfig>,
    profiles: Watched<IniDocument>,
    snapshot: Arc<Snapshot>,
    /// Set when changes can be noticed without a stat per request.
    watch: Option<ChangeWatch>,
}

/// The broker's view of its two config files, cheap to query on every request.
#[derive(Debug)]
pub struct ConfigStore {
    state: Mutex<State>,
}

impl ConfigStore {
    /// Watches `config_path` and `profiles_path` (either may be absent: then it is empty).
    pub fn open(config_path: Option<PathBuf>, profiles_path: Option<PathBuf>) -> ConfigStore {
        let watched: Vec<&Path> = config_path
            .iter()
            .chain(profiles_path.iter())
            .map(PathBuf::as_path)
            .collect();
        let watch = ChangeWatch::new(&watched);
        let mut state = State {
            watch,
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
        Self::reload(&mut state);
        ConfigStore {
            state: Mutex::new(state),
        }
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
                watch: None,
            }),
        })
    }

    /// The current files, re-read first if they changed on disk.
    pub fn current(&self) -> Arc<Snapshot> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(watch) = &state.watch {
            match watch.changed() {
                Some(false) => return state.snapshot.clone(),
                Some(true) => {}
                None => {
                    tracing::info!(
                        "config directories no longer watched: checking the files on every request"
                    );
                    state.watch = None;
                }
            }
            // a file replaced by a symlink: its target may change unseen from here on
            let paths = [&state.config.path, &state.profiles.path];
            if paths.into_iter().flatten().any(|path| is_symlink(path)) {
                state.watch = None;
            }
        }
        Self::reload(&mut state)
    }

    /// Re-reads the files whose stamp changed; a new snapshot when anything did.
    fn reload(state: &mut State) -> Arc<Snapshot> {
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
        assert_eq!(config.global.auth_timeout.get(), Ok(5));
        assert!(first.profiles.as_ref().unwrap().sections.is_empty());

        std::fs::write(&config_path, "[global]\nauth-timeout = 77\n").unwrap();
        std::fs::write(&profiles_path, "[p]\nhost = a\n").unwrap();
        let second = store.current();
        assert_eq!(
            second.config.as_ref().unwrap().global.auth_timeout.get(),
            Ok(77)
        );
        assert_eq!(second.profiles.as_ref().unwrap().sections.len(), 1);

        std::fs::write(&config_path, "[global]\nbroken line without delimiter\n").unwrap();
        let third = store.current();
        assert_eq!(
            third.config.as_ref().unwrap().global.auth_timeout.get(),
            Ok(77),
            "the last good version keeps serving"
        );
    }

    fn auth_timeout(store: &ConfigStore) -> String {
        store
            .current()
            .config
            .as_ref()
            .unwrap()
            .global
            .auth_timeout
            .get()
            .unwrap()
            .to_string()
    }

    fn watched(store: &ConfigStore) -> bool {
        store.state.lock().unwrap().watch.is_some()
    }

    fn write_timeout(path: &Path, seconds: u32) {
        std::fs::write(path, format!("[global]\nauth-timeout = {seconds}\n")).unwrap();
    }

    /// `x2gobroker.conf` in `directory` saying `auth-timeout = seconds`, and a store over it.
    fn store_in(directory: &Path, seconds: u32) -> (PathBuf, ConfigStore) {
        let config_path = directory.join("x2gobroker.conf");
        write_timeout(&config_path, seconds);
        let store = ConfigStore::open(Some(config_path.clone()), None);
        (config_path, store)
    }

    #[test]
    fn regular_files_are_watched_and_every_kind_of_change_is_seen_at_once() {
        let directory = tempfile::tempdir().unwrap();
        let (config_path, store) = store_in(directory.path(), 1);
        assert!(watched(&store), "inotify watch on the directory");
        assert_eq!(auth_timeout(&store), "1");
        assert_eq!(auth_timeout(&store), "1", "nothing changed");
        // in place
        write_timeout(&config_path, 2);
        assert_eq!(auth_timeout(&store), "2");
        // as editors save: a new file renamed over the old one
        let temporary = directory.path().join(".x2gobroker.conf.swp");
        write_timeout(&temporary, 3);
        std::fs::rename(&temporary, &config_path).unwrap();
        assert_eq!(auth_timeout(&store), "3");
        // deleted: an empty file, as in the reference (the defaults)
        std::fs::remove_file(&config_path).unwrap();
        assert_eq!(auth_timeout(&store), "36000");
        write_timeout(&config_path, 4);
        assert_eq!(auth_timeout(&store), "4");
        assert!(watched(&store));
    }

    #[test]
    fn a_symlinked_file_is_checked_on_every_request() {
        let directory = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("real.conf");
        write_timeout(&target, 1);
        let config_path = directory.path().join("x2gobroker.conf");
        std::os::unix::fs::symlink(&target, &config_path).unwrap();
        let store = ConfigStore::open(Some(config_path.clone()), None);
        assert!(!watched(&store), "the target's directory is not watched");
        assert_eq!(auth_timeout(&store), "1");
        // a change of the target, in a directory no watch would see
        write_timeout(&target, 22);
        assert_eq!(auth_timeout(&store), "22");
    }

    #[test]
    fn a_file_replaced_by_a_symlink_drops_the_watch() {
        let directory = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let (config_path, store) = store_in(directory.path(), 1);
        assert!(watched(&store));
        let target = elsewhere.path().join("real.conf");
        write_timeout(&target, 5);
        std::fs::remove_file(&config_path).unwrap();
        std::os::unix::fs::symlink(&target, &config_path).unwrap();
        assert_eq!(auth_timeout(&store), "5");
        assert!(!watched(&store));
        write_timeout(&target, 6);
        assert_eq!(auth_timeout(&store), "6");
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
