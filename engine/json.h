/*
 * engine/json.h: a small strict JSON parser (RFC 8259) for file headers. Not installed.
 *
 * Input is untrusted (safetensors headers, manifests), so the parser reads only the
 * n bytes it is given (no NUL terminator needed), limits nesting depth and the number
 * of values, validates UTF-8 and every escape, and rejects anything RFC 8259 does not
 * allow (trailing commas, leading zeros, comments, lone surrogates, control
 * characters in strings, content after the value). It builds a read-only tree of
 * nodes held in one document; strings are decoded to NUL-terminated UTF-8 (a string
 * containing \u0000 is rejected, since every consumer treats strings as C strings).
 * Numbers keep their text; those that are non-negative integers below 2^64 also give
 * their exact value.
 *
 *     ember__json_doc *doc;
 *     ember__json_error err;
 *     if (ember__json_parse(buf, n, &doc, &err) != EMBER_OK) ... err.offset, err.reason
 *     const ember__json *root = ember__json_root(doc);
 *     for (const ember__json *m = ember__json_first(root); m; m = ember__json_next(m))
 *         printf("%s\n", ember__json_key(m));
 *     ember__json_free(doc);
 */
#ifndef EMBER_JSON_H
#define EMBER_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "ember/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER__JSON_MAX_DEPTH 64
#define EMBER__JSON_MAX_NODES (1u << 22)

typedef enum ember__json_type {
    EMBER__JSON_NULL,
    EMBER__JSON_FALSE,
    EMBER__JSON_TRUE,
    EMBER__JSON_NUMBER,
    EMBER__JSON_STRING,
    EMBER__JSON_ARRAY,
    EMBER__JSON_OBJECT
} ember__json_type;

typedef struct ember__json ember__json;
typedef struct ember__json_doc ember__json_doc;

typedef struct ember__json_error {
    size_t offset;      /* byte offset of the problem in the input */
    const char *reason; /* static text: "expected ':' after object key", ... */
} ember__json_error;

/*
 * Parse exactly one JSON value from buf[0..n), surrounded by optional whitespace.
 * @return EMBER_OK; EMBER_ERR_PARSE with *err filled (the thread's error message is
 *         NOT set: callers add the file name and set it); EMBER_ERR_OUT_OF_MEMORY.
 */
ember_status ember__json_parse(const void *buf, size_t n, ember__json_doc **out,
                               ember__json_error *err);
void ember__json_free(ember__json_doc *doc);

const ember__json *ember__json_root(const ember__json_doc *doc);
ember__json_type ember__json_type_of(const ember__json *v);
/* Byte offset in the input where the value starts. */
size_t ember__json_offset(const ember__json *v);
/* Arrays and objects: number of elements / members, first child, next sibling (NULL at end). */
size_t ember__json_count(const ember__json *v);
const ember__json *ember__json_first(const ember__json *v);
const ember__json *ember__json_next(const ember__json *v);
/* Object members: the member's key (NUL-terminated UTF-8); NULL for array elements. */
const char *ember__json_key(const ember__json *v);
/* Strings: decoded text and its length in bytes. Numbers: their source text. */
const char *ember__json_string(const ember__json *v, size_t *len);
/* Numbers: 1 and *out = value when the number is an integer in [0, 2^64), else 0. */
int ember__json_uint(const ember__json *v, uint64_t *out);
/* Member of an object by key (the first one if repeated), or NULL. */
const ember__json *ember__json_get(const ember__json *obj, const char *key);
/* Name of a type for messages: "null", "number", "object", ... */
const char *ember__json_type_name(ember__json_type t);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_JSON_H */
