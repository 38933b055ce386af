#!/usr/bin/python3
"""Writes tests/eval/inception_fixture.pgt: pytorch-fid's FID InceptionV3 on
fixed random weights, for worker/eval/inception_v3_test.

    /usr/bin/python3 tests/eval/make_inception_fixture.py   # ~1 min, 2 cores

No pretrained weights are reachable here, so the network is proven on random
ones. The full weights file would be ~95 MB, so none is committed: the weights
come from a counter-based generator that the C++ test reproduces exactly
(InceptionV3RandomWeights in worker/eval/inception_v3.h):

    for the i-th value overall (0-based; tensors in the converter's
    EXPECTED_SHAPES order, each tensor in C order):
        z = seed + (i + 1) * 0x9E3779B97F4A7C15             (mod 2^64)
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9            (mod 2^64)
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB            (mod 2^64)
        z = z ^ (z >> 31)                                   (splitmix64)
        u = (z >> 11) * 2^-53                               (double in [0, 1))
        value = float32(lo + (hi - lo) * u)                 (double, rounded)
    with [lo, hi] per tensor kind:
        *.conv.weight        [-a, a], a = sqrt(6 / (cin * kh * kw))  (He)
        *.bn.weight          [0.5, 1.5]      *.bn.running_var  [0.5, 1.5]
        *.bn.bias            [-0.2, 0.2]     *.bn.running_mean [-0.2, 0.2]
        fc.weight            [-a, a], a = sqrt(3 / 2048)
        fc.bias              [-0.5, 0.5]

The reference network is pytorch-fid's (src/pytorch_fid/inception.py),
re-implemented here on torchvision's Inception3 building blocks exactly as
pytorch-fid builds it: num_classes=1008, no aux logits, the FID blocks'
pooling (average pools that exclude the padding in Mixed_5b-5d, 6b-6e, 7b; a
3x3 max pool in Mixed_7c's pool branch), BatchNorm eps 0.001 in eval mode,
inputs resized bilinearly to 299 (align_corners=False) and mapped from [0, 1]
to [-1, 1] as pytorch-fid does (our images are already in [-1, 1]: we pass
(x + 1) / 2, which its normalization undoes).

The script also checks the converter (tools/convert_pytorch_fid_weights.py):
its EXPECTED_SHAPES table must equal this network's state_dict (names, shapes,
order), and converting a saved .pth of the random weights must give exactly
the generated values.

Fixture tensors (float32 unless noted):
    meta/seed (int64 [1])          the generator's seed
    inputs [3, 3, 28, 36]          images in [-1, 1] (resized to 299 inside)
    pool3 [3, 2048]                float64 PyTorch forward, rounded to float32
    logits [3, 1008]               fc(pool3) with its bias (float64 forward)
    logits_unbiased [3, 1008]      pool3 @ fc.weight^T (float64 forward)
    pool3_f32, logits_f32          the same from PyTorch's float32 forward
                                   (what pytorch-fid computes), to size the
                                   tolerance: float32 vs float64 difference
"""

import collections
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import inception as tvi

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import convert_pytorch_fid_weights as conv  # noqa: E402

SEED = 1
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)


def splitmix_uniform(seed, start, count):
    """u in [0, 1) for global indices start .. start + count - 1."""
    with np.errstate(over="ignore"):
        i = np.arange(start + 1, start + count + 1, dtype=np.uint64)
        z = np.uint64(seed) + i * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def value_range(name, shape):
    if name.endswith(".conv.weight"):
        a = np.sqrt(6.0 / (shape[1] * shape[2] * shape[3]))
        return -a, a
    if name == "fc.weight":
        a = np.sqrt(3.0 / 2048)
        return -a, a
    if name == "fc.bias":
        return -0.5, 0.5
    if name.endswith(".bn.weight") or name.endswith(".bn.running_var"):
        return 0.5, 1.5
    if name.endswith(".bn.bias") or name.endswith(".bn.running_mean"):
        return -0.2, 0.2
    raise ValueError(name)


def random_weights(seed):
    out = collections.OrderedDict()
    offset = 0
    for name, shape in conv.EXPECTED_SHAPES.items():
        n = int(np.prod(shape))
        lo, hi = value_range(name, shape)
        u = splitmix_uniform(seed, offset, n)
        out[name] = (lo + (hi - lo) * u).astype(np.float32).reshape(shape)
        offset += n
    return out


# pytorch-fid's FID blocks: torchvision's modules (same tensors), different
# pooling in forward.
def _pool_exclude(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1,
                        count_include_pad=False)


class FidA(tvi.InceptionA):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_pool_exclude(x))
        return torch.cat([b1, b5, b3, bp], 1)


class FidC(tvi.InceptionC):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
            d = m(d)
        bp = self.branch_pool(_pool_exclude(x))
        return torch.cat([b1, b7, d, bp], 1)


