/* robuq-import: pretrained DiT weights (safetensors, original DiT or
 * diffusers names) -> a robuq-ckpt checkpoint usable as [train] init_from
 * and by robuq-sample.
 *
 * Exit codes: 0 ok, 1 file/data error (one line "robuq-import: <problem>"),
 * 2 usage error. The checkpoint is written atomically (temp + rename) and the
 * temp file is removed on Ctrl-C. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "robuq/dit_import.h"
#include "robuq/h5io.h"
#include "robuq/train.h"

#define PROG "robuq-import"

static const char *HELP =
    "usage: " PROG " MODEL.safetensors OUT.h5 (--config FILE.ini | --preset ARCH) [options]\n"
    "\n"
    "Import pretrained DiT weights into a RobuQ checkpoint (params and EMA both\n"
    "= the imported weights, step 0), for `[train] init_from = OUT.h5` (QAT from\n"
    "the FP model) and `robuq-sample OUT.h5`.\n"
    "\n"
    "The model shape comes from\n"
    "  --config FILE.ini   a RobuQ config ([model] section; the whole config is\n"
    "                      stored in the checkpoint), or\n"
    "  --preset ARCH       DiT-{S,B,L,XL}/{2,4,8} with the ImageNet-256 latent\n"
    "                      setting: input_size 32, in_channels 4, num_classes\n"
    "                      1000, learn_sigma on (512x512 models: --set\n"
    "                      model.input_size=64)\n"
    "  --set section.key=value   override a config key (repeatable)\n"
    "options:\n"
    "  --names auto|original|diffusers   tensor naming (default auto: detected)\n"
    "  --prefix P           strip P from every tensor name (e.g. 'module.')\n"
    "  --ignore-unexpected  tensors the model does not use are a warning\n"
    "  --ignore-pos-embed   a pos_embed differing from the sin-cos one is a warning\n"
    "\n"
    "Every tensor is checked against the model: missing, unexpected and\n"
    "mis-shaped tensors are errors naming the tensor and both shapes. F32, F16,\n"
    "BF16 and F64 weights are read (as float32).\n"
    "\n"
    "The original checkpoints (DiT-XL-2-256x256.pt from facebookresearch/DiT)\n"
    "are torch pickles; convert one to safetensors with (needs torch and\n"
    "safetensors):\n"
    "  python3 -c \"import torch, safetensors.torch as st; sd = torch.load('DiT-XL-2-256x256.pt',\n"
    "    map_location='cpu'); sd = sd.get('ema', sd); st.save_file({k: v.contiguous() for k, v in\n"
    "    sd.items()}, 'DiT-XL-2-256x256.safetensors')\"\n"
    "A diffusers model (e.g. facebook/DiT-XL-2-256) can be imported directly from\n"
    "its transformer/diffusion_pytorch_model.safetensors.\n"
    "\n"
    "Example:\n"
    "  " PROG " DiT-XL-2-256x256.safetensors runs/dit_xl2_fp.h5 --preset DiT-XL/2\n"
    "\n"
    "Exit status: 0 ok, 1 file or data error, 2 usage error.\n";

static char g_tmp[4096];
static volatile sig_atomic_t g_have_tmp = 0;

static void on_signal(int sig) {
    if (g_have_tmp) unlink(g_tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '" PROG " --help'.\n");
    exit(2);
}

static int fail(const rq_err *e) {
    fprintf(stderr, PROG ": %s\n", e->msg[0] ? e->msg : rq_status_str(e->code));
    return 1;
}

/* "--name value" or "--name=value"; NULL if argv[*i] is not this option. */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != '\0') return NULL;
    if (*i + 1 >= argc) usage_error("option %s needs a value", name);
    return argv[++*i];
}

