// Linux calls the Swift Glibc module does not export (they need _GNU_SOURCE).
#ifndef CGATEPOST_SYSTEM_H
#define CGATEPOST_SYSTEM_H

/// Starts writing `fd`'s dirty pages to the disk without waiting (sync_file_range with
/// SYNC_FILE_RANGE_WRITE), so that a later fsync finds the data already on its way. Returns 0, or
/// -1 with errno set; elsewhere than Linux it does nothing and returns 0.
int gatepost_start_writeback(int fd);

#endif
