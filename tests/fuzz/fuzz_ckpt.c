/* fuzz_ckpt.c: the checkpoint reader (src/io/checkpoint.c) on byte-level
 * mutations of small valid checkpoints (a tiny FP model with EMA, Adam state,
 * RNG, loader position and loss log; and a QAT one).
 *
 * Path under test, as robuq-train --resume and robuq-sample take it: read the
 * stored config, build the model it describes (skipped when it would be
 * large: the fuzzer is after parsing bugs, not allocation limits), then load
 * params + EMA + optimizer + meta, and the EMA weights alone. A successful
 * load must give finite-or-not weights of the right count and a sane meta;
 * errors must be one line naming the file. */
#include "fuzz_h5check.h"

FUZZ_TARGET(ckpt) {
    fz_quiet();
    fz_dir(); /* a config include in the stored text resolves in an empty directory */
    char path[96];
    if (fz_tmpfile(data, size, "ckpt.h5", path, sizeof path)) return 0;
    fz_check_ckpt_file(path);
    return 0;
}
