//! tls (work in progress).
