//! `x2gobroker-agent <user> <task> [args…]`: drop-in for the setuid Perl agent
//! (/usr/lib/x2go/x2gobroker-agent); all logic is in [`x2gobroker_agent::legacy`], the setuid
//! start in [`x2gobroker_agent::privileges::secure_start`].

use std::io::Write;

use x2gobroker_agent::legacy::{run_legacy, LegacyRequest, EXIT_DIED};
use x2gobroker_agent::privileges::{secure_start, PrivilegeError};
use x2gobroker_agent::tools::X2GoTools;

fn main() {
    // Installed setuid root (mode 4750 root:x2gobroker): first of all the caller's groups are
    // dropped, the environment cleared, the caller checked and the real ids made root.
    let kept = match secure_start() {
        Ok(kept) => kept,
        Err(error @ PrivilegeError::CallerRefused { .. }) => {
            eprintln!("{error}");
            std::process::exit(EXIT_DIED);
        }
        Err(error) => {
            eprintln!("x2gobroker-agent: {error}");
            std::process::exit(EXIT_DIED);
        }
    };
    let request = LegacyRequest {
        args: std::env::args_os().skip(1).collect(),
        ssh_original_command: kept.ssh_original_command,
        sudo_user: kept.sudo_user,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("x2gobroker-agent: cannot start runtime: {error}");
            std::process::exit(EXIT_DIED);
        }
    };
    let output = runtime.block_on(run_legacy(&request, &X2GoTools::default()));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&output.stdout);
    let _ = stdout.flush();
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(&output.stderr);
    let _ = stderr.flush();
    std::process::exit(output.exit_code);
}
