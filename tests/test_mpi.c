/* test_mpi.c: data-parallel robuq-train over MPI (mpirun -np 2) against one
 * process with the same global batch, on a tiny model and dataset:
 * - FP: every parameter, EMA weight and Adam moment after 6 steps, and the
 *   logged losses, equal those of one process within a float tolerance
 *   (the gradient sum runs in another order); only rank 0 wrote files and
 *   log lines;
 * - a run started on 2 ranks and resumed in one process ends where one
 *   process ends (the checkpoint does not depend on the number of ranks);
 * - QAT (ternary weights, 4-bit activations, Hadamard) the same way;
 * - train.batch_size not divisible by the ranks: one clear error, exit 1,
 *   no output directory;
 * - SIGTERM to rank 1 alone: both ranks stop before the same step, rank 0
 *   saves, the job exits 130 (no deadlock), and the run resumes;
 * - dist.h itself on 3 ranks (this program started by mpirun with
 *   --dist-worker): sums and means over tiny buckets that split arrays,
 *   empty arrays, max, broadcast, rq_dist_same_u64; and, in one process
 *   (also without MPI), the single-process stubs and argument checks.
 * Needs a build with MPI and Open MPI's mpirun; otherwise every test is
 * skipped with a message and the program exits 77 (ctest: skipped). */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "robuq/dist.h"
#include "robuq/h5io.h"
#include "robuq/train.h"
#include "testutil.h"

#define TRAIN ROBUQ_BIN_DIR "/robuq-train"

/* Open MPI as root in a container: allowed explicitly; shared-memory
 * transport without the single-copy mechanism (needs ptrace rights that
 * containers often lack); no core binding (the 2 ranks share the cores with
 * other tests); one OpenMP thread per rank. */
#define MPIRUN_ENV "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
#define MPIRUN_ARGS                                                                                              \
    "--oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none "         \
    "--tag-output -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=PASSIVE"

/* Tolerances. Weights: max |a - b| / max |b| per tensor (params, EMA,
 * Adam m and v). One process sums the per-sample gradients in one order,
 * two ranks sum each half and then the halves; Adam turns those float
 * rounding differences into slightly different steps. Measured here on the
 * tiny model after 6 FP steps: <= 8e-6 of a tensor's scale (largest in the
 * small biases, whose values are little more than the sum of their Adam
 * steps). A sharding bug is far above it: with every rank on the first
 * slice, the worst tensor differs by ~2 of its scale and the first loss by
 * 6% (measured). The bound leaves a margin of >10x.
 * Losses: relative difference per logged step, measured <= 1e-7.
 * QAT is not smooth: a latent weight or an activation that sits on a
 * rounding boundary of the ternary / 4-bit quantizer goes one way in one
 * run and the other way in the other, for a rounding difference of 1e-7;
 * measured here: after steps 1 and 2 within 1e-5; from step 3 on, small
 * tensors (attention, MLP and adaLN biases, adaLN weights: values of a few
 * Adam steps, which move by +-lr as soon as a gradient changes sign) differ
 * by up to ~0.8 of their scale, while the losses still agree to 3e-7. One process with lr
 * changed by 1e-6 differs from itself by as much (the test prints that
 * control next to it); in FP the same change gives 4e-6. So QAT weights are
 * compared after one step (no quantizer decision differs yet) and a 6-step
 * QAT run by its losses (bound 1e-4: a wrong slice moves the first loss by
 * 6%). */
#define TOL_FP 1e-4
#define TOL_LOSS 1e-5
#define TOL_LOSS_QAT 1e-4

static char g_dir[64];
static int g_skip; /* 1: no MPI here, every test skips */
static char g_why[256];

