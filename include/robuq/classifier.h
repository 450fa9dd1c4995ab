/* classifier.h: the feature network used by robuq-eval (FID, Inception-style
 * score, precision/recall, class accuracy of generated samples).
 *
 * A small conv / transformer network built from the autograd ops
 * (convolutions are im2col + linear; the im2col op lives in classifier.c
 * and is differentiable):
 *
 *   x[N,C,H,W] in [-1,1] -> stem -> tokens h[N,T,D], T = (H/p)^2
 *     stem_width w > 0 (conv stem, p a power of 2): 3x3 conv C->w + GELU,
 *       then log2(p) 3x3 stride-2 convs doubling the width (w->2w->...),
 *       the last one to D (GELU between convs, none after the last);
 *     stem_width 0 (patch embedding): k x k windows at stride p (padding
 *       (k-p)/2), one linear; k = p is the plain ViT patchify.
 *     Padding of the image is the background value -1, inside the stem 0.
 *   depth >= 0 pre-LN transformer blocks (fixed 2-D sin-cos positions
 *   added first):
 *       h += proj(attention(qkv(LN(h))))
 *       h += fc2(GELU(fc1(LN(h))))
 *   feature = LN(GELU(fc(h flattened to [N, T*D])))   feat_dim F > 0, [N,F]
 *          or LN(mean over tokens of h)               feat_dim 0,     [N,D]
 *   logits  = head(feature)                                           [N,K]
 *
 * The Fashion-MNIST default is the conv stem with no transformer block and
 * the flattened feature: on 2 cores it reached 88% after 400 steps where
 * the mean-pooled ViT variants (patch 4, dim 64-128, depth 2-4) needed
 * 1500 (mean pooling throws away where things are; the network has to
 * learn to keep it in the channels first), and two transformer blocks on
 * top of the stem cost 2.6x the time for the same accuracy.
 *
 * Window vectors are ordered (ki, kj, c); maps inside the stem are
 * channels-last [N, H*W, C]. LayerNorms have no affine (each is followed by
 * a linear that absorbs it). `feature` is the embedding for FID and
 * precision/recall, softmax of the logits the class posterior for the
 * Inception-style score.
 *
 * Weights file (HDF5, written atomically): root attributes format =
 * "robuq-classifier", version, the config ints (image_size, in_channels,
 * patch_size, kernel_size, stem_width, dim, depth, heads, num_classes,
 * mlp_ratio, feat_dim) and what training reported (test_accuracy,
 * train_steps, train_seconds, train_data, seed); datasets /params/<name>
 * fp32 with the shapes below. Loading validates everything: format,
 * version, config ranges, every parameter's presence, shape and
 * finiteness, and refuses unknown parameters. */
#ifndef ROBUQ_CLASSIFIER_H
#define ROBUQ_CLASSIFIER_H

#include "robuq/dit.h"
#include "robuq/tensor.h"

#define RQ_CLASSIFIER_FORMAT "robuq-classifier"
#define RQ_CLASSIFIER_VERSION 1

typedef struct {
    int image_size, in_channels, patch_size, kernel_size, stem_width;
    int dim, depth, heads, num_classes, mlp_ratio;
    int feat_dim; /* 0: feature = LN(mean over tokens); F > 0: LN(GELU(fc(flattened tokens))) of size F */
} rq_classifier_config;

/* The Fashion-MNIST default: 28x28x1, conv stem 16 -> 32 -> 64 channels
 * down to 7x7 (patch 4), no transformer block (depth 0; heads 4 and mlp
 * ratio 2 if one is added), 128-d feature from the flattened 7x7x64 map,
 * 10 classes: 426k parameters, about 3 MMACs per image. */
void rq_classifier_default_config(rq_classifier_config *c);
/* Ranges: sizes positive, image_size % patch_size == 0, dim % 4 == 0 (the
 * sin-cos positions), dim % heads == 0, num_classes >= 2; conv stem: patch
 * a power of 2; patch embedding: kernel_size >= patch_size with an even
 * difference. */
rq_status rq_classifier_config_check(const rq_classifier_config *c, rq_err *err);

typedef struct {
    rq_tensor *qkv_w, *qkv_b, *proj_w, *proj_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} rq_classifier_block;

typedef struct {
    rq_classifier_config cfg;
    int n_stem;                    /* stem linears: 1 + log2(p) convs, or 1 patch embedding */
    rq_tensor *stem_w[8], *stem_b[8]; /* stem.i.{weight,bias} [out, 9*in] or patch_embed [D, k*k*C] */
    rq_classifier_block *blocks;   /* blocks.i.{qkv,proj,fc1,fc2}.{weight,bias} */
    rq_tensor *fc_w, *fc_b;        /* fc: [F, T*D], [F] (feat_dim > 0 only) */
    rq_tensor *head_w, *head_b;    /* head: [K, F], [K] (F = D when feat_dim = 0) */
    float *pos;                    /* fixed [T, D] sin-cos positions, not a parameter */
    rq_tensor **params;            /* all parameters, in file order */
    int n_params;
} rq_classifier;

/* Allocates the parameters: xavier-uniform linears, zero biases, zero head. */
rq_status rq_classifier_init(rq_classifier *m, const rq_classifier_config *cfg, uint64_t seed, rq_err *err);
void rq_classifier_free(rq_classifier *m);
long rq_classifier_num_params(const rq_classifier *m);
rq_tensor *rq_classifier_param(const rq_classifier *m, const char *name);

/* Size of the feature vector: feat_dim, or dim when feat_dim = 0. */
static inline int rq_classifier_feat_dim(const rq_classifier_config *c) { return c->feat_dim > 0 ? c->feat_dim : c->dim; }

/* A parameter-only rq_dit view (params / n_params, everything else zero) so
 * the AdamW, gradient-norm and EMA helpers of train.h, which only touch
 * those two fields, can drive the classifier. The view borrows m's arrays. */
void rq_classifier_param_view(const rq_classifier *m, rq_dit *view);

/* Forward on the tape: x[N,C,H,W] -> logits [N,K]. *feat (may be NULL)
 * receives the feature tensor [N,D]. NULL with g->err set on error. */
rq_tensor *rq_classifier_forward(rq_graph *g, rq_classifier *m, rq_tensor *x, rq_tensor **feat);

/* Inference without tape over n images x[n,C,H,W] in batches of `batch`
 * (<= 0: 256). Each output may be NULL: feat [n,D], probs [n,K] (softmax),
 * pred [n] (argmax). */
rq_status rq_classifier_embed(rq_classifier *m, const float *x, long n, int batch, float *feat, float *probs,
                              int *pred, rq_err *err);
/* Fraction of labels predicted right (labels int32, as datasets store them). */
rq_status rq_classifier_accuracy(rq_classifier *m, const float *x, const int32_t *labels, long n, int batch,
                                 double *acc, rq_err *err);

/* What training reports; stored as attributes of the weights file. */
typedef struct {
    double test_accuracy;   /* < 0: unknown */
    long train_steps;
    double train_seconds;
    long seed;
    char train_data[256];
} rq_classifier_meta;

rq_status rq_classifier_save(const char *path, const rq_classifier *m, const rq_classifier_meta *meta, rq_err *err);
/* Builds m from the file (m must not be initialised); meta may be NULL. */
rq_status rq_classifier_load(const char *path, rq_classifier *m, rq_classifier_meta *meta, rq_err *err);

#endif
