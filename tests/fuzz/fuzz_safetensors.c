/*
 * tests/fuzz/fuzz_safetensors.c: libFuzzer entry for the safetensors reader (header
 * length, strict JSON header, tensor table, checksum, reads).
 *
 *     clang -fsanitize=fuzzer,address ... tests/fuzz/fuzz_safetensors.c -lember
 *     ./fuzz_safetensors tests/fuzz/corpus/safetensors
 *
 * The input is a whole file image. Whatever it holds, opening must return a status
 * (never crash, hang or leak), and every tensor of a file that opens must read back.
 * tests/test_fuzz_safetensors.c runs this entry over the corpus and deterministic
 * mutations of it in the normal test build, so CI covers it without libFuzzer.
 */
#include <stddef.h>
#include <stdint.h>

#include "ember/ember.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ember_safetensors *f = NULL;
    if (ember_safetensors_open_memory(data, size, "fuzz", &f) != EMBER_OK) return 0;
    for (int i = 0; i < ember_safetensors_metadata_count(f); i++) {
        const char *k = NULL, *v = NULL;
        if (ember_safetensors_metadata_at(f, i, &k, &v) != EMBER_OK || !k || !v) __builtin_trap();
    }
    for (int i = 0; i < ember_safetensors_count(f); i++) {
        ember_safetensors_info info;
        if (ember_safetensors_info_at(f, i, &info) != EMBER_OK) __builtin_trap();
        /* Validated ranges lie inside the input, so nbytes <= size. */
        if (info.offset + info.nbytes > size) __builtin_trap();
        ember_tensor *t = NULL;
        ember_status st = ember_safetensors_read_new(f, info.name, EMBER_TIER_HOST, NULL,
                                                     EMBER_MEM_OTHER, &t);
        if (st == EMBER_OK) {
            if (ember_tensor_nbytes(t) != info.nbytes) __builtin_trap();
            ember_tensor_destroy(t);
        } else if (info.dtype != EMBER_DTYPE_COUNT) {
            __builtin_trap(); /* a tensor of a file that opened must read */
        }
    }
    ember_safetensors_close(f);
    return 0;
}
