//! `x2gobroker-keygen`: the broker's SSH key pair in the daemon user's `~/.ssh`, written as root without following links.
//!
//! As the reference: `-t RSA` (default) or `DSA`, `id_rsa`/`id_dsa` plus `.pub`, owned by the
//! daemon user and group, private 0600, public 0644; an existing private key is kept unless
//! `-f`. Differences: RSA keys have 3072 bits (ssh-keygen's default; the reference makes
//! 2048), the private key is in OpenSSH's format (which OpenSSH and paramiko read), a new
//! `~/.ssh` is 0700 (the reference: 0750), and the fingerprint shown is SHA256.
//!
//! Root writes into a directory the daemon user controls, so every step goes through
//! directory descriptors: `~/.ssh` is opened with `O_NOFOLLOW`, each file is written to a
//! fresh temporary name (`O_EXCL|O_NOFOLLOW`), owned and moded through its descriptor, and
//! renamed over the old one. A symlink planted by the user is never followed.

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, Mode};
use nix::unistd::{fchown, Gid, Uid};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The reference's exit status when not run as root (`sys.exit(-1)`).
pub const EXIT_NOT_ROOT: i32 = 255;
/// The reference's exit status for an unknown key type or a missing home (`sys.exit(-2)`).
pub const EXIT_BAD_SETUP: i32 = 254;
/// The reference's exit status when a key exists and `-f` was not given (`sys.exit(-3)`).
pub const EXIT_KEY_EXISTS: i32 = 253;

/// RSA modulus size (ssh-keygen's default since OpenSSH 8.0).
pub const RSA_BITS: usize = 3072;

/// The key types the reference offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    Dsa,
}

impl KeyType {
    /// `RSA`/`DSA` in any case, as the reference (`.upper()`).
    pub fn parse(name: &str) -> Option<KeyType> {
        match name.to_uppercase().as_str() {
            "RSA" => Some(KeyType::Rsa),
            "DSA" => Some(KeyType::Dsa),
            _ => None,
        }
    }

    /// The private key's file name in `~/.ssh`.
    pub fn file_name(self) -> &'static str {
        match self {
            KeyType::Rsa => "id_rsa",
            KeyType::Dsa => "id_dsa",
        }
    }

    /// The name the messages use.
    pub fn label(self) -> &'static str {
        match self {
            KeyType::Rsa => "RSA",
            KeyType::Dsa => "DSA",
        }
    }
}

/// Why no key pair was written.
#[derive(Debug, Error)]
pub enum KeygenError {
    #[error("the home directory {home} of user {user} does not exist")]
    NoHome { home: PathBuf, user: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: nix::errno::Errno,
    },
    #[error("{0} is not a directory (a symbolic link is not followed)")]
    NotADirectory(PathBuf),
    #[error("{path} belongs to uid {owner}, neither root nor the daemon user")]
    ForeignOwner { path: PathBuf, owner: u32 },
    #[error("private key {0} exists")]
    KeyExists(PathBuf),
    #[error("key generation failed: {0}")]
    Generate(String),
}

impl KeygenError {
    /// The exit status the reference uses for this failure (1 where it would crash).
    pub fn exit_code(&self) -> i32 {
        match self {
            KeygenError::NoHome { .. } => EXIT_BAD_SETUP,
            KeygenError::KeyExists(_) => EXIT_KEY_EXISTS,
            _ => 1,
        }
    }
}

