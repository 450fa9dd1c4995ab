/* test_regress.c: every fuzz seed (tests/fuzz/corpus/<target>/) and every
 * input that once crashed a fuzz target or broke one of its invariants
 * (tests/regress/<target>/), run through the same target code as the
 * fuzzers (tests/fuzz/fuzz_<target>.c, built here without libFuzzer).
 *
 * A target aborts on a broken invariant, so a failure here is a crash of
 * this test with the target's message on stderr. Under tests/run.sh's
 * ASan + UBSan build this also checks every input for memory errors and,
 * at exit, for leaks. Targets whose code is not in the tree yet (the export
 * loader until src/io/export.c lands) are left out the way run_fuzz.sh
 * leaves them out. */
#define FUZZ_NO_MAIN
#include "fuzz/fuzz_config.c"
#include "fuzz/fuzz_idx.c"
#include "fuzz/fuzz_png.c"
#include "fuzz/fuzz_npy.c"
#include "fuzz/fuzz_safetensors.c"
#include "fuzz/fuzz_dataset.c"
#include "fuzz/fuzz_ckpt.c"
#include "fuzz/fuzz_h5gen.c"
#if __has_include("../src/io/export.c")
#include "fuzz/fuzz_export.c"
#define HAVE_EXPORT_TARGET 1
#endif

#include <dirent.h>

#include "testutil.h"

typedef int (*target_fn)(const uint8_t *, size_t);

/* Runs fn on every file of dir (sorted); returns how many. */
static int replay_dir(const char *dir, target_fn fn) {
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) return 0; /* no such directory: nothing saved yet */
    int count = 0;
    for (int i = 0; i < n; i++) {
        char path[1024];
        int hidden = ents[i]->d_name[0] == '.'; /* ., .., .gitkeep */
        snprintf(path, sizeof path, "%s/%s", dir, ents[i]->d_name);
        free(ents[i]);
        if (hidden) continue;
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
        assert_non_null(buf);
        size_t got = fread(buf, 1, (size_t)len, f);
        fclose(f);
        assert_int_equal(got, (size_t)len);
        fprintf(stderr, "  %s\n", path);
        fn(buf, got);
        free(buf);
        count++;
    }
    free(ents);
    return count;
}

static void replay(const char *target, target_fn fn, int min_seeds) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fuzz/corpus/%s", ROBUQ_TEST_DIR, target);
    int seeds = replay_dir(dir, fn);
    snprintf(dir, sizeof dir, "%s/regress/%s", ROBUQ_TEST_DIR, target);
    int saved = replay_dir(dir, fn);
    fprintf(stderr, "%s: %d seeds, %d saved crash inputs\n", target, seeds, saved);
    assert_true(seeds >= min_seeds); /* the corpus is really there */
}

static void test_config(void **state) { replay("config", fuzz_config, 3); }
static void test_idx(void **state) { replay("idx", fuzz_idx, 4); }
static void test_png(void **state) { replay("png", fuzz_png, 6); }
static void test_npy(void **state) { replay("npy", fuzz_npy, 4); }
static void test_safetensors(void **state) { replay("safetensors", fuzz_safetensors, 3); }
static void test_dataset(void **state) { replay("dataset", fuzz_dataset, 3); }
static void test_ckpt(void **state) { replay("ckpt", fuzz_ckpt, 2); }
static void test_h5gen(void **state) { replay("h5gen", fuzz_h5gen, 0); }
#ifdef HAVE_EXPORT_TARGET
static void test_export(void **state) { replay("export", fuzz_export, 1); }
#endif

/* The structure-aware generator on fixed recipes: all-zero bytes (every
 * element "correct": the loaders must accept the file), and a sweep of
 * one-byte variations of it (each element wrong in turn), for both the
 * dataset and the checkpoint recipe. Deterministic, so it runs everywhere
 * without libFuzzer. */
static void test_h5gen_sweep(void **state) {
    uint8_t recipe[256];
    for (int kind = 0; kind < 2; kind++)
        for (int pos = 1; pos < 48; pos++)
            for (int v = 0; v < 16; v += 3) {
                memset(recipe, 0, sizeof recipe);
                recipe[0] = (uint8_t)kind;
                recipe[pos] = (uint8_t)(v * 17 + 7);
                fuzz_h5gen(recipe, sizeof recipe);
            }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),  cmocka_unit_test(test_idx),     cmocka_unit_test(test_png),
        cmocka_unit_test(test_npy),     cmocka_unit_test(test_safetensors), cmocka_unit_test(test_dataset),
        cmocka_unit_test(test_ckpt),    cmocka_unit_test(test_h5gen),   cmocka_unit_test(test_h5gen_sweep),
#ifdef HAVE_EXPORT_TARGET
        cmocka_unit_test(test_export),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
