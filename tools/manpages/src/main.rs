//! `x2gobroker-manpages DIR`: writes `DIR/<program>.<section>` for every program the Debian
//! packages install, rendered by clap_mangen from the program's own clap definition (the
//! sections are the reference's: 1 for user commands, 8 for daemons and root tools).

use clap::CommandFactory;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Every installed program: its name, man section and clap command.
fn programs() -> Vec<(&'static str, &'static str, clap::Command)> {
    use x2gobroker::cli as broker_cli;
    use x2gobroker_agent::cli as agent_cli;
    vec![
        ("x2gobroker", "1", broker_cli::Cli::command()),
        (
            "x2gobroker-daemon",
            "1",
            broker_cli::Cli::command().name("x2gobroker-daemon"),
        ),
        (
            "x2gobroker-ssh",
            "1",
            broker_cli::Cli::command().name("x2gobroker-ssh"),
        ),
        (
            "x2gobroker-testauth",
            "1",
            broker_cli::testauth::Cli::command(),
        ),
        ("x2gobroker-ctl", "8", x2gobroker::ctl::Cli::command()),
        ("x2gobroker-keygen", "8", broker_cli::keygen::Cli::command()),
        (
            "x2gobroker-testagent",
            "8",
            broker_cli::testagent::Cli::command(),
        ),
        (
            "x2gobroker-authservice",
            "8",
            x2gobroker_authservice::cli::Cli::command(),
        ),
        (
            "x2gobroker-agentd",
            "8",
            agent_cli::agentd::Args::command().name("x2gobroker-agentd"),
        ),
        ("x2gobroker-agent", "8", agent_cli::legacy_agent_command()),
        (
            "x2gobroker-pubkeyauthorizer",
            "8",
            agent_cli::pubkeyauthorizer::Cli::command(),
        ),
    ]
}

fn write_page(
    directory: &Path,
    name: &str,
    section: &str,
    command: clap::Command,
) -> std::io::Result<PathBuf> {
    let page = clap_mangen::Man::new(command)
        .title(name.to_uppercase())
        .section(section)
        .source(format!("x2gobroker-rs {}", env!("CARGO_PKG_VERSION")))
        .manual("X2Go Session Broker");
    let mut text = Vec::new();
    page.render(&mut text)?;
    let path = directory.join(format!("{name}.{section}"));
    std::fs::write(&path, text)?;
    Ok(path)
}

fn main() -> ExitCode {
    let Some(directory) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: x2gobroker-manpages DIR");
        return ExitCode::from(64);
    };
    if let Err(error) = std::fs::create_dir_all(&directory) {
        eprintln!("x2gobroker-manpages: {}: {error}", directory.display());
        return ExitCode::FAILURE;
    }
    for (name, section, command) in programs() {
        match write_page(&directory, name, section, command) {
            Ok(path) => println!("{}", path.display()),
            Err(error) => {
                eprintln!("x2gobroker-manpages: {name}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_renders_a_page_named_after_it() {
        let directory =
            std::env::temp_dir().join(format!("x2gobroker-manpages-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        for (name, section, command) in programs() {
            command.clone().debug_assert();
            let path = write_page(&directory, name, section, command).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.contains(&format!(".TH {} {section}", name.to_uppercase())),
                "{name}: {text}"
            );
            // roff escapes the hyphens of the NAME line
            let name_line = format!(".SH NAME\n{} \\- ", name.replace('-', "\\-"));
            assert!(text.contains(&name_line), "{name}: {text}");
        }
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
