/* config.h: schema-driven INI configuration.
 *
 * Every key the project understands is listed once in a static schema table
 * (src/io/config_schema.c) with its type, default, range and help text. A
 * config starts filled with the defaults; INI files and "--set" overrides are
 * applied on top, in the order given (later assignments win).
 *
 * File syntax:
 *   # comment            ; comment          (whole line)
 *   [section]
 *   key = value          # inline comment   (# or ; after whitespace)
 *   key = "quoted # value"                  (quotes keep # and ; literal)
 *   include = other.ini  (top level or inside a section)
 *
 * Rules:
 * - include paths are relative to the directory of the including file. The
 *   included file starts in the includer's current section (so a fragment of
 *   keys can be included inside [quant]); its own [section] lines do not leak
 *   back. Depth is limited to RQ_CFG_MAX_INCLUDE and cycles are errors that
 *   name the chain.
 * - A key given twice (in one file or across files) is not an error: the last
 *   assignment wins, like a later --set overriding a file.
 * - path values are stored verbatim (relative to the working directory), so a
 *   dumped config reloads to the same paths from anywhere in the same cwd.
 * - Errors never abort: they name file:line, section and key, e.g.
 *   "a.ini:12: [train] lr: expected a float, got 'abc'". File problems give
 *   RQ_EFORMAT (RQ_EIO when a file cannot be opened), bad --set strings give
 *   RQ_EINVAL. On error the config is left exactly as it was before the call.
 *
 * Getters take "section.key". Asking for a key that is not in the schema, or
 * with the wrong type, is a programming error: it is logged and the getter
 * returns 0 / NULL. */
#ifndef ROBUQ_CONFIG_H
#define ROBUQ_CONFIG_H

#include <stdio.h>
#include "robuq/common.h"

#define RQ_CFG_MAX_INCLUDE 16

typedef enum {
    RQ_CFG_INT,     /* integer in [min, max] */
    RQ_CFG_FLOAT,   /* finite double in [min, max] */
    RQ_CFG_BOOL,    /* on/off, true/false, yes/no, 1/0 (any case) */
    RQ_CFG_STRING,  /* free text */
    RQ_CFG_PATH,    /* file path, "" = none */
    RQ_CFG_ENUM,    /* one word of choices ("a|b|c"), matched ignoring case */
    RQ_CFG_INTS,    /* comma separated integers, each in [min, max]; "" = empty */
} rq_cfg_type;

/* One schema row. The default is written as it would be in an INI file. */
typedef struct {
    const char *section;
    const char *key;
    rq_cfg_type type;
    const char *def;
    double min, max;      /* INT / FLOAT / INTS: inclusive range */
    const char *choices;  /* ENUM: '|' separated words */
    const char *help;
} rq_cfg_spec;

/* The project's schema (config_schema.c): *n receives the number of rows. */
const rq_cfg_spec *rq_config_schema(int *n);

typedef struct rq_config rq_config;

/* New config with every key at its default (project schema). NULL on OOM or
 * if a schema default does not parse (logged: a bug in the table). */
rq_config *rq_config_new(void);
/* Same with another schema (tests, small tools). The table must outlive cfg. */
rq_config *rq_config_new_schema(const rq_cfg_spec *schema, int n);
rq_config *rq_config_clone(const rq_config *cfg);
void rq_config_free(rq_config *cfg);

/* Apply an INI file on top of cfg. */
rq_status rq_config_load(rq_config *cfg, const char *path, rq_err *err);
/* Apply INI text (e.g. a config stored in a checkpoint). name is used in
 * messages; includes in it are relative to the working directory. */
rq_status rq_config_load_string(rq_config *cfg, const char *text, const char *name, rq_err *err);
/* Apply one "section.key=value" override (the argument of --set). */
rq_status rq_config_set(rq_config *cfg, const char *assignment, rq_err *err);

/* Getters ("section.key"). rq_cfg_float also accepts INT keys; rq_cfg_str
 * works for every type and returns the canonical text of the value. */
int rq_cfg_int(const rq_config *cfg, const char *key);
double rq_cfg_float(const rq_config *cfg, const char *key);
int rq_cfg_bool(const rq_config *cfg, const char *key);
const char *rq_cfg_str(const rq_config *cfg, const char *key);
/* INTS: copies up to max values into out and returns the full list length
 * (so count > max means truncated); -1 on a bad key. */
int rq_cfg_ints(const rq_config *cfg, const char *key, int *out, int max);
/* 1 if the key was assigned by a file or --set (even to its default value). */
int rq_cfg_is_set(const rq_config *cfg, const char *key);
/* Where the current value came from: "default", "--set" or "file.ini:12". */
const char *rq_cfg_origin(const rq_config *cfg, const char *key);
/* 1 if "section.key" is in the schema. */
int rq_cfg_has(const rq_config *cfg, const char *key);

/* Full resolved config as INI (every key, schema order); reloading it gives
 * the same values. */
rq_status rq_config_dump(const rq_config *cfg, FILE *f);
/* Same text in a malloc'd string (caller frees); NULL on OOM. */
char *rq_config_to_string(const rq_config *cfg);

/* --help text: every section/key with type, range or choices, default, help. */
void rq_config_print_help(FILE *f);
void rq_config_print_help_schema(const rq_cfg_spec *schema, int n, FILE *f);

/* Levenshtein distance (used for "did you mean" hints). */
int rq_edit_distance(const char *a, const char *b);

#endif
