/*
 * Runs a fuzz target's entry function without libFuzzer, for the normal test build:
 * every file of the corpus directories given, then deterministic mutations of each
 * (every truncation of the first 512 bytes, and single-byte changes at each of those
 * positions to a few interesting values). The fuzz preset runs the real fuzzer.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long runs;

static void run(const uint8_t *d, size_t n) {
    LLVMFuzzerTestOneInput(d, n);
    runs++;
}

static void mutate(const uint8_t *d, size_t n) {
    static const uint8_t vals[] = {0, '\t', '\n', '\r', '-', '0', '9', 'f', 'g', 0x7f, 0xff, ' ', ','};
    uint8_t *m = malloc(n + 1);
    size_t lim = n < 512 ? n : 512;
    for (size_t cut = 0; cut < lim; cut++) run(d, cut);
    for (size_t i = 0; i < lim; i++) {
        memcpy(m, d, n);
        for (size_t v = 0; v < sizeof vals; v++) {
            m[i] = vals[v];
            run(m, n);
        }
    }
    free(m);
}

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz driver: cannot open %s\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)n + 1);
    size_t got = fread(d, 1, (size_t)n, f);
    fclose(f);
    run(d, got);
    mutate(d, got);
    free(d);
    return 0;
}

int main(int argc, char **argv) {
    int files = 0, bad = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) {
            fprintf(stderr, "fuzz driver: %s does not exist\n", argv[a]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad += run_file(argv[a]);
            files++;
            continue;
        }
        DIR *dir = opendir(argv[a]);
        struct dirent *e;
        while (dir && (e = readdir(dir)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[a], e->d_name);
            bad += run_file(p);
            files++;
        }
        if (dir) closedir(dir);
    }
    if (files == 0) {
        fprintf(stderr, "fuzz driver: no corpus files given\n");
        return 1;
    }
    printf("%d corpus files, %ld inputs run\n", files, runs);
    return bad ? 1 : 0;
}
