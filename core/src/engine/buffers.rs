//! Relay buffers lent for one wake-up at a time, from a small pool per thread.
//!
//! A forwarding direction takes a buffer when its source is readable and gives it back once
//! drained (see [`super::forward`]), so buffers are few (as many as directions moving bytes at
//! the same moment on a thread) and change hands on every request. The pool makes that a `Vec`
//! pop and push instead of an allocation and a free of 32 KiB per request and direction, and
//! keeps at most [`POOL_CAP`] buffers per thread; [`release_pooled`] empties it (the daemon
//! calls it when load falls), so an idle process holds none.

use std::cell::RefCell;

use super::forward::FORWARD_BUF;

/// Buffers kept per thread at most (512 KiB of address space; pages touched only as used).
pub const POOL_CAP: usize = 16;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of [`FORWARD_BUF`] capacity: a pooled one if this thread has one.
pub fn take() -> Vec<u8> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(FORWARD_BUF))
}

/// Returns a buffer from [`take`] to this thread's pool, or frees it when the pool is full.
pub fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() != FORWARD_BUF {
        return;
    }
    buf.clear();
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_CAP {
            pool.push(buf);
        }
    });
}

/// Frees every buffer pooled on this thread.
pub fn release_pooled() {
    let pooled = POOL.with(|p| std::mem::take(&mut *p.borrow_mut()));
    drop(pooled);
}

/// Buffers pooled on this thread now.
pub fn pooled() -> usize {
    POOL.with(|p| p.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the order of takes and returns, the pool never holds more than its cap,
        /// every buffer it lends is empty with the relay's capacity, and a release empties it.
        #[test]
        fn bounded_empty_and_released(ops in proptest::collection::vec(any::<(bool, u8)>(), 0..200)) {
            release_pooled();
            let mut lent: Vec<Vec<u8>> = Vec::new();
            for (give, fill) in ops {
                if give && !lent.is_empty() {
                    let mut b = lent.pop().unwrap();
                    b.extend(std::iter::repeat_n(fill, usize::from(fill)));
                    give_back(b);
                } else {
                    let b = take();
                    prop_assert!(b.is_empty());
                    prop_assert_eq!(b.capacity(), FORWARD_BUF);
                    lent.push(b);
                }
                prop_assert!(pooled() <= POOL_CAP);
            }
            for b in lent {
                give_back(b);
            }
            prop_assert!(pooled() <= POOL_CAP);
            release_pooled();
            prop_assert_eq!(pooled(), 0);
        }
    }

    #[test]
    fn a_foreign_buffer_is_not_pooled() {
        release_pooled();
        give_back(Vec::with_capacity(100));
        assert_eq!(pooled(), 0);
        give_back(take());
        assert_eq!(pooled(), 1);
        release_pooled();
    }
}
