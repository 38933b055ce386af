"""PyTorch reference implementation for ParaGAN (DCGAN-32 and BigGAN-32/64/128).

This module is the ground truth the C++ engine is checked and benchmarked
against.  Only numpy and torch are used.

Contents
  * PGTENS01 tensor file format: save_tensors / load_tensors
  * PNG writer (zlib + struct) and make_grid
  * fixture_uniform: deterministic fixture values
  * hand-written spectral norm with explicit power-iteration control
    (SNLinear, SNConv2d, SNEmbedding)
  * DCGAN-32 (DCGANGenerator / DCGANDiscriminator) and train_step
  * BigGAN-32 (BigGANGenerator / BigGANDiscriminator), EMA and
    biggan_train_step

Note: use Debian's interpreter (/usr/bin/python3), which has python3-torch.
"""

import copy
import math
import struct
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# PGTENS01 tensor files
# ---------------------------------------------------------------------------

PGT_MAGIC = b"PGTENS01"
_DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.int64): 1, np.dtype(np.uint8): 2}
_CODE_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<i8"), 2: np.dtype("u1")}


class PGTError(ValueError):
    """Raised for malformed PGTENS01 files."""


def _to_numpy(a):
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def save_tensors(path, tensors):
    """Write [(name, array), ...] to `path` in PGTENS01 format.

    Supported dtypes: float32, int64, uint8 (others raise; convert first).
    """
    parts = [PGT_MAGIC, struct.pack("<I", len(tensors))]
    seen = set()
    for name, arr in tensors:
        if name in seen:
            raise PGTError(f"duplicate tensor name {name!r}")
        seen.add(name)
        a = _to_numpy(arr)
        if a.dtype not in _DTYPE_CODES:
            raise PGTError(f"tensor {name!r}: unsupported dtype {a.dtype} "
                           "(need float32, int64 or uint8)")
        code = _DTYPE_CODES[a.dtype]
        a = np.ascontiguousarray(a, dtype=_CODE_DTYPES[code]).reshape(a.shape)  # keep 0-d
        nb = name.encode("utf-8")
        parts.append(struct.pack("<I", len(nb)))
        parts.append(nb)
        parts.append(struct.pack("<II", code, a.ndim))
        parts.append(struct.pack("<%dq" % a.ndim, *a.shape))
        parts.append(a.tobytes(order="C"))
    body = b"".join(parts)
    crc = zlib.crc32(body) & 0xFFFFFFFF
    with open(path, "wb") as f:
        f.write(body)
        f.write(struct.pack("<I", crc))
    return len(body) + 4


