/* fuzz_config.c: the INI config parser (src/io/config.c).
 *
 * Input: INI text. It is parsed from a string (rq_config_load_string) and as
 * a file (rq_config_load, which also checks for NUL bytes and size); its
 * first line is also tried as a --set argument. Invariants:
 * - both paths agree on success / failure for NUL-free input;
 * - a failed load leaves the config exactly as it was (dump unchanged);
 * - errors are one line and name the file (or "--set");
 * - a loaded config dumps to INI that reloads to the same dump (round trip). */
#include "fuzz_common.h"

#include "robuq/config.h"

static char *cfg_dump(const rq_config *cfg) {
    char *s = rq_config_to_string(cfg);
    if (!s) fz_fail("rq_config_to_string returned NULL");
    return s;
}

FUZZ_TARGET(config) {
    fz_quiet();
    fz_dir(); /* relative includes resolve in an empty directory: */
    unlink("fuzz.ini"); /* ... without the previous input's file (below) */
    if (size > 1 << 16) return 0; /* configs are small; long inputs only slow the fuzzer */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    int has_nul = strlen(text) != size;

    rq_config *cfg = rq_config_new();
    if (!cfg) fz_fail("rq_config_new failed");
    char *before = cfg_dump(cfg);
    rq_err e = {0};
    rq_status s1 = rq_config_load_string(cfg, text, "fuzz.ini", &e);
    if (s1 != RQ_OK) {
        fz_check_msg(&e, "fuzz.ini", "load_string");
        char *after = cfg_dump(cfg);
        if (strcmp(before, after)) fz_fail("failed load changed the config");
        free(after);
    } else {
        /* round trip: dump -> reload -> same dump */
        char *d1 = cfg_dump(cfg);
        rq_config *c2 = rq_config_new();
        rq_err e2 = {0};
        if (rq_config_load_string(c2, d1, "dump.ini", &e2) != RQ_OK)
            fz_fail("dumped config does not reload: %s\n--- dump ---\n%s", e2.msg, d1);
        char *d2 = cfg_dump(c2);
        if (strcmp(d1, d2)) fz_fail("dump/reload/dump differs:\n--- 1 ---\n%s\n--- 2 ---\n%s", d1, d2);
        free(d1), free(d2);
        rq_config_free(c2);
    }

    /* the same text as a file (in an empty private directory, so includes
     * can only find the file itself) */
    char path[96];
    if (fz_tmpfile(data, size, "fuzz.ini", path, sizeof path) == 0) {
        rq_config *cf = rq_config_new();
        rq_err ef = {0};
        rq_status s2 = rq_config_load(cf, path, &ef);
        if (s2 != RQ_OK) fz_check_msg(&ef, path, "load file");
        if (!has_nul && (s1 == RQ_OK) != (s2 == RQ_OK))
            fz_fail("string and file loads disagree: %d vs %d (%s | %s)", (int)s1, (int)s2, e.msg, ef.msg);
        if (has_nul && s2 == RQ_OK) fz_fail("file with a NUL byte accepted");
        rq_config_free(cf);
    }

    /* first line as a --set override */
    char *nl = strchr(text, '\n');
    if (nl) *nl = '\0';
    rq_err es = {0};
    rq_config *c3 = rq_config_new();
    char *b3 = cfg_dump(c3);
    if (rq_config_set(c3, text, &es) != RQ_OK) {
        fz_check_msg(&es, "--set", "--set");
        char *a3 = cfg_dump(c3);
        if (strcmp(b3, a3)) fz_fail("failed --set changed the config");
        free(a3);
    }
    free(b3);
    rq_config_free(c3);

    free(before);
    rq_config_free(cfg);
    free(text);
    return 0;
}
