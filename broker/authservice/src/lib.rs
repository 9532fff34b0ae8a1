//! `x2gobroker-authservice` as a library: the wire protocol, the unix-socket server, the socket
//! set-up, who may ask (peer credentials), which users may be checked, the failed-login
//! throttle and the PAM check, so that `main` stays a thin command line and tests can drive
//! `serve` with stand-ins.
//!
//! **Invariants:** no password ever reaches a log line, an error message or a `Debug` output,
//! and every copy of it this process makes is zeroed when dropped (PAM's own copies and the
//! `pam` crate's transient C string are PAM's); PAM is never asked about root.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod cli;
pub mod pam_check;
pub mod peer;
pub mod protocol;
pub mod server;
pub mod socket;
pub mod throttle;
