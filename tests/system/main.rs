//! One test binary for every system test (zero2prod's `tests/api/main.rs` layout).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod auth;
mod browser;
mod cache;
mod chaos;
mod check_config;
mod cli;
mod cluster;
mod dashboard;
mod deploy;
mod events;
mod fuzz;
mod hardening;
mod install_scope;
mod kubernetes;
mod lifecycle;
mod longevity;
mod permissions;
mod projects;
mod reconnect;
mod redis_security;
mod replicas;
mod secrets;
mod snyk_tls;
mod telemetry;
mod tls;
mod token_service;