def load_tensors(path):
    """Read a PGTENS01 file; returns an (insertion-ordered) dict name -> ndarray."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < len(PGT_MAGIC) + 8:
        raise PGTError(f"{path}: file too short ({len(data)} bytes)")
    if data[:8] != PGT_MAGIC:
        raise PGTError(f"{path}: bad magic {data[:8]!r}, expected {PGT_MAGIC!r}")
    body, (crc_stored,) = data[:-4], struct.unpack("<I", data[-4:])
    crc = zlib.crc32(body) & 0xFFFFFFFF
    if crc != crc_stored:
        raise PGTError(f"{path}: CRC mismatch (stored {crc_stored:#010x}, "
                       f"computed {crc:#010x}); file is corrupt or truncated")
    pos = 8

    def take(n, what):
        nonlocal pos
        if pos + n > len(body):
            raise PGTError(f"{path}: truncated while reading {what} at offset {pos}")
        b = body[pos:pos + n]
        pos += n
        return b

    (count,) = struct.unpack("<I", take(4, "count"))
    out = {}
    for t in range(count):
        (nlen,) = struct.unpack("<I", take(4, f"name length of tensor {t}"))
        name = take(nlen, f"name of tensor {t}").decode("utf-8")
        code, ndim = struct.unpack("<II", take(8, f"dtype/ndim of {name!r}"))
        if code not in _CODE_DTYPES:
            raise PGTError(f"{path}: tensor {name!r} has unknown dtype code {code}")
        dims = struct.unpack("<%dq" % ndim, take(8 * ndim, f"dims of {name!r}"))
        if any(d < 0 for d in dims):
            raise PGTError(f"{path}: tensor {name!r} has negative dim {dims}")
        dt = _CODE_DTYPES[code]
        numel = int(np.prod(dims, dtype=np.int64)) if ndim else 1
        raw = take(numel * dt.itemsize, f"data of {name!r}")
        if name in out:
            raise PGTError(f"{path}: duplicate tensor name {name!r}")
        out[name] = np.frombuffer(raw, dtype=dt).reshape(dims).copy()
    if pos != len(body):
        raise PGTError(f"{path}: {len(body) - pos} trailing bytes after last tensor")
    return out


# ---------------------------------------------------------------------------
# PNG writing
# ---------------------------------------------------------------------------

def _png_chunk(tag, payload):
    c = struct.pack(">I", len(payload)) + tag + payload
    return c + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF)


def write_png(path, img):
    """Write a uint8 HxW (gray) or HxWx3 (RGB) array as an 8-bit PNG."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"write_png needs uint8, got {a.dtype}")
    if a.ndim == 2:
        color_type = 0
    elif a.ndim == 3 and a.shape[2] == 3:
        color_type = 2
    else:
        raise ValueError(f"write_png needs HxW or HxWx3, got shape {a.shape}")
    h, w = a.shape[:2]
    a = np.ascontiguousarray(a).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), a], axis=1).tobytes()
    png = (b"\x89PNG\r\n\x1a\n"
           + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
           + _png_chunk(b"IDAT", zlib.compress(raw, 9))
           + _png_chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def to_uint8(images):
    """[-1,1] float -> uint8 via round((x+1)*127.5) clipped to [0,255]."""
    x = _to_numpy(images).astype(np.float64)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images, nrow=8, padding=2):
    """Tile images [N,C,H,W] in [-1,1] (torchvision.utils.make_grid layout:
    `nrow` images per row, `padding` px of 0 between and around).
    Returns uint8 HxW for C==1, HxWx3 for C==3."""
    x = to_uint8(images)
    n, c, h, w = x.shape
    if c not in (1, 3):
        raise ValueError(f"make_grid needs 1 or 3 channels, got {c}")
    xmaps = min(nrow, n)
    ymaps = int(math.ceil(n / xmaps))
    hh, ww = h + padding, w + padding
    grid = np.zeros((c, ymaps * hh + padding, xmaps * ww + padding), np.uint8)
    for k in range(n):
        r, col = divmod(k, xmaps)
        y0, x0 = r * hh + padding, col * ww + padding
        grid[:, y0:y0 + h, x0:x0 + w] = x[k]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0).copy()


# ---------------------------------------------------------------------------
# Fixture values
# ---------------------------------------------------------------------------

def fixture_uniform(k, n):
    """n float64 values in [-1,1):
    ((i*2654435761 + (k+1)*97531) mod 2**32) / 2**32 * 2 - 1, i = 0..n-1."""
    i = np.arange(n, dtype=np.uint64)
    v = (i * np.uint64(2654435761) + np.uint64((k + 1) * 97531)) % np.uint64(2 ** 32)
    return v.astype(np.float64) / float(2 ** 32) * 2.0 - 1.0


def sample_indices(m):
    """Flat indices used to sample a tensor with m elements: (j*m)//S, S=min(m,1024)."""
    s = min(m, 1024)
    return (np.arange(s, dtype=np.int64) * m) // s


# ---------------------------------------------------------------------------
# Spectral norm (explicit update control)
# ---------------------------------------------------------------------------

def _normalize(x):
    # identical to F.normalize(x, dim=0, eps=1e-12): x / max(||x||, eps)
    return F.normalize(x, dim=0, eps=1e-12)


