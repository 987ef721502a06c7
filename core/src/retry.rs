//! retry (work in progress).
