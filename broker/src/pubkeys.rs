//! `/pubkeys` (§3.8): the broker's SSH public keys as forced-command `authorized_keys` lines for the agents.

/// The forced command servers run for the broker's key.
pub const AGENT_COMMAND: &str = "/usr/lib/x2go/x2gobroker-agent";

/// The broker's host name for key comments: `gethostname()`.
pub fn broker_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The `/pubkeys` body for the keys in `~<daemon_user>/.ssh/` (empty when there are none).
pub fn render(daemon_user: &str) -> String {
    let Ok(Some(user)) = nix::unistd::User::from_name(daemon_user) else {
        return String::new();
    };
    let directory = user.dir.join(".ssh");
    let hostname = broker_hostname();
    let mut body = String::new();
    for name in ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"] {
        if !directory.join(name).is_file() {
            continue;
        }
        let Ok(public) = std::fs::read_to_string(directory.join(format!("{name}.pub"))) else {
            continue;
        };
        let mut fields = public.split_whitespace();
        let (Some(key_type), Some(material)) = (fields.next(), fields.next()) else {
            continue;
        };
        body.push_str(&format!(
            "command=\"{AGENT_COMMAND}\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty {key_type} {material} {daemon_user}@{hostname}\n"
        ));
    }
    body
}
