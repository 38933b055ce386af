#!/usr/bin/python3
"""Write tests/eval/metrics_fixture.pgt: feature sets and the FID, KID and IS
that NumPy/SciPy compute on them, the reference for worker/eval/metrics_test.

    /usr/bin/python3 tests/eval/make_metrics_fixture.py [--out PATH]

Deterministic: numpy.random.default_rng(SEED), so rerunning rewrites the same
inputs (and, with the same NumPy/SciPy/LAPACK, the same expected values; the
fixture records the versions in meta.versions). Generated with Debian 12's
python3-numpy 1.24.2, python3-scipy 1.10.1 and python3-mpmath 1.2.1.

Every input is float32 (what a feature network emits); every reference value
is computed in float64 from those float32 values, as the C++ side does.

Feature sets, all dim 64 (arrays "<case>.a", "<case>.b", float32 [N, 64]):
  basic         N 300 / 200: correlated Gaussians, different mean and mixing.
  singular      N 40 / 40: both covariances singular (rank 39 < 64).
  singular_one  N 300 / 40: only b singular.
  ill           N 300 / 300: column scales 1e-3 .. 1e2 (covariance condition
                ~1e10), column 5 duplicates column 4, column 10 is the
                constant 0.5, columns 60..63 are always 0 (dead ReLUs), and
                the rest is passed through max(x, -2) so it is not Gaussian.
Per case: "<case>.fid" (float64 [1]) = pytorch-fid's calculate_frechet_distance
on (mean, numpy.cov(rowvar=False)) of a and b, i.e. scipy.linalg.sqrtm(
s1 @ s2, disp=False), retried with eps=1e-6 on the diagonals if the result is
not finite, real part; "<case>.fid_offset" (int64 [1]) says whether that
retry happened. "<case>.fid_exact" (float64 [1]) is the FID of the same
float32 features with the moments, the eigendecompositions of S_a and of
S_a^(1/2) S_b S_a^(1/2) and the roots in 40-digit mpmath arithmetic (Debian's
python3-mpmath): the ground truth that SciPy and the C++ code both
approximate (a minute or so). For basic and ill also the moments "<case>.mean_a" [64] and
"<case>.cov_a" [64, 64].

KID (torch-fidelity's mmd2/polynomial_kernel: degree 3, gamma 1/dim, coef0 1,
unbiased estimator):
  kid.subsets_a, kid.subsets_b  int64 [5, 100]: rows of basic.a / basic.b,
                each subset drawn without replacement by numpy (so the C++
                side takes the same subsets, not its own sampler's)
  kid.mmd [5], kid.mean [1], kid.std [1] (numpy.std, ddof 0)
  kid_full.mmd [1]: all of basic.a (300) against all of basic.b (200), the
                unbiased MMD^2 with unequal sizes
                (mean_{i!=j} Kxx + mean_{i!=j} Kyy - 2 mean Kxy)
  kid_singular.mmd [1]: all of singular.a against all of singular.b (40/40)

IS (torch-fidelity's isc_features_to_metric without its shuffle: float64
softmax, splits [i*N//s, (i+1)*N//s), exp(mean KL(p(y|x) || p(y))), mean and
numpy.std over splits):
  is.logits float32 [500, 10]
  is.s10.scores [10], is.s10.mean, is.s10.std: 10 splits
  is.s3.scores [3], is.s3.mean, is.s3.std: 3 splits (500 = 166 + 167 + 167)
  is.probs float32 [500, 10]: softmax of is.logits, cast to float32
  is.probs.s10.scores/mean/std: from is.probs with scipy.stats.entropy (which
                renormalizes each row), as sbarratt/inception-score-pytorch

float64 values are stored as their IEEE-754 bit patterns in int64 arrays
(PGTENS01 has no float64 dtype), the convention of worker/eval's
FeatureStats files.
"""

import argparse
import os
import struct
import warnings
import zlib

import mpmath
import numpy as np
import scipy
import scipy.linalg
import scipy.special
import scipy.stats

SEED = 20240611
DIM = 64

DTYPE_FLOAT32, DTYPE_INT64, DTYPE_UINT8 = 0, 1, 2


