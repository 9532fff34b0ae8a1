//! The legacy X2Go broker agent protocol (spec §9), one rule set for the broker and the agent.
//!
//! `x2gobroker-agent <user> <task> [args…]` is what the broker runs over SSH (as
//! `sh -c '<agent> <user> <task>[ "<arg>"…]'`) or locally (an argv), and what the agent parses,
//! from its argv or from `SSH_ORIGINAL_COMMAND`. This crate owns every fact of that exchange:
//! - [`arguments`]: which user names, session ids, public-key lines, key-file paths and agent
//!   paths are accepted — one function each, called by the broker before it builds a command
//!   and by the agent (legacy command line and gRPC service) before it acts;
//! - [`task`]: the task words and their arguments ([`Task`]), and the `availabletasks` list;
//! - [`command`]: the SSH exec string and the LOCAL argv, built only from validated values;
//! - [`forced_command`]: the agent's shell-free reading of `SSH_ORIGINAL_COMMAND`;
//! - [`answer`]: the `OK` framing, the `listsessions`, `findbusyservers` and `getservers` lines;
//! - [`load`]: the `checkload` figures and the load factor of §9.3.
//!
//! Pure: no I/O, no async, no clock; depends on `thiserror` only.

#![forbid(unsafe_code)]

pub mod answer;
pub mod arguments;
pub mod command;
pub mod forced_command;
pub mod load;
pub mod task;

pub use answer::{
    busy_percentages, line_with_status, parse_busy_servers, parse_server_count_line,
    parse_server_counts, render_busy_servers, Answer, BusyServer, ListedSession, SessionStatus,
};
pub use arguments::{
    check_agent_command, check_key_file, check_key_line, check_resolved_key_file, check_session_id,
    check_user_name, ArgumentError, KEY_TYPES,
};
pub use command::{local_argv, ssh_command};
pub use forced_command::{names_agent, parse_forced_command, ForcedCommandError};
pub use load::{
    load_factor, parse_checkload, render_checkload, LoadError, LoadFigures, LoadReading,
};
pub use task::{available_tasks, is_perl_true, MissingArgument, Task, TaskName};

/// The reference's agent path (`agent-command`'s default in the broker).
pub const DEFAULT_AGENT_COMMAND: &str = "/usr/lib/x2go/x2gobroker-agent";

/// The user name the reference passes for tasks that check no user (`ping`, `checkload`).
pub const ANY_USER: &str = "foo";
