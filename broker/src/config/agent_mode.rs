//! A profile's agent mode, decided in one place: what profile, backend and `[global]` configure (§5.2, §5.3) and what the running farm can reach.

use super::farm::FarmConfig;
use crate::farm::model::AgentMode;

/// An `agent-query-mode` as configured, compared upper-cased (§5.2); any other name is `None`,
/// as in the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentQueryMode {
    None,
    Local,
    Ssh,
    Grpc,
}

impl AgentQueryMode {
    /// The mode a configured name stands for.
    pub fn from_name(name: &str) -> AgentQueryMode {
        match name.to_uppercase().as_str() {
            "LOCAL" => AgentQueryMode::Local,
            "SSH" => AgentQueryMode::Ssh,
            "GRPC" => AgentQueryMode::Grpc,
            _ => AgentQueryMode::None,
        }
    }
}

/// The configured mode: the profile's `broker-agent-query-mode` if non-empty, else the
/// backend's `agent-query-mode` if non-empty, else `[global] default-agent-query-mode` if the
/// file sets it at all (even empty: then `None`). `None` as answer: set nowhere, so the
/// running farm's default applies.
pub fn configured_agent_query_mode(
    profile: Option<&str>,
    backend: Option<&str>,
    global: Option<&str>,
) -> Option<AgentQueryMode> {
    profile
        .filter(|mode| !mode.is_empty())
        .or(backend.filter(|mode| !mode.is_empty()))
        .or(global)
        .map(AgentQueryMode::from_name)
}

/// How the live farm drives a profile, `None` when it does not (the profile is then answered
/// as NONE: agent-less selection). `farm` is the running farm's configuration (with or
/// without a `[farm]` section). GRPC is the default when `[farm] agent-port` is set and no
/// mode is set anywhere (else SSH, when `[farm] ssh-key-file` names a key; set nowhere is
/// NONE in the reference); GRPC needs `agent-port`, SSH
/// a broker key (`[farm] ssh-key-file`, else the one found in the broker's `~/.ssh`, §5.3:
/// without one SSH behaves as NONE, as in the reference), LOCAL nothing; NONE and shadow
/// profiles never.
pub fn effective_agent_mode(
    configured: Option<AgentQueryMode>,
    shadow: bool,
    farm: Option<&FarmConfig>,
) -> Option<AgentMode> {
    let farm = farm?;
    if shadow {
        return None;
    }
    let grpc = farm.agent_port.map(|_| AgentMode::Grpc);
    let ssh = farm.ssh.as_ref().map(|_| AgentMode::Ssh);
    let ssh_by_default = ssh.filter(|_| farm.ssh_key_configured);
    match configured {
        None => grpc.or(ssh_by_default),
        Some(AgentQueryMode::Grpc) => grpc,
        Some(AgentQueryMode::Ssh) => ssh,
        Some(AgentQueryMode::Local) => Some(AgentMode::Local),
        Some(AgentQueryMode::None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::farm::FarmSettings;
    use crate::config::IniDocument;

    #[test]
    fn configured_mode_is_profile_then_backend_then_global() {
        use AgentQueryMode as Q;
        /// profile, backend, global, configured
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Option<Q>,
        );
        let cases: [Case; 10] = [
            (None, None, None, None),
            (Some(""), Some(""), None, None),
            (None, None, Some(""), Some(Q::None)),
            (None, None, Some("NONE"), Some(Q::None)),
            (None, None, Some("ssh"), Some(Q::Ssh)),
            (None, Some("Local"), Some("ssh"), Some(Q::Local)),
            (Some("grpc"), Some("LOCAL"), Some("SSH"), Some(Q::Grpc)),
            (Some(""), Some("LOCAL"), None, Some(Q::Local)),
            (Some("SHH"), Some("LOCAL"), None, Some(Q::None)),
            (None, Some("bogus"), Some("SSH"), Some(Q::None)),
        ];
        for (profile, backend, global, expected) in cases {
            assert_eq!(
                configured_agent_query_mode(profile, backend, global),
                expected,
                "{profile:?} {backend:?} {global:?}"
            );
        }
    }

    fn farm_with(section: &str, key_found: Option<&str>) -> Option<FarmConfig> {
        let document = IniDocument::parse(section).unwrap();
        let global = crate::config::GlobalSettings::resolve(&document);
        let defaults = crate::config::farm::FarmDefaults {
            agent_user: "x2gobroker".to_string(),
            agent_command: crate::config::keys::DEFAULT_AGENT_COMMAND.to_string(),
            ssh_key_file: key_found.map(std::path::PathBuf::from),
            config_file: "/etc/x2go/x2gobroker.conf".into(),
        };
        Some(FarmSettings::resolve(&document, &global).farm_config(&defaults))
    }

    fn farm(section: &str) -> Option<FarmConfig> {
        farm_with(section, None)
    }

    /// Row by row: the reference's modes need no `[farm]` (SSH with the key found in the
    /// broker's `~/.ssh`), GRPC needs `agent-port`.
    #[test]
    fn effective_mode_follows_the_running_farm() {
        use AgentMode::{Grpc, Local, Ssh};
        use AgentQueryMode as Q;
        let no_section = farm("");
        let no_section_key_found = farm_with("", Some("/var/lib/x2gobroker/.ssh/id_rsa"));
        let bare = farm("[farm]\n");
        let grpc = farm("[farm]\nagent-port = 50051\n");
        let ssh = farm("[farm]\nssh-key-file = /k\n");
        let both = farm("[farm]\nagent-port = 50051\nssh-key-file = /k\n");
        let farms = [
            &no_section,
            &no_section_key_found,
            &bare,
            &grpc,
            &ssh,
            &both,
        ];
        // configured, shadow, then the answer for: no [farm], no [farm] but a key in
        // ~/.ssh, bare [farm], agent-port, ssh-key-file, both
        let rows: [(Option<Q>, bool, [Option<AgentMode>; 6]); 11] = [
            (
                None,
                false,
                [None, None, None, Some(Grpc), Some(Ssh), Some(Grpc)],
            ),
            (Some(Q::None), false, [None; 6]),
            (
                Some(Q::Grpc),
                false,
                [None, None, None, Some(Grpc), None, Some(Grpc)],
            ),
            (
                Some(Q::Ssh),
                false,
                [None, Some(Ssh), None, None, Some(Ssh), Some(Ssh)],
            ),
            (Some(Q::Local), false, [Some(Local); 6]),
            (None, true, [None; 6]),
            (Some(Q::Grpc), true, [None; 6]),
            (Some(Q::Ssh), true, [None; 6]),
            (Some(Q::Local), true, [None; 6]),
            (Some(Q::None), true, [None; 6]),
            (
                configured_agent_query_mode(None, None, Some("")),
                false,
                [None; 6],
            ),
        ];
        for (configured, shadow, expected) in rows {
            for (farm, wanted) in farms.iter().zip(expected) {
                assert_eq!(
                    effective_agent_mode(configured, shadow, farm.as_ref()),
                    wanted,
                    "{configured:?} shadow={shadow} farm={farm:?}"
                );
            }
        }
        // no farm at all (a broker without the actor system) drives nothing
        assert_eq!(effective_agent_mode(Some(Q::Local), false, None), None);
    }
}
