#!/usr/bin/python3
"""Convert pytorch-fid's InceptionV3 weights to the project's tensor file.

paragan_eval --network=inception-v3 needs the FID Inception weights that
pytorch-fid (https://github.com/mseitzer/pytorch-fid) uses, which are not
shipped here. Get them once and convert them once:

    # the file pytorch-fid downloads (its FID_WEIGHTS_URL, release
    # "fid_weights"): pt_inception-2015-12-05-6726825d.pth (~91 MB); or take
    # it from ~/.cache/torch/hub/checkpoints/ where pytorch-fid cached it
    /usr/bin/python3 tools/convert_pytorch_fid_weights.py \\
        pt_inception-2015-12-05-6726825d.pth /path/to/inception_v3_fid.pgt
    bazel-bin/worker/eval/paragan_eval --network=inception-v3 \\
        --weights=/path/to/inception_v3_fid.pgt --samples=runs/x/samples.npy ...

Needs PyTorch (python3-torch) and NumPy, only here: the C++ product reads the
output with its own reader (common/tensor_io.h) and never unpickles anything.

The output is a PGTENS01 file (common/tensor_io.h): every tensor of the
network under its PyTorch name (e.g. "Conv2d_1a_3x3.conv.weight",
"Mixed_5b.branch1x1.bn.running_var", "fc.weight" [1008, 2048]) as float32,
plus "meta/network" = "inception-v3" and "meta/weights" = "pytorch-fid"
(uint8 text) and "meta/source" (the input file's name and SHA-256).
BatchNorm's "num_batches_tracked" counters are dropped (inference does not
use them); any other unknown, missing or misshapen tensor is an error.
The C++ loader (worker/eval/inception_v3.h) checks the same names and shapes
and folds each BatchNorm (eps 0.001) into its convolution at load time.

Also a library: the architecture table (EXPECTED_SHAPES), the PGTENS01 writer
(write_pgtens) and the check (check_state_dict) are what
tests/eval/make_inception_fixture.py uses.
"""

import argparse
import collections
import hashlib
import os
import struct
import sys
import zlib

NETWORK = "inception-v3"
WEIGHTS_TAG = "pytorch-fid"
EXPECTED_SHA256_PREFIX = "6726825d"  # the hash suffix in pytorch-fid's file name


def _conv(table, name, cin, cout, kh, kw):
    """A BasicConv2d: a bias-free convolution and its BatchNorm."""
    table[name + ".conv.weight"] = (cout, cin, kh, kw)
    for p in ("weight", "bias", "running_mean", "running_var"):
        table[name + ".bn." + p] = (cout,)


