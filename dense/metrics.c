/* Evaluation metrics of click models: exact AUC (ties counted half), logloss, accuracy. */
#include <math.h>
#include <stdlib.h>

#include "engine/internal.h"
#include "ember/dense.h"

typedef struct scored {
    float score;
    float label;
} scored;

static int by_score(const void *a, const void *b) {
    float x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return (x > y) - (x < y);
}

ember_status ember_metrics_compute(const float *probs, const float *labels, int64_t n, ember_metrics *out) {
    static const char fn[] = "ember_metrics_compute";
    EMBER_CHECK_NULL(probs, fn);
    EMBER_CHECK_NULL(labels, fn);
    EMBER_CHECK_NULL(out, fn);
    if (n < 1) return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: %lld samples", fn, (long long)n);
    scored *s;
    EMBER_TRY(ember_memory_alloc(NULL, EMBER_TIER_HOST, EMBER_MEM_STAGING, (size_t)n * sizeof *s, (void **)&s));
    double logloss = 0, pos = 0;
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        double p = fmin(fmax(probs[i], 1e-7), 1 - 1e-7), y = labels[i];
        logloss -= y * log(p) + (1 - y) * log(1 - p);
        pos += y;
        correct += (probs[i] >= 0.5f) == (labels[i] >= 0.5f);
        s[i] = (scored){probs[i], labels[i]};
    }
    qsort(s, (size_t)n, sizeof *s, by_score);
    /* AUC = P(score of a positive > score of a negative), ties counted half: walk the
       scores in increasing order, group ties, and credit each positive with the
       negatives strictly below plus half of those tied with it. Soft labels weigh. */
    double neg_below = 0, auc_num = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        double p_grp = 0, n_grp = 0;
        while (j < n && s[j].score == s[i].score) {
            p_grp += s[j].label;
            n_grp += 1 - s[j].label;
            j++;
        }
        auc_num += p_grp * (neg_below + 0.5 * n_grp);
        neg_below += n_grp;
        i = j;
    }
    ember_memory_free(NULL, s);
    double neg = (double)n - pos;
    out->samples = n;
    out->auc = pos > 0 && neg > 0 ? auc_num / (pos * neg) : NAN;
    out->logloss = logloss / (double)n;
    out->accuracy = (double)correct / (double)n;
    out->positive_rate = pos / (double)n;
    return EMBER_OK;
}
