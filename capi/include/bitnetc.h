/* bitnetc C API: load a BitNet b1.58 GGUF once, open independent sessions, generate tokens.
 *
 * Every function returns a bitnetc_status; on failure bitnetc_last_error() gives a message
 * (valid until the next bitnetc call on the same thread). No function lets a Rust panic cross
 * into C: a panic becomes BITNETC_ERR_PANIC. A model may be shared by several threads, each
 * with its own session; a session must not be used by two threads at once and must be freed
 * before its model. */
#ifndef BITNETC_H
#define BITNETC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum bitnetc_status {
    BITNETC_OK = 0,
    BITNETC_ERR_INVALID_ARGUMENT = 1, /* null pointer, bad UTF-8, buffer too small, ... */
    BITNETC_ERR_LOAD = 2,             /* the model file could not be loaded */
    BITNETC_ERR_RUNTIME = 3,          /* evaluation failed (context full, bad token id, ...) */
    BITNETC_ERR_PANIC = 4             /* an internal error; the handles stay valid to free */
} bitnetc_status;

typedef struct bitnetc_model bitnetc_model;
typedef struct bitnetc_session bitnetc_session;

/* Called with each generated token: its id and its bytes (not NUL-terminated, possibly a
 * partial UTF-8 sequence). Return non-zero to go on, 0 to stop generating. */
typedef int (*bitnetc_token_callback)(uint32_t id, const char *bytes, size_t len, void *user);

/* The message of the last failure on this thread ("" if none). */
const char *bitnetc_last_error(void);

/* Loads a model (threads = 0: all cores). */
bitnetc_status bitnetc_model_load(const char *path, uint32_t threads, bitnetc_model **out);
void bitnetc_model_free(bitnetc_model *model);
/* Vocabulary size. */
uint32_t bitnetc_model_n_vocab(const bitnetc_model *model);

/* Tokenizes UTF-8 text (add_special: prepend BOS as the file says). Writes at most cap ids and
 * the full count to *n_out; BITNETC_ERR_INVALID_ARGUMENT if cap is too small. */
bitnetc_status bitnetc_tokenize(const bitnetc_model *model, const char *text, int add_special,
                                uint32_t *ids, size_t cap, size_t *n_out);

/* A new, empty sequence holding at most n_ctx positions. */
bitnetc_status bitnetc_session_new(const bitnetc_model *model, uint32_t n_ctx,
                                   bitnetc_session **out);
void bitnetc_session_free(bitnetc_session *session);

/* Feeds the prompt into the session, then samples up to max_tokens tokens (temperature 0:
 * greedy; seed: the sampler's seed), calling callback (may be NULL) with each. Generated ids
 * go to out_ids (at most out_cap; may be NULL when out_cap is 0), their count to *n_out. */
bitnetc_status bitnetc_generate(const bitnetc_model *model, bitnetc_session *session,
                                const uint32_t *prompt, size_t n_prompt, uint32_t max_tokens,
                                float temperature, uint32_t seed,
                                bitnetc_token_callback callback, void *user,
                                uint32_t *out_ids, size_t out_cap, size_t *n_out);

/* Logits of the next token after feeding ids into the session (n_vocab floats into logits). */
bitnetc_status bitnetc_eval(const bitnetc_model *model, bitnetc_session *session,
                            const uint32_t *ids, size_t n_ids, float *logits, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* BITNETC_H */
