//! The one-time autologin keys waiting for their removal, kept in a file of the state directory so that a broker that died or restarted removes them at its next start.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One key to remove: from `user`'s `key_file` on `server`, due at `due_unix` (UNIX seconds:
/// the only clock that survives a restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingKey {
    pub server: String,
    pub user: String,
    pub key: String,
    pub key_file: String,
    pub due_unix: u64,
}

impl PendingKey {
    /// How long from `now` until the key is due (zero when it is overdue).
    pub fn due_in(&self, now: SystemTime) -> Duration {
        let due = UNIX_EPOCH + Duration::from_secs(self.due_unix);
        due.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

/// `now + after` in UNIX seconds, rounded up (a key is never removed before its lifetime).
pub fn due_unix(now: SystemTime, after: Duration) -> u64 {
    let due = (now + after)
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    due.as_secs() + u64::from(due.subsec_nanos() > 0)
}

/// The file (JSON, mode 0600, replaced atomically on every change; removed when empty).
#[derive(Debug, Clone)]
pub struct PendingKeyFile {
    path: PathBuf,
    /// Whether the last write failed (logged once, not at every change).
    failing: bool,
}

impl PendingKeyFile {
    pub fn new(path: PathBuf) -> PendingKeyFile {
        PendingKeyFile {
            path,
            failing: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The staged copy a write goes through (renamed over the file when complete).
    fn staged(&self) -> PathBuf {
        let mut staged = self.path.clone().into_os_string();
        staged.push(".new");
        PathBuf::from(staged)
    }

    /// The keys the file holds, together with those of a staged copy a killed broker left
    /// between its write and its rename (a key may then be removed twice, never not at all).
    /// No file: none. A broken file is logged, kept aside as `<name>.broken`, and counts as
    /// none.
    pub fn load(&self) -> Vec<PendingKey> {
        let mut keys = self.read(&self.path, true);
        let staged = self.staged();
        for key in self.read(&staged, false) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let _ = std::fs::remove_file(&staged);
        keys
    }

    fn read(&self, path: &Path, keep_broken: bool) -> Vec<PendingKey> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "cannot read the pending autologin keys");
                return Vec::new();
            }
        };
        match serde_json::from_str(&text) {
            Ok(keys) => keys,
            // a staged copy cut short by a kill is expected: its keys are also in the file
            Err(_) if !keep_broken => Vec::new(),
            Err(error) => {
                let mut aside = path.as_os_str().to_owned();
                aside.push(".broken");
                let _ = std::fs::rename(path, &aside);
                tracing::error!(path = %path.display(), %error, "the pending autologin keys file is broken: kept aside, its keys cannot be removed");
                Vec::new()
            }
        }
    }

    /// Replaces the file with `keys` (removes it when there are none).
    pub fn save(&mut self, keys: &[PendingKey]) {
        let outcome = if keys.is_empty() {
            match std::fs::remove_file(&self.path) {
                // nothing there (or no directory there) is nothing to remove
                Err(error)
                    if !matches!(
                        error.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    Err(error)
                }
                _ => Ok(()),
            }
        } else {
            self.write(keys)
        };
        match outcome {
            Ok(()) => {
                if self.failing {
                    tracing::info!(path = %self.path.display(), "pending autologin keys are persisted again");
                }
                self.failing = false;
            }
            Err(error) => {
                if !self.failing {
                    tracing::error!(path = %self.path.display(), %error, "cannot persist the pending autologin keys: a broker that dies now leaves them on the servers");
                }
                self.failing = true;
            }
        }
    }

    fn write(&self, keys: &[PendingKey]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = serde_json::to_string(keys).map_err(std::io::Error::other)?;
        // a state directory that does not exist yet is made (the daemon's own directory)
        if let Some(directory) = self.path.parent() {
            std::fs::create_dir_all(directory)?;
        }
        let staged = self.staged();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staged)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&staged, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(server: &str, due_unix: u64) -> PendingKey {
        PendingKey {
            server: server.to_string(),
            user: "jdoe@uni.example".to_string(),
            key: "ssh-rsa AAAA x2gobroker".to_string(),
            key_file: "%h/.x2go/authorized_keys".to_string(),
            due_unix,
        }
    }

    #[test]
    fn keys_survive_in_the_file_and_an_empty_set_removes_it() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        // a state directory that does not exist yet is made at the first save
        let mut file = PendingKeyFile::new(directory.path().join("state/x/pending.json"));
        assert!(file.load().is_empty());
        let keys = vec![key("ts01", 100), key("ts02", 200)];
        file.save(&keys);
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(PendingKeyFile::new(file.path().to_path_buf()).load(), keys);
        file.save(&[]);
        assert!(!file.path().exists());
    }

    #[test]
    fn a_staged_copy_left_by_a_kill_is_read_too() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("pending.json");
        let mut file = PendingKeyFile::new(path.clone());
        file.save(&[key("ts01", 1)]);
        // killed between writing the new set and renaming it
        std::fs::write(
            directory.path().join("pending.json.new"),
            serde_json::to_string(&[key("ts01", 1), key("ts02", 2)]).unwrap(),
        )
        .unwrap();
        assert_eq!(file.load(), vec![key("ts01", 1), key("ts02", 2)]);
        assert!(!directory.path().join("pending.json.new").exists());
        // cut short in the middle of the write: the file alone counts
        std::fs::write(directory.path().join("pending.json.new"), "[{\"server\":").unwrap();
        assert_eq!(file.load(), vec![key("ts01", 1)]);
        assert!(path.exists(), "the file itself is not set aside");
    }

    #[test]
    fn a_broken_file_is_kept_aside() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("pending.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(PendingKeyFile::new(path.clone()).load().is_empty());
        assert!(directory.path().join("pending.json.broken").exists());
    }

    #[test]
    fn an_unwritable_directory_is_one_error_and_keeps_going() {
        // the state directory's place is a file: nothing can be written under it
        let directory = tempfile::tempdir().unwrap();
        let blocker = directory.path().join("blocker");
        std::fs::write(&blocker, "").unwrap();
        let mut file = PendingKeyFile::new(blocker.join("dir/pending.json"));
        file.save(&[key("ts01", 1)]);
        assert!(file.failing);
        file.save(&[]);
        assert!(!file.failing, "nothing to persist is no failure");
    }

    #[test]
    fn due_times_round_up_and_overdue_keys_are_due_now() {
        let now = UNIX_EPOCH + Duration::from_millis(1_000_500);
        assert_eq!(due_unix(now, Duration::from_secs(20)), 1021);
        let pending = key("ts01", 1021);
        assert_eq!(pending.due_in(now), Duration::from_millis(20_500));
        assert_eq!(
            pending.due_in(now + Duration::from_secs(60)),
            Duration::ZERO
        );
    }
}
