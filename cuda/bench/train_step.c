/* make bench-cuda: times a training step (forward, MSE, backward, fused
 * RMSprop update) of the seed autoencoder of tests/seed_model_spec.lua on
 * the GPU, at batch 128 and 224x224 unless told otherwise:
 *
 *   cuda_train_step [--batch N] [--size N] [--steps N] [--benchmark] [--tf32]
 *
 * It loads the CUDA backend the way whorl.cuda does; without a device it
 * prints why and exits 0, so the target is harmless on CPU-only machines. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"

static const int LAYERS[6][2] = {{1, 32}, {32, 64}, {64, 128}, {128, 128}, {128, 64}, {64, 1}};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "bench-cuda: %s: %s\n", what, wh_error_message());
    exit(1);
}

/* A CPU tensor moved to the device (the CPU one released). */
static wh_tensor *to_device(wh_tensor *t, wh_allocator *dev) {
    wh_tensor *d = NULL;
    if (wh_to_device(t, dev, &d) != WH_OK) die("upload");
    wh_tensor_release(t);
    return d;
}

/* Keras' default initialisation (Glorot-uniform kernels, zero biases). */
static void make_params(wh_allocator *dev, wh_tensor **params) {
    wh_rng_seed(7);
    for (int i = 0; i < 6; i++) {
        int cin = LAYERS[i][0], cout = LAYERS[i][1];
        double limit = sqrt(6.0 / (cin * 9 + cout * 9));
        int64_t wshape[4] = {cout, cin, 3, 3}, bshape[1] = {cout};
        wh_tensor *w, *b;
        if (wh_tensor_rand(WH_FLOAT32, 4, wshape, -limit, limit, &w) != WH_OK ||
            wh_tensor_zeros(WH_FLOAT32, 1, bshape, &b) != WH_OK)
            die("parameters");
        params[2 * i] = to_device(w, dev);
        params[2 * i + 1] = to_device(b, dev);
        params[2 * i]->requires_grad = params[2 * i + 1]->requires_grad = true;
    }
}

static wh_tensor *conv(wh_tensor *h, wh_tensor **p, int i, int act) {
    wh_conv_params cp;
    wh_conv_params_default(&cp);
    cp.padding[0] = cp.padding[1] = 1;
    cp.activation = act;
    wh_tensor *out;
    if (wh_conv2d(h, p[2 * i], p[2 * i + 1], &cp, &out) != WH_OK) die("conv2d");
    wh_tensor_release(h);
    return out;
}

static wh_tensor *pool(wh_tensor *h) {
    wh_pool_params pp = {{2, 2}, {2, 2}, {0, 0}, false, false};
    wh_tensor *out;
    if (wh_max_pool2d(h, &pp, &out) != WH_OK) die("max_pool2d");
    wh_tensor_release(h);
    return out;
}

static wh_tensor *up(wh_tensor *h) {
    wh_tensor *out;
    if (wh_upsample2d(h, 2 * h->shape[2], 2 * h->shape[3], WH_UPSAMPLE_NEAREST, false, &out) != WH_OK)
        die("upsample2d");
    wh_tensor_release(h);
    return out;
}

static wh_tensor *forward(wh_tensor **p, wh_tensor *x) {
    wh_tensor_retain(x);
    wh_tensor *h = conv(x, p, 0, 1);
    h = pool(h);
    h = conv(h, p, 1, 1);
    h = pool(h);
    h = conv(h, p, 2, 1);
    h = conv(h, p, 3, 1);
    h = up(h);
    h = conv(h, p, 4, 1);
    h = up(h);
    return conv(h, p, 5, 2);
}

/* One step; returns the loss tensor (on the device, not read back). */
static wh_tensor *step(wh_tensor **p, wh_tensor **state, wh_tensor *x, wh_tensor *target) {
    wh_tensor *y = forward(p, x), *loss;
    if (wh_mse_loss(y, target, NULL, WH_REDUCE_MEAN, &loss) != WH_OK) die("mse_loss");
    wh_tensor_release(y);
    for (int i = 0; i < 12; i++) wh_tensor_clear(&p[i]->grad);
    if (wh_backward(loss, NULL, false) != WH_OK) die("backward");
    bool mode = wh_set_grad_enabled(false);
    wh_rmsprop_options o = {.lr = 1e-3, .rho = 0.9, .eps = 1e-7};
    for (int i = 0; i < 12; i++)
        if (wh_rmsprop_update_(p[i], p[i]->grad, state[i], NULL, NULL, &o) != WH_OK)
            die("rmsprop_update_");
    wh_set_grad_enabled(mode);
    return loss;
}

