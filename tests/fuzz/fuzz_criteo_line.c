/*
 * Fuzz target: the Criteo TSV line parser and the chunked reader around it.
 *
 * The input is parsed twice: as one line (ember_criteo_parse_line, with and without a
 * label) and as a whole file from memory, once with one thread and big chunks and once
 * with three threads, small chunks and a small line cap taken from the input's first
 * bytes. Besides memory safety (ASan), the target checks what must hold for any input:
 * the two reads agree row for row on the lines both accept, every line is either a row
 * or a counted fault, every row equals what the one-line parser makes of its line, and
 * ids respect the hash cap.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ember/datasets.h"

#define ND EMBER_CRITEO_NUM_DENSE
#define NS EMBER_CRITEO_NUM_SPARSE

typedef struct {
    int64_t n, lines, bad;
    int has_label;
    ember_status st;
    float *dense;
    uint32_t *sparse;
    int32_t *labels;
} result;

static result read_mem(const uint8_t *data, size_t size, size_t block, size_t max_line, int threads, uint32_t cap) {
    result r = {0};
    ember_criteo_reader *rd = NULL;
    r.st = ember_criteo_open(&(ember_criteo_params){.data = data, .size = size, .path = "fuzz", .block_bytes = block,
                                                    .max_line_bytes = max_line, .threads = threads, .hash_cap = cap,
                                                    .on_error = EMBER_ON_ERROR_SKIP, .max_logged = -1},
                             &rd);
    ember_criteo_rows rows;
    while (r.st == EMBER_OK && (r.st = ember_criteo_read(rd, &rows)) == EMBER_OK && rows.n > 0) {
        if (rows.first != r.n) abort();
        r.dense = realloc(r.dense, (size_t)(r.n + rows.n) * ND * sizeof(float));
        r.sparse = realloc(r.sparse, (size_t)(r.n + rows.n) * NS * sizeof(uint32_t));
        r.labels = realloc(r.labels, (size_t)(r.n + rows.n) * sizeof(int32_t));
        memcpy(r.dense + r.n * ND, rows.dense, (size_t)rows.n * ND * sizeof(float));
        memcpy(r.sparse + r.n * NS, rows.sparse, (size_t)rows.n * NS * sizeof(uint32_t));
        memcpy(r.labels + r.n, rows.labels, (size_t)rows.n * sizeof(int32_t));
        r.n += rows.n;
    }
    if (rd) {
        ember_criteo_stats st;
        ember_criteo_get_stats(rd, &st);
        r.lines = st.lines;
        r.bad = st.bad_total;
        r.has_label = st.has_label;
        if (r.st == EMBER_OK && (st.rows != r.n || st.lines != st.rows + st.bad_total)) abort();
        int64_t sum = 0;
        for (int k = 0; k < EMBER_CRITEO_FAULT_COUNT; k++) sum += st.bad[k];
        if (sum != st.bad_total) abort();
    }
    ember_criteo_close(rd);
    return r;
}

static void result_free(result *r) {
    free(r->dense);
    free(r->sparse);
    free(r->labels);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    float dense[ND];
    uint32_t sparse[NS];
    int32_t label;
    ember_criteo_fault fault;
    for (int has_label = 0; has_label <= 1; has_label++) {
        ember_status st = ember_criteo_parse_line(&(ember_criteo_params){.hash_cap = 1000}, has_label, (const char *)data,
                                                  size, dense, sparse, &label, &fault);
        if (st == EMBER_OK) {
            for (int j = 0; j < NS; j++)
                if (sparse[j] >= 1000) abort();
            if (label != 0 && label != 1) abort();
        } else if (st != EMBER_ERR_PARSE || (unsigned)fault >= EMBER_CRITEO_FAULT_COUNT) {
            abort();
        }
    }
    /* The whole input as a file, two ways. Chunking must not change the rows when no
     * line is longer than the smaller cap (a long line is dropped either way). */
    size_t block = 64 + (size > 0 ? data[0] : 0) * 16;
    result a = read_mem(data, size, (size_t)1 << 20, 4096, 1, 0);
    result b = read_mem(data, size, block, 4096, 3, 0);
    if (a.st != b.st) abort();
    if (a.st == EMBER_OK) {
        if (a.n != b.n || a.lines != b.lines || a.bad != b.bad) abort();
        if (a.n > 0 && (memcmp(a.dense, b.dense, (size_t)a.n * ND * sizeof(float)) != 0 ||
                        memcmp(a.sparse, b.sparse, (size_t)a.n * NS * sizeof(uint32_t)) != 0 ||
                        memcmp(a.labels, b.labels, (size_t)a.n * sizeof(int32_t)) != 0))
            abort();
    }
    /* The reader's fast path against the one-line parser, line by line. */
    if (a.st == EMBER_OK && a.has_label >= 0) {
        int64_t row = 0;
        size_t at = 0;
        while (at < size) {
            const uint8_t *nl = memchr(data + at, '\n', size - at);
            size_t len = nl ? (size_t)(nl - (data + at)) : size - at;
            if (ember_criteo_parse_line(&(ember_criteo_params){.max_line_bytes = 4096}, a.has_label,
                                        (const char *)data + at, len, dense, sparse, &label, NULL) == EMBER_OK) {
                if (row >= a.n || memcmp(dense, a.dense + row * ND, sizeof dense) != 0 ||
                    memcmp(sparse, a.sparse + row * NS, sizeof sparse) != 0 || label != a.labels[row])
                    abort();
                row++;
            }
            at += len + 1;
        }
        if (row != a.n) abort();
    }
    result c = read_mem(data, size, block, 64 + (size > 1 ? data[1] : 0), 2, 7);
    if (c.st == EMBER_OK)
        for (int64_t i = 0; i < c.n * NS; i++)
            if (c.sparse[i] >= 7) abort();
    result_free(&a);
    result_free(&b);
    result_free(&c);
    return 0;
}
