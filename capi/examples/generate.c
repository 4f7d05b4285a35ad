/* Loads a model, tokenizes a prompt, and generates greedily, streaming tokens to stdout;
 * then checks the error path with a missing file. Usage: generate MODEL.gguf */
#include <stdio.h>
#include <string.h>

#include "bitnetc.h"

static int on_token(uint32_t id, const char *bytes, size_t len, void *user) {
    int *count = (int *)user;
    (*count)++;
    printf("[%u]", id);
    fwrite(bytes, 1, len, stdout);
    printf("\n");
    return *count < 10; /* stop after 10 tokens */
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    bitnetc_model *model = NULL;
    if (bitnetc_model_load(argv[1], 2, &model) != BITNETC_OK) {
        fprintf(stderr, "load failed: %s\n", bitnetc_last_error());
        return 1;
    }
    uint32_t ids[64];
    size_t n = 0;
    if (bitnetc_tokenize(model, "The quick brown fox", 1, ids, 64, &n) != BITNETC_OK) {
        fprintf(stderr, "tokenize failed: %s\n", bitnetc_last_error());
        return 1;
    }
    bitnetc_session *session = NULL;
    if (bitnetc_session_new(model, 128, &session) != BITNETC_OK) {
        fprintf(stderr, "session failed: %s\n", bitnetc_last_error());
        return 1;
    }
    int count = 0;
    uint32_t out[32];
    size_t n_out = 0;
    bitnetc_status st = bitnetc_generate(model, session, ids, n, 32, 0.0f, 1, on_token, &count,
                                         out, 32, &n_out);
    if (st != BITNETC_OK) {
        fprintf(stderr, "generate failed: %s\n", bitnetc_last_error());
        return 1;
    }
    printf("generated %zu tokens (vocabulary %u)\n", n_out, bitnetc_model_n_vocab(model));
    bitnetc_session_free(session);

    /* Errors come back as codes with a message. */
    bitnetc_model *missing = NULL;
    st = bitnetc_model_load("/nonexistent/model.gguf", 1, &missing);
    printf("missing file: status %d, message \"%s\"\n", (int)st, bitnetc_last_error());
    st = bitnetc_session_new(NULL, 16, &session);
    printf("null model: status %d, message \"%s\"\n", (int)st, bitnetc_last_error());
    bitnetc_model_free(model);
    return n_out == 10 ? 0 : 1;
}