def write_pgt(path, arrays):
    """PGTENS01 (common/tensor_io.h): magic, count, entries, crc32."""
    out = bytearray(b"PGTENS01")
    out += struct.pack("<I", len(arrays))
    for name, arr in arrays:
        if arr.dtype == np.float32:
            code = DTYPE_FLOAT32
        elif arr.dtype == np.int64:
            code = DTYPE_INT64
        elif arr.dtype == np.uint8:
            code = DTYPE_UINT8
        else:
            raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
        nb = name.encode()
        out += struct.pack("<I", len(nb)) + nb
        out += struct.pack("<II", code, arr.ndim)
        out += struct.pack(f"<{arr.ndim}q", *arr.shape)
        out += np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
    out += struct.pack("<I", zlib.crc32(bytes(out)) & 0xFFFFFFFF)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(out)
    os.replace(tmp, path)


def f64(values):
    """float64 values as int64 bit patterns."""
    return np.ascontiguousarray(np.atleast_1d(np.asarray(values, np.float64))).view(np.int64)


def text(s):
    return np.frombuffer(s.encode(), np.uint8).copy()


# pytorch-fid's calculate_frechet_distance (pytorch_fid/fid_score.py).
def pytorch_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm's "singular matrix" note
        covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
        offset_used = False
        if not np.isfinite(covmean).all():
            offset_used = True
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("imaginary component %g" % np.max(np.abs(covmean.imag)))
        covmean = covmean.real
    fid = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return fid, offset_used


def exact_fid(x, y, digits=40):
    """FID in `digits`-digit arithmetic from the float32 inputs (exact in
    float64): two-pass moments, S_a = U L U^T, the eigenvalues of
    L^(1/2) U^T S_b U L^(1/2) (those of S_a S_b), their roots."""
    mpmath.mp.dps = digits

    def moments_mp(v):
        m = mpmath.matrix(v.astype(np.float64).tolist())
        n, d = m.rows, m.cols
        mu = [mpmath.fsum(m[i, j] for i in range(n)) / n for j in range(d)]
        c = mpmath.matrix(d, d)
        for i in range(d):
            for j in range(i + 1):
                c[i, j] = c[j, i] = mpmath.fsum(
                    (m[k, i] - mu[i]) * (m[k, j] - mu[j]) for k in range(n)) / (n - 1)
        return mu, c

    mu1, s1 = moments_mp(x)
    mu2, s2 = moments_mp(y)
    d = s1.rows
    lam, u = mpmath.eigsy(s1)
    r = mpmath.matrix(d, d)
    for j in range(d):
        root = mpmath.sqrt(max(lam[j], 0))
        for k in range(d):
            r[j, k] = u[k, j] * root
    ev = mpmath.eigsy(r * s2 * r.T, eigvals_only=True)
    trace_sqrt = mpmath.fsum(mpmath.sqrt(max(e, 0)) for e in ev)
    fid = (mpmath.fsum((mu1[i] - mu2[i]) ** 2 for i in range(d)) +
           mpmath.fsum(s1[i, i] for i in range(d)) + mpmath.fsum(s2[i, i] for i in range(d)) -
           2 * trace_sqrt)
    return float(fid)


def moments(x):
    x = x.astype(np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


# torch-fidelity's metric_kid.py (mmd2 with mmd_est='unbiased').
def polynomial_kernel(x, y, degree=3, gamma=None, coef0=1):
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (np.matmul(x, y.T) * gamma + coef0) ** degree


def mmd2_torch_fidelity(k_xx, k_xy, k_yy):
    m = k_xx.shape[0]
    kt_xx_sum = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum()
    kt_yy_sum = (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
    k_xy_sum = k_xy.sum(axis=0).sum()
    return (kt_xx_sum + kt_yy_sum) / (m * (m - 1)) - 2 * k_xy_sum / (m * m)


def mmd2_general(x, y):
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) +
            (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1)) - 2 * k_xy.sum() / (m * n))


def polynomial_mmd(x, y):
    return mmd2_torch_fidelity(polynomial_kernel(x, x), polynomial_kernel(x, y),
                               polynomial_kernel(y, y))


