//! One test binary for every system test (zero2prod's `tests/api/main.rs` layout).
