//! X2Go broker agent library: drives the X2Go server tools for the gRPC daemon
//! (`x2gobroker-agentd`) and the legacy command line (`x2gobroker-agent`).
//!
//! Pure logic (parsers, load arithmetic, validation, busy percentages) lives in modules
//! without I/O; [`tools`], [`authkeys`] and [`load::read_load`] touch the system.
//! [`pubkeyauth`] decides what `x2gobroker-pubkeyauthorizer` installs from a broker's `/pubkeys`.

pub mod auth;
pub mod authkeys;
pub mod convert;
pub mod daemon;
pub mod legacy;
pub mod load;
pub mod pubkeyauth;
pub mod servers;
pub mod service;
pub mod session;
pub mod ssh_command;
pub mod tools;
pub mod users;
pub mod validate;
pub mod watch;