static int setup(void **state) {
    (void)state;
    strcpy(g_dir, "/tmp/rqmpiXXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    char path[128], cfg[160];
    snprintf(path, sizeof path, "%s/data.h5", g_dir);
    tu_write_tiny_images(path, 48, 1); /* 48 random 8x8 gray images in 3 classes */
    snprintf(cfg, sizeof cfg, "%s/tiny.ini", g_dir);
    FILE *f = fopen(cfg, "w");
    if (!f) return -1;
    fprintf(f,
            TU_TINY_MODEL_INI
            "[data]\npath = %s\nval_path = %s\nhflip = on\n"
            "[train]\nbatch_size = 8\nsteps = 6\nlr = 1e-3\nlog_every = 1\nckpt_every = 0\nema_decay = 0.9\n"
            "val_every = 3\nthreads = 1\n[sample]\nsteps = 4\nper_class = 2\n",
            path, path);
    fclose(f);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return tu_rmtree(g_dir) == 0 ? 0 : -1;
}

static void skip_if_no_mpi(void) {
    if (g_skip) {
        fprintf(stderr, "SKIPPED: %s\n", g_why);
        skip();
    }
}

static void show(const char *file) {
    tu_sh("cat %s >&2", file);
}

/* robuq-train tiny.ini --set train.out_dir=DIR/out EXTRA, on np ranks
 * (np 0: a plain process); output to DIR/out.txt. */
static void train(const char *out, int np, const char *extra, int expect_rc) {
    char cmd[2048], log[256];
    snprintf(log, sizeof log, "%s/%s.txt", g_dir, out);
    if (np > 0)
        snprintf(cmd, sizeof cmd, "%s %s -np %d %s %s %s/tiny.ini --set train.out_dir=%s/%s %s > %s 2>&1",
                 MPIRUN_ENV, ROBUQ_MPIEXEC, np, MPIRUN_ARGS, TRAIN, g_dir, g_dir, out, extra, log);
    else
        snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 %s %s/tiny.ini --set train.out_dir=%s/%s %s > %s 2>&1", TRAIN,
                 g_dir, g_dir, out, extra, log);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = tu_sh("%s", cmd);
    clock_gettime(CLOCK_MONOTONIC, &b);
    fprintf(stderr, "  %s (%s): exit %d, %.2f s\n", out, np ? "mpirun" : "one process", rc,
            (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec));
    if (rc != expect_rc) {
        show(log);
        fail_msg("robuq-train %s on %d ranks exited %d, expected %d", extra, np, rc, expect_rc);
    }
}

typedef struct {
    rq_dit m;
    rq_ema ema;
    rq_adamw opt;
    rq_ckpt_meta meta;
} loaded;

static void load(const char *out, loaded *L) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s/ckpt_last.h5", g_dir, out);
    memset(L, 0, sizeof *L);
    rq_err e = {0};
    if (rq_model_from_ckpt(path, "params", &L->m, NULL, &e) || rq_ema_init(&L->ema, &L->m, &e) ||
        rq_adamw_init(&L->opt, &L->m, 1e-3f, 0.9f, 0.999f, 0, &e) ||
        rq_ckpt_load(path, &L->m, "params", &L->ema, &L->opt, &L->meta, &e))
        fail_msg("%s", e.msg);
}

static void unload(loaded *L) {
    rq_ckpt_meta_free(&L->meta);
    rq_adamw_free(&L->opt);
    rq_ema_free(&L->ema);
    rq_dit_free(&L->m);
}

/* max |a - b| / max |b| over one tensor (0 when both are zero). */
static double scaled_diff(const float *a, const float *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= num)) num = d; /* NaN wins */
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num == 0 ? 0 : num / (den > 0 ? den : 1e-30);
}

/* Compares two runs: params, EMA, Adam m and v (each tensor, scaled by its
 * largest magnitude, must stay under tol_w; tol_w = 0: only reported) and
 * the logged losses (relative, under tol_loss). */