int main(int argc, char **argv) {
    int batch = 128, size = 224, steps = 20;
    bool benchmark = false, tf32 = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--benchmark")) benchmark = true;
        else if (!strcmp(argv[i], "--tf32")) tf32 = true;
        else {
            fprintf(stderr, "usage: %s [--batch N] [--size N] [--steps N] [--benchmark] [--tf32]\n",
                    argv[0]);
            return 2;
        }
    }
    if (batch < 1 || size < 4 || size % 4 || steps < 1) {
        fprintf(stderr, "bench-cuda: batch and steps must be positive, size a multiple of 4\n");
        return 2;
    }
    const wh_backend *be;
    if (wh_backend_load(WH_CUDA, &be) != WH_OK) {
        printf("bench-cuda: no CUDA device, nothing to time (%s)\n",
               wh_backend_unavailable_reason(WH_CUDA));
        return 0;
    }
    wh_allocator *dev;
    if (wh_device_allocator((wh_device){WH_CUDA, -1}, &dev) != WH_OK) die("device");
    be->set_option("benchmark", benchmark);
    be->set_option("allow_tf32", tf32);
    char name[256], versions[256];
    printf("bench-cuda: %s (%s)\n", be->device_name(dev->device.index, name, sizeof name),
           be->versions(versions, sizeof versions));
    printf("seed autoencoder, batch %d, %dx%d, float32, RMSprop; cuDNN %s, %s\n", batch, size, size,
           benchmark ? "benchmarked algorithms" : "heuristic algorithms",
           tf32 ? "TF32 allowed" : "no TF32");

    wh_tensor *p[12], *state[12];
    make_params(dev, p);
    for (int i = 0; i < 12; i++)
        if (wh_tensor_zeros_on(WH_FLOAT32, p[i]->ndim, p[i]->shape, dev, &state[i]) != WH_OK)
            die("optimizer state");
    int64_t shape[4] = {batch, 1, size, size};
    wh_tensor *x, *target;
    if (wh_tensor_rand(WH_FLOAT32, 4, shape, 0, 1, &x) != WH_OK ||
        wh_tensor_rand(WH_FLOAT32, 4, shape, 0, 1, &target) != WH_OK)
        die("batch");
    x = to_device(x, dev);
    target = to_device(target, dev);

    /* Warm-up: algorithm choice, the allocator's cache, lazy module loads. */
    for (int i = 0; i < 3; i++) wh_tensor_release(step(p, state, x, target));
    if (be->synchronize(-1) != WH_OK) die("synchronize");
    double t0 = now();
    wh_tensor *loss = NULL;
    for (int i = 0; i < steps; i++) {
        wh_tensor_release(loss);
        loss = step(p, state, x, target);
    }
    if (be->synchronize(-1) != WH_OK) die("synchronize");
    double dt = (now() - t0) / steps;
    int64_t zero = 0;
    double lv = NAN;
    wh_tensor *flat;
    if (wh_view_raw(loss, 1, (int64_t[]){1}, &flat) == WH_OK) {
        wh_tensor_get(flat, &zero, &lv);
        wh_tensor_release(flat);
    }
    wh_device_memory_stats ms;
    be->memory_stats(dev->device.index, &ms);
    printf("%.1f ms/step, %.0f images/s over %d steps (loss %.6f); peak %.2f GiB allocated, "
           "%.2f GiB reserved\n",
           dt * 1e3, batch / dt, steps, lv, ms.peak_allocated_bytes / 1073741824.0,
           ms.reserved_bytes / 1073741824.0);
    wh_tensor_release(loss);
    wh_tensor_release(x);
    wh_tensor_release(target);
    for (int i = 0; i < 12; i++) {
        wh_tensor_release(p[i]);
        wh_tensor_release(state[i]);
    }
    return 0;
}
