/* fuzz_png.c: the PNG reader (rq_png_read in src/io/image.c, libpng 1.6).
 *
 * Input: a PNG file. Success must give 1, 3 or 4 channels and a buffer of
 * exactly w*h*c bytes (every byte is read so ASan checks the length); an
 * error must be one line naming the file, with *pixels NULL. */
#include "fuzz_common.h"

#include "robuq/image.h"

FUZZ_TARGET(png) {
    fz_quiet();
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    uint8_t *px = (uint8_t *)1;
    int w = 0, h = 0, c = 0;
    rq_err e = {0};
    if (rq_png_read(path, &px, &w, &h, &c, &e) == RQ_OK) {
        if (!px || w < 1 || h < 1 || (c != 1 && c != 3 && c != 4)) fz_fail("png: ok with %dx%dx%d", w, h, c);
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)w * h * c; i++) sum += px[i];
        (void)sum;
    } else {
        if (px) fz_fail("png: error but pixels not NULL");
        fz_check_msg(&e, path, "png");
    }
    free(px);
    close(fd);
    return 0;
}
