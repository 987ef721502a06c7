//! tether-sim: turmoil simulation of tether (work in progress).
