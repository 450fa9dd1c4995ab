/* test_faults.c: robuq-train (and robuq-data) under faults.
 *
 * - kill -9 while a checkpoint is being written: the temp file is still
 *   there (so the kill landed mid-write), ckpt_last.h5 is the previous
 *   checkpoint and loads; restarting resumes from it, removes the stale temp
 *   file, and ends with the same losses (bit for bit) as an uninterrupted run.
 * - SIGTERM and SIGINT: exit 130 after saving a loadable checkpoint at the
 *   current step; resuming gives the uninterrupted run's losses.
 * - disk full: a per-file size limit (RLIMIT_FSIZE, works unprivileged) and,
 *   when the test may mount (root with mount namespaces), a small tmpfs:
 *   exit 1 with a one-line error naming the file, no partial or temp file,
 *   and on the tmpfs the previous checkpoint intact and loadable.
 * - read-only output directory: chmod 0555 when not root; as root (which
 *   ignores permissions) a tmpfs mounted read-only; skipped with a message
 *   when neither is possible.
 * - NaN / Inf: a batch with huge values stops the run with a message naming
 *   the step and the first layer with a non-finite gradient (and saves the
 *   last good state); [train] nan_policy = skip skips such batches instead.
 *
 * Mounts are made in a private mount namespace of this test process, so
 * they vanish with it even if the test crashes. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* unshare */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "robuq/dataset.h"
#include "robuq/h5io.h"
#include "robuq/train.h"
#include "testutil.h"

#define TRAIN ROBUQ_BIN_DIR "/robuq-train"
#define DATA ROBUQ_BIN_DIR "/robuq-data"

static char g_dir[64];
static int g_can_mount; /* private mount namespace available (root) */

/* ------------------------------------------------------------------ helpers */

static void write_config(const char *name, const char *data_path) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f,
            TU_TINY_MODEL_INI
            "[data]\npath = %s\n"
            "[train]\nbatch_size = 8\nsteps = 16\nlr = 1e-3\nlog_every = 1\nckpt_every = 0\nema_decay = 0.9\n"
            "val_every = 0\n[sample]\nsteps = 2\nper_class = 1\n",
            data_path);
    fclose(f);
}

static void make_images(const char *path, int n) {
    uint8_t *img = malloc((size_t)n * 64);
    int32_t *lab = malloc((size_t)n * sizeof(int32_t));
    uint64_t s = 7;
    for (int i = 0; i < n * 64; i++) img[i] = (uint8_t)(tu_next(&s) & 255);
    for (int i = 0; i < n; i++) lab[i] = i % 3;
    rq_dataset_src src = {.kind = RQ_DATA_IMAGES, .n = n, .c = 1, .h = 8, .w = 8, .images = img, .labels = lab,
                          .num_classes = 3, .compression = 0};
    rq_err e = {0};
    if (rq_dataset_write(path, &src, &e)) fail_msg("%s", e.msg);
    free(img), free(lab);
}

static int setup(void **state) {
    strcpy(g_dir, "/tmp/rqfaultXXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    char p[256];
    snprintf(p, sizeof p, "%s/data.h5", g_dir);
    make_images(p, 48);
    write_config("tiny.ini", p);
    /* latents where sample 0 is huge (finite in the file, overflows in the model) */
    int n = 16;
    float *x = malloc(sizeof(float) * (size_t)n * 64);
    int32_t lab[16];
    uint64_t s = 3;
    for (int i = 0; i < n * 64; i++) x[i] = i < 64 ? 3e37f : tu_uniform(&s, -1, 1);
    for (int i = 0; i < n; i++) lab[i] = i % 3;
    rq_dataset_src src = {.kind = RQ_DATA_LATENTS, .n = n, .c = 1, .h = 8, .w = 8, .latents = x, .labels = lab,
                          .num_classes = 3, .scale = 1.0, .compression = 0};
    snprintf(p, sizeof p, "%s/huge.h5", g_dir);
    rq_err e = {0};
    if (rq_dataset_write(p, &src, &e)) fail_msg("%s", e.msg);
    free(x);
    write_config("nan.ini", p);
    /* mounts in a namespace of our own (root only) */
    g_can_mount = geteuid() == 0 && unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
    return 0;
}

static int teardown(void **state) {
    char p[256];
    /* a failed test may leave a tmpfs mounted under g_dir (only in our namespace) */
    const char *mnts[] = {"full", "ro", "full_data"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, mnts[i]);
        umount2(p, MNT_DETACH);
    }
    snprintf(p, sizeof p, "%s/ro_chmod", g_dir);
    chmod(p, 0755);
    return tu_rmtree(g_dir) == 0 ? 0 : -1;
}

