#!/usr/bin/python3
"""PyTorch peer for bench/bench_conv.c: the seed autoencoder's conv layers.

Times torch.nn.functional.conv2d (+ the layer's activation) forward, the
input and weight(+bias) gradients separately (aten.convolution_backward with
an output mask, which is what autograd calls), and conv2d forward + a whole
autograd backward, with torch.set_num_threads(THREADS) (env WH_BENCH_THREADS,
default 2).  Prints a table, then one machine-readable line per layer for
bench_conv:

  torch layer=L1 fwd_ms=... bwd_in_ms=... bwd_w_ms=... autograd_fwd_bwd_ms=...

Usage: /usr/bin/python3 bench/peer_torch_conv.py [reps] > torch.txt
       build/bench/bench_conv torch.txt
"""
import os
import sys
import time

import torch
import torch.nn.functional as F

THREADS = int(os.environ.get("WH_BENCH_THREADS", "2"))
REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 4
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


def main():
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    act = {"relu": torch.relu, "sigmoid": torch.sigmoid}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"mkldnn={torch.backends.mkldnn.is_available()}, batch {BATCH}, best of {REPS}")
    print(f"{'layer':<22}{'fwd ms':>9}{'GF/s':>7}{'bwd_in ms':>11}{'GF/s':>7}"
          f"{'bwd_w ms':>10}{'GF/s':>7}{'fwd+bwd autograd ms':>21}")
    lines = []
    tot = 0.0
    # all layers' tensors at once, repetitions interleaved over layers and ops
    # (as bench_conv does), so a burst of load on a shared machine spoils one
    # sample of many ops rather than every sample of one
    cb = torch.ops.aten.convolution_backward
    cases = []
    for name, ci, co, hw, a in LAYERS:
        x = torch.randn(BATCH, ci, hw, hw)
        w = torch.randn(co, ci, 3, 3) * (2.0 / (9 * ci)) ** 0.5
        b = torch.randn(co)
        dy = torch.randn(BATCH, co, hw, hw)
        xg = x.clone().requires_grad_(ci > 1)
        wg = w.clone().requires_grad_()
        bg = b.clone().requires_grad_()
        f = act[a]

        def fwd(x=x, w=w, b=b, f=f):
            with torch.no_grad():
                f(F.conv2d(x, w, b, 1, 1))

        def bwd_in(x=x, w=w, dy=dy, co=co):
            with torch.no_grad():
                cb(dy, x, w, [co], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False])

        def bwd_w(x=x, w=w, dy=dy, co=co):
            with torch.no_grad():
                cb(dy, x, w, [co], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, True])

        def autograd(xg=xg, wg=wg, bg=bg, dy=dy):
            xg.grad = wg.grad = bg.grad = None
            F.conv2d(xg, wg, bg, 1, 1).backward(dy)

        cases.append((name, ci, co, hw, [fwd, bwd_in, bwd_w, autograd], [float("inf")] * 4))
    for r in range(REPS + 1):  # r == 0: warm-up
        for case in cases:
            for k, fn in enumerate(case[4]):
                t0 = time.perf_counter()
                fn()
                t = (time.perf_counter() - t0) * 1e3
                if r > 0:
                    case[5][k] = min(case[5][k], t)
    for name, ci, co, hw, _, (t_fwd, t_in, t_w, t_ag) in cases:
        flops = 2.0 * BATCH * co * ci * 9 * hw * hw
        label = f"{name} {ci}->{co} @{hw}"
        print(f"{label:<22}{t_fwd:9.2f}{flops / t_fwd / 1e6:7.1f}{t_in:11.2f}"
              f"{flops / t_in / 1e6:7.1f}{t_w:10.2f}{flops / t_w / 1e6:7.1f}{t_ag:21.2f}"
              + ("   (bwd_in not needed in training)" if ci == 1 else ""))
        tot += t_fwd + t_w + (t_in if ci > 1 else 0.0)
        lines.append(f"torch layer={name} fwd_ms={t_fwd:.3f} bwd_in_ms={t_in:.3f} "
                     f"bwd_w_ms={t_w:.3f} autograd_fwd_bwd_ms={t_ag:.3f}")
    print(f"conv work per training step (fwd + bwd_w + bwd_in where needed): {tot:.1f} ms")
    for line in lines:
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