int main(int argc, char **argv) {
    const char *pos[2], *config = NULL, *preset = NULL, *sets[64];
    int npos = 0, nsets = 0;
    rq_dit_import_opts io = {0};
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(HELP, stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--config"))) {
            config = v;
        } else if ((v = opt_value(argc, argv, &i, "--preset"))) {
            preset = v;
        } else if ((v = opt_value(argc, argv, &i, "--set"))) {
            if (nsets == 64) usage_error("too many --set options");
            sets[nsets++] = v;
        } else if ((v = opt_value(argc, argv, &i, "--names"))) {
            if (!strcmp(v, "auto")) io.naming = RQ_DIT_NAMES_AUTO;
            else if (!strcmp(v, "original")) io.naming = RQ_DIT_NAMES_ORIGINAL;
            else if (!strcmp(v, "diffusers")) io.naming = RQ_DIT_NAMES_DIFFUSERS;
            else usage_error("--names must be auto, original or diffusers, got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--prefix"))) {
            io.prefix = v;
        } else if (!strcmp(argv[i], "--ignore-unexpected")) {
            io.ignore_unexpected = 1;
        } else if (!strcmp(argv[i], "--ignore-pos-embed")) {
            io.pos_embed_warn_only = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            usage_error("unknown option '%s'", argv[i]);
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            usage_error("too many arguments ('%s')", argv[i]);
        }
    }
    if (npos != 2) usage_error("expected MODEL.safetensors OUT.h5");
    if (!config == !preset) usage_error("give exactly one of --config FILE.ini and --preset ARCH");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rq_log_set_level(RQ_LOG_WARN);

    double t0 = rq_now();
    rq_err err = {0};
    rq_safetensors st;
    memset(&st, 0, sizeof st);
    rq_config *cfg = rq_config_new();
    if (!cfg) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    int rc = 1;
    rq_dit m;
    memset(&m, 0, sizeof m);
    rq_ema ema = {0};
    rq_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    if (config) {
        if (rq_config_load(cfg, config, &err)) goto out_err;
    } else {
        char set[160];
        const char *fixed[] = {"model.input_size=32", "model.in_channels=4", "model.num_classes=1000",
                               "model.learn_sigma=on"};
        snprintf(set, sizeof set, "model.arch=%s", preset);
        int bad = rq_config_set(cfg, set, &err) != RQ_OK;
        for (int i = 0; i < 4 && !bad; i++) bad = rq_config_set(cfg, fixed[i], &err) != RQ_OK;
        if (bad) {
            fprintf(stderr, PROG ": --preset %s: %s\nTry '" PROG " --help'.\n", preset, err.msg);
            rq_config_free(cfg);
            rq_st_close(&st);
            return 2;
        }
    }
    for (int i = 0; i < nsets; i++)
        if (rq_config_set(cfg, sets[i], &err)) {
            fprintf(stderr, PROG ": --set %s: %s\n", sets[i], err.msg);
            rq_config_free(cfg);
            rq_st_close(&st);
            return 2;
        }
    rq_dit_config mc;
    rq_dit_import_report rep;
    /* the file before the model, so a bad file fails before a big allocation */
    if (rq_model_config_from(cfg, &mc, &err) || rq_st_open(pos[0], &st, &err) || rq_dit_init(&m, &mc, 0, &err) ||
        rq_dit_import(&m, &st, &io, &rep, &err) || rq_ema_init(&ema, &m, &err))
        goto out_err;
    meta.config_text = rq_config_to_string(cfg);
    if (!meta.config_text) {
        rq_err_set(&err, RQ_ENOMEM, "out of memory");
        goto out_err;
    }
    rq_rng_seed(&meta.rng, (uint64_t)rq_cfg_int(cfg, "train.seed"));
    if (rq_h5_temp_path(pos[1], g_tmp, sizeof g_tmp)) g_have_tmp = 1;
    if (rq_ckpt_save(pos[1], &m, &ema, NULL, &meta, &err)) goto out_err;
    g_have_tmp = 0;
    printf("%s: %s names, %s, %d tensors -> %s: DiT hidden %d depth %d patch %d, %ld parameters%s%s, %.1f s\n",
           pos[0], rq_dit_naming_name(rep.naming), rep.dtypes, rep.n_file_tensors, pos[1], mc.hidden_size, mc.depth,
           mc.patch_size, rq_dit_num_params(&m), rep.pos_embed_checked ? ", pos_embed checked" : "",
           rep.n_warnings ? " (with warnings)" : "", rq_now() - t0);
    rc = 0;
    goto out;
out_err:
    rc = fail(&err);
out:
    free(meta.config_text);
    rq_ema_free(&ema);
    rq_dit_free(&m);
    rq_config_free(cfg);
    rq_st_close(&st);
    return rc;
}
