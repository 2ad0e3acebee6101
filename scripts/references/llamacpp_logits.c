// llama.cpp's logits for a token sequence, for `python -m edgechain.bench.llamacpp_logits`
// (docs/models.md, "Compared with llama.cpp"). Never built by CI or the tests:
// scripts/build_llamacpp_reference.sh compiles it against the llama.cpp it builds.
//
//   llamacpp-logits MODEL.gguf STEPS TEXT ID...
//
// Feeds the ids (the prompt, from position 0, one batch with every position's logits wanted),
// then STEPS greedy tokens one at a time (argmax, lowest id on ties, never stopping at an
// end-of-generation token). One thread; KV cache in F32 and flash attention off, so only the
// kernels' float order (and their activation quantization) separates it from the engine.
// Writes to stdout, little-endian: int32 n_vocab, n_text, n_prompt, STEPS; n_text int32 ids
// (llama.cpp's own tokenization of TEXT, special tokens added as the file says); STEPS int32
// greedy ids; then (n_prompt + STEPS) rows of n_vocab float32 logits, row i after token i.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *data) {
    (void)data;
    if (level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

static void put(const void *data, size_t size, size_t count) {
    if (fwrite(data, size, count, stdout) != count) {
        perror("llamacpp-logits: write");
        exit(1);
    }
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (v[i] > v[best]) {
            best = i;
        }
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL.gguf STEPS TEXT ID...\n", argv[0]);
        return 2;
    }
    const int steps = atoi(argv[2]);
    const char *text = argv[3];
    const int n_prompt = argc - 4;
    const int total = n_prompt + steps;

    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (model == NULL) {
        fprintf(stderr, "llamacpp-logits: cannot load %s\n", argv[1]);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)total;
    cp.n_batch = (uint32_t)total;
    cp.n_ubatch = (uint32_t)total;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (ctx == NULL) {
        fprintf(stderr, "llamacpp-logits: cannot make a context of %d positions\n", total);
        return 1;
    }

    llama_token *text_ids = malloc(sizeof(llama_token) * (strlen(text) + 8));
    const int n_text = llama_tokenize(vocab, text, (int32_t)strlen(text), text_ids,
                                      (int32_t)strlen(text) + 8, true, false);
    if (n_text < 0) {
        fprintf(stderr, "llamacpp-logits: cannot tokenize the text\n");
        return 1;
    }

    float *rows = malloc(sizeof(float) * (size_t)n_vocab * (size_t)total);
    llama_token *greedy = malloc(sizeof(llama_token) * (size_t)(steps > 0 ? steps : 1));
    struct llama_batch batch = llama_batch_init(total, 0, 1);
    batch.n_tokens = n_prompt;
    for (int i = 0; i < n_prompt; i++) {
        int id = atoi(argv[4 + i]);
        if (id < 0 || id >= n_vocab) {
            fprintf(stderr, "llamacpp-logits: token id %d is not below %d\n", id, n_vocab);
            return 2;
        }
        batch.token[i] = id;
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    for (int pos = 0; pos < total;) {
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "llamacpp-logits: llama_decode failed at position %d\n", pos);
            return 1;
        }
        for (int i = 0; i < batch.n_tokens; i++, pos++) {
            memcpy(rows + (size_t)pos * n_vocab, llama_get_logits_ith(ctx, i),
                   sizeof(float) * n_vocab);
        }
        if (pos == total) {
            break;
        }
        const int next = argmax(rows + (size_t)(pos - 1) * n_vocab, n_vocab);
        greedy[pos - n_prompt] = next;
        batch.n_tokens = 1;
        batch.token[0] = next;
        batch.pos[0] = pos;
        batch.n_seq_id[0] = 1;
        batch.seq_id[0][0] = 0;
        batch.logits[0] = 1;
    }

    const int32_t head[4] = {n_vocab, n_text, n_prompt, steps};
    put(head, sizeof(int32_t), 4);
    put(text_ids, sizeof(llama_token), (size_t)n_text);
    put(greedy, sizeof(llama_token), (size_t)steps);
    put(rows, sizeof(float), (size_t)n_vocab * (size_t)total);

    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
