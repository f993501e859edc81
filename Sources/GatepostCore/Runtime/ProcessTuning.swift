import CGatepostSystem

/// Process-wide settings the executable applies once at start.
public enum ProcessTuning {
    /// Up to 16 MiB of freed memory stays in the process, and buffers under 4 MiB come from the
    /// heap: a poll's per-message buffers (message bodies, TLS records, read buffers) are then
    /// reused instead of returned to the kernel and faulted back in for every message. Memory in
    /// use is still bounded by the spool's limits; only what is released stays mapped.
    public static func configureAllocator() {
        _ = gatepost_tune_allocator(16 << 20, 4 << 20)
    }
}