class _SNMixin:
    """Buffers sn_u [out] and sn_v [in_flat], W_mat = W.reshape(out, -1).

    sn_weight(update_u): if update_u, one power iteration under no_grad
    (v = normalize(W^T u); u = normalize(W v); both stored).  Then
    sigma = u . (W_mat v) with u, v constants and W differentiable;
    returns W / sigma.  update_u=None means `self.training`.
    """

    def _sn_setup(self):
        out = self.weight.shape[0]
        in_flat = self.weight[0].numel()
        self.register_buffer("sn_u", _normalize(torch.randn(out)))
        self.register_buffer("sn_v", torch.zeros(in_flat))
        self.sn_reset_v()

    @torch.no_grad()
    def sn_reset_v(self):
        """v = normalize(W_mat^T u) (call after re-initialising weight or u)."""
        w_mat = self.weight.detach().reshape(self.weight.shape[0], -1)
        self.sn_v.copy_(_normalize(torch.mv(w_mat.t(), self.sn_u)))

    def sn_weight(self, update_u=None):
        if update_u is None:
            update_u = self.training
        w = self.weight
        w_mat = w.reshape(w.shape[0], -1)
        if update_u:
            with torch.no_grad():
                v = _normalize(torch.mv(w_mat.t(), self.sn_u))
                u = _normalize(torch.mv(w_mat, v))
                self.sn_v.copy_(v)
                self.sn_u.copy_(u)
        u = self.sn_u.detach().clone()
        v = self.sn_v.detach().clone()
        sigma = torch.dot(u, torch.mv(w_mat, v))
        return w / sigma


class SNLinear(nn.Linear, _SNMixin):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__(in_features, out_features, bias=bias)
        self._sn_setup()

    def forward(self, x, update_u=None):
        return F.linear(x, self.sn_weight(update_u), self.bias)


class SNConv2d(nn.Conv2d, _SNMixin):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=padding, bias=bias)
        self._sn_setup()

    def forward(self, x, update_u=None):
        return F.conv2d(x, self.sn_weight(update_u), self.bias, self.stride,
                        self.padding, self.dilation, self.groups)


class SNEmbedding(nn.Embedding, _SNMixin):
    """Embedding matrix [V, D] spectrally normalised with out = V."""

    def __init__(self, num_embeddings, embedding_dim):
        super().__init__(num_embeddings, embedding_dim)
        self._sn_setup()

    def forward(self, idx, update_u=None):
        return F.embedding(idx, self.sn_weight(update_u))


def sn_modules(model):
    return [m for m in model.modules() if isinstance(m, _SNMixin)]


def sn_reset_all(model):
    for m in sn_modules(model):
        m.sn_reset_v()


# ---------------------------------------------------------------------------
# Naming / export helpers
# ---------------------------------------------------------------------------

def named_params(model, prefix):
    return [(prefix + n, p) for n, p in model.named_parameters()]


def named_state(model, prefix, with_num_batches=False):
    """All params + buffers as (prefix+name, tensor), state_dict order."""
    return [(prefix + n, t) for n, t in model.state_dict().items()
            if with_num_batches or not n.endswith("num_batches_tracked")]


def export_state(models_with_prefix):
    """[(model, 'g.'), (model, 'd.')] -> [(name, ndarray)] ready for save_tensors."""
    out = []
    for m, pre in models_with_prefix:
        for n, t in named_state(m, pre, with_num_batches=True):
            out.append((n, t.detach().cpu().numpy()))
    return out


def import_state(model, prefix, tensors):
    sd = {}
    for n in model.state_dict().keys():
        sd[n] = torch.from_numpy(np.array(tensors[prefix + n]))
    model.load_state_dict(sd)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------

def d_loss_fn(d_real, d_fake, loss="hinge"):
    if loss == "hinge":
        return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
    if loss == "ns":
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    raise ValueError(f"unknown loss {loss!r}")


def g_loss_fn(d_fake, loss="hinge"):
    if loss == "hinge":
        return -d_fake.mean()
    if loss == "ns":
        return F.softplus(-d_fake).mean()
    raise ValueError(f"unknown loss {loss!r}")


class _FrozenGrad:
    """Context: temporarily set requires_grad=False on a model's params
    (used for D during the G step; G's gradients are unaffected, D's
    gradients from the G step would be discarded anyway)."""

    def __init__(self, model, enabled=True):
        self.model, self.enabled, self.saved = model, enabled, []

    def __enter__(self):
        if self.enabled:
            self.saved = [(p, p.requires_grad) for p in self.model.parameters()]
            for p, _ in self.saved:
                p.requires_grad_(False)
        return self

    def __exit__(self, *exc):
        for p, r in self.saved:
            p.requires_grad_(r)
        return False


