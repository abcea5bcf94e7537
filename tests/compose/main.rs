//! The stack as users run it: the image of ./Dockerfile and the containers of
//! docker-compose.yml, started with `docker-compose` and driven from the host through the
//! published ports. Needs a Docker engine and the images of `scripts/images` and the service
//! image (`scripts/compose-test` makes them, then runs these tests); ignored by `scripts/test`.
//!
//! The tests share the host's published ports (8080, 8090), so they run one at a time
//! (`.config/nextest.toml`, test group `compose`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod demo;
mod faults;
mod harness;
mod real;