class FidE(tvi.InceptionE):
    def __init__(self, in_channels, max_pool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def forward(self, x):
        b1 = self.branch1x1(x)
        t = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(t), self.branch3x3_2b(t)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.max_pool:  # Mixed_7c: pytorch-fid's FIDInceptionE_2
            p = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:  # Mixed_7b: FIDInceptionE_1
            p = _pool_exclude(x)
        return torch.cat([b1, b3, bd, self.branch_pool(p)], 1)


def fid_inception():
    net = torchvision.models.inception_v3(weights=None, num_classes=1008,
                                          aux_logits=False, init_weights=False)
    net.Mixed_5b = FidA(192, pool_features=32)
    net.Mixed_5c = FidA(256, pool_features=64)
    net.Mixed_5d = FidA(288, pool_features=64)
    net.Mixed_6b = FidC(768, channels_7x7=128)
    net.Mixed_6c = FidC(768, channels_7x7=160)
    net.Mixed_6d = FidC(768, channels_7x7=160)
    net.Mixed_6e = FidC(768, channels_7x7=192)
    net.Mixed_7b = FidE(1280, max_pool=False)
    net.Mixed_7c = FidE(2048, max_pool=True)
    return net.eval()


def pytorch_fid_forward(net, images_pm1):
    """pytorch-fid's InceptionV3(output_blocks=[3]) forward, plus the fc."""
    x = (images_pm1 + 1) / 2  # pytorch-fid expects [0, 1]
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    x = net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                 "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b",
                 "Mixed_7c"):
        x = getattr(net, name)(x)
    pool3 = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    logits_unbiased = pool3 @ net.fc.weight.t()
    return pool3, logits_unbiased + net.fc.bias, logits_unbiased


def read_pgtens(path):
    import struct
    import zlib
    data = open(path, "rb").read()
    assert data[:8] == b"PGTENS01"
    assert zlib.crc32(data[:-4]) == struct.unpack("<I", data[-4:])[0]
    (count,) = struct.unpack_from("<I", data, 8)
    pos, out = 12, {}
    dts = {0: np.float32, 1: np.int64, 2: np.uint8}
    for _ in range(count):
        (nl,) = struct.unpack_from("<I", data, pos)
        name = data[pos + 4:pos + 4 + nl].decode()
        pos += 4 + nl
        dt, nd = struct.unpack_from("<II", data, pos)
        dims = struct.unpack_from("<%dq" % nd, data, pos + 8)
        pos += 8 + 8 * nd
        n = int(np.prod(dims)) * np.dtype(dts[dt]).itemsize
        out[name] = np.frombuffer(data[pos:pos + n], dts[dt]).reshape(dims)
        pos += n
    return out


def main():
    torch.manual_seed(0)
    net = fid_inception()
    # The converter's table is this network's state_dict, in order.
    sd = [(k, tuple(v.shape)) for k, v in net.state_dict().items()
          if not k.endswith("num_batches_tracked")]
    assert sd == list(conv.EXPECTED_SHAPES.items()), "EXPECTED_SHAPES differs"

    weights = random_weights(SEED)
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(
        k.endswith("num_batches_tracked") for k in missing), (missing,
                                                             unexpected)

    # The converter on a .pth of these weights gives exactly these values.
    with tempfile.TemporaryDirectory() as tmp:
        pth, pgt = os.path.join(tmp, "w.pth"), os.path.join(tmp, "w.pgt")
        torch.save(net.state_dict(), pth)
        conv.main([pth, pgt])
        back = read_pgtens(pgt)
        assert bytes(back["meta/network"]) == b"inception-v3"
        for k, v in weights.items():
            assert np.array_equal(back[k], v), k
        print("converter round trip: %d tensors identical" % len(weights))

    rng = np.random.RandomState(SEED)
    inputs = rng.uniform(-1, 1, size=(3, 3, 28, 36)).astype(np.float32)
    # A smooth image and a saturated one beside the noise.
    yy, xx = np.meshgrid(np.linspace(-1, 1, 28), np.linspace(-1, 1, 36),
                         indexing="ij")
    inputs[1] = np.stack([np.sin(3 * xx) * np.cos(2 * yy), xx * yy,
                          0.5 * (xx - yy)]).astype(np.float32)
    inputs[2] = np.sign(inputs[2]).astype(np.float32)

    torch.set_num_threads(2)
    with torch.no_grad():
        p32, l32, _ = pytorch_fid_forward(net, torch.from_numpy(inputs))
        net64 = fid_inception().double()
        net64.load_state_dict(
            {k: torch.from_numpy(v).double() for k, v in weights.items()},
            strict=False)
        p64, l64, u64 = pytorch_fid_forward(
            net64, torch.from_numpy(inputs).double())
    d_pool = (p32.double() - p64).abs().max().item()
    d_logit = (l32.double() - l64).abs().max().item()
    print("pool3: mean %.4f max %.4f; logits: std %.4f" %
          (p64.mean().item(), p64.abs().max().item(), l64.std().item()))
    print("PyTorch float32 vs float64: pool3 max abs diff %.3g, logits %.3g" %
          (d_pool, d_logit))
    arrays = [
        ("meta/seed", np.array([SEED], dtype=np.int64)),
        ("inputs", inputs),
        ("pool3", p64.float().numpy()),
        ("logits", l64.float().numpy()),
        ("logits_unbiased", u64.float().numpy()),
        ("pool3_f32", p32.numpy()),
        ("logits_f32", l32.numpy()),
    ]
    out = os.path.join(HERE, "inception_fixture.pgt")
    conv.write_pgtens(out, arrays)
    print("wrote %s (%d bytes)" % (out, os.path.getsize(out)))


if __name__ == "__main__":
    main()