/* Starts argv[0] with stdout+stderr to log_path; fsize > 0 limits the size
 * of every file the child writes (RLIMIT_FSIZE; SIGXFSZ ignored so writes
 * fail with EFBIG as on a full disk). */
static pid_t spawn(char *const argv[], const char *log_path, long fsize) {
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(126);
        dup2(fd, 1), dup2(fd, 2), close(fd);
        int in = open("/dev/null", O_RDONLY);
        if (in >= 0) dup2(in, 0), close(in);
        signal(SIGINT, SIG_DFL), signal(SIGTERM, SIG_DFL);
        if (fsize > 0) {
            struct rlimit rl = {(rlim_t)fsize, (rlim_t)fsize};
            setrlimit(RLIMIT_FSIZE, &rl);
            signal(SIGXFSZ, SIG_IGN);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int wait_rc(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* robuq-train CFG --set train.out_dir=OUT [extra --set ...]; returns exit code. */
static int train(const char *cfg, const char *out, const char *log, long fsize, const char **sets, int nsets) {
    char c[256], o[300], l[300];
    snprintf(c, sizeof c, "%s/%s", g_dir, cfg);
    snprintf(o, sizeof o, "train.out_dir=%s", out);
    snprintf(l, sizeof l, "%s/%s", g_dir, log);
    char *argv[32] = {TRAIN, c, "--set", o};
    int k = 4;
    for (int i = 0; i < nsets && k < 30; i++) argv[k++] = "--set", argv[k++] = (char *)sets[i];
    argv[k] = NULL;
    return wait_rc(spawn(argv, l, fsize));
}

static void slurp(const char *path, char *buf, size_t cap) {
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static const char *last_line(char *text) {
    size_t n = strlen(text);
    while (n > 0 && text[n - 1] == '\n') text[--n] = '\0';
    char *nl = strrchr(text, '\n');
    return nl ? nl + 1 : text;
}

/* Number of "*.tmp.*" files in dir (temp files of the atomic writers). */
static int count_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static float *read_losses(const char *ckpt, long *n) {
    rq_err e = {0};
    rq_h5_reader *r = rq_h5r_open(ckpt, &e);
    if (!r) fail_msg("%s", e.msg);
    int nd;
    long sh[RQ_H5_MAX_DIMS];
    if (rq_h5r_shape(r, "/log/loss", &nd, sh, &e)) fail_msg("%s", e.msg);
    float *l = malloc(sizeof(float) * (size_t)(sh[0] ? sh[0] : 1));
    if (rq_h5r_read_f32(r, "/log/loss", l, sh[0], &e)) fail_msg("%s", e.msg);
    rq_h5r_close(r);
    *n = sh[0];
    return l;
}

/* Loads a checkpoint the way robuq-train resumes one (model from its
 * config, params + EMA + Adam + meta); returns its step, -1 if it fails. */
static long load_ckpt(const char *path, int check_finite) {
    rq_dit m;
    rq_config *cfg = NULL;
    rq_err e = {0};
    if (rq_model_from_ckpt(path, "params", &m, &cfg, &e)) {
        fprintf(stderr, "load %s: %s\n", path, e.msg);
        return -1;
    }
    rq_ema ema;
    rq_adamw opt;
    rq_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    long step = -1;
    if (!rq_ema_init(&ema, &m, &e) && !rq_adamw_init(&opt, &m, 1e-3f, 0.9f, 0.999f, 0, &e)) {
        if (!rq_ckpt_load(path, &m, "params", &ema, &opt, &meta, &e)) step = meta.step;
        else fprintf(stderr, "load %s: %s\n", path, e.msg);
        rq_adamw_free(&opt);
        rq_ema_free(&ema);
    }
    if (check_finite)
        for (int i = 0; i < m.n_params; i++)
            for (long j = 0; j < m.params[i]->n; j++)
                if (!isfinite(m.params[i]->data[j])) fail_msg("%s: %s has a non-finite value", path, m.params[i]->name);
    rq_ckpt_meta_free(&meta);
    rq_dit_free(&m);
    rq_config_free(cfg);
    return step;
}

static void expect_same_losses(const char *ref_ckpt, const char *ckpt, long n_expect) {
    long na, nb;
    float *a = read_losses(ref_ckpt, &na), *b = read_losses(ckpt, &nb);
    assert_int_equal(na, n_expect);
    assert_int_equal(nb, n_expect);
    for (long i = 0; i < na; i++)
        if (a[i] != b[i]) fail_msg("step %ld: loss %.9g uninterrupted vs %.9g after the fault", i + 1, a[i], b[i]);
    free(a), free(b);
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* The uninterrupted reference run (16 steps), made once. */
static const char *reference(void) {
    static char ckpt[300];
    if (!ckpt[0]) {
        char out[256];
        snprintf(out, sizeof out, "%s/ref", g_dir);
        assert_int_equal(train("tiny.ini", out, "ref.log", 0, NULL, 0), 0);
        snprintf(ckpt, sizeof ckpt, "%s/ckpt_last.h5", out);
    }
    return ckpt;
}

/* ------------------------------------------------------------------ kill -9 */

static void test_kill9_during_checkpoint(void **state) {
    const char *ref = reference();
    char out[256], ckpt[300], tmp[340], log[300], c[256], o[300];
    int landed = 0;
    long kept_step = -1;
    for (int attempt = 0; attempt < 8 && !landed; attempt++) {
        snprintf(out, sizeof out, "%s/kill%d", g_dir, attempt);
        snprintf(ckpt, sizeof ckpt, "%s/ckpt_last.h5", out);
        snprintf(log, sizeof log, "%s/kill%d.log", g_dir, attempt);
        snprintf(c, sizeof c, "%s/tiny.ini", g_dir);
        snprintf(o, sizeof o, "train.out_dir=%s", out);
        char *argv[] = {TRAIN, c, "--set", o, "--set", "train.ckpt_every=2", NULL};
        pid_t pid = spawn(argv, log, 0);
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", ckpt, (long)pid);
        /* wait for a committed checkpoint, then for the next write to start */
        int alive = 1;
        while (alive && access(ckpt, F_OK) != 0) {
            alive = waitpid(pid, NULL, WNOHANG) == 0;
            sleep_us(200);
        }
        /* tight loop from here: the next write starts within two steps */
        while (alive && access(tmp, F_OK) != 0) alive = waitpid(pid, NULL, WNOHANG) == 0;
        if (!alive) continue; /* finished before we caught a write: try again */
        kill(pid, SIGKILL);
        int rc = wait_rc(pid);
        assert_int_equal(rc, 128 + SIGKILL);
        landed = access(tmp, F_OK) == 0; /* else the rename won the race */
        if (landed) {
            kept_step = load_ckpt(ckpt, 1);
            fprintf(stderr, "killed pid %ld mid-write (attempt %d): %s left behind, %s holds step %ld\n", (long)pid,
                    attempt + 1, strrchr(tmp, '/') + 1, strrchr(ckpt, '/') + 1, kept_step);
        }
    }
    if (!landed) fail_msg("never caught robuq-train inside a checkpoint write in 8 attempts");
    /* the previous checkpoint is intact: it loads, at an even step (ckpt_every = 2) */
    assert_true(kept_step >= 2 && kept_step % 2 == 0 && kept_step < 16);
    /* restart: resumes from it, removes the stale temp file, same losses */
    assert_int_equal(train("tiny.ini", out, "kill_resume.log", 0, NULL, 0), 0);
    char rl[300], text[1 << 16];
    snprintf(rl, sizeof rl, "%s/kill_resume.log", g_dir);
    slurp(rl, text, sizeof text);
    assert_non_null(strstr(text, "resumed from"));
    assert_non_null(strstr(text, "left by an interrupted run"));
    assert_int_equal(count_temps(out), 0);
    expect_same_losses(ref, ckpt, 16);
}

/* ------------------------------------------------------------------ signals */

static void signal_case(int sig, const char *name) {
    char out[256], ckpt[300], log[300], c[256], o[300], text[1 << 16];
    snprintf(out, sizeof out, "%s/%s", g_dir, name);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt_last.h5", out);
    snprintf(log, sizeof log, "%s/%s.log", g_dir, name);
    snprintf(c, sizeof c, "%s/tiny.ini", g_dir);
    snprintf(o, sizeof o, "train.out_dir=%s", out);
    char *argv[] = {TRAIN, c, "--set", o, "--set", "train.steps=100000", NULL};
    pid_t pid = spawn(argv, log, 0);
    /* wait until training runs (step 3 logged), then signal */
    for (int i = 0; i < 20000; i++) {
        slurp(log, text, sizeof text);
        if (strstr(text, "step 3/")) break;
        sleep_us(1000);
    }
    assert_non_null(strstr(text, "step 3/"));
    kill(pid, sig);
    assert_int_equal(wait_rc(pid), 130);
    slurp(log, text, sizeof text);
    char want[64];
    snprintf(want, sizeof want, "stopped by signal %d", sig);
    assert_non_null(strstr(text, want));
    assert_int_equal(count_temps(out), 0);
    long step = load_ckpt(ckpt, 1);
    fprintf(stderr, "%s at step %ld: saved and exited 130\n", name, step);
    assert_true(step >= 3 && step < 16);
    /* resume with the config's 16 steps: the losses of the uninterrupted
     * 16-step reference run (the step count only decides where to stop) */
    assert_int_equal(train("tiny.ini", out, "sig_resume.log", 0, NULL, 0), 0);
    expect_same_losses(reference(), ckpt, 16);
}

static void test_sigterm_saves_and_exits(void **state) { signal_case(SIGTERM, "sigterm"); }
static void test_sigint_saves_and_exits(void **state) { signal_case(SIGINT, "sigint"); }

/* ------------------------------------------------------------------ disk full */

static off_t file_size(const char *p) {
    struct stat st;
    return stat(p, &st) ? -1 : st.st_size;
}

/* A write limit below the checkpoint size: the first checkpoint cannot be
 * written. Unprivileged, so it runs everywhere. */
static void test_disk_full_file_size_limit(void **state) {
    const char *ref = reference();
    off_t size = file_size(ref);
    assert_true(size > 100000);
    char out[256], log[300], text[1 << 16], ckpt[300];
    snprintf(out, sizeof out, "%s/efbig", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt_last.h5", out);
    int rc = train("tiny.ini", out, "efbig.log", size / 4, (const char *[]){"train.ckpt_every=2", "train.steps=6"}, 2);
    snprintf(log, sizeof log, "%s/efbig.log", g_dir);
    slurp(log, text, sizeof text);
    const char *last = last_line(text);
    fprintf(stderr, "file size limit %ld bytes -> exit %d: %s\n", (long)(size / 4), rc, last);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(last, ckpt));
    assert_int_equal(access(ckpt, F_OK), -1); /* no checkpoint, not even a partial one */
    assert_int_equal(count_temps(out), 0);

    /* robuq-data under the same kind of limit: no partial dataset */
    char img[300], lab[300], dout[300], dlog[300];
    snprintf(img, sizeof img, "%s/big-images-idx3", g_dir);
    snprintf(lab, sizeof lab, "%s/big-labels-idx1", g_dir);
    snprintf(dout, sizeof dout, "%s/efbig_data/out.h5", g_dir);
    snprintf(dlog, sizeof dlog, "%s/efbig_data.log", g_dir);
    FILE *f = fopen(img, "wb");
    uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0x07, 0xd0, 0, 0, 0, 28, 0, 0, 0, 28}; /* 2000 x 28 x 28 */
    fwrite(hdr, 1, 16, f);
    uint64_t s = 9;
    for (int i = 0; i < 2000 * 784; i++) fputc((int)(tu_next(&s) & 255), f);
    fclose(f);
    f = fopen(lab, "wb");
    uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0x07, 0xd0};
    fwrite(lh, 1, 8, f);
    for (int i = 0; i < 2000; i++) fputc(i % 10, f);
    fclose(f);
    char *argv[] = {DATA, "idx", img, lab, dout, NULL};
    rc = wait_rc(spawn(argv, dlog, 256 * 1024));
    slurp(dlog, text, sizeof text);
    last = last_line(text);
    fprintf(stderr, "robuq-data idx under a 256 KiB limit -> exit %d: %s\n", rc, last);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(last, dout));
    assert_int_equal(access(dout, F_OK), -1);
    char ddir[300];
    snprintf(ddir, sizeof ddir, "%s/efbig_data", g_dir);
    assert_int_equal(count_temps(ddir), 0);
}

static int mount_tmpfs(const char *dir, long bytes, int readonly) {
    mkdir(dir, 0755);
    char opts[64];
    snprintf(opts, sizeof opts, "size=%ld", bytes);
    return mount("tmpfs", dir, "tmpfs", readonly ? MS_RDONLY : 0, opts);
}

/* A real ENOSPC: a tmpfs with room for one checkpoint but not for the next
 * one's temp file next to it. The run stops at the second checkpoint and
 * the first stays intact. */
static void test_disk_full_tmpfs(void **state) {
    if (!g_can_mount) {
        fprintf(stderr, "skipped: mounting a small tmpfs needs root and a mount namespace\n");
        skip();
    }
    const char *ref = reference();
    off_t size = file_size(ref);
    char mnt[256], out[300], log[300], text[1 << 16], ckpt[340];
    snprintf(mnt, sizeof mnt, "%s/full", g_dir);
    assert_int_equal(mount_tmpfs(mnt, (long)(size + size / 2 + 64 * 1024), 0), 0);
    snprintf(out, sizeof out, "%s/run", mnt);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt_last.h5", out);
    int rc = train("tiny.ini", out, "enospc.log", 0, (const char *[]){"train.ckpt_every=2", "train.steps=8"}, 2);
    snprintf(log, sizeof log, "%s/enospc.log", g_dir);
    slurp(log, text, sizeof text);
    const char *last = last_line(text);
    fprintf(stderr, "tmpfs of %ld bytes -> exit %d: %s\n", (long)(size + size / 2 + 64 * 1024), rc, last);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(last, ckpt));
    assert_non_null(strstr(last, "No space left on device"));
    assert_int_equal(count_temps(out), 0);
    assert_int_equal(load_ckpt(ckpt, 1), 2); /* the first checkpoint survived */
    umount2(mnt, MNT_DETACH);
}

/* ------------------------------------------------------------------ read-only */

static void test_read_only_output_dir(void **state) {
    char ro[256], out[300], log[300], text[1 << 16];
    if (geteuid() != 0) {
        snprintf(ro, sizeof ro, "%s/ro_chmod", g_dir);
        mkdir(ro, 0755);
        assert_int_equal(chmod(ro, 0555), 0);
    } else if (g_can_mount) {
        snprintf(ro, sizeof ro, "%s/ro", g_dir);
        assert_int_equal(mount_tmpfs(ro, 1 << 20, 1), 0);
    } else {
        fprintf(stderr, "skipped: running as root (permissions are ignored) without a mount namespace for a "
                        "read-only tmpfs\n");
        skip();
    }
    /* robuq-train: the run directory cannot be created */
    snprintf(out, sizeof out, "%s/run", ro);
    int rc = train("tiny.ini", out, "ro.log", 0, NULL, 0);
    snprintf(log, sizeof log, "%s/ro.log", g_dir);
    slurp(log, text, sizeof text);
    const char *last = last_line(text);
    fprintf(stderr, "robuq-train into a read-only dir -> exit %d: %s\n", rc, last);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(last, out));
    assert_true(strstr(last, "Read-only file system") || strstr(last, "Permission denied"));
    /* robuq-data: the output file cannot be created */
    char data[300], dout[300], dlog[300], lab[300];
    snprintf(dout, sizeof dout, "%s/out.h5", ro);
    snprintf(dlog, sizeof dlog, "%s/ro_data.log", g_dir);
    snprintf(data, sizeof data, "%s/ro-images", g_dir);
    snprintf(lab, sizeof lab, "%s/ro-labels", g_dir);
    uint8_t im[16 + 4 * 4] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 4};
    uint8_t lb[8 + 1] = {0, 0, 8, 1, 0, 0, 0, 1, 0};
    FILE *f = fopen(data, "wb");
    fwrite(im, 1, sizeof im, f);
    fclose(f);
    f = fopen(lab, "wb");
    fwrite(lb, 1, sizeof lb, f);
    fclose(f);
    char *argv[] = {DATA, "idx", data, lab, dout, NULL};
    rc = wait_rc(spawn(argv, dlog, 0));
    slurp(dlog, text, sizeof text);
    last = last_line(text);
    fprintf(stderr, "robuq-data into a read-only dir -> exit %d: %s\n", rc, last);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(last, dout));
    if (geteuid() == 0) umount2(ro, MNT_DETACH);
    else chmod(ro, 0755);
}

