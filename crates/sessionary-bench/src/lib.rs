//! Benchmarks of Sessionary against its peers; nothing to use from here.
//!
//! The in-process benchmarks live in `benches/` (run them with
//! `cargo bench -p sessionary-bench --bench hot_path`); the HTTP benchmark is
//! `http/run.sh`, with its server in `src/bin/http_bench_server.rs`. See the
//! crate README for what they measure and the latest results. This library is an
//! empty placeholder so the package has a target besides its benches.

#![deny(missing_docs)]
