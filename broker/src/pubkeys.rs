//! `/pubkeys` (§3.8): the broker's SSH public keys as forced-command `authorized_keys` lines for the agents.
//!
//! One line per key pair in `~<daemon user>/.ssh/` (`id_rsa`, `id_dsa`, `id_ecdsa`,
//! `id_ed25519`, in that order; a `.pub` counts only beside its private key):
//! `command="/usr/lib/x2go/x2gobroker-agent",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty <type> <base64> <user>@<host>`.
//! The reference's `x2gobroker-pubkeyauthorizer` (still on servers not yet migrated) aborts
//! at the first line that is not `ssh-rsa`/`ssh-dss`, so only those two types are served
//! unless `[global] pubkeys-all-types` is true. A `.pub` whose data does not decode to its
//! own key type is skipped: nothing but a well-formed key ever reaches the servers.

use base64::Engine;

/// The forced command servers run for the broker's key.
pub const AGENT_COMMAND: &str = "/usr/lib/x2go/x2gobroker-agent";

/// The options of every served line, after `command="…"`.
pub const KEY_OPTIONS: &str = "no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty";

/// The key files looked at, in the order served.
pub const KEY_FILE_NAMES: [&str; 4] = ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"];

/// The key types the reference's pubkeyauthorizer accepts.
pub const REFERENCE_KEY_TYPES: [&str; 2] = ["ssh-rsa", "ssh-dss"];

/// The broker's host name for key comments: `gethostname()`.
pub fn broker_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The type and base64 data of a `.pub` file's text, when the data decodes to a key of that
/// type (its first SSH string is the type name).
pub fn public_key_fields(public: &str) -> Option<(&str, &str)> {
    let mut fields = public.lines().next()?.split_whitespace();
    let (key_type, material) = (fields.next()?, fields.next()?);
    let blob = base64::engine::general_purpose::STANDARD
        .decode(material)
        .ok()?;
    let length = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let embedded = blob.get(4..4 + length)?;
    (embedded == key_type.as_bytes()).then_some((key_type, material))
}

/// The forced-command line of one key.
pub fn forced_command_line(
    key_type: &str,
    material: &str,
    daemon_user: &str,
    hostname: &str,
) -> String {
    format!(
        "command=\"{AGENT_COMMAND}\",{KEY_OPTIONS} {key_type} {material} {daemon_user}@{hostname}\n"
    )
}

/// The `/pubkeys` body for the `.pub` texts found (file name, text), in [`KEY_FILE_NAMES`]
/// order: only `ssh-rsa`/`ssh-dss` keys unless `all_types`.
pub fn render_keys(
    public_files: &[(&str, String)],
    daemon_user: &str,
    hostname: &str,
    all_types: bool,
) -> String {
    let mut body = String::new();
    for (_, public) in public_files {
        let Some((key_type, material)) = public_key_fields(public) else {
            continue;
        };
        if !all_types && !REFERENCE_KEY_TYPES.contains(&key_type) {
            continue;
        }
        body.push_str(&forced_command_line(
            key_type,
            material,
            daemon_user,
            hostname,
        ));
    }
    body
}

/// The `/pubkeys` body for the keys in `~<daemon_user>/.ssh/` (empty when there are none).
pub fn render(daemon_user: &str, all_types: bool) -> String {
    let Ok(Some(user)) = nix::unistd::User::from_name(daemon_user) else {
        return String::new();
    };
    let directory = user.dir.join(".ssh");
    let public_files: Vec<(&str, String)> = KEY_FILE_NAMES
        .iter()
        .filter(|name| directory.join(name).is_file())
        .filter_map(|name| {
            let text = std::fs::read_to_string(directory.join(format!("{name}.pub"))).ok()?;
            Some((*name, text))
        })
        .collect();
    render_keys(&public_files, daemon_user, &broker_hostname(), all_types)
}

#[cfg(test)]
mod tests {
    use super::*;

    // real keys made with ssh-keygen (data only; the private halves were thrown away)
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDOEeJ+ktulJGd8Won88whNNiKAKCa6RV0u4RnFJ+JVHRvS/Fp1MAxMDNyHgodHNrQTFx23viId+RxqBrkHyy3b42dZ7v9irFAK/7QeJ4cxt7xCNY/zeakYy6FkfUp4Y30W01V8zzkcB2yVqGjJ0oyXAN/JR7dIUGFBm3fd9kA2QQ== root@host\n";
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzUEtaoiDVizV1YsI/aoxgM2NRX0AD3IN0KBAHgNHyi root@host\n";

    #[test]
    fn reference_types_only_by_default() {
        let files = vec![
            ("id_rsa", RSA.to_string()),
            ("id_ed25519", ED25519.to_string()),
        ];
        let default_body = render_keys(&files, "x2gobroker", "broker.example", false);
        assert_eq!(
            default_body,
            format!(
                "command=\"/usr/lib/x2go/x2gobroker-agent\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty {} x2gobroker@broker.example\n",
                RSA.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
            )
        );
        let all = render_keys(&files, "x2gobroker", "broker.example", true);
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains(" ssh-rsa AAAAB3NzaC1yc2EA"), "{all}");
        assert!(
            lines[1].contains(" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"),
            "{all}"
        );
    }

    #[test]
    fn malformed_public_files_are_skipped() {
        let table: [(&str, bool); 7] = [
            (RSA, true),
            (ED25519, true),
            // the type does not match the data
            ("ssh-dss AAAAB3NzaC1yc2EAAAADAQABAAAAgQDOEeJ+ x@y\n", false),
            // not base64
            ("ssh-rsa AAAA\"B3 x@y\n", false),
            // a second line cannot smuggle options
            (
                "ssh-rsa\ncommand=\"/bin/sh\" ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDE\n",
                false,
            ),
            ("", false),
            ("ssh-rsa", false),
        ];
        for (text, expected) in table {
            assert_eq!(public_key_fields(text).is_some(), expected, "{text:?}");
        }
    }
}
