//! Bounds the memory that glibc's `malloc` keeps for itself. By default glibc gives
//! each thread that contends for the heap an arena of its own, up to 8 per core, and
//! an arena keeps the memory freed into it. Ingest frees many small strings and Arrow
//! buffers on the threads of two sources at once: at 1M customers the whole ingest
//! peaked at 1.19 GB with the default arenas, and at 0.71 GB, in the same time, with
//! one arena per core (each source alone peaks under 0.46 GB). A `MALLOC_ARENA_MAX` or
//! `GLIBC_TUNABLES` set in the environment is left to glibc.

/// Caps glibc's malloc arenas at one per core (at least 2), unless the environment
/// already chooses. Call first in `main`, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_malloc_arenas() {
    let chosen = ["MALLOC_ARENA_MAX", "GLIBC_TUNABLES"]
        .iter()
        .any(|key| std::env::var_os(key).is_some());
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

/// Other platforms' allocators are left as they are.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_malloc_arenas() {}

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
}