static void compare(const char *ref, const char *out, double tol_w, double tol_loss, long steps) {
    loaded A, B;
    load(ref, &A);
    load(out, &B);
    assert_int_equal(A.m.n_params, B.m.n_params);
    assert_int_equal(A.meta.step, steps);
    assert_int_equal(B.meta.step, steps);
    const char *what[4] = {"params", "ema", "adam m", "adam v"};
    double worst[4] = {0}, max_abs = 0, worst_rel = 0;
    const char *worst_name[4] = {"", "", "", ""};
    for (int i = 0; i < A.m.n_params; i++) {
        const rq_tensor *p = A.m.params[i];
        assert_string_equal(p->name, B.m.params[i]->name);
        assert_int_equal(p->n, B.m.params[i]->n);
        const float *xa[4] = {p->data, A.ema.w[i], A.opt.m[i], A.opt.v[i]};
        const float *xb[4] = {B.m.params[i]->data, B.ema.w[i], B.opt.m[i], B.opt.v[i]};
        for (int k = 0; k < 4; k++) {
            double d = scaled_diff(xb[k], xa[k], p->n);
            if (!(d <= worst[k])) worst[k] = d, worst_name[k] = p->name;
        }
        for (long j = 0; j < p->n; j++)
            if (fabs((double)xa[0][j] - xb[0][j]) > max_abs) max_abs = fabs((double)xa[0][j] - xb[0][j]);
        double rel = tu_rel_err(xb[0], xa[0], p->n, 1e-30);
        if (!(rel <= worst_rel)) worst_rel = rel;
    }
    fprintf(stderr, "  %s vs %s after %ld steps, max |diff| / max |value| per tensor: params %.2e (%s), ema %.2e, "
                    "adam m %.2e, adam v %.2e; params: largest |diff| %.2e, largest ||diff|| / ||value|| %.2e; ",
            out, ref, steps, worst[0], worst_name[0], worst[1], worst[2], worst[3], max_abs, worst_rel);
    if (tol_w > 0) fprintf(stderr, "tolerance %.0e\n", tol_w);
    else fprintf(stderr, "not checked\n");
    for (int k = 0; k < 4 && tol_w > 0; k++)
        if (!(worst[k] <= tol_w))
            fail_msg("%s: %s differ from %s by %.3g of their scale (%s), tolerance %.1g", out, what[k], ref, worst[k],
                     worst_name[k], tol_w);
    assert_int_equal(A.meta.log_n, steps);
    assert_int_equal(B.meta.log_n, steps);
    double lw = 0;
    for (long s = 0; s < steps; s++) {
        double r = fabs((double)A.meta.log_loss[s] - B.meta.log_loss[s]) / fabs((double)A.meta.log_loss[s]);
        if (!(r <= lw)) lw = r;
        if (!(r <= tol_loss))
            fail_msg("step %ld: loss %.9g (%s) vs %.9g (%s), tolerance %.0e", s + 1, A.meta.log_loss[s], ref,
                     B.meta.log_loss[s], out, tol_loss);
    }
    fprintf(stderr, "  losses: largest relative difference %.2e over %ld steps (tolerance %.0e)\n", lw, steps,
            tol_loss);
    unload(&A), unload(&B);
}

static long count_lines(const char *file, const char *needle) {
    FILE *f = fopen(file, "r");
    if (!f) return -1;
    char line[2048];
    long n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Fails, after showing the file, unless exactly n of its lines hold needle. */
static void expect_lines(const char *file, const char *needle, long n, const char *why) {
    if (count_lines(file, needle) != n) {
        show(file);
        fail_msg("%s (above: %s)", why, file);
    }
}

/* The files of a run directory, sorted, joined by ' '. */
static void listing(const char *out, char *buf, size_t cap) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, out);
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    buf[0] = '\0';
    if (n < 0) fail_msg("%s: no such directory", dir);
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            strncat(buf, names[i]->d_name, cap - strlen(buf) - 2);
            strcat(buf, " ");
        }
        free(names[i]);
    }
    free(names);
}

