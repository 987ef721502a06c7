//! Shared fixtures for the criterion benchmarks live in each bench file; this crate only hosts them.
