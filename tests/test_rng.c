/* Philox 4x32-10: published known-answer vectors and the stream layout of ember/rng.h. */
#include "check.h"

int main(void) {
    /* Known-answer vectors of Random123 (kat_vectors), Salmon et al. SC'11. */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
         0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
         0x5001e420, 0x24126ea1},
    };
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        ember_philox4x32_10(kat[v], kat[v] + 4, out);
        for (int i = 0; i < 4; i++) CHECK_EQ_INT(out[i], kat[v][6 + i]);
    }

    /* stream word w = block w/4 (counter lo, hi), lane w%4, key = seed */
    uint64_t seed = 0x299f31d0a4093822ULL;
    uint32_t ctr[4] = {5, 0, 0, 0}, key[2] = {0xa4093822, 0x299f31d0}, blk[4];
    ember_philox4x32_10(ctr, key, blk);
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(ember_rng_word(seed, 20 + (uint64_t)i), blk[i]);
    uint32_t hi_ctr[4] = {1, 1, 0, 0};
    ember_philox4x32_10(hi_ctr, key, blk);
    CHECK_EQ_INT(ember_rng_word(seed, ((UINT64_C(1) << 32) + 1) * 4 + 2), blk[2]);

    /* bits: i32 holds words, i64 two words (lo, hi), and the offset advances */
    ember_tensor *bits = NULL, *bits64 = NULL;
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_I32, .ndim = 1, .shape = {37}}, &bits));
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_I64, .ndim = 1, .shape = {5}}, &bits64));
    ember_rng rng = {.seed = 42, .offset = 3};
    CHECK_OK(ember_rng_bits(&rng, bits));
    CHECK_EQ_INT(rng.offset, 40);
    const uint32_t *bw = ember_tensor_data(bits);
    int bad = 0;
    for (int i = 0; i < 37; i++) bad += bw[i] != ember_rng_word(42, 3 + (uint64_t)i);
    CHECK_EQ_INT(bad, 0);
    CHECK_OK(ember_rng_bits(&rng, bits64));
    CHECK_EQ_INT(rng.offset, 50);
    const uint64_t *b64 = ember_tensor_data(bits64);
    CHECK(b64[1] == ((uint64_t)ember_rng_word(42, 42) | (uint64_t)ember_rng_word(42, 43) << 32));

    /* uniform: exact mapping of the top 24 bits, and splitting a fill changes nothing */
    int64_t n = 100000;
    ember_tensor *u = NULL, *u2 = NULL;
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 1, .shape = {n}}, &u));
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 1, .shape = {n}}, &u2));
    rng = (ember_rng){.seed = 9};
    CHECK_OK(ember_rng_uniform(&rng, u, -2.0f, 2.0f));
    const float *ud = ember_tensor_data(u);
    double mean = 0, lo = 1e9, hi = -1e9;
    for (int64_t i = 0; i < n; i++) {
        mean += ud[i];
        lo = ud[i] < lo ? ud[i] : lo;
        hi = ud[i] > hi ? ud[i] : hi;
    }
    mean /= (double)n;
    CHECK_NEAR(mean, 0.0, 0.02); /* sd of the mean: 4/sqrt(12 n) = 0.0037 */
    CHECK(lo >= -2.0 && hi < 2.0);
    CHECK_NEAR(ud[7], -2.0f + 4.0f * ((float)(ember_rng_word(9, 7) >> 8) / 16777216.0f), 0);
    ember_tensor *first = NULL, *second = NULL;
    CHECK_OK(ember_tensor_narrow(u2, 0, 0, 12345, &first));
    CHECK_OK(ember_tensor_narrow(u2, 0, 12345, n - 12345, &second));
    rng = (ember_rng){.seed = 9};
    CHECK_OK(ember_rng_uniform(&rng, first, -2.0f, 2.0f));
    CHECK_OK(ember_rng_uniform(&rng, second, -2.0f, 2.0f));
    CHECK_NEAR_ARRAY((const float *)ember_tensor_data(u2), ud, n, 0.0);

    /* the same stream whatever the thread count */
    int threads = ember_get_num_threads();
    ember_set_num_threads(1);
    rng = (ember_rng){.seed = 9};
    CHECK_OK(ember_rng_uniform(&rng, u2, -2.0f, 2.0f));
    ember_set_num_threads(threads);
    CHECK_NEAR_ARRAY((const float *)ember_tensor_data(u2), ud, n, 0.0);

    /* normal: moments, even offsets, f16 output */
    rng = (ember_rng){.seed = 5, .offset = 1};
    CHECK_OK(ember_rng_normal(&rng, u, 1.0f, 3.0f));
    CHECK_EQ_INT(rng.offset, 2 + n);
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; i++) m += ud[i];
    m /= (double)n;
    for (int64_t i = 0; i < n; i++) v += (ud[i] - m) * (ud[i] - m);
    v /= (double)(n - 1);
    CHECK_NEAR(m, 1.0, 0.05);       /* sd of the mean: 3/sqrt(n) = 0.0095 */
    CHECK_NEAR(sqrt(v), 3.0, 0.05); /* sd of the sd: 3/sqrt(2n) = 0.0067 */
    ember_tensor *h = NULL;
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_BF16, .ndim = 1, .shape = {7}}, &h));
    rng = (ember_rng){.seed = 5, .offset = 2};
    CHECK_OK(ember_rng_normal(&rng, h, 1.0f, 3.0f));
    CHECK_EQ_INT(rng.offset, 10);
    CHECK_NEAR(ember_bf16_to_f32(((const uint16_t *)ember_tensor_data(h))[3]), ud[3], fabs(ud[3]) / 128);

    /* bad arguments */
    CHECK_STATUS(ember_rng_uniform(NULL, u, 0, 1), EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_rng_uniform(&rng, bits, 0, 1), EMBER_ERR_DTYPE);
    CHECK_STATUS(ember_rng_bits(&rng, u), EMBER_ERR_DTYPE);
    ember_tensor *strided = NULL;
    ember_tensor *mat = NULL;
    CHECK_OK(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {4, 4}}, &mat));
    CHECK_OK(ember_tensor_narrow(mat, 1, 0, 2, &strided));
    CHECK_STATUS(ember_rng_uniform(&rng, strided, 0, 1), EMBER_ERR_STATE);

    ember_tensor *all[] = {bits, bits64, u, u2, first, second, h, strided, mat};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ember_tensor_destroy(all[i]);
    return check_summary();
}
