//! Bounds the memory that glibc's `malloc` keeps for itself. By default glibc gives
//! each thread that contends for the heap an arena of its own, up to 8 per core, and
//! an arena keeps the memory freed into it. Ingest frees many small strings and Arrow
//! buffers on the threads of two sources at once: at 1M customers the whole ingest
//! peaked at 1.19 GB with the default arenas, and at 0.71 GB, in the same time, with
//! one arena per core (each source alone peaks under 0.46 GB).
//!
//! The models stage holds fewer, larger buffers (sort runs, hash tables, row groups).
//! glibc maps a buffer of its own for a large allocation, but raises that threshold to
//! the size of every mapped buffer freed, up to 32 MiB: later buffers then come from
//! the arenas, which keep them resident once freed. At 1M customers the stage peaked
//! anywhere from 3.2 to 4.75 GB on the same data (six runs, median 4.3 GB), and at 2.74,
//! 2.99 and 3.77 GB with the threshold fixed at 1 MiB, in 282, 257 and 224 s against
//! 222-302 s. Ingest, which allocates many buffers around that size, took 54.3 s instead
//! of 47.3 s for the CSV sources with it, so only the models stage sets it
//! ([`map_large_buffers`]).
//!
//! A `MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_` or `GLIBC_TUNABLES` set in the
//! environment is left to glibc.

/// Whether the environment tunes glibc's malloc itself.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn environment_chose() -> bool {
    [
        "MALLOC_ARENA_MAX",
        "MALLOC_MMAP_THRESHOLD_",
        "GLIBC_TUNABLES",
    ]
    .iter()
    .any(|key| std::env::var_os(key).is_some())
}

/// Caps glibc's malloc arenas at one per core (at least 2), unless the environment
/// already chooses. Call first in `main`, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_malloc_arenas() {
    let chosen = environment_chose();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if let Some(arenas) = arena_limit(chosen, cores)
        && !set_arena_max(arenas)
    {
        eprintln!("warning: could not limit malloc arenas to {arenas}; memory use may be higher");
    }
}

/// The arena limit to set: none when the environment chose, else one per core, at least 2.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn arena_limit(environment_chose: bool, cores: usize) -> Option<libc::c_int> {
    (!environment_chose).then(|| libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX))
}

/// Sets glibc's `M_ARENA_MAX`; false when glibc refused it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(arenas: libc::c_int) -> bool {
    // SAFETY: `mallopt` only sets a tunable of glibc's allocator under the allocator's
    // own lock, and M_ARENA_MAX with a positive value is a valid call.
    #[allow(unsafe_code)]
    let accepted = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    accepted == 1
}

/// Buffers of at least this many bytes are mapped and unmapped on their own in the
/// models stage.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const LARGE_BUFFER_BYTES: libc::c_int = 1 << 20;

/// Fixes glibc's mmap threshold at [`LARGE_BUFFER_BYTES`], unless the environment
/// already chooses: freed large buffers go back to the system instead of staying in
/// the arenas. Called as the models stage starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn map_large_buffers() {
    if !environment_chose() && !set_mmap_threshold(LARGE_BUFFER_BYTES) {
        eprintln!("warning: could not set malloc's mmap threshold; memory use may be higher");
    }
}

/// Sets glibc's `M_MMAP_THRESHOLD` (which also stops its dynamic adjustment); false
/// when glibc refused it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_mmap_threshold(bytes: libc::c_int) -> bool {
    // SAFETY: as in `set_arena_max`: `mallopt` sets a tunable under the allocator's
    // lock, from any thread, and refuses a value out of its range.
    #[allow(unsafe_code)]
    let accepted = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) };
    accepted == 1
}

/// Other platforms' allocators are left as they are.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_malloc_arenas() {}

/// Other platforms' allocators are left as they are.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn map_large_buffers() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn one_arena_per_core_unless_the_environment_chose() {
        assert_eq!(arena_limit(false, 1), Some(2));
        assert_eq!(arena_limit(false, 16), Some(16));
        assert_eq!(arena_limit(false, usize::MAX), Some(libc::c_int::MAX));
        assert_eq!(arena_limit(true, 16), None);
        assert!(set_arena_max(2), "glibc refused M_ARENA_MAX = 2");
    }

    #[test]
    fn the_mmap_threshold_is_one_glibc_accepts() {
        assert!(
            set_mmap_threshold(LARGE_BUFFER_BYTES),
            "glibc refused M_MMAP_THRESHOLD = 1 MiB"
        );
    }
}
