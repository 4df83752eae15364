/*
 * tests/fuzz/fuzz_train_config.c: libFuzzer entry for the training job's config format
 * (ember_train_config_parse: `key = value` lines, comments, every key of the key table
 * and its value parser: numbers, sizes with units, layer lists, enums, booleans, paths).
 *
 * Whatever the text, parsing returns a status (never a crash, hang or leak) and a
 * failure names a line. A text that parses must validate or fail with a status, and
 * write back (ember_train_config_format) to a text that parses to the same config.
 * The seed corpus (tests/fuzz/corpus/train_config) holds the configs of tests/data.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ember/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* a NUL inside ends the text early, as it would for a C caller */
    ember_train_config a, b;
    ember_train_config_defaults(&a);
    ember_status st = ember_train_config_parse(&a, text, "fuzz.conf");
    free(text);
    if (st != EMBER_OK) {
        if (st != EMBER_ERR_PARSE && st != EMBER_ERR_INVALID_ARGUMENT) __builtin_trap();
        if (!strstr(ember_last_error(), "fuzz.conf")) __builtin_trap();
        return 0;
    }
    (void)ember_train_config_validate(&a); /* any status; no crash */
    size_t n = ember_train_config_format(&a, NULL, 0);
    char *back = malloc(n + 1);
    if (!back) return 0;
    ember_train_config_format(&a, back, n + 1);
    ember_train_config_defaults(&b);
    if (ember_train_config_parse(&b, back, "back.conf") != EMBER_OK) __builtin_trap();
    free(back);
    size_t m = ember_train_config_format(&b, NULL, 0);
    char *again = malloc(m + 1), *first = malloc(n + 1);
    if (again && first) {
        ember_train_config_format(&b, again, m + 1);
        ember_train_config_format(&a, first, n + 1);
        if (m != n || strcmp(again, first) != 0) __builtin_trap();
    }
    free(again);
    free(first);
    return 0;
}
