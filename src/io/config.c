/* config.c: INI parser, validation, getters, dump and --help for the
 * schema-driven configuration (see config.h for the file syntax and rules). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* realpath, strcasecmp */
#endif
#include "robuq/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_FILE_BYTES (16L << 20) /* a config is text; refuse anything huge */

/* The parsed value of one key. text is the canonical spelling (what dump
 * writes); the typed fields are filled according to the spec's type. */
typedef struct {
    char *text;
    long long ival;
    double fval;
    int *ints;
    int nints;
    int is_set;
    char *origin; /* "file.ini:12" / "--set"; NULL = default */
} cfg_value;

struct rq_config {
    const rq_cfg_spec *schema;
    int n;
    cfg_value *v; /* one per schema row */
};

/* ------------------------------------------------------------------ */
/* small string helpers                                                */

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *xstrndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Trim in place: returns the first non-space char, cuts trailing spaces. */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

int rq_edit_distance(const char *a, const char *b) {
    if (!a || !b) return INT_MAX;
    size_t la = strlen(a), lb = strlen(b);
    if (la > 255 || lb > 255) return INT_MAX; /* hints are for short names */
    int row[256];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            int best = diag + cost;
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* A hint is worth showing when it is a small edit away. */
static int close_enough(const char *typo, int d) {
    int len = (int)strlen(typo);
    return (d <= 2 && d < len) || d <= len / 3;
}

/* Growable string for dump / to_string / --help. */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int k = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if ((size_t)k < room) { b->len += (size_t)k; return; }
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len <= (size_t)k) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = 1; return; }
        b->s = s;
        b->cap = cap;
    }
}

/* ------------------------------------------------------------------ */
/* schema lookup                                                       */

static int find_key(const rq_cfg_spec *sc, int n, const char *section, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(sc[i].section, section) == 0 && strcmp(sc[i].key, key) == 0) return i;
    return -1;
}

static int section_exists(const rq_cfg_spec *sc, int n, const char *section) {
    for (int i = 0; i < n; i++)
        if (strcmp(sc[i].section, section) == 0) return 1;
    return 0;
}

/* Closest section name, or NULL if none is close. */
static const char *suggest_section(const rq_cfg_spec *sc, int n, const char *section) {
    const char *best = NULL;
    int bd = INT_MAX;
    for (int i = 0; i < n; i++) {
        int d = rq_edit_distance(section, sc[i].section);
        if (d < bd) { bd = d; best = sc[i].section; }
    }
    return best && close_enough(section, bd) ? best : NULL;
}

/* Writes " (did you mean ...?)" into hint (or "" when nothing fits): first the
 * closest key of the same section, else the same key in another section. */
static void suggest_key(const rq_cfg_spec *sc, int n, const char *section, const char *key,
                        char *hint, size_t cap) {
    hint[0] = '\0';
    const char *best = NULL;
    int bd = INT_MAX;
    for (int i = 0; i < n; i++) {
        if (strcmp(sc[i].section, section) != 0) continue;
        int d = rq_edit_distance(key, sc[i].key);
        if (d < bd) { bd = d; best = sc[i].key; }
    }
    if (best && close_enough(key, bd)) {
        snprintf(hint, cap, " (did you mean '%s'?)", best);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(sc[i].key, key) == 0) {
            snprintf(hint, cap, " (did you mean [%s] %s?)", sc[i].section, key);
            return;
        }
    }
}

/* ------------------------------------------------------------------ */
/* value parsing                                                       */

/* Shortest %g spelling that reads back to the same double. */
static void format_double(double x, char *buf, size_t cap) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static int parse_ll(const char *s, long long *out) {
    if (!*s) return 0;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || isspace((unsigned char)*s)) return 0;
    *out = v;
    return 1;
}

static void value_clear(cfg_value *v) {
    free(v->text);
    free(v->ints);
    free(v->origin);
    memset(v, 0, sizeof *v);
}

/* Parse text for spec into out (fresh; caller owns). On failure writes the
 * reason ("expected a float, got 'abc'") into why and returns RQ_EFORMAT. */
