// Linux calls the Swift Glibc module does not export (they need _GNU_SOURCE).
#ifndef CGATEPOST_SYSTEM_H
#define CGATEPOST_SYSTEM_H

#include <spawn.h>

/// Starts writing `fd`'s dirty pages to the disk without waiting (sync_file_range with
/// SYNC_FILE_RANGE_WRITE), so that a later fsync finds the data already on its way. Returns 0, or
/// -1 with errno set; elsewhere than Linux it does nothing and returns 0.
int gatepost_start_writeback(int fd);

/// Keeps freed heap memory in the process up to `trim_threshold` bytes instead of handing it
/// back to the kernel at once, and serves allocations below `mmap_threshold` from the heap.
/// A poll allocates and frees the same few buffer sizes for every message; glibc's defaults
/// return them each time (madvise, munmap) and fault them back in, which cost a tenth of a
/// poll's CPU. Returns 0 if glibc refused (or elsewhere than glibc).
int gatepost_tune_allocator(int trim_threshold, int mmap_threshold);

/// Adds a spawn action that closes every descriptor from `lowest` up, so that a child gets
/// nothing but what the other actions give it (NIO's epoll and pipe descriptors, SQLite's files
/// and other children's pipes stay in the parent, close-on-exec or not). Returns 0, or an errno
/// value; ENOSYS where the C library has no such action.
int gatepost_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest);

#endif
