//! stick (work in progress).