static rq_status parse_value(const rq_cfg_spec *sp, const char *text, cfg_value *out, char *why,
                             size_t cap) {
    memset(out, 0, sizeof *out);
    char canon[64];
    const char *keep = text; /* canonical text to store */
    switch (sp->type) {
    case RQ_CFG_INT: {
        long long v;
        if (!parse_ll(text, &v)) {
            snprintf(why, cap, "expected an integer, got '%s'", text);
            return RQ_EFORMAT;
        }
        if ((double)v < sp->min || (double)v > sp->max) {
            snprintf(why, cap, "value %lld out of range [%.0f, %.0f]", v, sp->min, sp->max);
            return RQ_EFORMAT;
        }
        out->ival = v;
        out->fval = (double)v;
        snprintf(canon, sizeof canon, "%lld", v);
        keep = canon;
        break;
    }
    case RQ_CFG_FLOAT: {
        char *end;
        errno = 0;
        double v = strtod(text, &end);
        if (!*text || *end || isspace((unsigned char)*text)) {
            snprintf(why, cap, "expected a float, got '%s'", text);
            return RQ_EFORMAT;
        }
        if (!isfinite(v)) {
            snprintf(why, cap, "expected a finite float, got '%s'", text);
            return RQ_EFORMAT;
        }
        if (v < sp->min || v > sp->max) {
            snprintf(why, cap, "value %s out of range [%g, %g]", text, sp->min, sp->max);
            return RQ_EFORMAT;
        }
        out->fval = v;
        format_double(v, canon, sizeof canon);
        keep = canon;
        break;
    }
    case RQ_CFG_BOOL: {
        static const char *yes[] = {"on", "true", "yes", "1"}, *no[] = {"off", "false", "no", "0"};
        int b = -1;
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(text, yes[i]) == 0) b = 1;
            if (strcasecmp(text, no[i]) == 0) b = 0;
        }
        if (b < 0) {
            snprintf(why, cap, "expected a boolean (on/off, true/false, yes/no, 1/0), got '%s'", text);
            return RQ_EFORMAT;
        }
        out->ival = b;
        keep = b ? "on" : "off";
        break;
    }
    case RQ_CFG_ENUM: {
        /* walk the '|' separated words; keep the schema's spelling */
        const char *c = sp->choices, *best = NULL;
        int bd = INT_MAX, idx = 0, found = -1;
        size_t tl = strlen(text);
        while (c && *c) {
            const char *bar = strchr(c, '|');
            size_t wl = bar ? (size_t)(bar - c) : strlen(c);
            char word[64];
            if (wl >= sizeof word) wl = sizeof word - 1;
            memcpy(word, c, wl);
            word[wl] = '\0';
            if (wl == tl && strncasecmp(c, text, wl) == 0) {
                found = idx;
                snprintf(canon, sizeof canon, "%s", word);
            }
            int d = rq_edit_distance(text, word);
            if (d < bd) { bd = d; best = c; }
            c = bar ? bar + 1 : NULL;
            idx++;
        }
        if (found < 0) {
            char hint[96] = "";
            if (best && close_enough(text, bd)) {
                const char *bar = strchr(best, '|');
                int wl = bar ? (int)(bar - best) : (int)strlen(best);
                snprintf(hint, sizeof hint, " (did you mean '%.*s'?)", wl, best);
            }
            snprintf(why, cap, "expected one of %s, got '%s'%s", sp->choices, text, hint);
            return RQ_EFORMAT;
        }
        out->ival = found;
        keep = canon;
        break;
    }
    case RQ_CFG_INTS: {
        /* count commas first so one allocation suffices */
        int n = 0;
        if (*text) {
            n = 1;
            for (const char *p = text; *p; p++) n += *p == ',';
        }
        sbuf b = {0};
        out->ints = n ? malloc((size_t)n * sizeof(int)) : NULL;
        if (n && !out->ints) {
            snprintf(why, cap, "out of memory");
            return RQ_ENOMEM;
        }
        const char *p = text;
        for (int i = 0; i < n; i++) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            char item[64];
            long long v;
            int ok = len < sizeof item;
            if (ok) {
                memcpy(item, p, len);
                item[len] = '\0';
                ok = parse_ll(trim(item), &v);
            }
            if (!ok) {
                snprintf(why, cap, "expected a comma separated list of integers, got '%s'", text);
                free(out->ints);
                free(b.s);
                out->ints = NULL;
                return RQ_EFORMAT;
            }
            if ((double)v < sp->min || (double)v > sp->max) {
                snprintf(why, cap, "element %d (%lld) out of range [%.0f, %.0f]", i + 1, v, sp->min, sp->max);
                free(out->ints);
                free(b.s);
                out->ints = NULL;
                return RQ_EFORMAT;
            }
            out->ints[i] = (int)v;
            sb_printf(&b, i ? ",%d" : "%d", (int)v);
            p = comma ? comma + 1 : p + len;
        }
        out->nints = n;
        out->text = b.s ? b.s : xstrdup("");
        if (!out->text || b.oom) {
            free(out->ints);
            free(out->text);
            out->ints = NULL;
            out->text = NULL;
            snprintf(why, cap, "out of memory");
            return RQ_ENOMEM;
        }
        return RQ_OK;
    }
    case RQ_CFG_STRING:
    case RQ_CFG_PATH:
        for (const char *p = text; *p; p++) {
            if ((unsigned char)*p < 32 && *p != '\t') {
                snprintf(why, cap, "control character in value");
                return RQ_EFORMAT;
            }
        }
        break;
    }
    out->text = xstrdup(keep);
    if (!out->text) {
        snprintf(why, cap, "out of memory");
        return RQ_ENOMEM;
    }
    return RQ_OK;
}

