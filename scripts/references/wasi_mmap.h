/* Forced include (-include) for building llama2.c's run.c as a WASI command.
 *
 * wasi-libc's emulated mmap reads a file with one large read, which fails in wasmtime's WASI
 * for files above ~100 MB (the 110M checkpoint is 438 MB). run.c only maps its checkpoint
 * read-only, so a copy into malloc'd memory, read in 16 MiB pieces, behaves the same. */
#ifndef EDGECHAIN_WASI_MMAP_H
#define EDGECHAIN_WASI_MMAP_H
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

static void *edgechain_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    (void)addr; (void)prot; (void)flags;
    char *data = malloc(len);
    if (data == NULL) return MAP_FAILED;
    size_t done = 0;
    while (done < len) {
        size_t piece = len - done > (16u << 20) ? (16u << 20) : len - done;
        ssize_t got = pread(fd, data + done, piece, off + (off_t)done);
        if (got <= 0) { free(data); return MAP_FAILED; }
        done += (size_t)got;
    }
    return data;
}

static int edgechain_munmap(void *data, size_t len) {
    (void)len;
    free(data);
    return 0;
}

#define mmap edgechain_mmap
#define munmap edgechain_munmap
#endif
