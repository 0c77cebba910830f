#!/usr/bin/python3
"""PyTorch peer for bench/train_step.lua: the same seed autoencoders, the same
steps (RMSprop + MSE training step at batch 16, batch-1 inference under
no_grad in eval mode), the same repetitions (a warm-up, then the best of
WH_BENCH_REPS, default 5; 3 steps or 8 images per repetition), with
torch.set_num_threads(WH_BENCH_THREADS, default 2).  Each case runs in its
own interpreter so its peak resident memory (VmHWM) is its own.  Prints one
line per case for train_step.lua:

  torch case=train224 images_per_s=... best_ms=... peak_rss_mb=...

Usage: /usr/bin/python3 bench/peer_torch_train.py > torch_train.txt
       lua5.4 bench/train_step.lua torch_train.txt
"""
import os
import subprocess
import sys
import time

CASES = {
    "train224": (224, 16, True),
    "train100": (100, 16, True),
    "infer224": (224, 1, False),
    "infer100": (100, 1, False),
}
REPS = int(os.environ.get("WH_BENCH_REPS", "5"))
THREADS = int(os.environ.get("WH_BENCH_THREADS", "2"))


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def autoencoder(nn, size):
    """models/autoencoder224.lua (size 224): Conv 32, pool, Conv 64, pool,
    Conv 128 | Conv 128, up, Conv 64, up, Conv 1 sigmoid (314,625 parameters);
    models/autoencoder100.lua (size 100): Conv 32, pool, Conv 64, pool |
    Conv 64, up, Conv 32, up, Conv 1 sigmoid (74,497).  3x3 'same' convolutions."""
    def conv(cin, cout):
        return nn.Conv2d(cin, cout, 3, padding=1)

    def up():
        return nn.Upsample(scale_factor=2, mode="nearest")
    if size == 224:
        return nn.Sequential(
            conv(1, 32), nn.ReLU(), nn.MaxPool2d(2),
            conv(32, 64), nn.ReLU(), nn.MaxPool2d(2),
            conv(64, 128), nn.ReLU(),
            conv(128, 128), nn.ReLU(), up(),
            conv(128, 64), nn.ReLU(), up(),
            conv(64, 1), nn.Sigmoid())
    return nn.Sequential(
        conv(1, 32), nn.ReLU(), nn.MaxPool2d(2),
        conv(32, 64), nn.ReLU(), nn.MaxPool2d(2),
        conv(64, 64), nn.ReLU(), up(),
        conv(64, 32), nn.ReLU(), up(),
        conv(32, 1), nn.Sigmoid())


def run_case(name):
    import torch
    import torch.nn as nn

    size, batch, train = CASES[name]
    torch.set_num_threads(THREADS)
    torch.manual_seed(1)
    model = autoencoder(nn, size)
    params = sum(p.numel() for p in model.parameters())
    assert params == {224: 314625, 100: 74497}[size], params
    x = torch.rand(batch, 1, size, size)
    if train:
        opt = torch.optim.RMSprop(model.parameters(), lr=0.001, alpha=0.9, eps=1e-7)
        loss_fn = nn.MSELoss()
        per_rep = 3

        def work():
            for _ in range(per_rep):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), x)
                loss.backward()
                opt.step()
    else:
        model.eval()
        per_rep = 8

        def work():
            with torch.no_grad():
                for _ in range(per_rep):
                    model(x)
    work()  # warm-up
    best = float("inf")
    for _ in range(REPS):
        t0 = time.perf_counter()
        work()
        best = min(best, (time.perf_counter() - t0) / per_rep)
    print("torch case=%s images_per_s=%.2f best_ms=%.3f peak_rss_mb=%.1f threads=%d"
          % (name, batch / best, best * 1e3, peak_rss_mb(), THREADS), flush=True)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--case":
        run_case(sys.argv[2])
        return
    for name in CASES:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--case", name],
                             check=True, capture_output=True, text=True).stdout
        sys.stdout.write(out)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