/* ------------------------------------------------------------------ */
/* create / copy / free                                                */

rq_config *rq_config_new_schema(const rq_cfg_spec *schema, int n) {
    if (!schema || n <= 0) {
        RQ_ERROR("rq_config_new_schema: empty schema");
        return NULL;
    }
    rq_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return NULL;
    cfg->schema = schema;
    cfg->n = n;
    cfg->v = calloc((size_t)n, sizeof *cfg->v);
    if (!cfg->v) {
        free(cfg);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        char why[256];
        const rq_cfg_spec *sp = &schema[i];
        if (!sp->section || !sp->key || !sp->def || (sp->type == RQ_CFG_ENUM && !sp->choices) ||
            find_key(schema, i, sp->section, sp->key) >= 0) {
            RQ_ERROR("config schema row %d is incomplete or duplicated", i);
            rq_config_free(cfg);
            return NULL;
        }
        if (parse_value(sp, sp->def, &cfg->v[i], why, sizeof why) != RQ_OK) {
            RQ_ERROR("config schema: default of [%s] %s: %s", sp->section, sp->key, why);
            rq_config_free(cfg);
            return NULL;
        }
    }
    return cfg;
}

rq_config *rq_config_new(void) {
    int n;
    const rq_cfg_spec *sc = rq_config_schema(&n);
    return rq_config_new_schema(sc, n);
}

void rq_config_free(rq_config *cfg) {
    if (!cfg) return;
    if (cfg->v)
        for (int i = 0; i < cfg->n; i++) value_clear(&cfg->v[i]);
    free(cfg->v);
    free(cfg);
}

static int value_copy(cfg_value *d, const cfg_value *s) {
    *d = *s;
    d->text = s->text ? xstrdup(s->text) : NULL;
    d->origin = s->origin ? xstrdup(s->origin) : NULL;
    d->ints = NULL;
    if (s->nints) {
        d->ints = malloc((size_t)s->nints * sizeof(int));
        if (d->ints) memcpy(d->ints, s->ints, (size_t)s->nints * sizeof(int));
    }
    return (s->text && !d->text) || (s->origin && !d->origin) || (s->nints && !d->ints) ? -1 : 0;
}

rq_config *rq_config_clone(const rq_config *cfg) {
    if (!cfg) return NULL;
    rq_config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->schema = cfg->schema;
    c->n = cfg->n;
    c->v = calloc((size_t)cfg->n, sizeof *c->v);
    if (!c->v) {
        free(c);
        return NULL;
    }
    for (int i = 0; i < cfg->n; i++) {
        if (value_copy(&c->v[i], &cfg->v[i]) != 0) {
            rq_config_free(c);
            return NULL;
        }
    }
    return c;
}

/* Move the values of src into dst (both share a schema) and free src. */
static void commit(rq_config *dst, rq_config *src) {
    cfg_value *t = dst->v;
    dst->v = src->v;
    src->v = t;
    rq_config_free(src);
}

/* Parse and store one assignment; prefix names where it came from. */
static int needs_quotes(const char *s);

