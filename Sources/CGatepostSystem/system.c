#define _GNU_SOURCE
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include "CGatepostSystem.h"

int gatepost_start_writeback(int fd) {
#ifdef __linux__
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
    return 0;
#endif
}

int gatepost_tune_allocator(int trim_threshold, int mmap_threshold) {
#ifdef __GLIBC__
    return mallopt(M_TRIM_THRESHOLD, trim_threshold) && mallopt(M_MMAP_THRESHOLD, mmap_threshold);
#else
    (void)trim_threshold;
    (void)mmap_threshold;
    return 0;
#endif
}
