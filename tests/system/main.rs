//! One test binary for every system test (zero2prod's `tests/api/main.rs` layout).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod projects;
mod token_service;
