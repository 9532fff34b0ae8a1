//! `x2gobroker-authservice` as a library: the wire protocol, the unix-socket server, the socket
//! set-up and the PAM check, so that `main` stays a thin command line and tests can drive `serve`
//! with a stand-in checker.
//!
//! **Invariant:** no password ever reaches a log line, an error message or a `Debug` output.

#![forbid(unsafe_code)]

pub mod pam_check;
pub mod protocol;
pub mod server;
pub mod socket;
