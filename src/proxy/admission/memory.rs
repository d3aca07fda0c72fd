//! Freed memory back to the system (glibc malloc).
//!
//! glibc keeps freed memory in its arenas, and its mmap threshold rises to the largest block
//! freed, so after a burst of large request bodies later ones land in the arenas too and the
//! process stays at its peak RSS. [`start`] therefore fixes the mmap threshold (blocks from
//! [`MMAP_THRESHOLD`] up are mapped on their own and unmapped when freed), bounds the number of
//! arenas to [`ARENA_MAX`] and runs a thread that calls `malloc_trim(0)` every
//! [`TRIM_INTERVAL`], which hands the free pages of every arena back to the system.
use std::sync::Once;
use std::time::Duration;

/// Blocks of this size and larger get their own mapping.
pub const MMAP_THRESHOLD: usize = 256 * 1024;
/// Arenas glibc may create.
pub const ARENA_MAX: usize = 4;
/// Time between two trims.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(2);

/// Applies the settings and starts the trimming thread, once per process.
pub fn start() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only changes allocator parameters; called before the listeners
            // run and from one thread (Once).
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
                libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX as libc::c_int);
            }
            let spawned = std::thread::Builder::new()
                .name("malloc-trim".into())
                .spawn(|| loop {
                    std::thread::sleep(TRIM_INTERVAL);
                    // SAFETY: malloc_trim is thread-safe (it locks each arena in turn).
                    unsafe {
                        libc::malloc_trim(0);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start the malloc-trim thread: {e}");
            }
        }
    });
}
