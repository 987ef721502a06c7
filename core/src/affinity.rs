//! affinity (work in progress).