def _grads(model, prefix):
    return {prefix + n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in model.named_parameters()}


# ---------------------------------------------------------------------------
# DCGAN-32
# ---------------------------------------------------------------------------

class DCGANGenerator(nn.Module):
    def __init__(self, dim_z=128):
        super().__init__()
        self.dim_z = dim_z
        self.fc = nn.Linear(dim_z, 256 * 4 * 4)
        self.bn0 = nn.BatchNorm2d(256, eps=1e-5, momentum=0.1)
        self.deconv1 = nn.ConvTranspose2d(256, 128, 4, 2, 1)
        self.bn1 = nn.BatchNorm2d(128, eps=1e-5, momentum=0.1)
        self.deconv2 = nn.ConvTranspose2d(128, 64, 4, 2, 1)
        self.bn2 = nn.BatchNorm2d(64, eps=1e-5, momentum=0.1)
        self.deconv3 = nn.ConvTranspose2d(64, 1, 4, 2, 1)

    def forward(self, z, update_u=None):  # update_u unused (no SN in G)
        h = self.fc(z).view(z.shape[0], 256, 4, 4)
        h = F.relu(self.bn0(h))
        h = F.relu(self.bn1(self.deconv1(h)))
        h = F.relu(self.bn2(self.deconv2(h)))
        return torch.tanh(self.deconv3(h))


class DCGANDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = SNConv2d(1, 64, 4, 2, 1)
        self.conv2 = SNConv2d(64, 128, 4, 2, 1)
        self.conv3 = SNConv2d(128, 256, 4, 2, 1)
        self.fc = SNLinear(256 * 4 * 4, 1)

    def forward(self, x, update_u=None):
        h = F.leaky_relu(self.conv1(x, update_u), 0.2)
        h = F.leaky_relu(self.conv2(h, update_u), 0.2)
        h = F.leaky_relu(self.conv3(h, update_u), 0.2)
        return self.fc(h.reshape(h.shape[0], -1), update_u)


# Parameter order used by the DCGAN parity fixture.
DCGAN_G_PARAM_ORDER = [
    "g.fc.weight", "g.fc.bias", "g.bn0.weight", "g.bn0.bias",
    "g.deconv1.weight", "g.deconv1.bias", "g.bn1.weight", "g.bn1.bias",
    "g.deconv2.weight", "g.deconv2.bias", "g.bn2.weight", "g.bn2.bias",
    "g.deconv3.weight", "g.deconv3.bias",
]
DCGAN_D_PARAM_ORDER = [
    "d.conv1.weight", "d.conv1.bias", "d.conv2.weight", "d.conv2.bias",
    "d.conv3.weight", "d.conv3.bias", "d.fc.weight", "d.fc.bias",
]


def make_dcgan(lr=2e-4, betas=(0.5, 0.999), eps=1e-8):
    G, D = DCGANGenerator(), DCGANDiscriminator()
    optG = torch.optim.Adam(G.parameters(), lr=lr, betas=betas, eps=eps)
    optD = torch.optim.Adam(D.parameters(), lr=lr, betas=betas, eps=eps)
    return G, D, optG, optD


def train_step(G, D, optG, optD, real, z_d, z_g, loss="hinge", record=None,
               freeze_d_in_g_step=True):
    """One DCGAN step (D step then G step). Returns (d_loss, g_loss) floats.

    If `record` is a dict, it is filled with tensors: fake_d, d_logits,
    d_loss, d_grads (D grads of the D step, before optD.step()), fake_g,
    g_logits, g_loss, g_grads (G grads of the G step, before optG.step()).
    """
    n = real.shape[0]
    # ---- D step
    G.train()
    D.train()
    with torch.no_grad():
        fake = G(z_d, update_u=False)
    logits = D(torch.cat([real, fake], 0), update_u=True)
    d_real, d_fake = logits[:n], logits[n:]
    d_loss = d_loss_fn(d_real, d_fake, loss)
    optD.zero_grad()
    d_loss.backward()
    if record is not None:
        record["fake_d"] = fake.detach().clone()
        record["d_logits"] = logits.detach().clone()
        record["d_loss"] = d_loss.detach().clone()
        record["d_grads"] = _grads(D, "d.")
    optD.step()
    # ---- G step
    with _FrozenGrad(D, freeze_d_in_g_step):
        fake = G(z_g, update_u=True)
        g_logits = D(fake, update_u=False)
        g_loss = g_loss_fn(g_logits, loss)
        optG.zero_grad()
        g_loss.backward()
    if record is not None:
        record["fake_g"] = fake.detach().clone()
        record["g_logits"] = g_logits.detach().clone()
        record["g_loss"] = g_loss.detach().clone()
        record["g_grads"] = _grads(G, "g.")
    optG.step()
    return float(d_loss), float(g_loss)


