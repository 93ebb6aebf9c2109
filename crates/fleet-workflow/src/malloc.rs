//! Process-wide tuning of glibc's allocator for running workflows.

/// How far a heap grows at a time: address space, which costs nothing until it is touched.
const TOP_PAD: i32 = 16 << 20;
/// How much free memory at the top of a heap it keeps instead of giving back to the kernel.
const TRIM_THRESHOLD: i32 = 64 << 20;

/// Tunes glibc's allocator for a process that runs workflows, and says whether it could.
///
/// A run's script thread allocates and frees hundreds of thousands of small blocks as its
/// calls start and end (promises, call futures, events). With glibc's defaults a thread's heap
/// grows 128 KiB at a time and hands back to the kernel whatever 128 KiB comes free at its top,
/// so the same pages were returned and faulted in again all through a run: in a 1,000-call
/// fan-out, `sysmalloc`, `mprotect` and page faults took a fifth of the script thread's time.
/// This makes heaps grow 16 MiB of address space at a time and keep up to 64 MiB of free top
/// before trimming it. A process's peak resident memory is unchanged (it is what its busiest
/// moment touched); what changes is that memory freed after the peak stays with the process
/// until it exits or a later peak reuses it.
///
/// It is process-wide, so it is the program's decision, not the library's: the `fleet` binary
/// makes it at start-up, and a program embedding fleet can call this once at its start.
/// Returns `false`, changing nothing, where the C library is not glibc.
#[must_use = "false means the allocator was left as it was"]
pub fn tune_malloc() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[allow(unsafe_code)]
        // SAFETY: mallopt only sets allocator parameters; it is safe to call at any time, from
        // any thread, and these are values it documents as valid.
        unsafe {
            libc::mallopt(libc::M_TOP_PAD, TOP_PAD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_settings() {
        assert!(super::tune_malloc());
    }
}