# torch-fidelity's isc_features_to_metric, shuffle=False, in NumPy float64.
def isc_logits(logits, splits):
    x = logits.astype(np.float64)
    n = x.shape[0]
    log_p = scipy.special.log_softmax(x, axis=1)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        q = p[lo:hi].mean(axis=0, keepdims=True)
        kl = (p[lo:hi] * (log_p[lo:hi] - np.log(q))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return np.array(scores), np.mean(scores), np.std(scores)


# sbarratt/inception-score-pytorch's scoring of softmax outputs.
def isc_probs(probs, splits):
    p = probs.astype(np.float64)
    n = p.shape[0]
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        py = part.mean(axis=0)
        scores.append(np.exp(np.mean([scipy.stats.entropy(row, py) for row in part])))
    return np.array(scores), np.mean(scores), np.std(scores)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "metrics_fixture.pgt"))
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)

    mix = rng.standard_normal((DIM, DIM)) / np.sqrt(DIM)
    mix_b = mix + 0.3 * rng.standard_normal((DIM, DIM)) / np.sqrt(DIM)

    def gaussian(n, m, shift):
        return rng.standard_normal((n, DIM)) @ m + shift

    cases = {
        "basic": (gaussian(300, mix, 0.5), gaussian(200, mix_b, 0.7)),
        "singular": (gaussian(40, mix, 0.5), gaussian(40, mix_b, 0.7)),
        "singular_one": (gaussian(300, mix, 0.5), gaussian(40, mix_b, 0.7)),
    }
    scales = np.logspace(-3, 2, DIM)
    ill = []
    for m, shift in ((mix, 0.5), (mix_b, 0.6)):
        x = np.maximum(gaussian(300, m, shift), -2.0) * scales
        x[:, 5] = x[:, 4]
        x[:, 10] = 0.5
        x[:, 60:] = 0.0
        ill.append(x)
    cases["ill"] = tuple(ill)

    arrays = [("meta.versions", text(f"numpy {np.__version__} scipy {scipy.__version__} "
                                     f"mpmath {mpmath.__version__}"))]
    feats = {}
    for name, (a, b) in cases.items():
        a, b = a.astype(np.float32), b.astype(np.float32)
        feats[name] = (a, b)
        mu1, s1 = moments(a)
        mu2, s2 = moments(b)
        fid, offset = pytorch_fid(mu1, s1, mu2, s2)
        exact = exact_fid(a, b)
        print(f"{name}: N {len(a)}/{len(b)} FID {fid:.10g} (eps retry: {offset}), "
              f"40 digits {exact:.10g}, SciPy's relative error {abs(fid - exact) / exact:.2g}")
        arrays += [(f"{name}.a", a), (f"{name}.b", b), (f"{name}.fid", f64(fid)),
                   (f"{name}.fid_exact", f64(exact)),
                   (f"{name}.fid_offset", np.array([int(offset)], np.int64))]
        if name in ("basic", "ill"):
            arrays += [(f"{name}.mean_a", f64(mu1)), (f"{name}.cov_a", f64(s1))]

    a, b = (x.astype(np.float64) for x in feats["basic"])
    subsets_a = np.stack([rng.choice(len(a), 100, replace=False) for _ in range(5)])
    subsets_b = np.stack([rng.choice(len(b), 100, replace=False) for _ in range(5)])
    mmds = np.array([polynomial_mmd(a[sa], b[sb]) for sa, sb in zip(subsets_a, subsets_b)])
    print(f"kid: {mmds} mean {mmds.mean():.10g} std {mmds.std():.10g}")
    arrays += [("kid.subsets_a", subsets_a.astype(np.int64)),
               ("kid.subsets_b", subsets_b.astype(np.int64)),
               ("kid.mmd", f64(mmds)), ("kid.mean", f64(mmds.mean())),
               ("kid.std", f64(mmds.std())),
               ("kid_full.mmd", f64(mmd2_general(a, b)))]
    sa, sb = (x.astype(np.float64) for x in feats["singular"])
    arrays += [("kid_singular.mmd", f64(polynomial_mmd(sa, sb)))]
    print(f"kid_full {mmd2_general(a, b):.10g} kid_singular {polynomial_mmd(sa, sb):.10g}")

    n, k = 500, 10
    labels = rng.integers(0, k, n)
    confidence = rng.uniform(0.0, 6.0, (n, 1))
    logits = rng.standard_normal((n, k)) + confidence * np.eye(k)[labels] + 1.5
    logits = logits.astype(np.float32)
    arrays.append(("is.logits", logits))
    for splits in (10, 3):
        scores, mean, std = isc_logits(logits, splits)
        print(f"is splits {splits}: mean {mean:.10g} std {std:.10g}")
        arrays += [(f"is.s{splits}.scores", f64(scores)), (f"is.s{splits}.mean", f64(mean)),
                   (f"is.s{splits}.std", f64(std))]
    probs = scipy.special.softmax(logits.astype(np.float64), axis=1).astype(np.float32)
    scores, mean, std = isc_probs(probs, 10)
    print(f"is probs splits 10: mean {mean:.10g} std {std:.10g}")
    arrays += [("is.probs", probs), ("is.probs.s10.scores", f64(scores)),
               ("is.probs.s10.mean", f64(mean)), ("is.probs.s10.std", f64(std))]

    write_pgt(args.out, arrays)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
