//! Recycled byte buffers for the hot path.
//!
//! Every read chunk needs fresh buffers (console, file, ring); allocating them new each time
//! costs page faults (the allocator hands large freed blocks back to the OS), which doubled the
//! CPU time of the pipeline. Writers and the ring give buffers back here instead. Invariant: the
//! pool holds at most `POOL_BUFFERS` buffers of at most `POOL_MAX_CAPACITY` bytes each, so it
//! never pins more than a few MiB.

use std::sync::Mutex;

const POOL_BUFFERS: usize = 8;
const POOL_MAX_CAPACITY: usize = 512 * 1024;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for at least `capacity` bytes.
pub(crate) fn get(capacity: usize) -> Vec<u8> {
    let recycled = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
    match recycled {
        Some(mut v) => {
            v.reserve(capacity);
            v
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Gives a buffer back (its contents are dropped).
pub(crate) fn put(mut v: Vec<u8>) {
    if v.capacity() == 0 || v.capacity() > POOL_MAX_CAPACITY {
        return;
    }
    v.clear();
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < POOL_BUFFERS {
        pool.push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds() {
        put(Vec::with_capacity(100));
        let v = get(10);
        assert!(v.is_empty() && v.capacity() >= 10);
        // Oversized buffers are not kept; the count is bounded.
        put(Vec::with_capacity(POOL_MAX_CAPACITY + 1));
        for _ in 0..POOL_BUFFERS * 2 {
            put(Vec::with_capacity(8));
        }
        let pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        assert!(pool.len() <= POOL_BUFFERS);
        assert!(pool.iter().all(|b| b.capacity() <= POOL_MAX_CAPACITY));
    }
}
