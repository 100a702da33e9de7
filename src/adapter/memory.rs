//! Keeps the adapter's resident set close to what it really holds (glibc's allocator only).
//!
//! The adapter's live data is small (the latest reading of each metric), but every refresh parses
//! whole source answers and every list request builds a whole response: multi-MiB buffers freed
//! at once. glibc keeps freed pages inside its arenas, one arena per thread that ever allocated
//! under contention, so the resident set settles at the largest such buffer times the number of
//! arenas. Two measures bound that: one arena for the process (the adapter's threads allocate
//! little outside those bursts, so lock contention is negligible) and a trim after each refresh
//! that returns free pages to the kernel. Elsewhere (musl, other systems) both are no-ops.

/// Limits the allocator to one arena. Call before any thread but `main` starts.
#[allow(unsafe_code)] // one FFI call; see the SAFETY note
pub fn single_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator tunable; M_ARENA_MAX accepts any positive value
    // and affects arenas created afterwards.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns the allocator's free pages to the kernel.
#[allow(unsafe_code)] // one FFI call; see the SAFETY note
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists; it has no
    // preconditions and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_bytes() -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        crate::source::process::parse_status_rss(&status).expect("VmRSS")
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn trimming_returns_freed_pages_to_the_kernel() {
        // Many small blocks (below the mmap threshold, so they live in the arena), freed except
        // for the last one, which pins the top of the heap as a refresh's survivors would.
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 16 * 1024]).collect();
        let keep = blocks.last().cloned();
        let before = resident_bytes();
        drop(blocks);
        release_free_memory();
        let after = resident_bytes();
        assert!(keep.is_some());
        // 64 MiB were freed; at least half of it must have left the resident set.
        assert!(
            before - after >= 32.0 * 1024.0 * 1024.0,
            "RSS before {before} bytes, after trim {after} bytes"
        );
    }
}
