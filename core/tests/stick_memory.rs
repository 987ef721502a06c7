//! Measures the stick table's real heap footprint with a counting global allocator: the design
//! promises at most 96 bytes per entry with 32-byte keys (HAProxy spends about 184), reserved up
//! front and never grown by traffic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use tether_core::stick::{StickTable, StickTableConfig};
use tether_core::{ServerId, Timestamp};

/// Forwards to the system allocator and keeps a running total of live bytes per thread, so the
/// test harness's own threads cannot disturb the measurement.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: allocations during thread teardown are simply not counted.
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

/// Bytes this thread has allocated and not freed (can be negative if it frees foreign memory).
fn live() -> isize {
    LIVE.with(|c| c.get())
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter is
// bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(-(layout.size() as isize));
            add(new_size as isize);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Deterministic, random-looking 32-byte key number `i` (splitmix64 words).
fn key(i: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    let mut x = i.wrapping_mul(4);
    for chunk in k.chunks_exact_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    k
}

#[test]
fn table_of_100k_entries_allocates_at_most_96_bytes_each_and_never_grows() {
    const N: usize = 100_000;
    let cfg = StickTableConfig::new(32, N, Duration::from_secs(3600));

    let base = live();
    let mut table = StickTable::new(cfg);
    let reserved = (live() - base) as usize;

    // Fill it, then churn past capacity (evictions), lookups and removals: no further allocation.
    for i in 0..N as u64 {
        table.learn(&key(i), ServerId((i % 4) as u32), Timestamp(i));
    }
    assert_eq!(table.len(), N);
    let filled = (live() - base) as usize;
    for i in N as u64..(N as u64 + N as u64 / 2) {
        table.lookup(&key(i - 1000), Timestamp(i));
        table.learn(&key(i), ServerId(1), Timestamp(i));
        if i % 10 == 0 {
            table.remove(&key(i - 7));
        }
    }
    let churned = (live() - base) as usize;

    let per_entry = filled as f64 / N as f64;
    // `memory_bytes` reports the same reservation the allocator saw (the struct itself lives on
    // the stack here, so it is the only difference).
    let reported = table.memory_bytes() - std::mem::size_of::<StickTable>();

    assert!(per_entry <= 96.0, "{per_entry:.1} bytes per entry");
    assert_eq!(reserved, filled, "filling the table must not allocate");
    assert_eq!(churned, filled, "eviction and removal must not allocate");
    assert_eq!(reported, filled);
    assert!(stats_consistent(&table));

    drop(table);
    assert_eq!(live(), base, "the table frees what it reserved");
    // Last: libtest's output capture allocates on this thread.
    eprintln!("stick table: {filled} bytes for {N} entries = {per_entry:.1} B/entry (reported {reported})");
}

fn stats_consistent(table: &StickTable) -> bool {
    let s = table.stats();
    s.entries == table.len() as u64 && s.evicted > 0 && s.inserted >= s.entries
}
