//! The benchmark's broker configurations: one 50-profile setup for both brokers, and the farm configs.
//!
//! Both brokers read the same files, with exactly two differences that the reference cannot
//! express otherwise: ours gets a `[farm]` section (the agent port of the fake agents), and
//! the live-agent profile asks for agent mode `GRPC` in ours where the reference uses `LOCAL`
//! (its local Perl agent, the reference's only agent mode without SSH).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The five hosts of the five-host profiles (names only: agent-less selection picks one).
pub const FIVE_NODES: &str = "x2go-node1,x2go-node2,x2go-node3,x2go-node4,x2go-node5";

/// Which broker a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Reference,
    Ours { agent_port: u16 },
}

const GLOBAL: &str = "[global]
require-password = false
require-cookie = false
default-auth-mech = none
default-agent-query-mode = NONE
default-portscan-x2goservers = false
default-use-load-checker = false
enable-plain-output = true
enable-json-output = true
enable-uccs-output = false
";

const PROFILE_DEFAULTS: &str = "[DEFAULT]
command=TERMINAL
defsndport=true
useiconv=false
iconvfrom=UTF-8
height=600
export=
quality=9
fullscreen=false
layout=
useexports=true
width=800
speed=2
soundsystem=pulse
print=true
type=auto
sndport=4713
xinerama=true
variant=
usekbd=true
fstunnel=true
applications=TERMINAL,WWWBROWSER,MAILCLIENT,OFFICE
multidisp=false
sshproxyport=22
sound=true
rootless=true
iconvto=UTF-8
soundtunnel=true
dpi=96
sshport=22
setdpi=0
pack=16m-jpeg
directrdp=false
user=BROKER_USER
";

/// `x2gobroker.conf` of the comparison.
pub fn comparison_broker_conf(flavour: Flavour, profiles: &Path) -> String {
    let mut text = GLOBAL.to_string();
    let _ = write!(
        text,
        "\n[broker_inifile]\nenable = true\nsession-profiles = {}\nauth-mech = none\n\
         agent-query-mode = NONE\nuse-load-checker = false\n",
        profiles.display()
    );
    if let Flavour::Ours { agent_port } = flavour {
        let _ = write!(
            text,
            "\n[farm]\nagent-port = {agent_port}\nheartbeat-ms = 2000\ncall-timeout-ms = 2000\n"
        );
        text.push_str(&admin_section(profiles));
    }
    text
}

/// `[admin]` of our broker in a run: its admin listener on a port of its own, its drain
/// state and audit log (a file, as in production: its cost is part of the figures) beside
/// the profiles file.
fn admin_section(profiles: &Path) -> String {
    let directory = profiles.parent().unwrap_or(Path::new("/tmp"));
    format!(
        "\n[admin]\nbind = 127.0.0.1:0\nstate-directory = {}\naudit-log = {}\n",
        directory.display(),
        directory.join("audit.log").display()
    )
}

/// The live-agent profile's hosts (the fake agents of our broker listen there).
pub fn live_hosts() -> String {
    (1..=5)
        .map(|node| format!("x2go-node{node} (127.0.0.{})", 10 + node))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The 50 session profiles of the comparison: `alice-farm` and `bob-farm` (five hosts, no
/// agent), `carol-live` (five hosts, live agents), `user04-desk` … `user50-desk` (one host
/// each). Every profile is visible to exactly one user (`zed` sees the desks too).
pub fn comparison_profiles(flavour: Flavour) -> String {
    let mut text = PROFILE_DEFAULTS.to_string();
    for user in ["alice", "bob"] {
        let _ = write!(
            text,
            "\n[{user}-farm]\nname=XFCE farm ({user})\nhost={FIVE_NODES}\ncommand=XFCE\n\
             acl-users-allow={user}\nacl-users-deny=ALL\nacl-users-order=allow-deny\n"
        );
    }
    let mode = match flavour {
        Flavour::Reference => "LOCAL",
        Flavour::Ours { .. } => "GRPC",
    };
    let _ = write!(
        text,
        "\n[carol-live]\nname=XFCE farm with live agents (carol)\nhost={}\ncommand=XFCE\n\
         broker-agent-query-mode={mode}\nacl-users-allow=carol\nacl-users-deny=ALL\n\
         acl-users-order=allow-deny\n",
        live_hosts()
    );
    for number in 4..=50 {
        let _ = write!(
            text,
            "\n[user{number:02}-desk]\nname=Desktop user{number:02}\nhost=x2go-node{}\n\
             command=MATE\nacl-users-allow=user{number:02},zed\nacl-users-deny=ALL\n\
             acl-users-order=allow-deny\n",
            number % 5 + 1
        );
    }
    text
}

/// `x2gobroker.conf` of a farm run: agent mode GRPC by default (no mode set anywhere).
pub fn farm_broker_conf(profiles: &Path, agent_port: u16, heartbeat_ms: u64) -> String {
    format!(
        "[global]\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\n\
         default-portscan-x2goservers = false\nenable-plain-output = true\n\n\
         [broker_inifile]\nenable = true\nsession-profiles = {}\n\n\
         [farm]\nagent-port = {agent_port}\nheartbeat-ms = {heartbeat_ms}\ncall-timeout-ms = 2000\n{}",
        profiles.display(),
        admin_section(profiles)
    )
}

/// One profile `farm` over every simulated server, visible to everybody.
pub fn farm_profiles(profile_hosts: &[String]) -> String {
    format!(
        "[DEFAULT]\nuser=BROKER_USER\ncommand=XFCE\n\n[farm]\nname=Synthetic farm\nhost={}\n",
        profile_hosts.join(", ")
    )
}

/// A directory holding one broker's `x2gobroker.conf` and session profiles.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    pub directory: PathBuf,
    pub broker_conf: PathBuf,
    pub profiles: PathBuf,
}

impl ConfigDir {
    /// Writes the files (world-readable: the reference drops its privileges).
    pub fn write(
        directory: &Path,
        broker_conf: impl FnOnce(&Path) -> String,
        profiles: &str,
    ) -> anyhow::Result<ConfigDir> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(directory)?;
        std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o755))?;
        let profiles_path = directory.join("sessionprofiles.conf");
        let conf_path = directory.join("x2gobroker.conf");
        std::fs::write(&profiles_path, profiles)?;
        std::fs::write(&conf_path, broker_conf(&profiles_path))?;
        for path in [&profiles_path, &conf_path] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
        }
        Ok(ConfigDir {
            directory: directory.to_path_buf(),
            broker_conf: conf_path,
            profiles: profiles_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comparison_has_fifty_profiles_that_differ_only_in_the_live_mode() {
        let reference = comparison_profiles(Flavour::Reference);
        let ours = comparison_profiles(Flavour::Ours { agent_port: 1 });
        let sections = |text: &str| {
            text.lines()
                .filter(|line| line.starts_with('[') && *line != "[DEFAULT]")
                .count()
        };
        assert_eq!(sections(&reference), 50);
        let differing: Vec<(&str, &str)> = reference
            .lines()
            .zip(ours.lines())
            .filter(|(left, right)| left != right)
            .collect();
        assert_eq!(
            differing,
            vec![(
                "broker-agent-query-mode=LOCAL",
                "broker-agent-query-mode=GRPC"
            )]
        );
    }

    #[test]
    fn only_ours_gets_a_farm_section() {
        let path = Path::new("/p");
        assert!(!comparison_broker_conf(Flavour::Reference, path).contains("[farm]"));
        assert!(
            comparison_broker_conf(Flavour::Ours { agent_port: 7 }, path)
                .contains("[farm]\nagent-port = 7\n")
        );
    }
}
