//! Load generator for token-service (gRPC) and projects-service (HTTP), and the pieces of the
//! benchmark run in `scripts/bench` (issue #7). It only ever sends traffic to 127.0.0.1, and every
//! load run is bounded by both a request count and a duration.
//!
//! The binary's subcommands map onto modules: `echo-server` ([`echo`]), `install` ([`install`],
//! [`consent`]), `get-token` ([`get_token`]), `storm` ([`storm`]), `http` and `page` ([`http`]),
//! `report` ([`report`]). [`drive`] is the closed loop they share, [`latency`] the histograms.

pub mod args;
pub mod client;
pub mod consent;
pub mod drive;
pub mod echo;
pub mod get_token;
pub mod http;
pub mod install;
pub mod latency;
pub mod report;
pub mod storm;
