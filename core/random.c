/* The global random generator: xoshiro256** (Blackman and Vigna, 2018),
 * seeded through splitmix64 so that any 64-bit seed gives a good state.
 * Normals use the Box-Muller transform, one normal per two uniforms and no
 * cached spare, so saving and restoring the 4-word state is exact. */
#include <math.h>

#include "tensor.h"

static uint64_t rng_state[4] = {0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL,
                                0x94d049bb133111ebULL, 0x2545f4914f6cdd1dULL};

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void wh_rng_seed(uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng_state[i] = splitmix64(&x);
}

void wh_rng_get_state(uint64_t state[4]) {
    for (int i = 0; i < 4; i++) state[i] = rng_state[i];
}

void wh_rng_set_state(const uint64_t state[4]) {
    for (int i = 0; i < 4; i++) rng_state[i] = state[i];
    if (!(rng_state[0] | rng_state[1] | rng_state[2] | rng_state[3])) wh_rng_seed(0);
}

uint64_t wh_rng_next(void) {
    uint64_t *s = rng_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double wh_rng_uniform(void) { return (double)(wh_rng_next() >> 11) * 0x1.0p-53; }

double wh_rng_normal(void) {
    double u1 = wh_rng_uniform(), u2 = wh_rng_uniform();
    return sqrt(-2.0 * log1p(-u1)) * cos(2.0 * M_PI * u2);
}

static wh_status random_fill(const char *op, wh_dtype dt, int ndim, const int64_t *shape,
                             double a, double b, bool normal, wh_tensor **out) {
    if (!wh_dtype_is_float(dt))
        return wh_fail(WH_ERR_DTYPE, "%s: needs a float dtype, got %s", op, wh_dtype_name(dt));
    if (!isfinite(a) || !isfinite(b) || (normal && b < 0) || (!normal && b < a))
        return wh_fail(WH_ERR_ARG, "%s: invalid parameters (%g, %g)", op, a, b);
    WH_TRY(wh_tensor_empty(dt, ndim, shape, NULL, out));
    int64_t n = wh_tensor_numel(*out);
    void *p = wh_tensor_data(*out);
    for (int64_t i = 0; i < n; i++) {
        double v = normal ? a + b * wh_rng_normal() : a + (b - a) * wh_rng_uniform();
        if (dt == WH_FLOAT32) ((float *)p)[i] = (float)v;
        else ((double *)p)[i] = v;
    }
    return WH_OK;
}

wh_status wh_tensor_rand(wh_dtype dt, int ndim, const int64_t *shape, double lo, double hi,
                         wh_tensor **out) {
    return random_fill("rand", dt, ndim, shape, lo, hi, false, out);
}

wh_status wh_tensor_randn(wh_dtype dt, int ndim, const int64_t *shape, double mean, double std,
                          wh_tensor **out) {
    return random_fill("randn", dt, ndim, shape, mean, std, true, out);
}
