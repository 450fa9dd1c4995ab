/* fuzz_export.c: the packed W1.58 export loader (rq_export_load in
 * src/io/export.c, format "robuq-w158", include/robuq/export.h).
 *
 * Built by run_fuzz.sh only once src/io/export.c exists (until then this
 * target is listed as disabled). Input: byte-level mutations of a small
 * valid export (run_fuzz.sh seeds writes one when the exporter exists).
 * The stored config decides the model size, so it is read first and large
 * models are skipped; a successful load must give a model, an error one
 * line naming the file. */
#include "fuzz_h5check.h"

#include "robuq/export.h"
#include "robuq/h5io.h"

FUZZ_TARGET(export) {
    fz_quiet();
    fz_dir();
    char path[96];
    if (fz_tmpfile(data, size, "export.h5", path, sizeof path)) return 0;
    /* size guard from the stored config */
    rq_err eg = {0};
    rq_h5_reader *r = rq_h5r_open(path, &eg);
    int small = 0;
    if (r) {
        char *text = malloc(1 << 20);
        rq_config *cfg = rq_config_new();
        rq_dit_config mc;
        if (text && rq_h5r_get_str(r, NULL, "config", text, 1 << 20, &eg) == RQ_OK &&
            rq_config_load_string(cfg, text, path, &eg) == RQ_OK && rq_model_config_from(cfg, &mc, &eg) == RQ_OK)
            small = ckpt_model_small(&mc);
        rq_config_free(cfg);
        free(text);
        rq_h5r_close(r);
    }
    rq_dit m;
    memset(&m, 0, sizeof m);
    rq_config *cfg = NULL;
    rq_export_stats st;
    rq_err e = {0};
    if (small) {
        if (rq_export_load(path, &m, &cfg, &st, &e) == RQ_OK) {
            if (m.n_params < 1 && st.ternary_layers < 1) fz_fail("export: ok but empty model");
            rq_config_free(cfg);
            rq_dit_free(&m);
        } else {
            fz_check_msg(&e, path, "export load");
        }
    }
    (void)rq_export_is(path);
    return 0;
}
