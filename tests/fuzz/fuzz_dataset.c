/* fuzz_dataset.c: the dataset loader (rq_dataset_load in src/data/dataset.c
 * over src/io/h5io.c) on byte-level mutations of small valid dataset files.
 *
 * libhdf5 itself is not our code (and is not instrumented); what is under
 * test is our validation on top of it. A loaded dataset must be consistent:
 * n >= 1, positive sizes, labels in [0, num_classes), finite values in the
 * documented range; then the batch loader must run over it. Errors must be
 * one line naming the file. */
#include "fuzz_h5check.h"

FUZZ_TARGET(dataset) {
    fz_quiet();
    fz_dir();
    char path[96];
    if (fz_tmpfile(data, size, "dataset.h5", path, sizeof path)) return 0;
    fz_check_dataset_file(path);
    return 0;
}
