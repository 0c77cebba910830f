/* The public generator: parameter checks, masters, single prints and
 * batches (OpenMP over fingers). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth_internal.h"

/* The Gabor bank's rows hold at most 80 floats (synth_ridges.c), and a
 * period under 3 px leaves no room for a ridge and a valley. */
static const double MIN_PERIOD = 3.0, MAX_PERIOD = 26.0;

wh_status wh_synth_check_params(const wh_synth_params *p) {
    if (p->height < 16 || p->width < 16 || p->height > WH_SYNTH_MAX_SIDE || p->width > WH_SYNTH_MAX_SIDE)
        return wh_fail(WH_ERR_ARG, "synth: size %dx%d out of range (each side 16 to %d)", p->height,
                       p->width, WH_SYNTH_MAX_SIDE);
    if (!(p->dpi > 0) || !isfinite(p->dpi))
        return wh_fail(WH_ERR_ARG, "synth: dpi must be a positive number, got %g", p->dpi);
    double lo = p->period > 0 ? p->period : 8.2 * p->dpi / 500, hi = p->period > 0 ? p->period : 10.0 * p->dpi / 500;
    if (!isfinite(p->period) || lo < MIN_PERIOD || hi > MAX_PERIOD) {
        if (p->period > 0)
            return wh_fail(WH_ERR_ARG, "synth: period %g px out of range [%g, %g]", p->period,
                           MIN_PERIOD, MAX_PERIOD);
        return wh_fail(WH_ERR_ARG,
                       "synth: dpi %g gives ridge periods of %.3g-%.3g px, outside [%g, %g] "
                       "(dpi from %g to %g)",
                       p->dpi, lo, hi, MIN_PERIOD, MAX_PERIOD, ceil(MIN_PERIOD / 8.2 * 500),
                       floor(MAX_PERIOD / 10.0 * 500));
    }
    if (p->impression < 0)
        return wh_fail(WH_ERR_ARG, "synth: impression must be >= 0, got %d", p->impression);
    if (p->cls < -1 || p->cls >= WH_FP_NCLASSES)
        return wh_fail(WH_ERR_ARG, "synth: class %d out of range", p->cls);
    return WH_OK;
}

wh_status synth_make_master(const wh_synth_params *p, bool minutiae, synth_master *m) {
    wh_synth_rng rng;
    wh_synth_rng_seed(&rng, wh_synth_mix(p->seed, (uint64_t)p->finger));
    WH_TRY(synth_master_layout(p, &rng, m));
    wh_status st = synth_grow_ridges(m, &rng);
    if (st == WH_OK && minutiae) st = synth_find_minutiae(m);
    if (st != WH_OK) synth_master_free(m);
    return st;
}

void wh_fp_info_free(wh_fp_info *info) {
    if (!info) return;
    free(info->minutiae);
    info->minutiae = NULL;
    info->nminutiae = 0;
}

wh_status wh_synth_fingerprint(const wh_synth_params *p, float *image, wh_fp_info *info,
                               const wh_fp_fields *fields) {
    WH_TRY(wh_synth_check_params(p));
    if (!image) return wh_fail(WH_ERR_ARG, "synth: no image buffer");
    synth_master m;
    WH_TRY(synth_make_master(p, info != NULL, &m));
    wh_status st = synth_render_impression(&m, p, image, info, fields);
    synth_master_free(&m);
    return st;
}

wh_status wh_synth_batch(const wh_synth_params *p, int count, int impressions, float *images,
                         wh_fp_info *infos) {
    WH_TRY(wh_synth_check_params(p));
    if (count < 1) return wh_fail(WH_ERR_ARG, "synth.batch: count must be >= 1, got %d", count);
    if (impressions < 1)
        return wh_fail(WH_ERR_ARG, "synth.batch: impressions must be >= 1, got %d", impressions);
    if (infos) memset(infos, 0, (size_t)count * sizeof *infos);
    int nfingers = (count + impressions - 1) / impressions;
    size_t plane = (size_t)p->height * p->width;
    wh_status first = WH_OK;
    char message[512] = "";
    /* one finger per task; the loops inside run on this thread (nested
     * parallelism is off), which is what we want with several fingers */
#pragma omp parallel for schedule(dynamic, 1) if (nfingers > 1)
    for (int f = 0; f < nfingers; f++) {
        wh_synth_params q = *p;
        q.finger = p->finger + f;
        synth_master m;
        wh_status st = synth_make_master(&q, infos != NULL, &m);
        if (st == WH_OK) {
            for (int k = 0; k < impressions && st == WH_OK; k++) {
                int i = f * impressions + k;
                if (i >= count) break;
                q.impression = p->impression + k;
                st = synth_render_impression(&m, &q, images + plane * i, infos ? &infos[i] : NULL,
                                             NULL);
            }
            synth_master_free(&m);
        }
        if (st != WH_OK) {
#pragma omp critical(wh_synth_batch_error)
            if (first == WH_OK) {
                first = st;
                snprintf(message, sizeof message, "%s", wh_error_message());
            }
        }
    }
    if (first != WH_OK) {
        if (infos)
            for (int i = 0; i < count; i++) wh_fp_info_free(&infos[i]);
        return wh_fail(first, "%s", message);
    }
    return WH_OK;
}
