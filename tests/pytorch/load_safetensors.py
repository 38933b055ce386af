"""Loads a paragan_export .safetensors file into paragan_ref's generator.

The file is parsed by hand (no safetensors package): an 8-byte little-endian
header length, a JSON header {name: {dtype, shape, data_offsets}, ...,
"__metadata__": {...}}, then the raw little-endian bytes. The generator is
built from the metadata (model, z_dim, num_classes, image_channels, width,
attention, resolution) and loaded with load_state_dict(strict=True), so a
missing, extra or misshapen tensor fails.

    /usr/bin/python3 tests/pytorch/load_safetensors.py --weights g.safetensors \
        --z z.npy [--labels y.npy] --out images.npy [--expect other.npy --atol 1e-4]

writes the generator's images (eval mode: running BN statistics, no power
iteration) of the z in z.npy (float32 [N, z_dim]) as float32 [N, C, H, W] in
[-1, 1]; with --expect, compares them with another .npy of images and exits 1
when the largest absolute difference exceeds --atol.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paragan_ref  # noqa: E402

_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U8": "u1", "BOOL": "?",
}


class SafetensorsError(ValueError):
    pass


def read_safetensors(path):
    """Returns ({name: torch.Tensor}, {metadata key: value})."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise SafetensorsError(f"{path}: {len(data)} bytes, no header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise SafetensorsError(f"{path}: header length {n} past the end")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors, end = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        if info["dtype"] not in _DTYPES:
            raise SafetensorsError(f"{path}: {name}: unsupported dtype {info['dtype']}")
        dt = np.dtype(_DTYPES[info["dtype"]])
        begin, stop = info["data_offsets"]
        shape = tuple(info["shape"])
        if begin != end or stop < begin or stop > len(body):
            raise SafetensorsError(f"{path}: {name}: bad data_offsets {begin, stop}")
        if (stop - begin) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise SafetensorsError(f"{path}: {name}: {stop - begin} bytes for "
                                   f"{info['dtype']} {list(shape)}")
        a = np.frombuffer(body, dtype=dt, count=(stop - begin) // dt.itemsize,
                          offset=begin).reshape(shape)
        tensors[name] = torch.from_numpy(a.copy())
        end = stop
    if end != len(body):
        raise SafetensorsError(f"{path}: {len(body) - end} bytes after the last tensor")
    return tensors, meta


def make_generator(meta):
    """paragan_ref's generator for an export's metadata."""
    model = meta["model"]
    z_dim = int(meta["z_dim"])
    if model == "dcgan32":
        return paragan_ref.DCGANGenerator(dim_z=z_dim)
    if model in ("biggan32", "biggan64", "biggan128"):
        return paragan_ref.BigGANGenerator(
            n_classes=int(meta["num_classes"]),
            img_channels=int(meta["image_channels"]), ch=int(meta["width"]),
            attention=meta["attention"] == "true", dim_z=z_dim,
            resolution=int(meta["resolution"]))
    raise SafetensorsError(f"no paragan_ref generator for model {model!r}")


def load_generator(path):
    """The generator of a paragan_export file, in eval mode, and its metadata."""
    state, meta = read_safetensors(path)
    if meta.get("format") != "pt":
        raise SafetensorsError(f"{path}: metadata format is {meta.get('format')!r}, not 'pt'")
    g = make_generator(meta)
    g.load_state_dict(state, strict=True)
    return g.eval(), meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--z", required=True, help="float32 .npy [N, z_dim]")
    ap.add_argument("--labels", help="int .npy [N] (conditional models)")
    ap.add_argument("--out", required=True, help="float32 .npy [N, C, H, W]")
    ap.add_argument("--expect", help="images .npy to compare with")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g, meta = load_generator(args.weights)
    z = torch.from_numpy(np.load(args.z).astype(np.float32))
    with torch.no_grad():
        if int(meta["num_classes"]) > 0:
            if not args.labels:
                sys.exit(f"{meta['model']} is class-conditional: --labels is required")
            y = torch.from_numpy(np.load(args.labels).astype(np.int64))
            x = g(z, y)
        else:
            x = g(z)
    images = x.numpy().astype(np.float32)
    np.save(args.out, images)
    print(f"load_safetensors: {meta['model']} {meta['generator']} generator, step "
          f"{meta['step']}: {len(g.state_dict())} tensors loaded (strict), images "
          f"{list(images.shape)} -> {args.out}")
    if args.expect:
        want = np.load(args.expect)
        if want.shape != images.shape:
            sys.exit(f"FAIL: {args.expect} has shape {list(want.shape)}, "
                     f"PyTorch gave {list(images.shape)}")
        diff = float(np.max(np.abs(want.astype(np.float64) - images)))
        print(f"max abs diff vs {os.path.basename(args.expect)}: {diff:.3g} "
              f"(atol {args.atol:g})")
        if not diff <= args.atol:
            sys.exit(f"FAIL: max abs diff {diff:.3g} > {args.atol:g}")


if __name__ == "__main__":
    main()
