//! Load generator for token-service (gRPC) and projects-service (HTTP), and the pieces of the
//! benchmark run in `scripts/bench` (docs/benchmarks.md). It only ever sends traffic to
//! 127.0.0.1, and every load run is bounded by a duration and a request count (which
//! `lean-get-token` leaves unbounded unless asked; `install --count` is bounded by its count and a
//! timeout per call).
//!
//! Reading order: [`args`] (what the command line may ask for) and [`client`] (token-service
//! connections with their key) → [`drive`] (the closed loop every load subcommand shares) and
//! [`latency`] (the histograms) → one module per subcommand: `echo-server` ([`echo`]), `install`
//! ([`install`], with [`consent`] reading the fake's consent page), `get-token` ([`get_token`]),
//! `lean-get-token` ([`lean`], the yardstick that `get-token` is held against), `storm`
//! ([`storm`]), `http` and `page` ([`http`]), `listings` ([`listings`]: concurrent listings
//! against the request budget) and `install-page` ([`page`]: the install page through
//! auth-service, and the peak memory behind it) → [`report`] (the Markdown report of a
//! `scripts/bench` run, and in [`report::budget`] the section of `scripts/bench-budget`).

pub mod args;
pub mod client;
pub mod consent;
pub mod drive;
pub mod echo;
pub mod get_token;
pub mod http;
pub mod install;
pub mod latency;
pub mod lean;
pub mod listings;
pub mod page;
pub mod report;
pub mod storm;
