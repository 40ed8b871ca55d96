//! Benchmarks of Sessionary against its peers; nothing to use from here.
//!
//! The benchmarks live in `benches/` (run them with
//! `cargo bench -p sessionary-bench --bench hot_path`); see the crate README
//! for what they measure and the latest results. This library is an empty
//! placeholder so the package has a target besides its benches.

#![deny(missing_docs)]
