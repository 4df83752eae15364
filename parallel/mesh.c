/*
 * Device meshes: ranks laid out row-major on an N-d grid, one communicator per axis.
 *
 * The axis communicator of axis a groups the ranks that differ only in coordinate a:
 * the split color is the rank with that coordinate zeroed (unique per line of the
 * grid) and the key is the coordinate, so a rank's rank in it is its coordinate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "parallel/comm_internal.h"

#define NAME_CAP 32

struct ember_mesh {
    ember_comm *comm; /* not owned */
    int ndim;
    int shape[EMBER_MESH_MAX_DIMS];
    int stride[EMBER_MESH_MAX_DIMS];
    int coord[EMBER_MESH_MAX_DIMS];
    char names[EMBER_MESH_MAX_DIMS][NAME_CAP];
    ember_comm *axis[EMBER_MESH_MAX_DIMS];
};

static ember_status check_config(const ember_comm *comm, const ember_mesh_config *cfg, int *shape) {
    const char *fn = "ember_mesh_create";
    if (cfg->ndim < 1 || cfg->ndim > EMBER_MESH_MAX_DIMS)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: ndim %d is not in 1..%d", fn, cfg->ndim,
                            EMBER_MESH_MAX_DIMS);
    int infer = -1;
    long long prod = 1;
    for (int i = 0; i < cfg->ndim; i++) {
        int d = cfg->shape[i];
        if (d == -1 && infer < 0) {
            infer = i;
            continue;
        }
        if (d < 1)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT,
                                "%s: shape[%d] = %d (each dim >= 1; one may be -1, inferred)", fn, i, d);
        prod *= d;
        if (prod > (1LL << 31)) break;
    }
    int size = ember_comm_size(comm);
    if (infer >= 0) {
        if (prod < 1 || size % prod != 0)
            return ember__error(EMBER_ERR_SHAPE, "%s: %d ranks do not divide by the other dims' product %lld",
                                fn, size, prod);
        for (int i = 0; i < cfg->ndim; i++) shape[i] = i == infer ? (int)(size / prod) : cfg->shape[i];
    } else {
        if (prod != size)
            return ember__error(EMBER_ERR_SHAPE, "%s: the mesh has %lld positions but the communicator %d ranks",
                                fn, prod, size);
        for (int i = 0; i < cfg->ndim; i++) shape[i] = cfg->shape[i];
    }
    for (int i = 0; i < cfg->ndim; i++) {
        const char *n = cfg->names[i];
        if (!n) continue;
        if (!*n || strlen(n) >= NAME_CAP)
            return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: axis %d name \"%s\" (1..%d characters)", fn, i,
                                n, NAME_CAP - 1);
        for (int j = 0; j < i; j++)
            if (cfg->names[j] && strcmp(cfg->names[j], n) == 0)
                return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: axes %d and %d are both named \"%s\"", fn,
                                    j, i, n);
    }
    return EMBER_OK;
}

ember_status ember_mesh_create(ember_comm *comm, const ember_mesh_config *cfg, ember_mesh **out) {
    EMBER_CHECK_NULL(out, "ember_mesh_create");
    *out = NULL;
    EMBER_CHECK_NULL(comm, "ember_mesh_create");
    EMBER_CHECK_NULL(cfg, "ember_mesh_create");
    int shape[EMBER_MESH_MAX_DIMS];
    EMBER_TRY(check_config(comm, cfg, shape));
    ember_mesh *m = calloc(1, sizeof *m);
    if (!m) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "ember_mesh_create");
    m->comm = comm;
    m->ndim = cfg->ndim;
    int s = 1;
    for (int i = m->ndim - 1; i >= 0; i--) {
        m->shape[i] = shape[i];
        m->stride[i] = s;
        s *= shape[i];
        if (cfg->names[i]) snprintf(m->names[i], NAME_CAP, "%s", cfg->names[i]);
    }
    int rank = ember_comm_rank(comm);
    for (int i = 0; i < m->ndim; i++) m->coord[i] = rank / m->stride[i] % m->shape[i];
    for (int i = 0; i < m->ndim; i++) {
        ember_status st = ember_comm_split(comm, rank - m->coord[i] * m->stride[i], m->coord[i], &m->axis[i]);
        if (st != EMBER_OK) {
            ember_mesh_destroy(m);
            return st;
        }
    }
    *out = m;
    return EMBER_OK;
}

void ember_mesh_destroy(ember_mesh *m) {
    if (!m) return;
    for (int i = 0; i < m->ndim; i++) ember_comm_destroy(m->axis[i]);
    free(m);
}

static int axis_ok(const ember_mesh *m, int axis) { return m && axis >= 0 && axis < m->ndim; }

int ember_mesh_ndim(const ember_mesh *m) { return m ? m->ndim : 0; }
int ember_mesh_dim(const ember_mesh *m, int axis) { return axis_ok(m, axis) ? m->shape[axis] : 0; }
const char *ember_mesh_axis_name(const ember_mesh *m, int axis) {
    return axis_ok(m, axis) ? m->names[axis] : NULL;
}

int ember_mesh_axis_index(const ember_mesh *m, const char *name) {
    if (!m || !name || !*name) return -1;
    for (int i = 0; i < m->ndim; i++)
        if (strcmp(m->names[i], name) == 0) return i;
    return -1;
}

int ember_mesh_coord(const ember_mesh *m, int axis) { return axis_ok(m, axis) ? m->coord[axis] : -1; }

ember_comm *ember_mesh_comm(const ember_mesh *m, int axis) {
    if (m && axis == -1) return m->comm;
    return axis_ok(m, axis) ? m->axis[axis] : NULL;
}

ember_status ember_mesh_coords(const ember_mesh *m, int rank, int *coords) {
    EMBER_CHECK_NULL(m, "ember_mesh_coords");
    EMBER_CHECK_NULL(coords, "ember_mesh_coords");
    int size = m->shape[0] * m->stride[0];
    if (rank < 0 || rank >= size)
        return ember__error(EMBER_ERR_INDEX, "ember_mesh_coords: rank %d is not in 0..%d", rank, size - 1);
    for (int i = 0; i < m->ndim; i++) coords[i] = rank / m->stride[i] % m->shape[i];
    return EMBER_OK;
}

ember_status ember_mesh_rank(const ember_mesh *m, const int *coords, int *rank) {
    EMBER_CHECK_NULL(m, "ember_mesh_rank");
    EMBER_CHECK_NULL(coords, "ember_mesh_rank");
    EMBER_CHECK_NULL(rank, "ember_mesh_rank");
    int r = 0;
    for (int i = 0; i < m->ndim; i++) {
        if (coords[i] < 0 || coords[i] >= m->shape[i])
            return ember__error(EMBER_ERR_INDEX, "ember_mesh_rank: coordinate %d on axis %d is not in 0..%d",
                                coords[i], i, m->shape[i] - 1);
        r += coords[i] * m->stride[i];
    }
    *rank = r;
    return EMBER_OK;
}