static void test_fp_two_ranks_match_one(void **state) {
    (void)state;
    skip_if_no_mpi();
    train("one", 0, "", 0);
    train("two", 2, "", 0);
    compare("one", "two", TOL_FP, TOL_LOSS, 6);
    /* rank 0 alone wrote the run directory: the same files as one process */
    char a[1024], b[1024], p[256];
    listing("one", a, sizeof a);
    listing("two", b, sizeof b);
    assert_string_equal(a, "ckpt_last.h5 config.ini loss.png samples_final.png train.log ");
    assert_string_equal(b, a);
    /* ... and alone logged: every line of the job's output is tagged [1,0] (rank 0) */
    snprintf(p, sizeof p, "%s/two.txt", g_dir);
    expect_lines(p, "[1,1]<", 0, "rank 1 printed something");
    assert_int_equal(count_lines(p, "step 6/6 |"), 1);
    snprintf(p, sizeof p, "%s/two/train.log", g_dir);
    assert_int_equal(count_lines(p, "2 MPI ranks x 4 samples of batch 8"), 1);
    assert_int_equal(count_lines(p, "step 6/6 |"), 1);
    assert_int_equal(count_lines(p, "val loss"), 3); /* steps 3 and 6, final: rank 0 */
}

static void test_resume_on_other_rank_count(void **state) {
    (void)state;
    skip_if_no_mpi();
    train("mixed", 2, "--set train.steps=3", 0);
    train("mixed", 0, "", 0); /* one process resumes the 2-rank checkpoint at step 3 */
    compare("one", "mixed", TOL_FP, TOL_LOSS, 6);
}

static void test_qat_two_ranks_match_one(void **state) {
    (void)state;
    skip_if_no_mpi();
    const char *q1 = "--set quant.enabled=on --set quant.act_bits=4 --set quant.hadamard=on --set train.steps=1";
    train("qat1_one", 0, q1, 0);
    train("qat1_two", 2, q1, 0);
    compare("qat1_one", "qat1_two", TOL_FP, TOL_LOSS, 1);
    const char *q = "--set quant.enabled=on --set quant.act_bits=4 --set quant.hadamard=on";
    train("qat_one", 0, q, 0);
    train("qat_two", 2, q, 0);
    compare("qat_one", "qat_two", 0, TOL_LOSS_QAT, 6);
    /* the control: one process against itself with lr * (1 + 1e-6) */
    char ql[256];
    snprintf(ql, sizeof ql, "%s --set train.lr=0.001000001", q);
    train("qat_lr", 0, ql, 0);
    compare("qat_one", "qat_lr", 0, TOL_LOSS_QAT, 6);
}

static void test_batch_not_divisible(void **state) {
    (void)state;
    skip_if_no_mpi();
    train("odd", 2, "--set train.batch_size=7", 1);
    char p[256];
    snprintf(p, sizeof p, "%s/odd.txt", g_dir);
    /* said once (by rank 0), naming the key and the rank count */
    expect_lines(p, "train.batch_size = 7 is not divisible by the 2 MPI ranks", 1,
                 "expected one line saying batch_size 7 is not divisible by 2 ranks");
    assert_int_equal(count_lines(p, "[1,1]<stderr>: robuq-train"), 0);
    snprintf(p, sizeof p, "%s/odd", g_dir);
    assert_int_not_equal(access(p, F_OK), 0); /* nothing was created */
}

static pid_t rank_pid(pid_t parent, int rank);

