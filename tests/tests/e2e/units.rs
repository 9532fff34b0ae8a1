//! LOCAL agent mode under our `x2gobroker-daemon.service`: the broker started as the unit starts it (settings read from `deploy/`, emulated with unshare, mount and setpriv) cannot use the setuid Perl agent as shipped, and can with the `local-agent.conf` drop-in.
//!
//! systemd does not run here. What is emulated, from the unit files themselves: `User=` and
//! `Group=` (setpriv `--reuid --regid --init-groups`), `NoNewPrivileges=` (`--no-new-privs`),
//! `CapabilityBoundingSet=` (`--bounding-set`, merged as systemd merges: an empty value
//! resets, others add), `AmbientCapabilities=` empty (`--inh-caps=-all`), `UMask=`,
//! `ProtectSystem=strict` with `StateDirectory=` and `ReadWritePaths=` (a private mount
//! namespace: `/` read-only, those paths and the test's own directory bound writable),
//! `PrivateTmp=yes` (fresh tmpfs on `/tmp` and `/var/tmp`: x2golistsessions needs a
//! writable `/tmp`), `ProtectHome=yes` (empty read-only tmpfs over `/home`, `/root`,
//! `/run/user`). Not emulated: the seccomp and namespace switches (`SystemCallArchitectures`,
//! `MemoryDenyWriteExecute`, `RestrictAddressFamilies`, `RestrictNamespaces`, `Protect*`
//! of kernel, clock, hostname, cgroups, `PrivateDevices`): the agent, sudo
//! and the X2Go tools use none of what they forbid (sudo's audit socket, AF_NETLINK, is
//! allowed by the drop-in; without it sudo skips the audit record).

use crate::farm::{plain, rebuild_farm, transport_scenario, SESSION_DB};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use x2gobroker_e2e::{
    binary, ensure_system_user, free_port, wait_for_port, workspace_root, Daemon,
};

const PERL_AGENT: &str = "/usr/lib/x2go/x2gobroker-agent";

/// The `[Service]` settings of a unit and its drop-ins that the emulation applies.
#[derive(Debug, Clone, Default)]
struct ServiceSettings {
    user: String,
    group: String,
    no_new_privileges: bool,
    capabilities: BTreeSet<String>,
    umask: String,
    protect_system_strict: bool,
    protect_home: bool,
    private_tmp: bool,
    writable: Vec<PathBuf>,
}

impl ServiceSettings {
    /// Applies one unit file's `[Service]` lines in order, as systemd merges files.
    fn apply(mut self, path: &Path) -> ServiceSettings {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let mut in_service = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if !in_service || line.starts_with('#') {
                continue;
            }
            let value = value.trim();
            let yes = matches!(value, "yes" | "true" | "1" | "on");
            match key.trim() {
                "User" => self.user = value.to_string(),
                "Group" => self.group = value.to_string(),
                "NoNewPrivileges" => self.no_new_privileges = yes,
                "CapabilityBoundingSet" if value.is_empty() => self.capabilities.clear(),
                "CapabilityBoundingSet" => self.capabilities.extend(
                    value
                        .split_whitespace()
                        .map(|name| name.trim_start_matches("CAP_").to_lowercase()),
                ),
                "UMask" => self.umask = value.to_string(),
                "ProtectSystem" => self.protect_system_strict = value == "strict",
                "ProtectHome" => self.protect_home = yes,
                "PrivateTmp" => self.private_tmp = yes,
                "StateDirectory" => self.writable.extend(
                    value
                        .split_whitespace()
                        .map(|name| Path::new("/var/lib").join(name)),
                ),
                "ReadWritePaths" => {
                    for path in value.split_whitespace() {
                        let optional = path.starts_with('-');
                        let path = PathBuf::from(path.trim_start_matches('-'));
                        if path.exists() || !optional {
                            self.writable.push(path);
                        }
                    }
                }
                _ => {}
            }
        }
        self
    }

    /// `unshare … sh -c … setpriv … <program> <arguments>` as the unit would run the program.
    fn command(&self, work: &Path, program: &Path, arguments: &[String]) -> Command {
        const SANDBOX: &str = "set -e\n\
            work=\"$1\"; writable=\"$2\"; protect_home=\"$3\"; strict=\"$4\"; private_tmp=\"$5\"; umask_value=\"$6\"; shift 6\n\
            mount --bind \"$work\" \"$work\"\n\
            for path in $writable; do if [ -e \"$path\" ]; then mount --bind \"$path\" \"$path\"; fi; done\n\
            if [ \"$strict\" = yes ]; then mount -o remount,bind,ro /; fi\n\
            if [ \"$private_tmp\" = yes ]; then for path in /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs \"$path\"; done; fi\n\
            if [ \"$protect_home\" = yes ]; then for path in /home /root /run/user; do if [ -d \"$path\" ]; then mount -t tmpfs -o ro,mode=0755 tmpfs \"$path\"; fi; done; fi\n\
            umask \"$umask_value\"\n\
            exec \"$@\"\n";
        let flag = |on: bool| if on { "yes" } else { "no" };
        let writable: Vec<String> = self
            .writable
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        let mut bounding = vec!["-all".to_string()];
        bounding.extend(self.capabilities.iter().map(|name| format!("+{name}")));
        let mut command = Command::new("unshare");
        command
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                SANDBOX,
                "sh",
            ])
            .arg(work)
            .arg(writable.join(" "))
            .arg(flag(self.protect_home))
            .arg(flag(self.protect_system_strict))
            .arg(flag(self.private_tmp))
            .arg(if self.umask.is_empty() {
                "0022"
            } else {
                &self.umask
            })
            .arg("setpriv")
            .arg(format!("--reuid={}", self.user))
            .arg(format!("--regid={}", self.group))
            .args(["--init-groups", "--inh-caps=-all"])
            .arg(format!("--bounding-set={}", bounding.join(",")));
        if self.no_new_privileges {
            command.arg("--no-new-privs");
        }
        command.arg("--").arg(program).args(arguments);
        command
    }
}

