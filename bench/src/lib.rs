//! x2gobroker-bench: load generator, fake agents and the benchmark runs of x2gobroker-rs against the reference broker.
//!
//! `compare` drives the reference broker, ours and a bare "hello" server with the same requests;
//! `farm` keeps synthetic farms of fake agents live in our broker; `floods` measures normal
//! requests while hostile clients flood ours; `soak` runs minutes of mixed load on a flapping
//! farm; `sshmode` times the reference and ours in SSH agent mode against one sshd and
//! the real Perl agent; `report` renders the tables
//! that go into bench/README.md. See bench/README.md for the command and the figures.

#![forbid(unsafe_code)]

pub mod compare;
pub mod config;
pub mod fake_agent;
pub mod farm;
pub mod floods;
pub mod load;
pub mod procstat;
pub mod report;
pub mod servers;
pub mod soak;
pub mod sshmode;
pub mod standalone;
