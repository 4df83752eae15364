/*
 * ember/checkpoint.h: dense tensors in safetensors files, and checkpoints of
 * parameters plus optimizer state built on them.
 *
 * The file format is safetensors (the Hugging Face format PyTorch users exchange):
 * an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name
 * to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the first
 * byte after the header) plus an optional "__metadata__" object of strings, then the
 * raw little-endian data. ember writes the header padded with spaces to a multiple of
 * 8, tensors ordered by decreasing element size (so every tensor is aligned to its
 * element size) with no gaps, and two metadata entries of its own:
 *     "ember.format":   "1"                  the version of ember's conventions
 *     "ember.checksum": "crc32c:xxxxxxxx"    CRC32C of the whole data section
 * Reading verifies the checksum when the file carries ember's metadata; a file
 * written by anyone else (PyTorch's safetensors, for one) loads without verification.
 *
 * Writes are atomic: the file is written under a temporary name in the same
 * directory, fsynced, renamed over the target and the directory fsynced, so a crash
 * leaves either the old file or the new one, never a mix.
 *
 *     ember_named_tensor ts[] = {{"fc.weight", w}, {"fc.bias", b}};
 *     ember_safetensors_write("model.safetensors", ts, 2, NULL, 0);
 *
 *     ember_safetensors *f;
 *     ember_safetensors_open("model.safetensors", &f);      // parses, verifies
 *     ember_safetensors_read(f, "fc.weight", w);            // into an existing tensor
 *     ember_tensor *x;
 *     ember_safetensors_read_new(f, "fc.bias", EMBER_TIER_HOST, NULL, EMBER_MEM_PARAMETER, &x);
 *     ember_safetensors_close(f);
 *
 *     ember_checkpoint_save("ckpt.safetensors", ts, 2, opt); // + optimizer state and step
 *     ember_checkpoint_load("ckpt.safetensors", ts, 2, opt);
 *
 * Every dtype of ember is supported: F32, F16, BF16, I8, U8, I32, I64; tensors of any
 * device (GPU tensors are staged through host memory in bounded chunks) and any
 * strides. Files may also hold safetensors dtypes ember lacks (F64, BOOL, I16, U16,
 * U32, U64, F8_E4M3, F8_E5M2): they are listed, with dtype EMBER_DTYPE_COUNT, and
 * reading one returns EMBER_ERR_DTYPE; any other dtype string is a format error. Errors name the file, the tensor and the byte offset where they apply:
 * EMBER_ERR_IO (open, read, write, fsync, rename failures, with the system's reason),
 * EMBER_ERR_FORMAT (truncated file, bad header length, invalid JSON, bad or
 * overlapping offsets, unknown dtype, duplicate names), EMBER_ERR_CHECKSUM,
 * EMBER_ERR_SHAPE / EMBER_ERR_DTYPE (a tensor that does not match the file),
 * EMBER_ERR_NOT_FOUND (a name the file lacks).
 *
 * Thread safety: an open file may be read from several threads at once (reads use
 * pread); close it from one. Files must not change while open. Little-endian hosts
 * only (as is every platform ember builds for).
 */
#ifndef EMBER_CHECKPOINT_H
#define EMBER_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "ember/memory.h"
#include "ember/optim.h"
#include "ember/status.h"
#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * CRC32C (Castagnoli) of n bytes, continuing from crc (start with 0):
 * ember_crc32c(0, "123456789", 9) == 0xE3069283, and
 * ember_crc32c(ember_crc32c(0, a, na), b, nb) is the CRC of a followed by b.
 * Uses the CPU's CRC32 instruction when present.
 */
uint32_t ember_crc32c(uint32_t crc, const void *data, size_t n);

typedef struct ember_named_tensor {
    const char *name;     /* UTF-8, non-empty, not "__metadata__" */
    ember_tensor *tensor;
} ember_named_tensor;

typedef struct ember_metadata_entry {
    const char *key;   /* UTF-8; "ember.format" and "ember.checksum" are ember's own */
    const char *value; /* UTF-8 */
} ember_metadata_entry;

/* ---- writing ---- */

/**
 * Write n tensors (n >= 0) and nmeta metadata entries to path, atomically.
 * @return EMBER_OK; EMBER_ERR_INVALID_ARGUMENT (NULL, empty, reserved, duplicate or
 *         non-UTF-8 names and keys); EMBER_ERR_IO (naming the path and the system's
 *         reason; the previous file at path, if any, is left as it was and the
 *         temporary file is removed); errors of copying GPU tensors to the host.
 */
