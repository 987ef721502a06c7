//! The stick table: which server a key (TLS session ID, ticket hash, PSK identity) sticks to.
//!
//! [`key`] normalises samples to the table's fixed length the way HAProxy's `type binary len N`
//! does; [`table`] stores them with expiry and exact LRU eviction in bounded, preallocated memory;
//! [`size`] parses the `60k`-style sizes tables are declared with.

pub mod feed;
pub mod key;
pub mod size;
pub mod table;

pub use feed::{FeedEntry, Origin, Since, UpdateFeed};
pub use key::{StickKey, MAX_KEY_LEN};
pub use size::{parse_size, SizeError};
pub use table::{
    Learn, Lookup, StickConfigError, StickEntry, StickKeyType, StickStats, StickTable,
    StickTableConfig, MAX_SIZE,
};
