/* The synthesis generator: xoshiro256** on a caller-owned state, seeded
 * through splitmix64 (Blackman & Vigna), so each print owns its stream and
 * generation is reproducible and thread-safe. */
#include <math.h>

#include "synth.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t wh_synth_mix(uint64_t a, uint64_t b) {
    uint64_t x = a ^ (b * 0xd1b54a32d192ed03ull + 0x8bb84b93962eacc9ull);
    (void)splitmix64(&x);
    return splitmix64(&x);
}

void wh_synth_rng_seed(wh_synth_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t wh_synth_rng_next(wh_synth_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double wh_synth_rng_uniform(wh_synth_rng *r) {
    return (double)(wh_synth_rng_next(r) >> 11) * 0x1.0p-53;
}

double wh_synth_rng_range(wh_synth_rng *r, double lo, double hi) {
    return lo + (hi - lo) * wh_synth_rng_uniform(r);
}

/* Box-Muller; one value per call keeps the stream position simple. */
double wh_synth_rng_normal(wh_synth_rng *r) {
    double u1 = 1.0 - wh_synth_rng_uniform(r), u2 = wh_synth_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

int wh_synth_rng_int(wh_synth_rng *r, int n) {
    return n <= 1 ? 0 : (int)(wh_synth_rng_uniform(r) * n);
}