def _architecture():
    """Every tensor's name and shape, in torchvision's registration order.

    torchvision.models.inception_v3(num_classes=1008, aux_logits=False) with
    pytorch-fid's FID blocks (the blocks change pooling only, not tensors).
    """
    t = collections.OrderedDict()
    _conv(t, "Conv2d_1a_3x3", 3, 32, 3, 3)
    _conv(t, "Conv2d_2a_3x3", 32, 32, 3, 3)
    _conv(t, "Conv2d_2b_3x3", 32, 64, 3, 3)
    _conv(t, "Conv2d_3b_1x1", 64, 80, 1, 1)
    _conv(t, "Conv2d_4a_3x3", 80, 192, 3, 3)
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64),
                            ("Mixed_5d", 288, 64)):
        _conv(t, name + ".branch1x1", cin, 64, 1, 1)
        _conv(t, name + ".branch5x5_1", cin, 48, 1, 1)
        _conv(t, name + ".branch5x5_2", 48, 64, 5, 5)
        _conv(t, name + ".branch3x3dbl_1", cin, 64, 1, 1)
        _conv(t, name + ".branch3x3dbl_2", 64, 96, 3, 3)
        _conv(t, name + ".branch3x3dbl_3", 96, 96, 3, 3)
        _conv(t, name + ".branch_pool", cin, pool, 1, 1)
    _conv(t, "Mixed_6a.branch3x3", 288, 384, 3, 3)
    _conv(t, "Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1)
    _conv(t, "Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3)
    _conv(t, "Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                     ("Mixed_6e", 192)):
        _conv(t, name + ".branch1x1", 768, 192, 1, 1)
        _conv(t, name + ".branch7x7_1", 768, c7, 1, 1)
        _conv(t, name + ".branch7x7_2", c7, c7, 1, 7)
        _conv(t, name + ".branch7x7_3", c7, 192, 7, 1)
        _conv(t, name + ".branch7x7dbl_1", 768, c7, 1, 1)
        _conv(t, name + ".branch7x7dbl_2", c7, c7, 7, 1)
        _conv(t, name + ".branch7x7dbl_3", c7, c7, 1, 7)
        _conv(t, name + ".branch7x7dbl_4", c7, c7, 7, 1)
        _conv(t, name + ".branch7x7dbl_5", c7, 192, 1, 7)
        _conv(t, name + ".branch_pool", 768, 192, 1, 1)
    _conv(t, "Mixed_7a.branch3x3_1", 768, 192, 1, 1)
    _conv(t, "Mixed_7a.branch3x3_2", 192, 320, 3, 3)
    _conv(t, "Mixed_7a.branch7x7x3_1", 768, 192, 1, 1)
    _conv(t, "Mixed_7a.branch7x7x3_2", 192, 192, 1, 7)
    _conv(t, "Mixed_7a.branch7x7x3_3", 192, 192, 7, 1)
    _conv(t, "Mixed_7a.branch7x7x3_4", 192, 192, 3, 3)
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        _conv(t, name + ".branch1x1", cin, 320, 1, 1)
        _conv(t, name + ".branch3x3_1", cin, 384, 1, 1)
        _conv(t, name + ".branch3x3_2a", 384, 384, 1, 3)
        _conv(t, name + ".branch3x3_2b", 384, 384, 3, 1)
        _conv(t, name + ".branch3x3dbl_1", cin, 448, 1, 1)
        _conv(t, name + ".branch3x3dbl_2", 448, 384, 3, 3)
        _conv(t, name + ".branch3x3dbl_3a", 384, 384, 1, 3)
        _conv(t, name + ".branch3x3dbl_3b", 384, 384, 3, 1)
        _conv(t, name + ".branch_pool", cin, 192, 1, 1)
    t["fc.weight"] = (1008, 2048)
    t["fc.bias"] = (1008,)
    return t


EXPECTED_SHAPES = _architecture()

_DTYPES = {"float32": 0, "int64": 1, "uint8": 2}


def write_pgtens(path, arrays):
    """Writes [(name, numpy array)] as PGTENS01 (common/tensor_io.h).

    magic "PGTENS01", uint32 count, per entry uint32 name length, name,
    uint32 dtype (0 float32, 1 int64, 2 uint8), uint32 ndim, int64 dims,
    raw little-endian C-order data; then the zlib CRC-32 of all of it.
    Written to path + ".tmp" and renamed, so a failed run leaves no half file.
    """
    import numpy as np

    parts = [b"PGTENS01", struct.pack("<I", len(arrays))]
    crc = zlib.crc32(parts[0] + parts[1])
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(parts[0] + parts[1])
        for name, arr in arrays:
            arr = np.ascontiguousarray(arr)
            code = _DTYPES[str(arr.dtype)]
            nb = name.encode("utf-8")
            head = (struct.pack("<I", len(nb)) + nb +
                    struct.pack("<II", code, arr.ndim) +
                    struct.pack("<%dq" % arr.ndim, *arr.shape))
            data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            crc = zlib.crc32(data, zlib.crc32(head, crc))
            f.write(head)
            f.write(data)
        f.write(struct.pack("<I", crc & 0xFFFFFFFF))
    os.replace(tmp, path)


def text(s):
    """uint8 text, as the C++ side stores strings."""
    import numpy as np

    return np.frombuffer(s.encode("utf-8"), dtype=np.uint8).copy()


def check_state_dict(state):
    """Returns [(name, float32 numpy array)] in EXPECTED_SHAPES order.

    Drops BatchNorm num_batches_tracked; raises ValueError naming the first
    missing, unexpected, misshapen or non-finite tensor.
    """
    import numpy as np

    got = {}
    for name, value in state.items():
        if name.endswith(".num_batches_tracked"):
            continue
        if name not in EXPECTED_SHAPES:
            raise ValueError("unexpected tensor %r (shape %s): not part of "
                             "pytorch-fid's FID InceptionV3" %
                             (name, tuple(value.shape)))
        got[name] = value
    out = []
    for name, shape in EXPECTED_SHAPES.items():
        if name not in got:
            raise ValueError("missing tensor %r (expected shape %s)" %
                             (name, shape))
        arr = got[name]
        if hasattr(arr, "detach"):
            arr = arr.detach().cpu().numpy()
        arr = np.asarray(arr)
        if tuple(arr.shape) != shape:
            raise ValueError("tensor %r has shape %s, expected %s" %
                             (name, tuple(arr.shape), shape))
        arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise ValueError("tensor %r has non-finite values" % name)
        out.append((name, arr))
    return out


def _load_pth(path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # PyTorch < 1.13 has no weights_only
        return torch.load(path, map_location="cpu")


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pth", help="pt_inception-2015-12-05-6726825d.pth")
    ap.add_argument("out", help="output .pgt for paragan_eval --weights")
    args = ap.parse_args(argv)

    with open(args.pth, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    if not sha.startswith(EXPECTED_SHA256_PREFIX):
        print("warning: SHA-256 %s does not start with %s: not the file "
              "pytorch-fid downloads? Converting anyway (names and shapes are "
              "still checked)." % (sha, EXPECTED_SHA256_PREFIX),
              file=sys.stderr)
    state = _load_pth(args.pth)
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    try:
        arrays = check_state_dict(state)
    except ValueError as e:
        sys.exit("%s: %s" % (args.pth, e))
    meta = [("meta/network", text(NETWORK)), ("meta/weights", text(WEIGHTS_TAG)),
            ("meta/source", text("%s sha256=%s" %
                                 (os.path.basename(args.pth), sha)))]
    write_pgtens(args.out, meta + arrays)
    params = sum(a.size for _, a in arrays)
    print("wrote %s: %d tensors, %d parameters (%.1f MB), network %s, weights "
          "%s, from %s (sha256 %s)" %
          (args.out, len(arrays), params, os.path.getsize(args.out) / 1e6,
           NETWORK, WEIGHTS_TAG, args.pth, sha))
    for name, a in arrays[:3] + arrays[-2:]:
        print("  %-40s %s" % (name, list(a.shape)))
    print("  ... (%d more)" % (len(arrays) - 5))


if __name__ == "__main__":
    main()
