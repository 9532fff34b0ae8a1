//! `x2gobroker-agent <user> <task> [args…]`: drop-in for the setuid Perl agent
//! (/usr/lib/x2go/x2gobroker-agent); all logic is in [`x2gobroker_agent::legacy`].

use std::io::Write;

use x2gobroker_agent::legacy::{run_legacy, LegacyRequest};
use x2gobroker_agent::tools::X2GoTools;

fn main() {
    // Installed setuid root (mode 4750 root:x2gobroker): like the reference's `$< = $>`,
    // make the real uid root too so that `runuser` accepts us.
    let euid = nix::unistd::geteuid();
    if euid.is_root() && !nix::unistd::getuid().is_root() {
        if let Err(error) = nix::unistd::setuid(euid) {
            eprintln!("x2gobroker-agent: cannot set real uid: {error}");
            std::process::exit(255);
        }
    }
    let request = LegacyRequest {
        args: std::env::args_os().skip(1).collect(),
        ssh_original_command: std::env::var_os("SSH_ORIGINAL_COMMAND"),
        sudo_user: std::env::var_os("SUDO_USER"),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("x2gobroker-agent: cannot start runtime: {error}");
            std::process::exit(255);
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