static rq_status assign(rq_config *cfg, int idx, const char *text, const char *origin, const char *prefix,
                        rq_status code, rq_err *err) {
    const rq_cfg_spec *sp = &cfg->schema[idx];
    /* The INI form has no escapes: a value that must be written in quotes
     * cannot contain one, or the dumped config (config.ini of every run)
     * would not read back the same. */
    if (needs_quotes(text) && strchr(text, '"'))
        return rq_err_set(err, code,
                          "%s: value '%s' contains '\"' and starts with '#'/';', has a ' #'/' ;' or edge spaces: "
                          "it could not be written back to an INI file",
                          prefix, text);
    char why[384];
    cfg_value nv;
    rq_status st = parse_value(sp, text, &nv, why, sizeof why);
    if (st != RQ_OK)
        return rq_err_set(err, st == RQ_ENOMEM ? st : code, "%s: %s", prefix, why);
    nv.is_set = 1;
    nv.origin = xstrdup(origin);
    if (!nv.origin) {
        value_clear(&nv);
        return rq_err_set(err, RQ_ENOMEM, "%s: out of memory", prefix);
    }
    value_clear(&cfg->v[idx]);
    cfg->v[idx] = nv;
    return RQ_OK;
}

/* Messages quote user text (lines, keys, --set arguments); a control
 * character in it (a stray CR, a NUL-free binary file) must not break the
 * one-line message rule, so they are shown as '?'. */
static rq_status one_line(rq_err *err, rq_status st) {
    if (st != RQ_OK && err)
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return st;
}

/* ------------------------------------------------------------------ */
/* INI parsing                                                         */

typedef struct {
    rq_config *cfg; /* working copy, committed only on success */
    rq_err *err;
    int depth;
    const char *names[RQ_CFG_MAX_INCLUDE + 2]; /* include chain as displayed */
    char *real[RQ_CFG_MAX_INCLUDE + 2];        /* canonical paths, for cycles */
} parse_ctx;

static rq_status parse_text(parse_ctx *ctx, char *text, const char *name, const char *dir,
                            const char *section_in);

/* "a.ini -> b.ini -> c.ini" */
static void chain_str(const parse_ctx *ctx, const char *last, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < ctx->depth; i++) {
        int k = snprintf(buf + len, cap - len, "%s -> ", ctx->names[i]);
        if (k < 0 || (size_t)k >= cap - len) return;
        len += (size_t)k;
    }
    snprintf(buf + len, cap - len, "%s", last);
}

