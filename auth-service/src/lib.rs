//! auth-service: the browser side of the Snyk App install (landing page, `/auth`, `/callback`).
//!
//! Not built yet (issue #4): only the typed configuration exists, so the binary validates its
//! settings and then refuses to start rather than pretending to serve.

pub mod config;
