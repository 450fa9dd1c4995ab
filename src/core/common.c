#define _POSIX_C_SOURCE 200809L
#include "robuq/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *rq_status_str(rq_status s) {
    switch (s) {
    case RQ_OK: return "ok";
    case RQ_EINVAL: return "invalid argument";
    case RQ_ESHAPE: return "shape mismatch";
    case RQ_ENOMEM: return "out of memory";
    case RQ_EIO: return "i/o error";
    case RQ_EFORMAT: return "bad format";
    case RQ_ENUM: return "non-finite value";
    case RQ_EINTR: return "interrupted";
    }
    return "unknown error";
}

rq_status rq_err_set(rq_err *err, rq_status code, const char *fmt, ...) {
    if (err && err->code == RQ_OK) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        /* one line, whatever a file put into a name: control characters become '?' */
        for (char *c = err->msg; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    }
    return code;
}

void rq_err_clear(rq_err *err) {
    if (!err) return;
    err->code = RQ_OK;
    err->msg[0] = '\0';
}

/* ---- logger: the one piece of global state besides OpenMP ---- */
static rq_log_level g_log_level = RQ_LOG_INFO;
static FILE *g_log_file = NULL;

void rq_log_set_level(rq_log_level lvl) { g_log_level = lvl; }

int rq_log_open_file(const char *path) {
    rq_log_close_file();
    g_log_file = fopen(path, "a");
    return g_log_file ? 0 : -1;
}

void rq_log_close_file(void) {
    if (g_log_file) fclose(g_log_file);
    g_log_file = NULL;
}

void rq_log(rq_log_level lvl, const char *fmt, ...) {
    static const char *tag[] = {"debug", "info", "warn", "error"};
    if (lvl < g_log_level && !g_log_file) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    time_t now = time(NULL);
    struct tm tmv;
    localtime_r(&now, &tmv);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tmv);
    if (lvl >= g_log_level) fprintf(stderr, "[%s] %s: %s\n", ts, tag[lvl], line);
    if (g_log_file) {
        fprintf(g_log_file, "[%s] %s: %s\n", ts, tag[lvl], line);
        fflush(g_log_file);
    }
}

void *rq_malloc(size_t bytes) {
    if (bytes == 0) bytes = 64;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded);
}

void *rq_calloc(size_t bytes) {
    void *p = rq_malloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void rq_free(void *p) { free(p); }

double rq_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *rq_printable(const char *s, char *buf, size_t cap) {
    if (!buf || cap == 0) return "";
    size_t k = 0;
    for (; s && *s && k + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c >= 0x7f) k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", c);
        else buf[k++] = (char)c;
    }
    buf[k] = '\0';
    return buf;
}

rq_status rq_write_text_atomic(const char *path, const char *text, rq_err *err) {
    if (!path || !text) return rq_err_set(err, RQ_EINVAL, "rq_write_text_atomic: NULL argument");
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return rq_err_set(err, RQ_EINVAL, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return rq_err_set(err, RQ_EIO, "%s: cannot create (%s)", path, strerror(errno));
    size_t len = strlen(text);
    int bad = fwrite(text, 1, len, f) != len;
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    int saved = errno;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        if (!bad) saved = errno;
        remove(tmp);
        return rq_err_set(err, RQ_EIO, "%s: write failed (%s)", path, strerror(saved));
    }
    return RQ_OK;
}
