//! End-to-end tests of the agent package against the real X2Go server tools: the gRPC
//! daemon and the legacy command line, started from `target/` as root.
//!
//! One test binary; every test takes [`common::serial`] first because they share the real
//! session DB (rebuilt by `tests/fixtures/x2go-farm.sh`), user homes and ports.

mod common;
mod grpc;
mod grpcurl;
mod hostile;
mod legacy;
mod limits;
mod reload;
mod setuid;
mod tls;
mod watch;
