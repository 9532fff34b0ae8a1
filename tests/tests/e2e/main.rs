//! The end-to-end test binary: the real broker, agent and auth-service binaries against real clients and tools.

mod admin;
mod auth;
mod authorisation;
mod check_config;
mod cluster;
mod daemon;
mod daemonize;
mod dropin;
mod farm;
mod farm_lifecycle;
mod faults;
mod floods;
mod hostile;
mod proxies;
mod python_x2go;
mod replay_http;
mod replay_ssh;
mod setuid_broker;
mod tools;
mod units;
mod x2goclient;
