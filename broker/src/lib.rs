//! The X2Go session broker: config, profiles, ACLs, authentication, selection and the HTTP/SSH frontends.

pub mod acl;
pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod ctl;
pub mod daemonize;
pub mod farm;
pub mod frontend;
pub mod hosts;
pub mod http;
pub mod keygen;
pub mod logging;
pub mod nss;
pub mod profiles;
pub mod pubkeys;
pub mod reply;
pub mod select;
pub mod service;
pub mod sshmode;
pub mod store;
pub mod testagent;
