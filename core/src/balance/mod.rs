//! balance (work in progress).
