//! One test binary for every system test (zero2prod's `tests/api/main.rs` layout).
//! A module per area; the larger ones (`auth`, `deploy`, `kubernetes`, `token_service`) keep what
//! their tests share in their own file and the tests, by concern, in a folder of the same name.
//! The helpers every area uses are the kit in `tests/kit` (`system_tests`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod auth;
mod browser;
mod budget;
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
mod layout;
mod lifecycle;
mod longevity;
mod permissions;
mod projects;
mod reconnect;
mod redis_security;
mod replicas;
mod secrets;
mod snyk_tls;
mod spinning;
mod telemetry;
mod tls;
mod token_service;
