/*
 * Runs the libFuzzer entry of tests/fuzz/fuzz_safetensors.c in the normal test build:
 * over the seed corpus (tests/fuzz/corpus/safetensors: valid-* must open, bad-* must
 * be rejected), then over deterministic mutations of every seed (bit flips, byte
 * overwrites with interesting values, truncations, splices, header length edits).
 * Mutants must only ever produce a status: a crash, a sanitizer report or a trap in
 * the entry's own consistency checks fails the test. The asan build runs it too.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fuzz/fuzz_safetensors.c"

#define MUTANTS_PER_SEED 4000

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *b = malloc(cap);
    size_t r;
    while (b && (r = fread(b + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) b = realloc(b, cap *= 2);
    }
    fclose(f);
    *n = len;
    return b;
}

/* One random edit of buf (length *n, capacity cap). */
static void mutate(unsigned char *buf, size_t *n, size_t cap) {
    static const unsigned char interesting[] = {0, 1, 0x7f, 0x80, 0xff, '"', '\\', '{', '}', '[',
                                                ']', ',', ':', '-', '0', '9', 'e', ' '};
    size_t len = *n;
    switch (next() % 7) {
    case 0: /* flip a bit */
        if (len) buf[next() % len] ^= (unsigned char)(1u << (next() % 8));
        break;
    case 1: /* an interesting byte */
        if (len) buf[next() % len] = interesting[next() % sizeof interesting];
        break;
    case 2: /* truncate */
        if (len) *n = (size_t)(next() % len);
        break;
    case 3: { /* duplicate a chunk somewhere (splice) */
        if (!len) break;
        size_t from = next() % len, k = 1 + next() % 16, to = next() % len;
        if (from + k > len) k = len - from;
        if (len + k > cap) break;
        unsigned char chunk[16];
        memcpy(chunk, buf + from, k);
        memmove(buf + to + k, buf + to, len - to);
        memcpy(buf + to, chunk, k);
        *n = len + k;
        break;
    }
    case 4: { /* delete a chunk */
        if (!len) break;
        size_t at = next() % len, k = 1 + next() % 8;
        if (at + k > len) k = len - at;
        memmove(buf + at, buf + at + k, len - at - k);
        *n = len - k;
        break;
    }
    case 5: /* header length: near its true value, or anything */
        if (len >= 8) {
            uint64_t h = 0;
            for (int i = 7; i >= 0; i--) h = h << 8 | buf[i];
            h = next() % 3 ? h + (next() % 17) - 8 : next();
            for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(h >> (8 * i));
        }
        break;
    default: /* a digit changed inside the header (offsets, shapes) */
        for (size_t tries = 0; tries < 32 && len > 8; tries++) {
            size_t at = 8 + next() % (len - 8);
            if (buf[at] >= '0' && buf[at] <= '9') {
                buf[at] = (unsigned char)('0' + next() % 10);
                break;
            }
        }
        break;
    }
}

int main(void) {
    const char *dir = getenv("EMBER_TEST_DIR");
    char cdir[1024];
    snprintf(cdir, sizeof cdir, "%s/fuzz/corpus/safetensors", dir ? dir : "tests");
    DIR *d = opendir(cdir);
    if (!d) {
        fprintf(stderr, "FAIL: corpus %s missing (run the test through ctest, which sets EMBER_TEST_DIR)\n", cdir);
        return 1;
    }
    int seeds = 0, valid = 0, bad = 0;
    long mutants = 0, opened = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", cdir, e->d_name);
        size_t n = 0;
        unsigned char *seed = read_all(path, &n);
        CHECK(seed != NULL);
        if (!seed) continue;
        seeds++;
        /* The seed itself, exactly as libFuzzer would pass it (a heap copy of its size). */
        unsigned char *exact = malloc(n ? n : 1);
        memcpy(exact, seed, n);
        CHECK_EQ_INT(LLVMFuzzerTestOneInput(exact, n), 0);
        ember_safetensors *f = NULL;
        ember_status st = ember_safetensors_open_memory(exact, n, e->d_name, &f);
        if (!strncmp(e->d_name, "valid-", 6)) {
            valid++;
            CHECK_OK(st);
        } else {
            bad++;
            if (st == EMBER_OK) fprintf(stderr, "  %s opened\n", e->d_name);
            CHECK(st == EMBER_ERR_FORMAT || st == EMBER_ERR_CHECKSUM);
        }
        ember_safetensors_close(f);
        free(exact);
        /* Mutants of it. */
        size_t cap = n + 256;
        unsigned char *buf = malloc(cap);
        for (int m = 0; m < MUTANTS_PER_SEED; m++) {
            size_t len = n;
            memcpy(buf, seed, n);
            int edits = 1 + (int)(next() % 4);
            for (int k = 0; k < edits; k++) mutate(buf, &len, cap);
            unsigned char *in = malloc(len ? len : 1); /* exact size: overreads hit ASan */
            memcpy(in, buf, len);
            LLVMFuzzerTestOneInput(in, len);
            if (ember_safetensors_open_memory(in, len, "mutant", &f) == EMBER_OK) opened++;
            ember_safetensors_close(f);
            free(in);
            mutants++;
        }
        free(buf);
        free(seed);
    }
    closedir(d);
    CHECK(valid >= 5);
    CHECK(bad >= 10);
    check__passed++; /* every mutant returned */
    printf("fuzz corpus: %d seeds (%d valid, %d bad), %ld mutants, %ld of them opened\n", seeds, valid,
           bad, mutants, opened);
    return check_summary();
}
