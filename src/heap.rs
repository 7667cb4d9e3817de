//! Giving freed memory back. A burst of connections (the agent's fan-out to a whole subnet, the
//! validator axon's clients) allocates buffers on every tokio worker's arena; glibc keeps those
//! arenas' free pages mapped, so an idle process would keep its last peak as RSS (the agent: 24.4 MB
//! vs 19.1 MB after trimming at 256 validators; BENCHMARKS.md).

/// Return the pages freed since the last burst to the kernel. Costs microseconds; a no-op off glibc.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas and takes their locks; no pointers of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
