//! `loadgen report`: turns the files a `scripts/bench` run leaves in its results directory into the
//! Markdown tables of `docs/benchmarks.md`, checks the storm's invariants, and compares the run
//! with the goals ([`goals`]). Every number in the tables comes from those files.
//!
//! | file | written by |
//! |---|---|
//! | `token-s1.json`, `token-s8.json`, `token-s64.json` (any `token-sN.json`) | `loadgen get-token` with N streams against one token-service replica |
//! | `bare-s1.json`, … (any `bare-sN.json`) | the same against the bare server (`loadgen echo-server --nodelay`) |
//! | `get-token-3.json` | `loadgen get-token` over three replicas |
//! | `token-warn-s1.json`, … (any `token-warn-sN.json`) | the same against a replica with `RUST_LOG=warn` |
//! | `token-crowded-s8.json`, `bare-crowded-s8.json` | 8 streams against a replica and a bare server whose workers outnumber their cores |
//! | `crowded.tsv` | the script: `workers` (the runtimes' worker threads) and `cores` (the cores they were confined to) |
//! | `lean-bare.json` | `loadgen lean-get-token` against the bare server |
//! | `redis-benchmark.txt` | `redis-benchmark -t get -n 100000 -q` |
//! | `storm.json` | `loadgen storm` |
//! | `storm-stats-before.json`, `storm-stats-after.json` | `loadgen fake-stats` around the storm |
//! | `projects-service.json` | `loadgen http` on projects-service's listing |
//! | `fake-direct.json` | `loadgen page` straight from the fake |
//! | `fill.json` | `loadgen get-token --installs-file`: each of the many installs asked for once |
//! | `installs.tsv` | the script: `key<TAB>number` per line: `installs`, `install_seconds`, `install_concurrency`, `rss_before_kib`, `rss_after_kib` (token-service replica 1's `VmRSS` before the installs and after the fill) |
//! | `memory.tsv` | the script: `process<TAB>VmHWM in kB` per line |
//! | `cpu.tsv` | the script: `run<TAB>process<TAB>CPU seconds` per line, `run` being one of the JSON files' stems (`token-s64`, …) |
//!
//! Reading order: `results` (what a run left, parsed), `goals` (the targets and their table),
//! `tables` (the rest of the report); `budget`, the section `scripts/bench-budget` writes (the
//! request budget and the install page), with its own files.

pub mod budget;
pub mod goals;
mod results;
mod tables;

pub use results::{RedisBench, Results, parse_redis_benchmark};
pub use tables::{Rendered, render};

#[cfg(test)]
mod tests;