# ---------------------------------------------------------------------------
# BigGAN-32
# ---------------------------------------------------------------------------

def _up2(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


class CBN(nn.Module):
    """BatchNorm2d(affine=False) then xhat*(1+gain(c)) + bias(c)."""

    def __init__(self, C, cond_dim):
        super().__init__()
        self.bn = nn.BatchNorm2d(C, affine=False, eps=1e-5, momentum=0.1)
        self.gain = SNLinear(cond_dim, C, bias=False)
        self.bias = SNLinear(cond_dim, C, bias=False)

    def forward(self, x, cond, update_u=None):
        n, c = x.shape[:2]
        g = 1.0 + self.gain(cond, update_u)
        b = self.bias(cond, update_u)
        return self.bn(x) * g.view(n, c, 1, 1) + b.view(n, c, 1, 1)


class GBlock(nn.Module):
    def __init__(self, cin, cout, cond_dim):
        super().__init__()
        self.cbn1 = CBN(cin, cond_dim)
        self.conv1 = SNConv2d(cin, cout, 3, 1, 1)
        self.cbn2 = CBN(cout, cond_dim)
        self.conv2 = SNConv2d(cout, cout, 3, 1, 1)
        self.conv_sc = SNConv2d(cin, cout, 1, 1, 0)

    def forward(self, x, cond, update_u=None):
        h = F.relu(self.cbn1(x, cond, update_u))
        h = _up2(h)
        x_up = _up2(x)
        h = self.conv1(h, update_u)
        h = F.relu(self.cbn2(h, cond, update_u))
        h = self.conv2(h, update_u)
        return h + self.conv_sc(x_up, update_u)


class Attention(nn.Module):
    """SAGAN/BigGAN self-attention."""

    def __init__(self, C):
        super().__init__()
        self.C = C
        self.theta = SNConv2d(C, C // 8, 1, 1, 0, bias=False)
        self.phi = SNConv2d(C, C // 8, 1, 1, 0, bias=False)
        self.g = SNConv2d(C, C // 2, 1, 1, 0, bias=False)
        self.o = SNConv2d(C // 2, C, 1, 1, 0, bias=False)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x, update_u=None):
        n, c, h, w = x.shape
        theta = self.theta(x, update_u).view(n, c // 8, h * w)
        phi = F.max_pool2d(self.phi(x, update_u), [2, 2]).view(n, c // 8, h * w // 4)
        g = F.max_pool2d(self.g(x, update_u), [2, 2]).view(n, c // 2, h * w // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).view(n, c // 2, h, w), update_u)
        return x + self.gamma * o


def ortho_init(model):
    """Orthogonal init of all conv/linear/embedding weights, zero biases,
    then v = normalize(W^T u) for SN layers."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding, nn.ConvTranspose2d)):
            nn.init.orthogonal_(m.weight)
            if getattr(m, "bias", None) is not None and isinstance(m.bias, nn.Parameter):
                nn.init.zeros_(m.bias)
    sn_reset_all(model)


# BigGAN-PyTorch's arch tables (channel multipliers of ch) and the block after
# which self-attention sits (output at half the resolution), as in
# worker/engine/biggan.cc.
BIGGAN_ARCH = {
    32: dict(g_in=[4, 4, 4], g_out=[4, 4, 4], g_attn=1,
             d_out=[4, 4, 4, 4], d_down=[True, True, False, False], d_attn=0),
    64: dict(g_in=[16, 16, 8, 4], g_out=[16, 8, 4, 2], g_attn=2,
             d_out=[1, 2, 4, 8, 16], d_down=[True, True, True, True, False], d_attn=0),
    128: dict(g_in=[16, 16, 8, 4, 2], g_out=[16, 8, 4, 2, 1], g_attn=3,
              d_out=[1, 2, 4, 8, 16, 16], d_down=[True] * 5 + [False], d_attn=0),
}


class BigGANGenerator(nn.Module):
    def __init__(self, n_classes=10, img_channels=3, ch=64, attention=True,
                 dim_z=128, shared_dim=128, resolution=32):
        super().__init__()
        arch = BIGGAN_ARCH[resolution]
        nb = len(arch["g_in"])
        self.c, self.dim_z, self.z_chunk = arch["g_in"][0] * ch, dim_z, dim_z // (nb + 1)
        assert dim_z % (nb + 1) == 0
        self.attn_after = arch["g_attn"]
        cond_dim = self.z_chunk + shared_dim
        self.shared = nn.Embedding(n_classes, shared_dim)
        self.linear = SNLinear(self.z_chunk, self.c * 4 * 4)
        self.blocks = nn.ModuleList([GBlock(i * ch, o * ch, cond_dim)
                                     for i, o in zip(arch["g_in"], arch["g_out"])])
        self.attn = Attention(arch["g_out"][self.attn_after] * ch) if attention else None
        c_out = arch["g_out"][-1] * ch
        self.bn_out = nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1)
        self.conv_out = SNConv2d(c_out, img_channels, 3, 1, 1)
        ortho_init(self)

    def forward(self, z, y, update_u=None):
        zs = torch.split(z, self.z_chunk, dim=1)
        shared = self.shared(y)
        h = self.linear(zs[0], update_u).view(z.shape[0], self.c, 4, 4)
        for i, blk in enumerate(self.blocks):
            cond = torch.cat([zs[i + 1], shared], 1)
            h = blk(h, cond, update_u)
            if i == self.attn_after and self.attn is not None:  # 16x16 at 32
                h = self.attn(h, update_u)
        h = F.relu(self.bn_out(h))
        return torch.tanh(self.conv_out(h, update_u))


class DBlockOpt(nn.Module):
    """First D block: no pre-activation, downsample, sc = conv_sc(avgpool(x))."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = SNConv2d(cin, cout, 3, 1, 1)
        self.conv2 = SNConv2d(cout, cout, 3, 1, 1)
        self.conv_sc = SNConv2d(cin, cout, 1, 1, 0)

    def forward(self, x, update_u=None):
        h = F.relu(self.conv1(x, update_u))
        h = F.avg_pool2d(self.conv2(h, update_u), 2)
        return h + self.conv_sc(F.avg_pool2d(x, 2), update_u)


class DBlock(nn.Module):
    """Pre-activation D block; sc = avgpool(conv_sc(x)) if learnable else x."""

    def __init__(self, cin, cout, downsample):
        super().__init__()
        self.downsample = downsample
        self.conv1 = SNConv2d(cin, cout, 3, 1, 1)
        self.conv2 = SNConv2d(cout, cout, 3, 1, 1)
        self.learnable_sc = (cin != cout) or downsample
        self.conv_sc = SNConv2d(cin, cout, 1, 1, 0) if self.learnable_sc else None

    def forward(self, x, update_u=None):
        h = self.conv1(F.relu(x), update_u)
        h = self.conv2(F.relu(h), update_u)
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        if self.learnable_sc:
            sc = self.conv_sc(x, update_u)
            if self.downsample:
                sc = F.avg_pool2d(sc, 2)
        else:
            sc = x
        return h + sc


class BigGANDiscriminator(nn.Module):
    def __init__(self, n_classes=10, img_channels=3, ch=64, attention=True, resolution=32):
        super().__init__()
        arch = BIGGAN_ARCH[resolution]
        self.n_blocks = len(arch["d_out"])
        self.attn_after = arch["d_attn"]
        cin = img_channels
        for i, (o, down) in enumerate(zip(arch["d_out"], arch["d_down"])):
            blk = DBlockOpt(cin, o * ch) if i == 0 else DBlock(cin, o * ch, downsample=down)
            setattr(self, f"block{i + 1}", blk)  # block1 .. blockN, as in C++
            cin = o * ch
        self.attn = Attention(arch["d_out"][self.attn_after] * ch) if attention else None
        self.linear = SNLinear(cin, 1)
        self.embed = SNEmbedding(n_classes, cin)
        ortho_init(self)

    def forward(self, x, y, update_u=None):
        h = x
        for i in range(self.n_blocks):
            h = getattr(self, f"block{i + 1}")(h, update_u)
            if i == self.attn_after and self.attn is not None:
                h = self.attn(h, update_u)
        h = F.relu(h).sum(dim=[2, 3])
        out = self.linear(h, update_u)
        return out + (self.embed(y, update_u) * h).sum(dim=1, keepdim=True)


class EMA:
    """EMA copy of G: p_ema = decay*p_ema + (1-decay)*p after each G step;
    all buffers (BN running stats, SN u/v) are copied."""

    def __init__(self, G, decay=0.999):
        self.decay = decay
        self.G_ema = copy.deepcopy(G)
        for p in self.G_ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, G, step=None):
        # With `step` (0-based count of G steps done before this update), the
        # same warm-up as the C++ trainer: decay = min(decay, (1+t)/(10+t)).
        decay = self.decay if step is None else min(self.decay, (1.0 + step) / (10.0 + step))
        for pe, p in zip(self.G_ema.parameters(), G.parameters()):
            pe.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
        for be, b in zip(self.G_ema.buffers(), G.buffers()):
            be.copy_(b)


def make_biggan(n_classes=10, img_channels=3, ch=64, attention=True,
                g_lr=1e-4, d_lr=4e-4, betas=(0.0, 0.999), eps=1e-6, ema_decay=0.999,
                resolution=32, dim_z=None):
    if dim_z is None:
        dim_z = 128 if resolution == 32 else 120
    G = BigGANGenerator(n_classes, img_channels, ch, attention, dim_z=dim_z,
                        resolution=resolution)
    D = BigGANDiscriminator(n_classes, img_channels, ch, attention, resolution=resolution)
    optG = torch.optim.Adam(G.parameters(), lr=g_lr, betas=betas, eps=eps)
    optD = torch.optim.Adam(D.parameters(), lr=d_lr, betas=betas, eps=eps)
    ema = EMA(G, ema_decay) if ema_decay is not None else None
    return G, D, optG, optD, ema


def biggan_train_step(G, D, optG, optD, real_batches, n_classes, dim_z=None,
                      loss="hinge", ema=None, record=None, freeze_d_in_g_step=True,
                      generator=None):
    """One BigGAN iteration: len(real_batches) D steps then one G step.

    real_batches: list of (x [N,C,32,32], y [N] int64), one per D step.
    Fake z ~ N(0,1), fake y ~ U{0..n_classes-1} drawn per D/G step.
    Returns (last d_loss, g_loss) floats.
    """
    if dim_z is None:
        dim_z = G.dim_z
    G.train()
    D.train()
    d_loss = None
    for k, (real, y_real) in enumerate(real_batches):
        n = real.shape[0]
        z = torch.randn(n, dim_z, generator=generator, device=real.device)
        y_fake = torch.randint(0, n_classes, (n,), generator=generator, device=real.device)
        with torch.no_grad():
            fake = G(z, y_fake, update_u=False)
        logits = D(torch.cat([real, fake], 0), torch.cat([y_real, y_fake], 0), update_u=True)
        d_loss = d_loss_fn(logits[:n], logits[n:], loss)
        optD.zero_grad()
        d_loss.backward()
        if record is not None:
            record[f"d_loss{k}"] = d_loss.detach().clone()
        optD.step()
    n = real_batches[0][0].shape[0]
    dev = real_batches[0][0].device
    z = torch.randn(n, dim_z, generator=generator, device=dev)
    y_fake = torch.randint(0, n_classes, (n,), generator=generator, device=dev)
    with _FrozenGrad(D, freeze_d_in_g_step):
        fake = G(z, y_fake, update_u=True)
        g_logits = D(fake, y_fake, update_u=False)
        g_loss = g_loss_fn(g_logits, loss)
        optG.zero_grad()
        g_loss.backward()
    if record is not None:
        record["g_loss"] = g_loss.detach().clone()
    optG.step()
    if ema is not None:
        ema.update(G)
    return float(d_loss), float(g_loss)
