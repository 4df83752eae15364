/* Uses only the installed public API. */
#include <ember/ember.h>
#include <stdio.h>

int main(void) {
    ember_tensor *t;
    if (ember_tensor_create(&(ember_tensor_params){.dtype = EMBER_DTYPE_F32, .ndim = 1, .shape = {1000}}, &t) !=
        EMBER_OK) {
        fprintf(stderr, "%s\n", ember_last_error());
        return 1;
    }
    ember_rng rng = {.seed = 1};
    double sum = 0;
    if (ember_tensor_fill(t, 0.25) != EMBER_OK || ember_reduce_all(EMBER_REDUCE_SUM, t, &sum) != EMBER_OK) {
        fprintf(stderr, "%s\n", ember_last_error());
        return 1;
    }
    ember_rng_uniform(&rng, t, 0, 1);
    ember_tensor_destroy(t);
    printf("ember %s consumer: sum %.1f\n", ember_version_string(), sum);
    return sum == 250.0 ? 0 : 1;
}
