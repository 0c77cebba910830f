#!/usr/bin/python3
"""PyTorch peer for bench/bench_conv.c: the seed autoencoder's conv layers.

Times torch.nn.functional.conv2d (+ the layer's activation) forward, the
input and weight(+bias) gradients separately (aten.convolution_backward with
an output mask, which is what autograd calls), and a whole autograd backward,
with torch.set_num_threads(THREADS).  Prints a table, then one machine-readable
line per layer for bench_conv:

  torch layer=L1 fwd_ms=... bwd_in_ms=... bwd_w_ms=... autograd_bwd_ms=...

Usage: /usr/bin/python3 bench/peer_torch_conv.py [reps] > torch.txt
       build/bench/bench_conv torch.txt
"""
import os
import sys
import time

import torch
import torch.nn.functional as F

THREADS = int(os.environ.get("WH_BENCH_THREADS", "2"))
REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
BATCH = 16

# name, c_in, c_out, size, activation (3x3, stride 1, pad 1) -- same as bench_conv.c
LAYERS = [
    ("L1", 1, 32, 224, "relu"),
    ("L2", 32, 64, 112, "relu"),
    ("L3", 64, 128, 56, "relu"),
    ("L4", 128, 128, 56, "relu"),
    ("L5", 128, 64, 112, "relu"),
    ("L6", 64, 1, 224, "sigmoid"),
]


def best(fn, reps):
    fn()  # warm-up
    t = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t * 1e3


def main():
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    act = {"relu": torch.relu, "sigmoid": torch.sigmoid}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"mkldnn={torch.backends.mkldnn.is_available()}, batch {BATCH}, best of {REPS}")
    print(f"{'layer':<22}{'fwd ms':>9}{'GF/s':>7}{'bwd_in ms':>11}{'GF/s':>7}"
          f"{'bwd_w ms':>10}{'GF/s':>7}{'autograd':>10}")
    lines = []
    tot = 0.0
    with torch.no_grad():
        for name, ci, co, hw, a in LAYERS:
            x = torch.randn(BATCH, ci, hw, hw)
            w = torch.randn(co, ci, 3, 3) * (2.0 / (9 * ci)) ** 0.5
            b = torch.randn(co)
            dy = torch.randn(BATCH, co, hw, hw)
            flops = 2.0 * BATCH * co * ci * 9 * hw * hw
            f = act[a]
            t_fwd = best(lambda: f(F.conv2d(x, w, b, 1, 1)), REPS)
            cb = torch.ops.aten.convolution_backward

            def bwd(mask):
                return cb(dy, x, w, [co], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

            t_in = best(lambda: bwd([True, False, False]), REPS)
            t_w = best(lambda: bwd([False, True, True]), REPS)
            with torch.enable_grad():
                xg = x.clone().requires_grad_(ci > 1)
                wg = w.clone().requires_grad_()
                bg = b.clone().requires_grad_()

                def autograd():
                    xg.grad = wg.grad = bg.grad = None
                    y = F.conv2d(xg, wg, bg, 1, 1)
                    y.backward(dy)

                # autograd backward alone: forward + backward minus the bare forward
                t_ag = best(autograd, REPS) - best(lambda: F.conv2d(x, w, b, 1, 1), REPS)
            label = f"{name} {ci}->{co} @{hw}"
            print(f"{label:<22}{t_fwd:9.2f}{flops / t_fwd / 1e6:7.1f}{t_in:11.2f}"
                  f"{flops / t_in / 1e6:7.1f}{t_w:10.2f}{flops / t_w / 1e6:7.1f}{t_ag:10.2f}"
                  + ("   (bwd_in not needed in training)" if ci == 1 else ""))
            tot += t_fwd + t_w + (t_in if ci > 1 else 0.0)
            lines.append(f"torch layer={name} fwd_ms={t_fwd:.3f} bwd_in_ms={t_in:.3f} "
                         f"bwd_w_ms={t_w:.3f} autograd_bwd_ms={t_ag:.3f}")
    print(f"conv work per training step (fwd + bwd_w + bwd_in where needed): {tot:.1f} ms")
    for line in lines:
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