/* ------------------------------------------------------------------ NaN / Inf */

static void test_nonfinite_stops_with_step_and_layer(void **state) {
    char out[256], log[300], text[1 << 16], ckpt[300];
    snprintf(out, sizeof out, "%s/nan_stop", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt_last.h5", out);
    int rc = train("nan.ini", out, "nan_stop.log", 0, (const char *[]){"train.steps=4"}, 1);
    snprintf(log, sizeof log, "%s/nan_stop.log", g_dir);
    slurp(log, text, sizeof text);
    const char *last = last_line(text);
    fprintf(stderr, "huge sample -> exit %d: %s\n", rc, last);
    assert_int_equal(rc, 1);
    long step = -1;
    const char *p = strstr(last, "error: step ");
    assert_non_null(p);
    step = strtol(p + 12, NULL, 10);
    assert_true(step == 1 || step == 2); /* sample 0 is in one of the two batches of epoch 0 */
    assert_non_null(strstr(last, "non-finite"));
    p = strstr(last, "first layer with a non-finite gradient: ");
    assert_non_null(p);
    p += strlen("first layer with a non-finite gradient: ");
    assert_true(!strncmp(p, "x_embedder.", 11) || !strncmp(p, "blocks.", 7) || !strncmp(p, "t_embedder.", 11) ||
                !strncmp(p, "y_embedder.", 11) || !strncmp(p, "final_layer.", 12));
    assert_non_null(strstr(last, "nan_policy = skip"));
    /* the last good state was saved, and it is finite */
    assert_int_equal(load_ckpt(ckpt, 1), step - 1);
}

static void test_nonfinite_skip_policy(void **state) {
    char out[256], log[300], text[1 << 16], ckpt[300];
    snprintf(out, sizeof out, "%s/nan_skip", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt_last.h5", out);
    int rc = train("nan.ini", out, "nan_skip.log", 0, (const char *[]){"train.steps=4", "train.nan_policy=skip"}, 2);
    snprintf(log, sizeof log, "%s/nan_skip.log", g_dir);
    slurp(log, text, sizeof text);
    assert_int_equal(rc, 0);
    int skipped = 0;
    for (const char *q = text; (q = strstr(q, "batch skipped")); q++) skipped++;
    fprintf(stderr, "nan_policy = skip: %d of 4 batches skipped\n", skipped);
    assert_int_equal(skipped, 2); /* one batch per epoch holds sample 0; 4 steps = 2 epochs */
    assert_int_equal(load_ckpt(ckpt, 1), 4);
    long n;
    float *l = read_losses(ckpt, &n);
    assert_int_equal(n, 2); /* only the good batches are logged */
    for (long i = 0; i < n; i++) assert_true(isfinite(l[i]));
    free(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_during_checkpoint),
        cmocka_unit_test(test_sigterm_saves_and_exits),
        cmocka_unit_test(test_sigint_saves_and_exits),
        cmocka_unit_test(test_disk_full_file_size_limit),
        cmocka_unit_test(test_disk_full_tmpfs),
        cmocka_unit_test(test_read_only_output_dir),
        cmocka_unit_test(test_nonfinite_stops_with_step_and_layer),
        cmocka_unit_test(test_nonfinite_skip_policy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