static rq_status read_file(const char *path, char **out, rq_err *err, const char *who) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return rq_err_set(err, RQ_EIO, "%scannot open config '%s': %s", who, path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            if ((long)cap > MAX_FILE_BYTES) {
                free(buf);
                fclose(f);
                return rq_err_set(err, RQ_EFORMAT, "%sconfig '%s' is larger than %ld bytes", who, path,
                                  MAX_FILE_BYTES);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + len, 1, cap - 1 - len, f);
        len += k;
        if (k == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return rq_err_set(err, RQ_ENOMEM, "%sout of memory reading '%s'", who, path);
    if (bad) {
        free(buf);
        return rq_err_set(err, RQ_EIO, "%sread error on config '%s'", who, path);
    }
    buf[len] = '\0';
    if (strlen(buf) != len) {
        free(buf);
        return rq_err_set(err, RQ_EFORMAT, "%sconfig '%s' contains a NUL byte (binary file?)", who, path);
    }
    *out = buf;
    return RQ_OK;
}

/* Load one file (top level or included). where = "a.ini:3: " for includes. */
static rq_status parse_file(parse_ctx *ctx, const char *path, const char *section_in, const char *where) {
    if (ctx->depth >= RQ_CFG_MAX_INCLUDE) {
        char chain[400];
        chain_str(ctx, path, chain, sizeof chain);
        return rq_err_set(ctx->err, RQ_EFORMAT, "%sincludes nested deeper than %d: %s", where,
                          RQ_CFG_MAX_INCLUDE, chain);
    }
    char *real = realpath(path, NULL);
    if (real) {
        for (int i = 0; i < ctx->depth; i++) {
            if (ctx->real[i] && strcmp(ctx->real[i], real) == 0) {
                char chain[400];
                chain_str(ctx, path, chain, sizeof chain);
                free(real);
                return rq_err_set(ctx->err, RQ_EFORMAT, "%sinclude cycle: %s", where, chain);
            }
        }
    }
    char *text;
    rq_status st = read_file(path, &text, ctx->err, where);
    if (st != RQ_OK) {
        free(real);
        return st;
    }
    /* directory of this file, for its own includes */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrndup(path, (size_t)(slash - path + 1)) : xstrdup("");
    if (!dir) {
        free(text);
        free(real);
        return rq_err_set(ctx->err, RQ_ENOMEM, "out of memory");
    }
    ctx->names[ctx->depth] = path;
    ctx->real[ctx->depth] = real;
    ctx->depth++;
    st = parse_text(ctx, text, path, dir, section_in);
    ctx->depth--;
    ctx->real[ctx->depth] = NULL;
    free(real);
    free(dir);
    free(text);
    return st;
}

/* Split off an inline comment (# or ; after whitespace) and surrounding
 * quotes. Returns the value (in place) or NULL with why set. */
static char *clean_value(char *v, char *why, size_t cap) {
    v = trim(v);
    if (*v == '"') {
        char *close = strchr(v + 1, '"');
        if (!close) {
            snprintf(why, cap, "missing closing '\"'");
            return NULL;
        }
        char *rest = close + 1;
        while (isspace((unsigned char)*rest)) rest++;
        if (*rest && *rest != '#' && *rest != ';') {
            snprintf(why, cap, "unexpected text after closing quote: '%s'", rest);
            return NULL;
        }
        *close = '\0';
        return v + 1;
    }
    for (char *p = v; *p; p++) {
        if ((*p == '#' || *p == ';') && p > v && isspace((unsigned char)p[-1])) {
            *p = '\0';
            break;
        }
    }
    return trim(v);
}

static rq_status parse_text(parse_ctx *ctx, char *text, const char *name, const char *dir,
                            const char *section_in) {
    const rq_cfg_spec *sc = ctx->cfg->schema;
    int n = ctx->cfg->n;
    char section[128];
    snprintf(section, sizeof section, "%s", section_in ? section_in : "");
    if ((unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB && (unsigned char)text[2] == 0xBF)
        text += 3; /* UTF-8 byte order mark from some editors */

    int lineno = 0;
    char *line = text;
    while (line) {
        lineno++;
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        char *next = nl ? nl + 1 : NULL;
        char *s = trim(line);
        line = next;
        if (!*s || *s == '#' || *s == ';') continue;

        char where[600];
        snprintf(where, sizeof where, "%s:%d", name, lineno);

        if (*s == '[') {
            char *close = strchr(s, ']');
            if (!close)
                return rq_err_set(ctx->err, RQ_EFORMAT, "%s: missing ']' in section header '%s'", where, s);
            char *rest = close + 1;
            while (isspace((unsigned char)*rest)) rest++;
            if (*rest && *rest != '#' && *rest != ';')
                return rq_err_set(ctx->err, RQ_EFORMAT, "%s: unexpected text after ']': '%s'", where, rest);
            *close = '\0';
            char *sec = trim(s + 1);
            if (!section_exists(sc, n, sec)) {
                const char *hint = suggest_section(sc, n, sec);
                if (hint)
                    return rq_err_set(ctx->err, RQ_EFORMAT, "%s: unknown section [%s] (did you mean [%s]?)",
                                      where, sec, hint);
                return rq_err_set(ctx->err, RQ_EFORMAT, "%s: unknown section [%s]", where, sec);
            }
            snprintf(section, sizeof section, "%s", sec);
            continue;
        }

        char *eq = strchr(s, '=');
        if (!eq)
            return rq_err_set(ctx->err, RQ_EFORMAT, "%s: expected 'key = value', missing '=' in '%s'", where, s);
        *eq = '\0';
        char *key = trim(s);
        char why[300];
        char *val = clean_value(eq + 1, why, sizeof why);
        if (!*key) return rq_err_set(ctx->err, RQ_EFORMAT, "%s: missing key before '='", where);
        if (!val) {
            if (*section) return rq_err_set(ctx->err, RQ_EFORMAT, "%s: [%s] %s: %s", where, section, key, why);
            return rq_err_set(ctx->err, RQ_EFORMAT, "%s: %s: %s", where, key, why);
        }

        if (strcmp(key, "include") == 0) {
            if (!*val) return rq_err_set(ctx->err, RQ_EFORMAT, "%s: include: empty file name", where);
            char *path = malloc(strlen(dir) + strlen(val) + 1);
            if (!path) return rq_err_set(ctx->err, RQ_ENOMEM, "out of memory");
            if (val[0] == '/') strcpy(path, val);
            else sprintf(path, "%s%s", dir, val);
            char inc_where[640];
            snprintf(inc_where, sizeof inc_where, "%s: ", where);
            rq_status st = parse_file(ctx, path, section, inc_where);
            free(path);
            if (st != RQ_OK) return st;
            continue;
        }

        if (!*section) {
            char hint[200];
            suggest_key(sc, n, "", key, hint, sizeof hint);
            return rq_err_set(ctx->err, RQ_EFORMAT, "%s: key '%s' outside of any [section]%s", where, key, hint);
        }
        int idx = find_key(sc, n, section, key);
        if (idx < 0) {
            char hint[200];
            suggest_key(sc, n, section, key, hint, sizeof hint);
            return rq_err_set(ctx->err, RQ_EFORMAT, "%s: [%s] unknown key '%s'%s", where, section, key, hint);
        }
        char prefix[800];
        snprintf(prefix, sizeof prefix, "%s: [%s] %s", where, section, key);
        rq_status st = assign(ctx->cfg, idx, val, where, prefix, RQ_EFORMAT, ctx->err);
        if (st != RQ_OK) return st;
    }
    return RQ_OK;
}

rq_status rq_config_load(rq_config *cfg, const char *path, rq_err *err) {
    if (!cfg || !path || !*path) return rq_err_set(err, RQ_EINVAL, "rq_config_load: NULL config or empty path");
    parse_ctx ctx = {0};
    ctx.err = err;
    ctx.cfg = rq_config_clone(cfg);
    if (!ctx.cfg) return rq_err_set(err, RQ_ENOMEM, "out of memory");
    rq_status st = parse_file(&ctx, path, "", "");
    if (st != RQ_OK) {
        rq_config_free(ctx.cfg);
        return one_line(err, st);
    }
    commit(cfg, ctx.cfg);
    return RQ_OK;
}

rq_status rq_config_load_string(rq_config *cfg, const char *text, const char *name, rq_err *err) {
    if (!cfg || !text) return rq_err_set(err, RQ_EINVAL, "rq_config_load_string: NULL argument");
    if (!name) name = "<string>";
    parse_ctx ctx = {0};
    ctx.err = err;
    ctx.cfg = rq_config_clone(cfg);
    char *copy = xstrdup(text);
    if (!ctx.cfg || !copy) {
        rq_config_free(ctx.cfg);
        free(copy);
        return rq_err_set(err, RQ_ENOMEM, "out of memory");
    }
    ctx.names[0] = name;
    ctx.depth = 1;
    rq_status st = parse_text(&ctx, copy, name, "", "");
    free(copy);
    if (st != RQ_OK) {
        rq_config_free(ctx.cfg);
        return one_line(err, st);
    }
    commit(cfg, ctx.cfg);
    return RQ_OK;
}

static rq_status config_set(rq_config *cfg, const char *assignment, rq_err *err) {
    if (!cfg || !assignment) return rq_err_set(err, RQ_EINVAL, "rq_config_set: NULL argument");
    const char *eq = strchr(assignment, '=');
    if (!eq) return rq_err_set(err, RQ_EINVAL, "--set '%s': expected section.key=value, missing '='", assignment);
    char name[256];
    size_t kl = (size_t)(eq - assignment);
    if (kl >= sizeof name) return rq_err_set(err, RQ_EINVAL, "--set '%s': key too long", assignment);
    memcpy(name, assignment, kl);
    name[kl] = '\0';
    char *key = trim(name);
    char *dot = strchr(key, '.');
    if (!dot || dot == key || !dot[1])
        return rq_err_set(err, RQ_EINVAL, "--set '%s': key must be section.key", assignment);
    *dot = '\0';
    const char *section = key, *k = dot + 1;
    if (!section_exists(cfg->schema, cfg->n, section)) {
        const char *hint = suggest_section(cfg->schema, cfg->n, section);
        if (hint) return rq_err_set(err, RQ_EINVAL, "--set: unknown section [%s] (did you mean [%s]?)", section, hint);
        return rq_err_set(err, RQ_EINVAL, "--set: unknown section [%s]", section);
    }
    int idx = find_key(cfg->schema, cfg->n, section, k);
    if (idx < 0) {
        char hint[200];
        suggest_key(cfg->schema, cfg->n, section, k, hint, sizeof hint);
        return rq_err_set(err, RQ_EINVAL, "--set: [%s] unknown key '%s'%s", section, k, hint);
    }
    /* value: trimmed, surrounding quotes removed (no comments on a command line) */
    char *val = xstrdup(eq + 1);
    if (!val) return rq_err_set(err, RQ_ENOMEM, "out of memory");
    char *v = trim(val);
    size_t vl = strlen(v);
    if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
        v[vl - 1] = '\0';
        v++;
    }
    char prefix[300];
    snprintf(prefix, sizeof prefix, "--set %s.%s", section, k);
    rq_status st = assign(cfg, idx, v, "--set", prefix, RQ_EINVAL, err);
    free(val);
    return st;
}

rq_status rq_config_set(rq_config *cfg, const char *assignment, rq_err *err) {
    return one_line(err, config_set(cfg, assignment, err));
}

/* ------------------------------------------------------------------ */
/* getters                                                             */

/* Index of "section.key", or -1 (logged: getters are called by code, so a
 * miss is a programming error rather than a user error). */
static int lookup(const rq_config *cfg, const char *name, const char *who) {
    if (!cfg || !name) {
        RQ_ERROR("%s: NULL config or key", who);
        return -1;
    }
    const char *dot = strchr(name, '.');
    if (dot && (size_t)(dot - name) < 128) {
        char section[128];
        memcpy(section, name, (size_t)(dot - name));
        section[dot - name] = '\0';
        int idx = find_key(cfg->schema, cfg->n, section, dot + 1);
        if (idx >= 0) return idx;
    }
    RQ_ERROR("%s: unknown config key '%s' (programming error)", who, name);
    return -1;
}

static int type_ok(const rq_config *cfg, int idx, const char *name, const char *who, rq_cfg_type t1,
                   rq_cfg_type t2) {
    rq_cfg_type t = cfg->schema[idx].type;
    if (t == t1 || t == t2) return 1;
    RQ_ERROR("%s: config key '%s' has another type (programming error)", who, name);
    return 0;
}

int rq_cfg_int(const rq_config *cfg, const char *key) {
    int i = lookup(cfg, key, "rq_cfg_int");
    if (i < 0 || !type_ok(cfg, i, key, "rq_cfg_int", RQ_CFG_INT, RQ_CFG_INT)) return 0;
    return (int)cfg->v[i].ival;
}

double rq_cfg_float(const rq_config *cfg, const char *key) {
    int i = lookup(cfg, key, "rq_cfg_float");
    if (i < 0 || !type_ok(cfg, i, key, "rq_cfg_float", RQ_CFG_FLOAT, RQ_CFG_INT)) return 0;
    return cfg->v[i].fval;
}

int rq_cfg_bool(const rq_config *cfg, const char *key) {
    int i = lookup(cfg, key, "rq_cfg_bool");
    if (i < 0 || !type_ok(cfg, i, key, "rq_cfg_bool", RQ_CFG_BOOL, RQ_CFG_BOOL)) return 0;
    return (int)cfg->v[i].ival;
}

const char *rq_cfg_str(const rq_config *cfg, const char *key) {
    int i = lookup(cfg, key, "rq_cfg_str");
    return i < 0 ? NULL : cfg->v[i].text;
}

int rq_cfg_ints(const rq_config *cfg, const char *key, int *out, int max) {
    int i = lookup(cfg, key, "rq_cfg_ints");
    if (i < 0 || !type_ok(cfg, i, key, "rq_cfg_ints", RQ_CFG_INTS, RQ_CFG_INTS)) return -1;
    const cfg_value *v = &cfg->v[i];
    for (int j = 0; out && j < v->nints && j < max; j++) out[j] = v->ints[j];
    return v->nints;
}

int rq_cfg_is_set(const rq_config *cfg, const char *key) {
    int i = lookup(cfg, key, "rq_cfg_is_set");
    return i < 0 ? 0 : cfg->v[i].is_set;
}

const char *rq_cfg_origin(const rq_config *cfg, const char *key) {
    int i = lookup(cfg, key, "rq_cfg_origin");
    if (i < 0) return NULL;
    return cfg->v[i].origin ? cfg->v[i].origin : "default";
}

int rq_cfg_has(const rq_config *cfg, const char *key) {
    if (!cfg || !key) return 0;
    const char *dot = strchr(key, '.');
    if (!dot || dot - key >= 128) return 0;
    char section[128];
    memcpy(section, key, (size_t)(dot - key));
    section[dot - key] = '\0';
    return find_key(cfg->schema, cfg->n, section, dot + 1) >= 0;
}

/* ------------------------------------------------------------------ */
/* dump / help                                                         */

/* Quote values that would not survive a reload as written. */
static int needs_quotes(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || isspace((unsigned char)s[0]) || isspace((unsigned char)s[n - 1]) || s[0] == '"') return 1;
    for (size_t i = 1; i < n; i++)
        if ((s[i] == '#' || s[i] == ';') && isspace((unsigned char)s[i - 1])) return 1;
    return s[0] == '#' || s[0] == ';';
}

