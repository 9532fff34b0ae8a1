//! X2Go broker agent library: drives the X2Go server tools for the gRPC daemon
//! (`x2gobroker-agentd`) and the legacy command line (`x2gobroker-agent`).
//!
//! The protocol itself — task grammar, argument rules, `SSH_ORIGINAL_COMMAND` reading, answer
//! formats, the load factor — is the `x2gobroker-agent-protocol` crate, shared with the broker.
//! Pure logic of the agent's own (session lines, /proc arithmetic, server usage) lives in
//! modules without I/O; [`tools`], [`authkeys`], [`privileges`] and [`load::read_load`] touch the
//! system.
//! [`pubkeyauth`] decides what `x2gobroker-pubkeyauthorizer` installs from a broker's `/pubkeys`.

pub mod auth;
pub mod authkeys;
pub mod cli;
pub mod convert;
pub mod daemon;
pub mod incoming;
pub mod legacy;
pub mod load;
pub mod privileges;
pub mod pubkeyauth;
pub mod servers;
pub mod service;
pub mod session;
pub mod tools;
pub mod users;
pub mod watch;
