//! Integration tests of the fake Snyk: each test starts its own fake in-process on port 0 and
//! talks to it over HTTP with reqwest.

#![allow(clippy::unwrap_used)]

mod authorize;
mod binary;
mod client_secrets;
mod control;
mod faults;
mod helpers;
mod lifecycle;
mod openapi;
mod orgs;
mod pagination;
mod rate_limit;
mod refresh;
mod refresh_ttl;
mod rest;
mod revoke;
mod token;
