#!/usr/bin/python3
"""Write tests/fixtures/dcgan32_parity.pgt: one DCGAN-32 train_step (hinge,
Adam lr 2e-4 betas (0.5,0.999) eps 1e-8) from deterministic weights/inputs.

Weights: parameter k of DCGAN_G_PARAM_ORDER + DCGAN_D_PARAM_ORDER gets
  weights (ndim>1): fixture_uniform(k, numel) * (1/sqrt(fan_in))
      fan_in = numel/shape[0]; ConvTranspose [in,out,kh,kw]: shape[1]*kh*kw
  BN weights: 1 + 0.1*fixture_uniform(k, n); BN / other biases: 0.1*fixture_uniform(k, n)
  (float64, then cast to float32).  BN running_mean 0, running_var 1.
  SN (D layer j = 0..3: conv1, conv2, conv3, fc):
      sn_u = normalize(fixture_uniform(200+j, out)) (float64, cast to float32)
      sn_v = normalize(W_mat^T sn_u) in float32 torch.
  Stored in full as init.d.<layer>.sn_u / init.d.<layer>.sn_v.
Inputs (float32): in.z_d = fixture_uniform(100, N*128) [N,128],
  in.real = fixture_uniform(101, N*1024) [N,1,32,32], in.z_g = fixture_uniform(102, N*128).
Outputs: out.fake_d [N,1,32,32], out.d_logits [2N,1] (real first), out.d_loss [1],
  out.fake_g [N,1,32,32], out.g_logits [N,1], out.g_loss [1].
Per parameter (D grads from the D step, G grads from the G step, both
before the optimizer step):
  grad.<p> [S], after.<p> [S]   sampled at flat (row-major) indices (j*M)//S,
                                S = min(M, 1024), M = numel
  sum.grad.<p> [1], l2.grad.<p> [1]  float64 sum / L2 norm of the full grad.
After the whole step (full tensors, natural shapes):
  after.d.<layer>.sn_u, after.d.<layer>.sn_v,
  after.g.bnK.running_mean, after.g.bnK.running_var
  (G ran twice in train mode: D-step forward and G-step forward, so running
  stats were updated twice; running_var uses the unbiased batch variance.)
"""

import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paragan_ref as pr  # noqa: E402

N = 8


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)  # only affects the throw-away default init
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out_dir = os.path.join(repo, "tests", "fixtures")
    os.makedirs(out_dir, exist_ok=True)
    out_path = os.path.join(out_dir, "dcgan32_parity.pgt")

    G, D, optG, optD = pr.make_dcgan()
    params = dict(pr.named_params(G, "g.") + pr.named_params(D, "d."))
    order = pr.DCGAN_G_PARAM_ORDER + pr.DCGAN_D_PARAM_ORDER
    assert sorted(order) == sorted(params), (sorted(order), sorted(params))

    with torch.no_grad():
        for k, name in enumerate(order):
            p = params[name]
            shape = tuple(p.shape)
            n = p.numel()
            u = pr.fixture_uniform(k, n)
            if p.dim() == 1:
                is_bn_weight = ".bn" in name and name.endswith(".weight")
                vals = 1.0 + 0.1 * u if is_bn_weight else 0.1 * u
            else:
                if ".deconv" in name:
                    fan_in = shape[1] * shape[2] * shape[3]
                else:
                    fan_in = n // shape[0]
                scale = 1.0 / math.sqrt(fan_in)
                vals = u * scale
            p.copy_(torch.from_numpy(vals.astype(np.float32).reshape(shape)))
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.num_batches_tracked.zero_()
        sn_layers = [("conv1", D.conv1), ("conv2", D.conv2), ("conv3", D.conv3), ("fc", D.fc)]
        for j, (_, m) in enumerate(sn_layers):
            out = m.weight.shape[0]
            u64 = pr.fixture_uniform(200 + j, out)
            u64 = u64 / max(np.sqrt(np.sum(u64 * u64)), 1e-12)
            m.sn_u.copy_(torch.from_numpy(u64.astype(np.float32)))
            m.sn_reset_v()  # v = normalize(W_mat^T u), float32 torch

    recs = []

    def add(name, arr):
        a = arr.detach().cpu().numpy() if isinstance(arr, torch.Tensor) else np.asarray(arr)
        # Copy: .numpy() shares memory with tensors that later steps update in place.
        recs.append((name, np.array(a, dtype=np.float32, copy=True, order="C")))

    for lname, m in sn_layers:
        add(f"init.d.{lname}.sn_u", m.sn_u)
        add(f"init.d.{lname}.sn_v", m.sn_v)

    z_d = torch.from_numpy(pr.fixture_uniform(100, N * 128).astype(np.float32).reshape(N, 128))
    real = torch.from_numpy(pr.fixture_uniform(101, N * 32 * 32).astype(np.float32).reshape(N, 1, 32, 32))
    z_g = torch.from_numpy(pr.fixture_uniform(102, N * 128).astype(np.float32).reshape(N, 128))
    add("in.z_d", z_d)
    add("in.z_g", z_g)
    add("in.real", real)

    rec = {}
    d_loss, g_loss = pr.train_step(G, D, optG, optD, real, z_d, z_g, loss="hinge", record=rec)

    add("out.fake_d", rec["fake_d"])
    add("out.d_logits", rec["d_logits"])
    add("out.d_loss", rec["d_loss"].reshape(1))
    add("out.fake_g", rec["fake_g"])
    add("out.g_logits", rec["g_logits"])
    add("out.g_loss", rec["g_loss"].reshape(1))

    grads = dict(rec["d_grads"])
    grads.update(rec["g_grads"])
    for name in order:
        g = grads[name].reshape(-1)
        idx = torch.from_numpy(pr.sample_indices(g.numel()))
        add(f"grad.{name}", g[idx])
        g64 = g.double()
        add(f"sum.grad.{name}", g64.sum().reshape(1).float())
        add(f"l2.grad.{name}", g64.pow(2).sum().sqrt().reshape(1).float())
    for name in order:
        p = params[name].detach().reshape(-1)
        idx = torch.from_numpy(pr.sample_indices(p.numel()))
        add(f"after.{name}", p[idx])
    for lname, m in sn_layers:
        add(f"after.d.{lname}.sn_u", m.sn_u)
        add(f"after.d.{lname}.sn_v", m.sn_v)
    for bn in ("bn0", "bn1", "bn2"):
        m = getattr(G, bn)
        add(f"after.g.{bn}.running_mean", m.running_mean)
        add(f"after.g.{bn}.running_var", m.running_var)

    size = pr.save_tensors(out_path, recs)
    back = pr.load_tensors(out_path)
    assert list(back) == [n for n, _ in recs]
    for n, a in recs:
        assert back[n].shape == a.shape and np.array_equal(back[n], a), n

    for n, a in recs:
        print(f"  {n:40s} {str(list(a.shape)):18s}")
    print(f"d_loss={d_loss:.6f} g_loss={g_loss:.6f}")
    print(f"wrote {out_path}: {len(recs)} tensors, {size} bytes")
    assert size < 1 << 20, "fixture too large"


if __name__ == "__main__":
    main()
