//! projects-service: lists an org's Snyk projects through the Snyk REST API on an install's behalf.
//!
//! Not built yet (issue #5): only the typed configuration exists, so the binary validates its
//! settings and then refuses to start rather than pretending to serve.

pub mod config;
