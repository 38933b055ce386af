#!/usr/bin/python3
"""Wall-clock-budgeted PyTorch reference training on Fashion-MNIST.

  /usr/bin/python3 tests/pytorch/train_reference.py --data /usr/share/datasets/fashion-mnist \
      --seconds 1800 --threads 2 --out DIR [--model dcgan32] [--seed 0]

Images: 28x28 -> [-1,1] (x/127.5-1), padded to 32x32 with -1 (2 px each side),
shuffled each epoch, batch 64 (last partial batch dropped).
Writes DIR/samples_grid.png (8x8 grid, EMA of G in eval mode, on a fixed z drawn with seed
1234 at start), DIR/samples.npy (1000 uint8 samples [1000,32,32], same generator,
z drawn from the same seed-1234 generator after the grid z) and DIR/summary.txt.
--model biggan32 is also accepted (1 channel, class-conditional, G steps count
as steps; samples from the EMA of G, or from G with --g-samples).
"""

import argparse
import gzip
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paragan_ref as pr  # noqa: E402


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if (magic >> 8) != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    off = 4 + 4 * ndim
    return np.frombuffer(data, dtype=np.uint8, offset=off).reshape(dims)


def load_fashion_mnist(root):
    x = read_idx(os.path.join(root, "train-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    assert x.shape[1:] == (28, 28) and len(x) == len(y), (x.shape, y.shape)
    xf = x.astype(np.float32) / 127.5 - 1.0
    xp = np.full((len(x), 1, 32, 32), -1.0, dtype=np.float32)
    xp[:, 0, 2:30, 2:30] = xf
    return torch.from_numpy(xp), torch.from_numpy(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seconds", type=float, default=1800)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", choices=["dcgan32", "biggan32"], default="dcgan32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--loss", choices=["hinge", "ns"], default="hinge")
    ap.add_argument("--log-every", type=float, default=10.0, help="seconds between progress lines")
    ap.add_argument("--biggan-ch", type=int, default=64)
    ap.add_argument("--d-steps", type=int, default=2, help="BigGAN D steps per G step")
    ap.add_argument("--no-attention", action="store_true")
    ap.add_argument("--g-samples", action="store_true",
                    help="sample from G itself instead of its EMA (the default, as paragan_train)")
    ap.add_argument("--snapshot-every", type=float, default=0,
                    help="seconds of training between EMA sample snapshots "
                         "(<out>/snapshots/t<seconds>_step<step>.npy, uint8, for "
                         "paragan_eval); the time taken to write them is not "
                         "counted as training time; 0: none")
    ap.add_argument("--snapshot-samples", type=int, default=2000)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)
    B = a.batch

    X, Y = load_fashion_mnist(a.data)
    n_train = len(X)
    print(f"loaded {n_train} images from {a.data}; model {a.model}, threads {a.threads}, "
          f"batch {B}, budget {a.seconds:.0f} s", flush=True)

    gen = torch.Generator().manual_seed(1234)
    fixed_z = torch.randn(64, 128, generator=gen)
    sample_z = torch.randn(1000, 128, generator=gen)
    fixed_y = torch.arange(64) % 10
    sample_y = torch.arange(1000) % 10

    if a.model == "dcgan32":
        G, D, optG, optD = pr.make_dcgan()
        ema = pr.EMA(G, 0.999)
    else:
        G, D, optG, optD, ema = pr.make_biggan(
            n_classes=10, img_channels=1, ch=a.biggan_ch, attention=not a.no_attention)

    def batches():
        while True:
            perm = torch.from_numpy(rng.permutation(n_train))
            for i in range(0, n_train - B + 1, B):
                idx = perm[i:i + B]
                yield X[idx], Y[idx]

    def ema_samples(n, seed):
        Gs = G if (ema is None or a.g_samples) else ema.G_ema
        was_training = Gs.training
        Gs.eval()
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, 128, generator=g)
        y = torch.arange(n) % 10
        with torch.no_grad():
            if a.model == "dcgan32":
                out = torch.cat([Gs(z[i:i + 200]) for i in range(0, n, 200)])
            else:
                out = torch.cat([Gs(z[i:i + 200], y[i:i + 200], update_u=False)
                                 for i in range(0, n, 200)])
        Gs.train(was_training)
        return pr.to_uint8(out[:, 0])

    it = batches()
    step = 0
    next_snapshot = a.snapshot_every
    if a.snapshot_every > 0:
        os.makedirs(os.path.join(a.out, "snapshots"), exist_ok=True)
    t_start = time.perf_counter()
    t_log = t_start
    steps_at_log = 0
    d_loss = g_loss = float("nan")
    while True:
        now = time.perf_counter()
        if now - t_start >= a.seconds:
            break
        if a.model == "dcgan32":
            real, _ = next(it)
            d_loss, g_loss = pr.train_step(G, D, optG, optD, real, torch.randn(B, 128),
                                           torch.randn(B, 128), loss=a.loss)
            ema.update(G, step)
        else:
            bl = [next(it) for _ in range(a.d_steps)]
            d_loss, g_loss = pr.biggan_train_step(G, D, optG, optD, bl, 10, loss=a.loss, ema=ema)
        step += 1
        now = time.perf_counter()
        if a.snapshot_every > 0 and now - t_start >= next_snapshot:
            t_train = now - t_start
            np.save(os.path.join(a.out, "snapshots", f"t{t_train:09.3f}_step{step:08d}.npy"),
                    ema_samples(a.snapshot_samples, 4321))
            next_snapshot = t_train + a.snapshot_every
            paused = time.perf_counter() - now
            t_start += paused  # snapshots are not training time
            t_log += paused
            now = time.perf_counter()
        if now - t_log >= a.log_every:
            ips = (step - steps_at_log) * B / (now - t_log)
            print(f"step {step:6d}  t {now - t_start:7.1f}s  {ips:7.1f} imgs/s  "
                  f"d_loss {d_loss:.4f}  g_loss {g_loss:.4f}", flush=True)
            t_log, steps_at_log = now, step
    elapsed = time.perf_counter() - t_start
    ips_total = step * B / elapsed
    if a.snapshot_every > 0:  # the state at the end, as ParaGAN's final row
        np.save(os.path.join(a.out, "snapshots", f"t{elapsed:09.3f}_step{step:08d}.npy"),
                ema_samples(a.snapshot_samples, 4321))

    Gs = G if (ema is None or a.g_samples) else ema.G_ema
    Gs.eval()
    with torch.no_grad():
        if a.model == "dcgan32":
            grid_imgs = Gs(fixed_z)
            samples = torch.cat([Gs(sample_z[i:i + 200]) for i in range(0, 1000, 200)])
        else:
            grid_imgs = Gs(fixed_z, fixed_y, update_u=False)
            samples = torch.cat([Gs(sample_z[i:i + 200], sample_y[i:i + 200], update_u=False)
                                 for i in range(0, 1000, 200)])
    pr.write_png(os.path.join(a.out, "samples_grid.png"), pr.make_grid(grid_imgs, nrow=8, padding=2))
    np.save(os.path.join(a.out, "samples.npy"), pr.to_uint8(samples[:, 0]))
    with open(os.path.join(a.out, "summary.txt"), "w") as f:
        f.write(f"model {a.model}\nframework pytorch {torch.__version__}\nthreads {a.threads}\n"
                f"batch {B}\nseed {a.seed}\nsteps {step}\nseconds {elapsed:.1f}\n"
                f"imgs_per_s {ips_total:.1f}\nfinal_d_loss {d_loss:.4f}\nfinal_g_loss {g_loss:.4f}\n")
    print(f"done: {step} steps in {elapsed:.1f} s ({ips_total:.1f} imgs/s); wrote "
          f"{a.out}/samples_grid.png, samples.npy, summary.txt", flush=True)


if __name__ == "__main__":
    main()
