/* dit_import.h: load pretrained DiT weights from a safetensors file into an
 * rq_dit built from a config, with the original DiT names or the diffusers
 * names.
 *
 * Original names (facebookresearch/DiT models.py state dict) are ours:
 *   x_embedder.proj.{weight [D,C,p,p], bias}   t_embedder.mlp.{0,2}.{weight,bias}
 *   y_embedder.embedding_table.weight [num_classes+1, D]
 *   blocks.N.attn.qkv / attn.proj / mlp.fc1 / mlp.fc2 / adaLN_modulation.1 .{weight,bias}
 *   final_layer.adaLN_modulation.1 / final_layer.linear .{weight,bias}
 *   pos_embed [1,T,D]  (a fixed sin-cos buffer: compared with ours, not loaded)
 *
 * diffusers names (DiTTransformer2DModel / Transformer2DModel with
 * norm_type="ada_norm_zero", as written by scripts/convert_dit_to_diffusers.py):
 *   pos_embed.proj.*                                  -> x_embedder.proj.*
 *   transformer_blocks.0.norm1.emb.timestep_embedder.linear_{1,2}.* -> t_embedder.mlp.{0,2}.*
 *   transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight -> y_embedder.embedding_table.weight
 *   transformer_blocks.N.attn1.to_{q,k,v}.*  (rows concatenated q|k|v) -> blocks.N.attn.qkv.*
 *   transformer_blocks.N.attn1.to_out.0.*            -> blocks.N.attn.proj.*
 *   transformer_blocks.N.ff.net.0.proj.*             -> blocks.N.mlp.fc1.*
 *   transformer_blocks.N.ff.net.2.*                  -> blocks.N.mlp.fc2.*
 *   transformer_blocks.N.norm1.linear.*              -> blocks.N.adaLN_modulation.1.*
 *   proj_out_1.*                                     -> final_layer.adaLN_modulation.1.*
 *   proj_out_2.*                                     -> final_layer.linear.*
 *   pos_embed.pos_embed [1,T,D] (only if saved)      -> compared like pos_embed
 * The conversion script copies every embedder into every block; diffusers
 * only uses block 0's (transformer_blocks[0].norm1.emb computes the final
 * layer's conditioning too). We take block 0's and compare the others: a copy
 * that differs is a warning (counted in the report), not an error.
 *
 * Chunk conventions (checked against DiT models.py and diffusers
 * AdaLayerNormZero / Transformer2DModel._get_output_for_patched_inputs): both
 * split adaLN_modulation.1 / norm1.linear output [6D] into
 * shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp (in that
 * order, D each), and final_layer.adaLN_modulation.1 / proj_out_1 [2D] into
 * shift, scale; qkv rows are q | k | v, each split into heads of D/H rows;
 * the final linear's output per token is ordered (pi, pj, channel), the
 * first C channels being eps and the last C the variance values with learned
 * sigma. So every weight is copied unchanged; only q/k/v are concatenated.
 * (diffusers' DiT timestep embedding divides the frequency exponent by 127,
 * downscale_freq_shift=1, where DiT divides by 128; that is a difference of
 * the diffusers forward, not of the weights: we run the DiT forward.)
 *
 * Checks: every model tensor must be present with exactly the model's shape
 * (errors name the tensor in the file's naming, the expected and the found
 * shape, with a hint for learn_sigma / num_classes / in_channels); tensors
 * the model does not use are an error unless ignore_unexpected; a label
 * table of num_classes rows (a model trained without class dropout) loads
 * with a zero null-class row and a warning. dtypes F32/F16/BF16/F64 load
 * (converted to float32); others are refused. On error the model's weights
 * are unspecified (partly loaded): discard it. */
#ifndef ROBUQ_DIT_IMPORT_H
#define ROBUQ_DIT_IMPORT_H

#include "robuq/dit.h"
#include "robuq/safetensors.h"

typedef enum { RQ_DIT_NAMES_AUTO = 0, RQ_DIT_NAMES_ORIGINAL, RQ_DIT_NAMES_DIFFUSERS } rq_dit_naming;

typedef struct {
    rq_dit_naming naming;    /* AUTO: detect from the names (transformer_blocks./proj_out_ = diffusers) */
    const char *prefix;      /* stripped from file names first (e.g. "module."), NULL = none */
    int ignore_unexpected;   /* 1: tensors the model does not use are a warning, not an error */
    int pos_embed_warn_only; /* 1: a file pos_embed that differs from ours is a warning */
} rq_dit_import_opts;

typedef struct {
    rq_dit_naming naming;    /* what was used */
    int n_loaded;            /* model parameters filled */
    int n_file_tensors;      /* tensors in the file (after the prefix filter) */
    int n_unexpected;        /* file tensors not used (error unless ignore_unexpected) */
    int n_warnings;          /* differing embedder copies, added null class, pos_embed mismatch (warn mode) */
    int null_class_added;    /* the file's label table had num_classes rows */
    int pos_embed_checked;   /* the file had a pos_embed buffer */
    double pos_embed_max_diff; /* max |file - ours| (ours rounded to the file dtype) */
    char dtypes[32];         /* dtypes seen, e.g. "F32" or "BF16+F32" */
} rq_dit_import_report;

/* Fill m (already built with rq_dit_init from the wanted config) from st.
 * opts and rep may be NULL. Warnings are logged with RQ_WARN. */
rq_status rq_dit_import(rq_dit *m, const rq_safetensors *st, const rq_dit_import_opts *opts,
                        rq_dit_import_report *rep, rq_err *err);
/* Same from a file path. */
rq_status rq_dit_import_file(rq_dit *m, const char *path, const rq_dit_import_opts *opts,
                             rq_dit_import_report *rep, rq_err *err);
const char *rq_dit_naming_name(rq_dit_naming n);

#endif