/// A generated key pair in the files' formats.
pub struct GeneratedKey {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----` … (unencrypted), newline-terminated.
    pub private_openssh: String,
    /// `ssh-rsa <base64>\n` (no comment, as the reference's).
    pub public_line: String,
    /// `SHA256:…`.
    pub fingerprint: String,
}

/// Generates a key pair (blocking: RSA-3072 takes about a second, DSA parameters longer).
pub fn generate(key_type: KeyType) -> Result<GeneratedKey, KeygenError> {
    let failed = |error: ssh_key::Error| KeygenError::Generate(error.to_string());
    let mut rng = rsa::rand_core::OsRng;
    let key_data = match key_type {
        KeyType::Rsa => ssh_key::private::KeypairData::Rsa(
            ssh_key::private::RsaKeypair::random(&mut rng, RSA_BITS).map_err(failed)?,
        ),
        KeyType::Dsa => ssh_key::private::KeypairData::Dsa(
            ssh_key::private::DsaKeypair::random(&mut rng).map_err(failed)?,
        ),
    };
    let private = ssh_key::PrivateKey::new(key_data, "").map_err(failed)?;
    let public = private.public_key();
    Ok(GeneratedKey {
        private_openssh: private
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(failed)?
            .to_string(),
        public_line: format!("{}\n", public.to_openssh().map_err(failed)?),
        fingerprint: public.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
    })
}

/// The account the key pair is for.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(nix::errno::Errno) -> KeygenError + '_ {
    move |source| KeygenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `~/.ssh` of the owner, opened without following links (made 0700 when missing).
pub struct SshDirectory {
    pub path: PathBuf,
    descriptor: OwnedFd,
    /// Whether this call made it.
    pub created: bool,
}

impl SshDirectory {
    /// Opens (or makes) `~owner/.ssh`.
    pub fn open(owner: &KeyOwner) -> Result<SshDirectory, KeygenError> {
        let directory_flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let home =
            nix::fcntl::open(&owner.home, directory_flags, Mode::empty()).map_err(|errno| {
                match errno {
                    nix::errno::Errno::ENOENT => KeygenError::NoHome {
                        home: owner.home.clone(),
                        user: owner.name.clone(),
                    },
                    nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP => {
                        KeygenError::NotADirectory(owner.home.clone())
                    }
                    other => KeygenError::Io {
                        path: owner.home.clone(),
                        source: other,
                    },
                }
            })?;
        let path = owner.home.join(".ssh");
        let created = match mkdirat(home.as_fd(), ".ssh", Mode::from_bits_truncate(0o700)) {
            Ok(()) => true,
            Err(nix::errno::Errno::EEXIST) => false,
            Err(errno) => return Err(io_error(&path)(errno)),
        };
        let descriptor =
            openat(home.as_fd(), ".ssh", directory_flags, Mode::empty()).map_err(|errno| {
                match errno {
                    nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP => {
                        KeygenError::NotADirectory(path.clone())
                    }
                    other => io_error(&path)(other),
                }
            })?;
        if created {
            fchown(
                descriptor.as_fd(),
                Some(Uid::from_raw(owner.uid)),
                Some(Gid::from_raw(owner.gid)),
            )
            .map_err(io_error(&path))?;
            fchmod(descriptor.as_fd(), Mode::from_bits_truncate(0o700)).map_err(io_error(&path))?;
        } else {
            let status = fstat(descriptor.as_fd()).map_err(io_error(&path))?;
            if status.st_uid != owner.uid && status.st_uid != 0 {
                return Err(KeygenError::ForeignOwner {
                    path,
                    owner: status.st_uid,
                });
            }
        }
        Ok(SshDirectory {
            path,
            descriptor,
            created,
        })
    }

    /// Whether `name` exists in the directory (a link counts, unfollowed).
    pub fn contains(&self, name: &str) -> bool {
        fstatat(
            self.descriptor.as_fd(),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok()
    }

    /// Writes `content` as `name`, owned by `owner` with `mode`, replacing what was there.
    pub fn write_file(
        &self,
        name: &str,
        content: &[u8],
        owner: &KeyOwner,
        mode: u32,
    ) -> Result<PathBuf, KeygenError> {
        let path = self.path.join(name);
        let temporary = format!(".{name}.x2gobroker-keygen-{}", std::process::id());
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let descriptor = openat(
            self.descriptor.as_fd(),
            temporary.as_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(io_error(&path))?;
        let written = (|| {
            fchown(
                descriptor.as_fd(),
                Some(Uid::from_raw(owner.uid)),
                Some(Gid::from_raw(owner.gid)),
            )?;
            fchmod(descriptor.as_fd(), Mode::from_bits_truncate(mode))?;
            let mut file = std::fs::File::from(descriptor);
            file.write_all(content)
                .and_then(|()| file.sync_all())
                .map_err(|error| {
                    nix::errno::Errno::from_raw(
                        error
                            .raw_os_error()
                            .unwrap_or(nix::errno::Errno::EIO as i32),
                    )
                })?;
            renameat(
                self.descriptor.as_fd(),
                temporary.as_str(),
                self.descriptor.as_fd(),
                name,
            )
        })();
        if let Err(errno) = written {
            let _ = nix::unistd::unlinkat(
                self.descriptor.as_fd(),
                temporary.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            return Err(io_error(&path)(errno));
        }
        Ok(path)
    }
}

/// What the tool was asked for.
#[derive(Debug, Clone, Copy)]
pub struct KeygenRequest {
    pub key_type: KeyType,
    pub force: bool,
}

/// Makes the key pair for `owner`, reporting each step through `say` (the reference's
/// messages); the private key's path on success.
pub fn run(
    owner: &KeyOwner,
    request: KeygenRequest,
    say: &mut dyn FnMut(&str),
) -> Result<PathBuf, KeygenError> {
    say("Creating pub/priv key pair for X2Go Session Broker...");
    let directory = SshDirectory::open(owner)?;
    if directory.created {
        say(&format!("  Created {}", directory.path.display()));
    }
    let private_name = request.key_type.file_name();
    let private_path = directory.path.join(private_name);
    if directory.contains(private_name) {
        if !request.force {
            return Err(KeygenError::KeyExists(private_path));
        }
        say("  WARNING: you requested to overwrite existing key files!!!");
    }
    let key = generate(request.key_type)?;
    say(&format!(
        "  The {} key has been generated, fingerprint: {}",
        request.key_type.label(),
        key.fingerprint
    ));
    if request.key_type == KeyType::Dsa {
        say("  WARNING: OpenSSH refuses DSA keys by default since 7.0 and removed them in 10.0;");
        say("  the servers' sshd must allow ssh-dss (PubkeyAcceptedAlgorithms), prefer RSA.");
    }
    let written =
        directory.write_file(private_name, key.private_openssh.as_bytes(), owner, 0o600)?;
    say(&format!(
        "  Private key written to file {}",
        written.display()
    ));
    let public = directory.write_file(
        &format!("{private_name}.pub"),
        key.public_line.as_bytes(),
        owner,
        0o644,
    )?;
    say(&format!(
        "  Public key written to file {}",
        public.display()
    ));
    say("Key file generation has been successful!");
    Ok(written)
}

/// The reference's lines for a refusal to overwrite.
pub fn key_exists_lines(private_path: &Path) -> Vec<String> {
    vec![
        format!(
            "  Private key {} exists. Use --force to overwrite",
            private_path.display()
        ),
        "  the file with a newly generated key.".to_string(),
        "  Make sure that broker agents get the new public key file deployed with the".to_string(),
        "  x2gobroker-pubkeyauthorizer tool, if you enforce key re-generation.".to_string(),
        "Exiting...".to_string(),
    ]
}

/// The daemon account (`X2GOBROKER_DAEMON_USER`, default `x2gobroker`) and group
/// (`X2GOBROKER_DAEMON_GROUP`, default `x2gobroker`, else the user's primary group).
pub fn daemon_owner(user_name: &str, group_name: Option<&str>) -> Result<KeyOwner, String> {
    let user = nix::unistd::User::from_name(user_name)
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("no such user {user_name:?}"))?;
    let gid = match group_name {
        Some(group_name) => {
            nix::unistd::Group::from_name(group_name)
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("no such group {group_name:?}"))?
                .gid
        }
        None => match nix::unistd::Group::from_name("x2gobroker") {
            Ok(Some(group)) => group.gid,
            _ => user.gid,
        },
    };
    Ok(KeyOwner {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: gid.as_raw(),
        home: user.dir,
    })
}

/// The whole tool after its command line: the reference's messages on stderr, its exit
/// statuses (0, 255 not root, 254 unknown type or no home, 253 key exists; 1 otherwise).
pub fn run_tool(key_type_name: &str, force: bool) -> i32 {
    let environment = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let user_name =
        environment("X2GOBROKER_DAEMON_USER").unwrap_or_else(|| "x2gobroker".to_string());
    let group_name = environment("X2GOBROKER_DAEMON_GROUP");
    eprintln!(
        "X2Go Session Broker (x2gobroker-rs {})",
        env!("CARGO_PKG_VERSION")
    );
    eprintln!("Setting up the key generator's environment...");
    eprintln!("  X2GOBROKER_DAEMON_USER: {user_name}");
    eprintln!(
        "  X2GOBROKER_DAEMON_GROUP: {}",
        group_name.as_deref().unwrap_or("x2gobroker")
    );
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "X2Go Session Broker's key generator has to run with root privileges. Exiting..."
        );
        return EXIT_NOT_ROOT;
    }
    let Some(key_type) = KeyType::parse(key_type_name) else {
        eprintln!(
            "Unknown key type \u{bb}{}\u{ab}. Possible key types are RSA and DSA. Exiting...",
            key_type_name.to_uppercase()
        );
        return EXIT_BAD_SETUP;
    };
    let owner = match daemon_owner(&user_name, group_name.as_deref()) {
        Ok(owner) => owner,
        Err(message) => {
            eprintln!("Cannot find the daemon account: {message}. Exiting...");
            return EXIT_BAD_SETUP;
        }
    };
    let request = KeygenRequest { key_type, force };
    match run(&owner, request, &mut |line| eprintln!("{line}")) {
        Ok(_) => 0,
        Err(KeygenError::KeyExists(path)) => {
            for line in key_exists_lines(&path) {
                eprintln!("{line}");
            }
            EXIT_KEY_EXISTS
        }
        Err(error @ KeygenError::NoHome { .. }) => {
            eprintln!(
                "{}. Cannot continue. Exiting...",
                capitalised(&error.to_string())
            );
            error.exit_code()
        }
        Err(error) => {
            eprintln!("Key file generation failed: {error}. Exiting...");
            error.exit_code()
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_as_the_reference_reads_them() {
        let table = [
            ("RSA", Some(KeyType::Rsa)),
            ("rsa", Some(KeyType::Rsa)),
            ("Dsa", Some(KeyType::Dsa)),
            ("ed25519", None),
            ("", None),
        ];
        for (name, expected) in table {
            assert_eq!(KeyType::parse(name), expected, "{name}");
        }
        assert_eq!(KeyType::Rsa.file_name(), "id_rsa");
        assert_eq!(KeyType::Dsa.file_name(), "id_dsa");
    }

    #[test]
    fn generated_keys_parse_back() {
        for (key_type, prefix) in [
            (KeyType::Rsa, "ssh-rsa AAAAB3NzaC1yc2EA"),
            (KeyType::Dsa, "ssh-dss AAAAB3NzaC1kc3MA"),
        ] {
            let key = generate(key_type).unwrap();
            // the prefixes the reference's pubkeyauthorizer checks
            assert!(key.public_line.starts_with(prefix), "{}", key.public_line);
            assert_eq!(key.public_line.matches(' ').count(), 1);
            assert!(key.public_line.ends_with('\n'));
            let private =
                ssh_key::PrivateKey::from_openssh(key.private_openssh.as_bytes()).unwrap();
            assert_eq!(
                format!("{}\n", private.public_key().to_openssh().unwrap()),
                key.public_line
            );
            if key_type == KeyType::Rsa {
                let ssh_key::public::KeyData::Rsa(rsa) = private.public_key().key_data() else {
                    panic!("not RSA");
                };
                assert_eq!(rsa.n.as_positive_bytes().unwrap().len() * 8, RSA_BITS);
            }
            assert!(key.fingerprint.starts_with("SHA256:"));
        }
    }

    #[test]
    fn writes_without_following_links_and_refuses_to_overwrite() {
        let work = tempfile::tempdir().unwrap();
        let owner = KeyOwner {
            name: "me".to_string(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            home: work.path().to_path_buf(),
        };
        let mut said = Vec::new();
        let request = KeygenRequest {
            key_type: KeyType::Rsa,
            force: false,
        };
        let private = run(&owner, request, &mut |line| said.push(line.to_string())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&work.path().join(".ssh")), 0o700);
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&work.path().join(".ssh/id_rsa.pub")), 0o644);
        assert!(
            said.iter().any(|line| line.starts_with("  Created ")),
            "{said:?}"
        );
        let before = std::fs::read(&private).unwrap();
        assert!(matches!(
            run(&owner, request, &mut |_| {}),
            Err(KeygenError::KeyExists(_))
        ));
        assert_eq!(std::fs::read(&private).unwrap(), before);
        let forced = KeygenRequest {
            force: true,
            ..request
        };
        run(&owner, forced, &mut |_| {}).unwrap();
        assert_ne!(std::fs::read(&private).unwrap(), before);
        let leftovers: Vec<_> = std::fs::read_dir(work.path().join(".ssh"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // a planted link as ~/.ssh is not followed
        let other = tempfile::tempdir().unwrap();
        let linked_home = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(other.path(), linked_home.path().join(".ssh")).unwrap();
        let linked = KeyOwner {
            home: linked_home.path().to_path_buf(),
            ..owner.clone()
        };
        assert!(matches!(
            run(&linked, request, &mut |_| {}),
            Err(KeygenError::NotADirectory(_))
        ));
        assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
        // a missing home is the reference's "does not exist"
        let missing = KeyOwner {
            home: work.path().join("nowhere"),
            ..owner
        };
        let error = run(&missing, request, &mut |_| {}).unwrap_err();
        assert_eq!(error.exit_code(), EXIT_BAD_SETUP, "{error}");
    }
}
