//! The command lines of the agent's programs (clap), in the library so that the man page
//! generator renders them: `x2gobroker-agentd`, `x2gobroker-pubkeyauthorizer`, and a description
//! of the legacy `x2gobroker-agent` (which takes the Perl agent's positional arguments and parses
//! them itself, in `legacy`).

pub mod agentd;
pub mod pubkeyauthorizer;

/// The legacy agent's command line as clap describes it, for its man page only: the program
/// itself reads its arguments (and `SSH_ORIGINAL_COMMAND`) in [`crate::legacy`], never through
/// clap, so that a setuid start parses nothing before the caller is checked.
pub fn legacy_agent_command() -> clap::Command {
    clap::Command::new("x2gobroker-agent")
        .version(env!("CARGO_PKG_VERSION"))
        .about("X2Go Session Broker agent (the legacy command line, setuid root)")
        .long_about(
            "Answers one task of the X2Go session broker on an X2Go server, as the reference's Perl \
             agent /usr/lib/x2go/x2gobroker-agent did: the first line of output is OK, then the \
             task's data lines. Installed setuid root, mode 4750 root:x2gobroker: only root and \
             members of group x2gobroker may run it. Over SSH the broker's forced command runs it \
             and the task comes from SSH_ORIGINAL_COMMAND. Tasks: listsessions, \
             findbusyservers, findbusyservers_by_sessionstats, checkload, getservers, \
             suspendsession, terminatesession, addauthkey, delauthkey, availabletasks, ping.",
        )
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(clap::Arg::new("user").value_name("USER").required(true).help("The user the task is for (uid 1000 or above)"))
        .arg(clap::Arg::new("task").value_name("TASK").required(true).help("The task to run"))
        .arg(
            clap::Arg::new("args")
                .value_name("ARGS")
                .num_args(0..)
                .help("The task's arguments: a session id (suspendsession, terminatesession), a public key line and key file (addauthkey, delauthkey)"),
        )
}