/* Ends a hung job: mpirun's process group and both ranks. */
static void kill_job(pid_t pid) {
    pid_t r0 = rank_pid(pid, 0), r1 = rank_pid(pid, 1);
    if (r0 > 0) kill(r0, SIGKILL);
    if (r1 > 0) kill(r1, SIGKILL);
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* pid of the robuq-train process of rank `rank` started by mpirun `parent`, or -1. */
static pid_t rank_pid(pid_t parent, int rank) {
    DIR *d = opendir("/proc");
    if (!d) return -1;
    struct dirent *e;
    pid_t found = -1;
    char want[64];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    while (found < 0 && (e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char p[64], buf[1 << 15];
        snprintf(p, sizeof p, "/proc/%ld/stat", pid);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        long ppid = -1;
        char comm[64] = "";
        if (fscanf(f, "%*d (%63[^)]) %*c %ld", comm, &ppid) != 2) ppid = -1;
        fclose(f);
        if (ppid != parent || strcmp(comm, "robuq-train")) continue;
        snprintf(p, sizeof p, "/proc/%ld/environ", pid);
        int fd = open(p, O_RDONLY);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        for (ssize_t i = 0; i < n;) {
            if (!strcmp(buf + i, want)) found = (pid_t)pid;
            i += (ssize_t)strnlen(buf + i, (size_t)(n - i)) + 1;
        }
    }
    closedir(d);
    return found;
}

static void test_sigterm_to_one_rank(void **state) {
    (void)state;
    skip_if_no_mpi();
    char log[256], cfg[256], set[300];
    snprintf(log, sizeof log, "%s/sig.txt", g_dir);
    snprintf(cfg, sizeof cfg, "%s/tiny.ini", g_dir);
    snprintf(set, sizeof set, "train.out_dir=%s/sig", g_dir);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(126);
        dup2(fd, 1), dup2(fd, 2), close(fd);
        setpgid(0, 0); /* its own group: a hang is killed as a whole below */
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1), setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        setenv("OMP_NUM_THREADS", "1", 1);
        execl(ROBUQ_MPIEXEC, ROBUQ_MPIEXEC, "-np", "2", "--oversubscribe", "--bind-to", "none", "--mca", "btl",
              "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none", "--tag-output", "-x",
              "OMP_NUM_THREADS", TRAIN, cfg, "--set", set, "--set", "train.steps=1000000", "--set",
              "train.val_every=0", (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    pid_t r1 = -1;
    int st = 0, done = 0;
    for (int i = 0; i < 30000 && !done; i++) { /* up to 30 s: rank 0 logged step 3, rank 1 found */
        if (count_lines(log, "step 3/") > 0 && (r1 = rank_pid(pid, 1)) > 0) break;
        done = waitpid(pid, &st, WNOHANG) == pid;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    if (done || r1 <= 0) {
        if (!done) kill_job(pid);
        show(log);
        fail_msg("the 2-rank run did not get to step 3 (rank 1 pid %ld)", (long)r1);
    }
    kill(r1, SIGTERM); /* rank 1 alone: rank 0 learns it in the next step's agreement */
    for (int i = 0; i < 60000 && !done; i++) {
        done = waitpid(pid, &st, WNOHANG) == pid;
        if (!done) nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    if (!done) {
        kill_job(pid);
        show(log);
        fail_msg("mpirun did not end within 60 s of SIGTERM to rank 1 (deadlock?)");
    }
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (rc != 130) show(log);
    assert_int_equal(rc, 130);
    assert_int_equal(count_lines(log, "stopped by signal 15"), 1); /* rank 0, once */
    loaded L;
    load("sig", &L);
    long step = L.meta.step;
    fprintf(stderr, "  SIGTERM to rank 1: both ranks stopped, rank 0 saved step %ld, exit 130\n", step);
    assert_true(step >= 3);
    assert_int_equal(L.meta.log_n, step);
    unload(&L);
    char extra[64];
    snprintf(extra, sizeof extra, "--set train.steps=%ld --set train.val_every=0", step + 2);
    train("sig", 2, extra, 0); /* resumes on 2 ranks */
    load("sig", &L);
    assert_int_equal(L.meta.step, step + 2);
    unload(&L);
}

/* ---------------------------------------------------------------- dist.h */

/* One process (no launcher): rank 0 of 1, collectives leave the data alone,
 * bad arguments are errors. Runs in every build. */
static void test_dist_single_process(void **state) {
    (void)state;
    rq_dist d;
    rq_err e = {0};
    assert_int_equal(rq_dist_init(&d, NULL, NULL, &e), RQ_OK);
    assert_int_equal(d.rank, 0);
    assert_int_equal(d.size, 1);
    assert_int_equal(d.local_size, 1);
    assert_int_equal(d.mpi, 0);
    float x[5] = {1, 2, 3, 4, 5}, y[2] = {-1, 7};
    float *xs[2] = {x, y};
    long ns[2] = {5, 2};
    assert_int_equal(rq_dist_allreduce_sum_f32(&d, x, 5, &e), RQ_OK);
    assert_int_equal(rq_dist_allreduce_mean_f32v(&d, xs, ns, 2, &e), RQ_OK);
    assert_true(x[0] == 1 && x[4] == 5 && y[0] == -1 && y[1] == 7);
    int v[2] = {3, -4}, same = 0;
    assert_int_equal(rq_dist_allreduce_max_i32(&d, v, 2, &e), RQ_OK);
    assert_true(v[0] == 3 && v[1] == -4);
    assert_int_equal(rq_dist_barrier(&d, &e), RQ_OK);
    assert_int_equal(rq_dist_bcast(&d, v, sizeof v, 0, &e), RQ_OK);
    assert_int_equal(rq_dist_same_u64(&d, 99, &same, &e), RQ_OK);
    assert_int_equal(same, 1);
    /* argument checks: one-line messages naming the function */
    assert_int_equal(rq_dist_allreduce_sum_f32(&d, NULL, 3, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "rq_dist_allreduce_sum_f32"));
    rq_err_clear(&e);
    ns[1] = -1;
    assert_int_equal(rq_dist_allreduce_mean_f32v(&d, xs, ns, 2, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "array 1"));
    rq_err_clear(&e);
    assert_int_equal(rq_dist_bcast(&d, v, 8, 1, &e), RQ_EINVAL); /* root outside the job */
    rq_err_clear(&e);
    assert_int_equal(rq_dist_allreduce_max_i32(NULL, v, 1, &e), RQ_EINVAL);
    rq_err_clear(&e);
    rq_dist z;
    memset(&z, 0, sizeof z); /* never initialised */
    assert_int_equal(rq_dist_barrier(&z, &e), RQ_EINVAL);
    assert_non_null(strstr(e.msg, "not initialised"));
    rq_err_clear(&e);
    assert_int_equal(rq_dist_init(NULL, NULL, NULL, &e), RQ_EINVAL);
    rq_dist_finalize(&d);
    rq_dist_finalize(NULL);
}

#define WCHECK(c)                                                                                                \
    do {                                                                                                         \
        if (!(c)) {                                                                                              \
            fprintf(stderr, "dist worker rank %d: %s:%d: check failed: %s (%s)\n", d.rank, __FILE__, __LINE__,   \
                    #c, e.msg);                                                                                  \
            rq_dist_abort(&d, 1);                                                                                \
        }                                                                                                        \
    } while (0)

/* test_mpi --dist-worker, started by mpirun -np 3: the collectives of dist.h. */
static int dist_worker(int *argc, char ***argv) {
    rq_dist d;
    rq_err e = {0};
    if (rq_dist_init(&d, argc, argv, &e)) {
        fprintf(stderr, "dist worker: %s\n", e.msg);
        return 1;
    }
    WCHECK(d.mpi && d.size == 3 && d.local_size == 3);
    /* sum in place over buckets of 7 floats (not a multiple of 3) */
    d.bucket_max = 7;
    float x[100];
    for (int i = 0; i < 100; i++) x[i] = (float)(d.rank * 1000 + i);
    WCHECK(rq_dist_allreduce_sum_f32(&d, x, 100, &e) == RQ_OK);
    for (int i = 0; i < 100; i++) WCHECK(x[i] == (float)(3000 + 3 * i));
    /* mean over arrays packed into buckets of 5: arrays span buckets, one is empty */
    d.bucket_max = 5;
    float a[3], b[1], c[11], dd[1], f[8];
    float *xs[5] = {a, b, c, dd, f};
    long ns[5] = {3, 0, 11, 1, 8};
    for (int k = 0; k < 5; k++)
        for (long j = 0; j < ns[k]; j++) xs[k][j] = (float)((d.rank + 1) * (10 * k + j)); /* ranks: 1x, 2x, 3x */
    WCHECK(rq_dist_allreduce_mean_f32v(&d, xs, ns, 5, &e) == RQ_OK);
    uint64_t h = 0;
    for (int k = 0; k < 5; k++)
        for (long j = 0; j < ns[k]; j++) {
            double want = 2.0 * (10 * k + j); /* (1 + 2 + 3) / 3 */
            WCHECK(fabs(xs[k][j] - want) <= 1e-6 * want);
            uint32_t w;
            memcpy(&w, xs[k] + j, sizeof w);
            h = h * 1000003u + w;
        }
    int same = 0;
    WCHECK(rq_dist_same_u64(&d, h, &same, &e) == RQ_OK && same == 1); /* bitwise the same mean everywhere */
    WCHECK(rq_dist_same_u64(&d, (uint64_t)d.rank, &same, &e) == RQ_OK && same == 0);
    /* a bucket larger than the data (the default) */
    d.bucket_max = RQ_DIST_BUCKET_FLOATS;
    for (int i = 0; i < 100; i++) x[i] = (float)d.rank;
    WCHECK(rq_dist_allreduce_mean_f32v(&d, (float *[]){x}, (long[]){100}, 1, &e) == RQ_OK);
    for (int i = 0; i < 100; i++) WCHECK(x[i] == 1.0f);
    int v[3] = {d.rank, -d.rank, d.rank == 1 ? 77 : 0};
    WCHECK(rq_dist_allreduce_max_i32(&d, v, 3, &e) == RQ_OK);
    WCHECK(v[0] == 2 && v[1] == 0 && v[2] == 77);
    char msg[16] = "";
    if (d.rank == 1) strcpy(msg, "from rank 1");
    WCHECK(rq_dist_bcast(&d, msg, sizeof msg, 1, &e) == RQ_OK);
    WCHECK(!strcmp(msg, "from rank 1"));
    WCHECK(rq_dist_bcast(&d, msg, sizeof msg, 3, &e) == RQ_EINVAL); /* no rank 3 */
    rq_err_clear(&e);
    WCHECK(rq_dist_barrier(&d, &e) == RQ_OK);
    fprintf(stderr, "dist worker rank %d of %d: ok\n", d.rank, d.size);
    rq_dist_finalize(&d);
    return 0;
}

static void test_dist_collectives(void **state) {
    (void)state;
    skip_if_no_mpi();
    char cmd[1024], log[256];
    snprintf(log, sizeof log, "%s/worker.txt", g_dir);
    snprintf(cmd, sizeof cmd, "%s %s -np 3 %s %s/test_mpi --dist-worker > %s 2>&1", MPIRUN_ENV, ROBUQ_MPIEXEC,
             MPIRUN_ARGS, ROBUQ_BIN_DIR, log);
    int rc = tu_sh("%s", cmd);
    if (rc != 0 || count_lines(log, ": ok") != 3) {
        show(log);
        fail_msg("mpirun -np 3 test_mpi --dist-worker exited %d", rc);
    }
    fprintf(stderr, "  3 ranks: sums, means over 5- and 7-float buckets, max, bcast, same_u64: ok\n");
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--dist-worker")) return dist_worker(&argc, &argv);
    if (!rq_dist_available()) {
        snprintf(g_why, sizeof g_why, "this build has no MPI (configure with libopenmpi-dev installed, or "
                                      "-DROBUQ_MPI=ON)");
        g_skip = 1;
    } else if (!ROBUQ_MPIEXEC[0] || access(ROBUQ_MPIEXEC, X_OK)) {
        snprintf(g_why, sizeof g_why, "no MPI launcher ('%s'; apt-get install openmpi-bin)", ROBUQ_MPIEXEC);
        g_skip = 1;
    } else if (tu_sh("%s --version 2>&1 | grep -Eq 'Open MPI|OpenRTE'", ROBUQ_MPIEXEC) != 0) {
        snprintf(g_why, sizeof g_why, "%s is not Open MPI's (the test uses its options)", ROBUQ_MPIEXEC);
        g_skip = 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dist_single_process), cmocka_unit_test(test_dist_collectives),
        cmocka_unit_test(test_fp_two_ranks_match_one), cmocka_unit_test(test_resume_on_other_rank_count),
        cmocka_unit_test(test_qat_two_ranks_match_one), cmocka_unit_test(test_batch_not_divisible),
        cmocka_unit_test(test_sigterm_to_one_rank),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    if (g_skip) {
        fprintf(stderr, "test_mpi SKIPPED: %s\n", g_why);
        return failed ? failed : 77;
    }
    return failed;
}