ember_status ember_safetensors_write(const char *path, const ember_named_tensor *tensors, int n,
                                     const ember_metadata_entry *meta, int nmeta);

/* ---- reading ---- */

typedef struct ember_safetensors ember_safetensors;

typedef struct ember_safetensors_info {
    const char *name;       /* valid until ember_safetensors_close */
    ember_dtype dtype;      /* EMBER_DTYPE_COUNT for a safetensors dtype ember lacks */
    const char *dtype_name; /* as in the file: "F32", "BF16", "F64", ... */
    int ndim;
    int64_t shape[EMBER_MAX_DIMS];
    uint64_t offset;    /* absolute file offset of the tensor's first byte */
    uint64_t nbytes;
} ember_safetensors_info;

/**
 * Open a safetensors file: read and validate its header, and verify the checksum of
 * files that carry ember's metadata (this reads the data section once).
 * @return EMBER_OK; EMBER_ERR_IO; EMBER_ERR_FORMAT; EMBER_ERR_CHECKSUM;
 *         EMBER_ERR_OUT_OF_MEMORY.
 */
ember_status ember_safetensors_open(const char *path, ember_safetensors **out);
/**
 * The same over a file image in memory (size bytes at data, which must stay valid
 * and unchanged until close). label names it in messages (NULL: "<memory>").
 */
ember_status ember_safetensors_open_memory(const void *data, size_t size, const char *label,
                                           ember_safetensors **out);
/** NULL is a no-op. */
void ember_safetensors_close(ember_safetensors *f);

/** Number of tensors, and tensor i in header order (0 <= i < count). */
int ember_safetensors_count(const ember_safetensors *f);
ember_status ember_safetensors_info_at(const ember_safetensors *f, int i, ember_safetensors_info *out);
/** Tensor by name. @return EMBER_OK or EMBER_ERR_NOT_FOUND. */
ember_status ember_safetensors_find(const ember_safetensors *f, const char *name,
                                    ember_safetensors_info *out);
/** 1 when the file carried ember's checksum and it was verified, 0 for other files. */
int ember_safetensors_verified(const ember_safetensors *f);

/**
 * Read tensor `name` into dst, whose dtype and shape must equal the file's (any
 * device, any strides).
 * @return EMBER_OK; EMBER_ERR_NOT_FOUND; EMBER_ERR_DTYPE or EMBER_ERR_SHAPE (the
 *         message gives the expected and the found dtype and shape); EMBER_ERR_IO.
 */
ember_status ember_safetensors_read(ember_safetensors *f, const char *name, ember_tensor *dst);
/**
 * Read tensor `name` into a new contiguous tensor in a tier of mm (NULL: the default
 * manager) tagged with kind. The caller destroys *out.
 */
ember_status ember_safetensors_read_new(ember_safetensors *f, const char *name, ember_tier tier,
                                        ember_memory *mm, ember_mem_kind kind, ember_tensor **out);

/** Metadata entries ("__metadata__"), in header order; strings valid until close. */
int ember_safetensors_metadata_count(const ember_safetensors *f);
ember_status ember_safetensors_metadata_at(const ember_safetensors *f, int i, const char **key,
                                           const char **value);
/** @return EMBER_OK or EMBER_ERR_NOT_FOUND. */
ember_status ember_safetensors_metadata_get(const ember_safetensors *f, const char *key,
                                            const char **value);

/* ---- checkpoints: parameters + optimizer state ---- */

/**
 * Save n named tensors and, when opt is not NULL, its state tensors (named
 * "optim." + the state's name) and metadata "ember.optim.kind" and "ember.optim.step",
 * in one atomic safetensors file.
 * @return as ember_safetensors_write; EMBER_ERR_INVALID_ARGUMENT if a tensor name
 *         starts with "optim." while opt is given.
 */
ember_status ember_checkpoint_save(const char *path, const ember_named_tensor *tensors, int n,
                                   const ember_optimizer *opt);
/**
 * Load a checkpoint written by ember_checkpoint_save into existing tensors (and the
 * state and step counter of opt, which must be of the saved kind, over the same
 * parameters). Every name, dtype and shape is checked before any tensor is written,
 * so a mismatch leaves everything untouched; an I/O error while reading may leave
 * some tensors loaded.
 * @return EMBER_OK; the statuses of ember_safetensors_open and _read;
 *         EMBER_ERR_NOT_FOUND (a tensor or state the file lacks, naming it);
 *         EMBER_ERR_FORMAT (missing or different optimizer kind or step).
 */
ember_status ember_checkpoint_load(const char *path, const ember_named_tensor *tensors, int n,
                                   ember_optimizer *opt);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_CHECKPOINT_H */
