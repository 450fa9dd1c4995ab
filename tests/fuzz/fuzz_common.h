/* fuzz_common.h: shared plumbing of the fuzz targets (see run_fuzz.sh).
 *
 * Each fuzz_<name>.c defines its entry point with FUZZ_TARGET(name). Built by
 * run_fuzz.sh (clang -fsanitize=fuzzer,address,undefined) that is libFuzzer's
 * LLVMFuzzerTestOneInput; with FUZZ_NO_MAIN defined (tests/test_regress.c
 * includes every target that way) it is a plain function fuzz_<name>() that
 * the regression test feeds the seed corpora and the saved crash inputs.
 *
 * The readers under test take file paths, so an input is handed to them as
 * an anonymous in-memory file (memfd) named /proc/self/fd/N: no disk I/O, no
 * temp files left behind by a crashing input. libhdf5 resolves that link and
 * fails ("can't retrieve real path"), so the HDF5 targets write a real file
 * into a private directory instead (fz_tmpfile, in /dev/shm when present). */
#ifndef ROBUQ_FUZZ_COMMON_H
#define ROBUQ_FUZZ_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "robuq/common.h"

#ifdef FUZZ_NO_MAIN
#define FUZZ_TARGET(name) int fuzz_##name(const uint8_t *data, size_t size)
#else
#define FUZZ_TARGET(name)                                         \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size); \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
#endif

/* An invariant of the code under test does not hold: report and abort, so
 * libFuzzer saves the input (and the regression test fails). */
static void fz_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fz_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz invariant violated: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    abort();
}

/* Library logging off (getters log programming errors; noise only here). */
static inline void fz_quiet(void) { rq_log_set_level((rq_log_level)(RQ_LOG_ERROR + 1)); }

/* The input as a file: returns the fd (close it when done) and writes its
 * /proc/self/fd path into path; -1 if the memfd could not be made. */
static inline int fz_memfile(const uint8_t *data, size_t size, char *path, size_t cap) {
    int fd = memfd_create("fuzz", 0);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t k = write(fd, data + off, size - off);
        if (k <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)k;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

/* A private empty directory for targets whose inputs may name other files
 * (config includes): created on first use, it is the working directory from
 * then on, so relative names resolve to nothing but what the target writes.
 * Removed at exit. */
static char fz_dir_path[64];
static void fz_dir_cleanup(void) {
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir_path);
    if (fz_dir_path[0] && system(cmd)) fz_dir_path[0] = '\0';
}
static inline const char *fz_dir(void) {
    if (!fz_dir_path[0]) {
        snprintf(fz_dir_path, sizeof fz_dir_path, "/dev/shm/rqfuzz.XXXXXX"); /* RAM if there is one */
        if (!mkdtemp(fz_dir_path)) {
            snprintf(fz_dir_path, sizeof fz_dir_path, "/tmp/rqfuzz.XXXXXX");
            if (!mkdtemp(fz_dir_path)) fz_fail("cannot make a temp directory");
        }
        if (chdir(fz_dir_path)) fz_fail("cannot enter %s", fz_dir_path);
        atexit(fz_dir_cleanup);
    }
    return fz_dir_path;
}

/* The input as a real file named name inside fz_dir(); 0 on success. */
static inline int fz_tmpfile(const uint8_t *data, size_t size, const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", fz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, size, f) == size;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* A message must be one line and name the file it is about. */
static inline void fz_check_msg_impl(const rq_err *e, const char *must_contain, const char *what, int one_line) {
    if (!e->msg[0]) fz_fail("%s: error code %d with an empty message", what, (int)e->code);
    if (one_line && (strchr(e->msg, '\n') || strchr(e->msg, '\r')))
        fz_fail("%s: multi-line message '%s'", what, e->msg);
    if (must_contain && !strstr(e->msg, must_contain))
        fz_fail("%s: message '%s' does not name '%s'", what, e->msg, must_contain);
}
static inline void fz_check_msg(const rq_err *e, const char *must_contain, const char *what) {
    fz_check_msg_impl(e, must_contain, what, 1);
}
/* For readers that still copy names from the file into messages verbatim
 * (see the PENDING note in the target that uses it). */
static inline void fz_check_msg_pending_one_line(const rq_err *e, const char *must_contain, const char *what) {
    fz_check_msg_impl(e, must_contain, what, 0);
}

/* Little reader over the fuzz input for structure-aware targets: running
 * out of bytes yields zeros, so every input is a valid program. */
typedef struct {
    const uint8_t *p;
    size_t n, i;
} fz_bytes;

static inline unsigned fz_u8(fz_bytes *b) { return b->i < b->n ? b->p[b->i++] : 0u; }
static inline unsigned fz_u16(fz_bytes *b) { return fz_u8(b) | fz_u8(b) << 8; }
static inline uint32_t fz_u32(fz_bytes *b) { return (uint32_t)fz_u16(b) | (uint32_t)fz_u16(b) << 16; }
static inline uint64_t fz_u64(fz_bytes *b) { return (uint64_t)fz_u32(b) | (uint64_t)fz_u32(b) << 32; }
/* One of n choices. */
static inline unsigned fz_pick(fz_bytes *b, unsigned n) { return n ? fz_u8(b) % n : 0; }

#endif
