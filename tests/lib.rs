//! System tests: the real services run together against a throwaway Redis and the fake Snyk.
//!
//! The tests themselves live in `system/`; this library will hold the helpers that start the
//! whole stack once the services exist.
