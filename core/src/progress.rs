//! The one answer of every incremental parser in tether: "need more bytes" or "decided".
//!
//! The ClientHello finder, the record reassembler, the PROXY header parser, HAProxy's payload
//! samples and the learner of the server's first bytes all look at a stream that only grows and
//! are asked again when more arrives. They share this type so that the engine treats "wait for
//! more" the same way everywhere (as `httparse::Status` does for HTTP), and each keeps its own
//! type for what it decided.

/// Where an incremental parser stands on the bytes seen so far.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Progress<T> {
    /// The bytes so far are a valid beginning: call again with more (or treat them as final).
    NeedMore,
    /// Decided: more bytes would not change the answer.
    Done(T),
}

impl<T> Progress<T> {
    /// Maps the decided value, keeping `NeedMore`.
    #[inline]
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Progress<U> {
        match self {
            Progress::NeedMore => Progress::NeedMore,
            Progress::Done(v) => Progress::Done(f(v)),
        }
    }

    /// The decided value, if any.
    #[inline]
    pub fn done(self) -> Option<T> {
        match self {
            Progress::NeedMore => None,
            Progress::Done(v) => Some(v),
        }
    }

    /// Whether the parser asks for more bytes.
    #[inline]
    pub fn needs_more(&self) -> bool {
        matches!(self, Progress::NeedMore)
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn map_keeps_need_more_and_maps_done() {
        assert_eq!(Progress::<u8>::NeedMore.map(|v| v + 1), Progress::NeedMore);
        assert_eq!(Progress::Done(1u8).map(|v| v + 1), Progress::Done(2));
        assert_eq!(Progress::Done(3u8).done(), Some(3));
        assert!(Progress::<u8>::NeedMore.needs_more());
        assert!(!Progress::Done(()).needs_more());
    }
}
