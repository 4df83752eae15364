/* Tensors: creation, metadata, views and refcounts, strided copies, bad arguments. */
#include "check.h"

static ember_tensor *make(ember_dtype dt, int ndim, const int64_t *shape) {
    ember_tensor_params p = {.dtype = dt, .ndim = ndim};
    for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
    ember_tensor *t = NULL;
    CHECK_OK(ember_tensor_create(&p, &t));
    return t;
}

static void iota(ember_tensor *t) {
    float *d = ember_tensor_data(t);
    for (int64_t i = 0; i < ember_tensor_numel(t); i++) d[i] = (float)i;
}

int main(void) {
    /* creation and metadata */
    ember_tensor *x = make(EMBER_DTYPE_F32, 3, (int64_t[]){2, 3, 4});
    CHECK_EQ_INT(ember_tensor_ndim(x), 3);
    CHECK_EQ_INT(ember_tensor_numel(x), 24);
    CHECK_EQ_INT(ember_tensor_nbytes(x), 96);
    CHECK_EQ_INT(ember_tensor_dim(x, -1), 4);
    CHECK_EQ_INT(ember_tensor_stride(x, 0), 12);
    CHECK_EQ_INT(ember_tensor_stride(x, 2), 1);
    CHECK(ember_tensor_is_contiguous(x));
    CHECK_EQ_INT(ember_tensor_device(x).type, EMBER_DEVICE_CPU);
    CHECK_EQ_INT(ember_tensor_tier(x), EMBER_TIER_HOST);
    CHECK_EQ_INT((uintptr_t)ember_tensor_data(x) % EMBER_MEM_ALIGN, 0);
    char desc[96];
    CHECK_STR(ember_tensor_describe(x, desc, sizeof desc), "f32(2, 3, 4) cpu");
    iota(x);

    /* narrow: a strided view sharing storage */
    ember_tensor *n = NULL;
    CHECK_OK(ember_tensor_narrow(x, 2, 1, 2, &n));
    CHECK_EQ_INT(ember_tensor_dim(n, 2), 2);
    CHECK(!ember_tensor_is_contiguous(n));
    CHECK_EQ_INT(ember_tensor_storage_refs(x), 2);
    CHECK(((float *)ember_tensor_data(n))[0] == 1.0f);
    /* narrow of the first dim stays contiguous */
    ember_tensor *rows = NULL;
    CHECK_OK(ember_tensor_narrow(x, 0, 1, 1, &rows));
    CHECK(ember_tensor_is_contiguous(rows));
    CHECK(((float *)ember_tensor_data(rows))[0] == 12.0f);

    /* contiguous copy of a strided view has the right elements */
    ember_tensor *nc = NULL;
    CHECK_OK(ember_tensor_contiguous(n, &nc));
    CHECK(ember_tensor_is_contiguous(nc));
    const float *ncd = ember_tensor_data(nc);
    int bad = 0;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 2; k++)
                if (ncd[(i * 3 + j) * 2 + k] != (float)(i * 12 + j * 4 + k + 1)) bad++;
    CHECK_EQ_INT(bad, 0);

    /* transpose and permute */
    ember_tensor *t = NULL, *tc = NULL;
    CHECK_OK(ember_tensor_transpose(x, 0, 2, &t));
    CHECK_EQ_INT(ember_tensor_dim(t, 0), 4);
    CHECK_EQ_INT(ember_tensor_stride(t, 0), 1);
    CHECK_OK(ember_tensor_contiguous(t, &tc));
    const float *tcd = ember_tensor_data(tc);
    bad = 0;
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 2; i++)
                if (tcd[(k * 3 + j) * 2 + i] != (float)(i * 12 + j * 4 + k)) bad++;
    CHECK_EQ_INT(bad, 0);
    ember_tensor *pm = NULL;
    CHECK_OK(ember_tensor_permute(x, (int[]){1, 2, 0}, &pm));
    CHECK_EQ_INT(ember_tensor_dim(pm, 0), 3);
    CHECK_EQ_INT(ember_tensor_dim(pm, 2), 2);
    ember_tensor *pm_bad = (ember_tensor *)1;
    CHECK_STATUS(ember_tensor_permute(x, (int[]){0, 0, 1}, &pm_bad), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(pm_bad == NULL);

    /* reshape, with -1 */
    ember_tensor *r = NULL;
    CHECK_OK(ember_tensor_reshape(x, 2, (int64_t[]){-1, 6}, &r));
    CHECK_EQ_INT(ember_tensor_dim(r, 0), 4);
    ember_tensor *r_bad = NULL;
    CHECK_STATUS(ember_tensor_reshape(x, 2, (int64_t[]){5, 5}, &r_bad), EMBER_ERR_SHAPE);
    CHECK(strstr(ember_last_error(), "(2, 3, 4)") != NULL);
    CHECK_STATUS(ember_tensor_reshape(t, 1, (int64_t[]){24}, &r_bad), EMBER_ERR_STATE);
    CHECK_STATUS(ember_tensor_reshape(x, 2, (int64_t[]){-1, -1}, &r_bad), EMBER_ERR_SHAPE);
    CHECK(r_bad == NULL);

    /* strided copy into a strided destination */
    ember_tensor *y = make(EMBER_DTYPE_F32, 3, (int64_t[]){4, 3, 2});
    CHECK_OK(ember_tensor_fill(y, -1.0));
    ember_tensor *yt = NULL;
    CHECK_OK(ember_tensor_transpose(y, 0, 2, &yt)); /* (2, 3, 4) view */
    CHECK_OK(ember_tensor_copy(yt, x));
    CHECK_NEAR_ARRAY((const float *)ember_tensor_data(y), tcd, 24, 0.0);

    /* strided fill touches only the view */
    ember_tensor *z = make(EMBER_DTYPE_F32, 2, (int64_t[]){3, 4});
    CHECK_OK(ember_tensor_fill(z, 0.0));
    ember_tensor *col = NULL;
    CHECK_OK(ember_tensor_narrow(z, 1, 2, 1, &col));
    CHECK_OK(ember_tensor_fill(col, 5.0));
    const float *zd = ember_tensor_data(z);
    double total = 0;
    for (int i = 0; i < 12; i++) total += zd[i];
    CHECK_NEAR(total, 15.0, 0);
    CHECK(zd[2] == 5.0f && zd[6] == 5.0f && zd[10] == 5.0f);

    /* refcounts: the storage lives while any view does */
    ember_tensor *keep = NULL;
    CHECK_OK(ember_tensor_retain(rows, &keep));
    ember_tensor_destroy(x);
    ember_tensor_destroy(n);
    ember_tensor_destroy(nc);
    ember_tensor_destroy(t);
    ember_tensor_destroy(tc);
    ember_tensor_destroy(r);
    ember_tensor_destroy(pm);
    ember_tensor_destroy(rows);
    CHECK_EQ_INT(ember_tensor_storage_refs(keep), 1);
    CHECK(((float *)ember_tensor_data(keep))[3] == 15.0f);
    ember_tensor_destroy(keep);
    ember_tensor_destroy(y);
    ember_tensor_destroy(yt);
    ember_tensor_destroy(col);
    ember_tensor_destroy(z);
    ember_tensor_destroy(NULL);

    /* scalar and empty tensors */
    ember_tensor *s = make(EMBER_DTYPE_I64, 0, NULL);
    CHECK_EQ_INT(ember_tensor_numel(s), 1);
    CHECK_OK(ember_tensor_fill(s, 42));
    CHECK_EQ_INT(*(int64_t *)ember_tensor_data(s), 42);
    ember_tensor_destroy(s);
    ember_tensor *e = make(EMBER_DTYPE_F16, 2, (int64_t[]){0, 7});
    CHECK_EQ_INT(ember_tensor_numel(e), 0);
    CHECK(ember_tensor_data(e) != NULL);
    CHECK_OK(ember_tensor_fill(e, 1.0));
    ember_tensor_destroy(e);

    /* wrap caller memory */
    float buf[6] = {1, 2, 3, 4, 5, 6};
    ember_tensor *w = NULL;
    CHECK_OK(ember_tensor_wrap(buf, EMBER_DTYPE_F32, 2, (int64_t[]){2, 3}, NULL, EMBER_CPU, &w));
    ember_tensor *wt = NULL;
    CHECK_OK(ember_tensor_clone(w, EMBER_TIER_HOST, NULL, &wt));
    CHECK_NEAR_ARRAY((const float *)ember_tensor_data(wt), buf, 6, 0.0);
    ember_tensor_destroy(w);
    ember_tensor_destroy(wt);
    CHECK_EQ_INT(buf[5], 6);

    /* bad arguments return statuses */
    ember_tensor *bad_t = (ember_tensor *)1;
    CHECK_STATUS(ember_tensor_create(NULL, &bad_t), EMBER_ERR_INVALID_ARGUMENT);
    CHECK(bad_t == NULL);
    CHECK_STATUS(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32}, NULL),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_tensor_create(&(ember_tensor_params){.dtype = (ember_dtype)42, .ndim = 1, .shape = {3}},
                                     &bad_t),
                 EMBER_ERR_DTYPE);
    CHECK_STATUS(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 7}, &bad_t),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = -1}, &bad_t),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2, .shape = {3, -2}},
                                     &bad_t),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 2,
                                                            .shape = {INT64_C(1) << 32, INT64_C(1) << 32}},
                                     &bad_t),
                 EMBER_ERR_OVERFLOW);
    CHECK(strstr(ember_last_error(), "(4294967296, 4294967296)") != NULL);
    CHECK_STATUS(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_I64, .ndim = 1,
                                                            .shape = {INT64_C(1) << 62}},
                                     &bad_t),
                 EMBER_ERR_OVERFLOW);
    CHECK_STATUS(ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 1, .shape = {4},
                                                            .tier = (ember_tier)9},
                                     &bad_t),
                 EMBER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ember_tensor_wrap(NULL, EMBER_DTYPE_F32, 1, (int64_t[]){1}, NULL, EMBER_CPU, &bad_t),
                 EMBER_ERR_INVALID_ARGUMENT);
    ember_tensor *v = make(EMBER_DTYPE_F32, 2, (int64_t[]){3, 4});
    CHECK_STATUS(ember_tensor_narrow(v, 0, 2, 2, &bad_t), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_tensor_narrow(v, 5, 0, 1, &bad_t), EMBER_ERR_INDEX);
    CHECK_STATUS(ember_tensor_transpose(v, 0, 2, &bad_t), EMBER_ERR_INDEX);
    ember_tensor *v2 = make(EMBER_DTYPE_F32, 2, (int64_t[]){4, 3});
    CHECK_STATUS(ember_tensor_copy(v2, v), EMBER_ERR_SHAPE);
    ember_tensor *vi = make(EMBER_DTYPE_I32, 2, (int64_t[]){3, 4});
    CHECK_STATUS(ember_tensor_copy(vi, v), EMBER_ERR_DTYPE);
    CHECK_STATUS(ember_tensor_copy(NULL, v), EMBER_ERR_INVALID_ARGUMENT);
    ember_tensor_destroy(v);
    ember_tensor_destroy(v2);
    ember_tensor_destroy(vi);

    /* half conversions: exact values, rounding to nearest even, specials */
    CHECK_EQ_INT(ember_f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ_INT(ember_f32_to_f16(-2.0f), 0xc000);
    CHECK_EQ_INT(ember_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ_INT(ember_f32_to_f16(65520.0f), 0x7c00);  /* rounds to inf */
    CHECK_EQ_INT(ember_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie, to even */
    CHECK_EQ_INT(ember_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02); /* tie, to even (up) */
    CHECK_EQ_INT(ember_f32_to_f16(5.960464477539063e-08f), 0x0001); /* smallest subnormal */
    CHECK_EQ_INT(ember_f32_to_f16(2.98e-08f), 0x0000);
    CHECK_EQ_INT(ember_f32_to_f16(6.103515625e-05f), 0x0400);        /* smallest normal */
    CHECK_EQ_INT(ember_f32_to_f16(INFINITY), 0x7c00);
    CHECK(isnan(ember_f16_to_f32(ember_f32_to_f16(NAN))));
    CHECK_NEAR(ember_f16_to_f32(0x0001), 5.960464477539063e-08, 0);
    CHECK_NEAR(ember_f16_to_f32(0x3555), 0.333251953125, 0);
    int round_trip_bad = 0;
    for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive half survives f32 */
        if (ember_f32_to_f16(ember_f16_to_f32((uint16_t)h)) != h) round_trip_bad++;
    CHECK_EQ_INT(round_trip_bad, 0);
    CHECK_EQ_INT(ember_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(ember_f32_to_bf16(1.00390625f), 0x3f80); /* tie 1 + 2^-8, to even */
    CHECK_EQ_INT(ember_f32_to_bf16(1.01171875f), 0x3f82); /* tie 1 + 3*2^-8, to even (up) */
    CHECK_NEAR(ember_bf16_to_f32(0xc0a0), -5.0, 0);
    CHECK(isnan(ember_bf16_to_f32(ember_f32_to_bf16(NAN))));
    return check_summary();
}