/// The broker as the unit runs it, in LOCAL mode over the five-server farm.
fn start_broker(settings: &ServiceSettings, work: &Path, label: &str) -> Daemon {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let arguments = [
        "-C".to_string(),
        work.join("x2gobroker.conf").display().to_string(),
        "-b".to_string(),
        address.clone(),
    ];
    let mut command = settings.command(work, &binary("x2gobroker-daemon"), &arguments);
    command
        .env("X2GOBROKER_SESSIONPROFILES", work.join("profiles.ini"))
        .env("X2GOBROKER_COOKIE_DIRECTORY", work.join("cookies"))
        .env("X2GOBROKER_LOGCONFIG", x2gobroker_e2e::NO_LOGCONFIG)
        .env("X2GOBROKER_DEFAULTS", "/nonexistent/defaults.conf")
        .env_remove("RUST_LOG");
    let stderr_path = work.join(format!("{label}.stderr"));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    // unshare, sh and setpriv exec: the child is the broker itself
    let child = command.spawn().expect("unshare");
    let mut daemon = Daemon {
        child,
        address: address.parse().unwrap(),
    };
    if !wait_for_port(daemon.address, Duration::from_secs(20)) {
        let status = daemon.child.try_wait();
        panic!(
            "{label}: the broker did not listen ({status:?}): {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    }
    daemon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_agent_mode_under_our_unit_works_with_the_drop_in() {
    let _db = SESSION_DB.lock().await;
    rebuild_farm();
    ensure_system_user("x2gobroker");
    let deploy = workspace_root().join("deploy");
    let shipped = ServiceSettings::default().apply(&deploy.join("x2gobroker-daemon.service"));
    assert!(
        shipped.no_new_privileges && shipped.capabilities.is_empty() && shipped.protect_home,
        "the shipped unit is the locked-down one: {shipped:?}"
    );
    let with_drop_in = shipped
        .clone()
        .apply(&deploy.join("x2gobroker-daemon.service.d/local-agent.conf"));
    assert_eq!(with_drop_in.user, "x2gobroker");

    // outside /tmp, which PrivateTmp= replaces: in cargo's target directory
    let target = binary("x2gobroker-daemon")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/")
        .to_path_buf();
    let work = tempfile::Builder::new()
        .prefix("e2e-units-")
        .tempdir_in(&target)
        .unwrap();
    let directory = work.path();
    std::fs::set_permissions(
        directory,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        directory.join("profiles.ini"),
        "[DEFAULT]\nuser = BROKER_USER\n\n[farm5]\nname = Farm of five, local agent\n\
         broker-agent-query-mode = LOCAL\n\
         host = x2go-node1 (127.0.0.11), x2go-node2 (127.0.0.12), x2go-node3 (127.0.0.13), x2go-node4 (127.0.0.14), x2go-node5 (127.0.0.15)\n",
    )
    .unwrap();
    std::fs::write(
        directory.join("x2gobroker.conf"),
        format!(
            "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\n\
             default-portscan-x2goservers = false\n\n[farm]\nheartbeat-ms = 1000\ncall-timeout-ms = 3000\n\
             agent-command = {PERL_AGENT}\n"
        ),
    )
    .unwrap();
    let cookies = directory.join("cookies");
    std::fs::create_dir(&cookies).unwrap();
    let status = Command::new("chown")
        .arg("x2gobroker:")
        .arg(&cookies)
        .status()
        .unwrap();
    assert!(status.success());

    // as shipped: the setuid agent cannot become root, its sudo refuses, no session status
    let broker = start_broker(&shipped, directory, "shipped");
    let listing = plain(broker.address.port(), "task=listsessions&user=x2goalice").await;
    assert!(listing.starts_with("Access granted\n"), "{listing}");
    assert!(
        !listing.contains("status="),
        "the shipped unit cannot run the setuid agent: {listing}"
    );
    drop(broker);

    // with the drop-in: listings from the real Perl agent, resume, take-over, placement
    let broker = start_broker(&with_drop_in, directory, "drop-in");
    let port = broker.address.port();
    let listing = plain(port, "task=listsessions&user=x2goalice").await;
    assert!(
        listing.contains("\nstatus=S\n") && listing.contains("\nhost=x2go-node2\n"),
        "{listing}\n{}",
        std::fs::read_to_string(directory.join("drop-in.stderr")).unwrap_or_default()
    );
    transport_scenario(
        port,
        "farm5",
        22,
        "LOCAL under the unit with local-agent.conf",
    )
    .await;
    drop(broker);
    rebuild_farm();
}
