/* common.h: status codes, error reporting and logging shared by every module.
 *
 * Library functions never abort: they return an rq_status (or NULL) and leave a
 * one-line message in an rq_err the caller owns. The only process-wide state is
 * the logger level (and OpenMP's thread pool). */
#ifndef ROBUQ_COMMON_H
#define ROBUQ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

typedef enum {
    RQ_OK = 0,
    RQ_EINVAL = 1,   /* bad argument: NULL, out of range, wrong shape */
    RQ_ESHAPE = 2,   /* tensor shapes do not agree */
    RQ_ENOMEM = 3,   /* allocation failed */
    RQ_EIO = 4,      /* file could not be read or written */
    RQ_EFORMAT = 5,  /* file contents are malformed */
    RQ_ENUM = 6,     /* NaN / Inf encountered */
    RQ_EINTR = 7,    /* interrupted by a signal */
} rq_status;

/* A caller-owned error slot: code + message. */
typedef struct {
    rq_status code;
    char msg[512];
} rq_err;

const char *rq_status_str(rq_status s);
/* Sets err (if non-NULL and not already set) and returns code. */
rq_status rq_err_set(rq_err *err, rq_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rq_err_clear(rq_err *err);

/* Logger: timestamps to stderr, optional mirror to a log file. */
typedef enum { RQ_LOG_DEBUG = 0, RQ_LOG_INFO = 1, RQ_LOG_WARN = 2, RQ_LOG_ERROR = 3 } rq_log_level;
void rq_log_set_level(rq_log_level lvl);
int rq_log_open_file(const char *path); /* append; 0 on success */
void rq_log_close_file(void);
void rq_log(rq_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define RQ_INFO(...) rq_log(RQ_LOG_INFO, __VA_ARGS__)
#define RQ_WARN(...) rq_log(RQ_LOG_WARN, __VA_ARGS__)
#define RQ_ERROR(...) rq_log(RQ_LOG_ERROR, __VA_ARGS__)
#define RQ_DEBUG(...) rq_log(RQ_LOG_DEBUG, __VA_ARGS__)

/* 64-byte aligned allocation (SIMD + cache lines). Free with rq_free. */
void *rq_malloc(size_t bytes);
void *rq_calloc(size_t bytes);
void rq_free(void *p);

double rq_now(void); /* wall clock seconds (monotonic) */
/* A string from a file, fit for a one-line message: control characters and
 * non-ASCII bytes as \xNN, cut to fit cap. Returns buf. */
const char *rq_printable(const char *s, char *buf, size_t cap);
/* Writes text to path atomically ("<path>.tmp.<pid>", fsync, rename): the
 * file is either the old one or complete, never half written. */
rq_status rq_write_text_atomic(const char *path, const char *text, rq_err *err);

#endif