/* Sections in order of first appearance; calls fn for each. */
static int first_of_section(const rq_cfg_spec *sc, int i) {
    for (int j = 0; j < i; j++)
        if (strcmp(sc[j].section, sc[i].section) == 0) return 0;
    return 1;
}

static void build_dump(const rq_config *cfg, sbuf *b) {
    sb_printf(b, "# robuq configuration (fully resolved: every key, defaults included)\n");
    for (int s = 0; s < cfg->n; s++) {
        if (!first_of_section(cfg->schema, s)) continue;
        const char *sec = cfg->schema[s].section;
        sb_printf(b, "\n[%s]\n", sec);
        for (int i = s; i < cfg->n; i++) {
            if (strcmp(cfg->schema[i].section, sec) != 0) continue;
            const char *t = cfg->v[i].text;
            if (needs_quotes(t)) sb_printf(b, "%s = \"%s\"\n", cfg->schema[i].key, t);
            else sb_printf(b, "%s = %s\n", cfg->schema[i].key, t);
        }
    }
}

char *rq_config_to_string(const rq_config *cfg) {
    if (!cfg) return NULL;
    sbuf b = {0};
    build_dump(cfg, &b);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

rq_status rq_config_dump(const rq_config *cfg, FILE *f) {
    if (!cfg || !f) return RQ_EINVAL;
    char *s = rq_config_to_string(cfg);
    if (!s) return RQ_ENOMEM;
    int bad = fputs(s, f) == EOF;
    free(s);
    return bad ? RQ_EIO : RQ_OK;
}

static const char *type_name(rq_cfg_type t) {
    switch (t) {
    case RQ_CFG_INT: return "int";
    case RQ_CFG_FLOAT: return "float";
    case RQ_CFG_BOOL: return "bool";
    case RQ_CFG_STRING: return "string";
    case RQ_CFG_PATH: return "path";
    case RQ_CFG_ENUM: return "enum";
    case RQ_CFG_INTS: return "int list";
    }
    return "?";
}

void rq_config_print_help_schema(const rq_cfg_spec *sc, int n, FILE *f) {
    if (!sc || !f) return;
    fprintf(f, "Configuration keys (INI sections; override with --set section.key=value):\n");
    for (int s = 0; s < n; s++) {
        if (!first_of_section(sc, s)) continue;
        fprintf(f, "\n[%s]\n", sc[s].section);
        for (int i = s; i < n; i++) {
            const rq_cfg_spec *sp = &sc[i];
            if (strcmp(sp->section, sc[s].section) != 0) continue;
            char kind[400];
            switch (sp->type) {
            case RQ_CFG_INT:
            case RQ_CFG_INTS: snprintf(kind, sizeof kind, "%s in [%.0f, %.0f]", type_name(sp->type), sp->min, sp->max); break;
            case RQ_CFG_FLOAT: snprintf(kind, sizeof kind, "float in [%g, %g]", sp->min, sp->max); break;
            case RQ_CFG_ENUM: snprintf(kind, sizeof kind, "one of %s", sp->choices); break;
            default: snprintf(kind, sizeof kind, "%s", type_name(sp->type)); break;
            }
            char def[200];
            snprintf(def, sizeof def, needs_quotes(sp->def) ? "\"%s\"" : "%s", sp->def);
            fprintf(f, "  %-18s = %-22s %s\n", sp->key, def, kind);
            if (sp->help) fprintf(f, "      %s\n", sp->help);
        }
    }
}

void rq_config_print_help(FILE *f) {
    int n;
    const rq_cfg_spec *sc = rq_config_schema(&n);
    rq_config_print_help_schema(sc, n, f);
}
