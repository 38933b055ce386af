#!/usr/bin/python3
"""Time one full PyTorch training step of DCGAN-32 or BigGAN-32/64/128.

  /usr/bin/python3 tests/pytorch/bench_reference.py --model dcgan32 --threads 2 \
      --batch 64 --warmup 3 --iters 20 [--channels 1] [--biggan-ch 64] \
      [--no-attention] [--d-steps 1] [--loss hinge] \
      [--device cuda --precision fp32|tf32|amp-bf16]

On a GPU: cudnn.benchmark on (PyTorch's autotuner, the counterpart of ours),
fp32 = TF32 off everywhere, tf32 = TF32 on for convolutions and matmuls,
amp-bf16 = autocast to bfloat16 with channels-last models and inputs.

A step = d_steps D steps + 1 G step (default d_steps=1 for both models).
Data is random; z ~ N(0,1). Prints one machine-readable line:
  RESULT model=... framework=pytorch threads=T batch=B ms_per_step=X imgs_per_s=Y
(imgs_per_s = batch / step time) plus a human-readable line.
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paragan_ref as pr  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["dcgan32", "biggan32", "biggan64", "biggan128"],
                    default="dcgan32")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=["fp32", "tf32", "amp-bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--channels", type=int, default=1, help="image channels (BigGAN; DCGAN is 1)")
    ap.add_argument("--biggan-ch", type=int, default=64)
    ap.add_argument("--n-classes", type=int, default=10)
    ap.add_argument("--no-attention", action="store_true")
    ap.add_argument("--no-ema", action="store_true")
    ap.add_argument("--d-steps", type=int, default=1)
    ap.add_argument("--loss", choices=["hinge", "ns"], default="hinge")
    ap.add_argument("--no-freeze-d", action="store_true",
                    help="also compute (and discard) D param grads in the G step")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    B = a.batch
    freeze = not a.no_freeze_d
    dev = torch.device(a.device)
    amp = a.device == "cuda" and a.precision == "amp-bf16"
    if a.device == "cuda":
        torch.backends.cudnn.benchmark = True
        tf32 = a.precision != "fp32"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    fmt = torch.channels_last if amp else torch.contiguous_format

    def place(*modules):
        for m in modules:
            m.to(device=dev, memory_format=fmt)

    if a.model == "dcgan32":
        if a.channels != 1:
            print("note: dcgan32 is single-channel; ignoring --channels", file=sys.stderr)
        G, D, optG, optD = pr.make_dcgan()
        place(G, D)
        reals = [(torch.rand(B, 1, 32, 32) * 2 - 1).to(dev, memory_format=fmt)
                 for _ in range(4)]

        def step(it):
            for k in range(a.d_steps):
                real = reals[(it * a.d_steps + k) % len(reals)]
                z_d = torch.randn(B, 128, device=dev)
                if k + 1 < a.d_steps:  # extra D-only steps
                    G.train()
                    with torch.no_grad():
                        fake = G(z_d)
                    logits = D(torch.cat([real, fake], 0), update_u=True)
                    loss = pr.d_loss_fn(logits[:B], logits[B:], a.loss)
                    optD.zero_grad()
                    loss.backward()
                    optD.step()
                else:
                    pr.train_step(G, D, optG, optD, real, z_d, torch.randn(B, 128, device=dev),
                                  loss=a.loss, freeze_d_in_g_step=freeze)
        desc = "DCGAN-32 (1ch)"
    else:
        res = int(a.model[len("biggan"):])
        G, D, optG, optD, ema = pr.make_biggan(
            n_classes=a.n_classes, img_channels=a.channels, ch=a.biggan_ch,
            attention=not a.no_attention, ema_decay=None if a.no_ema else 0.999,
            resolution=res)
        place(G, D)
        if ema is not None:
            place(ema.G_ema)
        # Optimizers were built on the CPU tensors: rebuild them on the moved ones.
        optG = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.999), eps=1e-6)
        optD = torch.optim.Adam(D.parameters(), lr=4e-4, betas=(0.0, 0.999), eps=1e-6)
        reals = [((torch.rand(B, a.channels, res, res) * 2 - 1).to(dev, memory_format=fmt),
                  torch.randint(0, a.n_classes, (B,)).to(dev)) for _ in range(4)]

        def step(it):
            batches = [reals[(it * a.d_steps + k) % len(reals)] for k in range(a.d_steps)]
            pr.biggan_train_step(G, D, optG, optD, batches, a.n_classes, loss=a.loss,
                                 ema=ema, freeze_d_in_g_step=freeze)
        desc = (f"BigGAN-{res} ({a.channels}ch, ch={a.biggan_ch}, "
                f"attention={'off' if a.no_attention else 'on'}, "
                f"ema={'off' if a.no_ema else 'on'})")

    if a.device == "cuda":
        plain_step = step

        def step(it):  # noqa: F811 (wrapped: autocast, and wait for the GPU)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                plain_step(it)
            torch.cuda.synchronize()
        desc += f" on {torch.cuda.get_device_name()} ({a.precision})"

    for it in range(a.warmup):
        step(it)
    times = []
    for it in range(a.iters):
        t0 = time.perf_counter()
        step(a.warmup + it)
        times.append(time.perf_counter() - t0)
    ms = 1000.0 * sum(times) / len(times)
    med = 1000.0 * statistics.median(times)
    print(f"RESULT model={a.model} framework=pytorch device={a.device} precision={a.precision} "
          f"threads={a.threads} batch={B} "
          f"ms_per_step={ms:.2f} imgs_per_s={B / (ms / 1000.0):.1f}")
    print(f"{desc}: torch {torch.__version__}, {a.threads} threads, batch {B}, "
          f"{a.d_steps} D step(s) + 1 G step, loss {a.loss}, "
          f"D grads in G step {'skipped' if freeze else 'computed'}; "
          f"{a.iters} timed iters after {a.warmup} warmup: mean {ms:.2f} ms/step, "
          f"median {med:.2f} ms, min {1000 * min(times):.2f} ms, "
          f"{B / (ms / 1000.0):.1f} imgs/s")


if __name__ == "__main__":
    main()
