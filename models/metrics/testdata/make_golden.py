#!/usr/bin/python3
"""Golden values for models/metrics (run: /usr/bin/python3 make_golden.py > golden.json).

Image-level metrics come from scikit-learn (roc_auc_score,
average_precision_score, precision/recall/f1 with zero_division=0,
precision_recall_curve for the F1-optimal point). AUPRO follows the MVTec AD
evaluation code (Bergmann et al.): 8-connected regions (scipy.ndimage.label
with a 3x3 structure when scipy is present, else the flood fill below),
cumulative FPR/PRO over descending distinct scores starting at (0, 0),
trapezoidal integration to FPR 0.3 with linear interpolation, divided by 0.3.

Pixel scores are float32 values (written as their exact float64 value) so
that Go, which reads them into []float32, sees the same numbers.
"""
import json
import sys
from bisect import bisect

import numpy as np
from sklearn.metrics import (average_precision_score, f1_score,
                             precision_recall_curve, precision_score,
                             recall_score, roc_auc_score)

try:
    from scipy.ndimage import label as _scipy_label
except ImportError:  # pragma: no cover
    _scipy_label = None

LABELLER = "scipy.ndimage.label" if _scipy_label is not None else "flood fill"


def label8(mask):
    """8-connected component labelling; returns (labels, count)."""
    if _scipy_label is not None:
        return _scipy_label(mask, structure=np.ones((3, 3), dtype=int))
    h, w = mask.shape
    lab = np.zeros((h, w), dtype=np.int64)
    n = 0
    for y in range(h):
        for x in range(w):
            if not mask[y, x] or lab[y, x]:
                continue
            n += 1
            lab[y, x] = n
            stack = [(y, x)]
            while stack:
                cy, cx = stack.pop()
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        yy, xx = cy + dy, cx + dx
                        if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not lab[yy, xx]:
                            lab[yy, xx] = n
                            stack.append((yy, xx))
    return lab, n


def compute_pro(maps, masks):
    """MVTec AD generic_util.compute_pro, for maps of possibly different sizes."""
    fp_changes, pro_changes, scores = [], [], []
    num_ok, num_regions = 0, 0
    for amap, gt in zip(maps, masks):
        lab, n = label8(gt)
        num_regions += n
        ok = lab == 0
        num_ok += int(ok.sum())
        fpc = ok.astype(np.float64)
        proc = np.zeros(gt.shape, dtype=np.float64)
        for k in range(n):
            region = lab == k + 1
            proc[region] = 1.0 / region.sum()
        fp_changes.append(fpc.ravel())
        pro_changes.append(proc.ravel())
        scores.append(amap.ravel().astype(np.float64))
    s = np.concatenate(scores)
    fpc = np.concatenate(fp_changes)
    proc = np.concatenate(pro_changes)
    order = np.argsort(s, kind="stable")[::-1]
    s, fpc, proc = s[order], fpc[order], proc[order]
    fprs = np.cumsum(fpc) / num_ok
    pros = np.cumsum(proc) / num_regions
    keep = np.append(np.diff(s) != 0, True)
    fprs = np.clip(fprs[keep], None, 1.0)
    pros = np.clip(pros[keep], None, 1.0)
    return np.concatenate([[0.0], fprs]), np.concatenate([[0.0], pros])


def trapezoid(x, y, x_max):
    """MVTec AD generic_util.trapezoid."""
    x, y = np.asarray(x), np.asarray(y)
    correction = 0.0
    if x_max not in x:
        ins = bisect(x, x_max)
        assert 0 < ins < len(x)
        y_interp = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    m = x <= x_max
    x, y = x[m], y[m]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def aupro(maps, masks, max_fpr=0.3):
    fprs, pros = compute_pro(maps, masks)
    return trapezoid(fprs, pros, max_fpr) / max_fpr


def best_f1(scores, labels):
    p, r, t = precision_recall_curve(labels, scores)
    p, r = p[:-1], r[:-1]  # drop the (1, 0) end point that has no threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    best = f1.max()
    cand = np.flatnonzero(np.abs(f1 - best) <= 1e-12)
    i = cand[np.argmax(t[cand])]  # ties: the highest threshold
    return {"threshold": float(t[i]), "precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i])}


def prf(scores, labels, thr):
    pred = np.asarray(scores) >= thr
    return {
        "threshold": float(thr),
        "precision": float(precision_score(labels, pred, zero_division=0)),
        "recall": float(recall_score(labels, pred, zero_division=0)),
        "f1": float(f1_score(labels, pred, zero_division=0)),
    }


def image_case(name, scores, labels, thr):
    scores = [float(s) for s in scores]
    labels = [bool(v) for v in labels]
    c = {"name": name, "scores": scores, "labels": labels, "threshold": float(thr)}
    if all(labels) or not any(labels):
        c["one_class"] = True
        return c
    c["auroc"] = float(roc_auc_score(labels, scores))
    c["ap"] = float(average_precision_score(labels, scores))
    c["prf"] = prf(scores, labels, thr)
    c["best_f1"] = best_f1(scores, labels)
    return c


def pixel_case(name, maps, masks):
    maps = [m.astype(np.float32) for m in maps]
    s = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    lab = np.concatenate([g.ravel() for g in masks])
    return {
        "name": name,
        "maps": [{"w": int(m.shape[1]), "h": int(m.shape[0]),
                  "scores": [float(v) for v in m.astype(np.float64).ravel()],
                  "mask": [int(v) for v in g.astype(np.uint8).ravel()]}
                 for m, g in zip(maps, masks)],
        "auroc": float(roc_auc_score(lab, s)),
        "ap": float(average_precision_score(lab, s)),
        "aupro": aupro(maps, masks, 0.3),
    }


def ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def main():
    rng = np.random.default_rng(20240611)
    images = [
        image_case("simple", [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.35),
        image_case("ties", [0.5, 0.5, 0.5, 0.2, 0.8, 0.8, 0.1, 0.5, 0.2, 0.9],
                   [1, 0, 1, 0, 1, 0, 0, 0, 1, 1], 0.5),
        image_case("all_equal", [0.3] * 7, [0, 1, 0, 0, 1, 0, 1], 0.3),
        image_case("tiny_perfect", [0.2, 0.9], [0, 1], 0.5),
        image_case("tiny_inverted", [0.9, 0.2], [0, 1], 0.5),
        image_case("nothing_predicted", [0.1, 0.2, 0.3], [0, 1, 0], 0.5),
    ]
    neg = np.round(rng.normal(0.3, 0.1, 200), 2)
    pos = np.round(rng.normal(0.55, 0.1, 3), 2)
    images.append(image_case("imbalanced", np.concatenate([neg, pos]), [0] * 200 + [1] * 3, 0.5))
    sc = np.round(rng.random(300), 3)
    lb = rng.random(300) < sc * 0.8
    images.append(image_case("random_ties", sc, lb, 0.6))
    images.append(image_case("one_class_normal", [0.1, 0.5, 0.2], [0, 0, 0], 0.3))
    images.append(image_case("one_class_anomalous", [0.1, 0.5, 0.2], [1, 1, 1], 0.3))

    pixels = []
    # Blobs: several regions, diagonal-only contacts, a defect-free image, scores k/1024.
    h, w = 14, 18
    masks, maps = [], []
    m = ellipse(h, w, 4, 5, 3, 4) | ellipse(h, w, 10, 13, 2, 3)
    m[12, 2] = True
    m[13, 3] = True  # diagonal neighbour of (12,2): one region under 8-connectivity
    masks.append(m)
    masks.append(np.zeros((h, w), dtype=bool))
    m = np.zeros((h, w), dtype=bool)
    m[2:4, 2:16] = True  # thin scratch
    m[9, 9] = True  # single pixel
    masks.append(m)
    for g in masks:
        base = rng.random((h, w)) * 0.6 + g * rng.random((h, w)) * 0.5
        maps.append(np.floor(np.clip(base, 0, 1) * 1024) / 1024)
    pixels.append(pixel_case("blobs", maps, masks))
    # Heavy ties: scores in steps of 0.125, different image sizes.
    masks2, maps2 = [], []
    for (hh, ww) in [(10, 12), (8, 8), (12, 9)]:
        g = ellipse(hh, ww, hh / 2, ww / 3, hh / 4, ww / 5)
        masks2.append(g)
        maps2.append(np.floor((rng.random((hh, ww)) * 0.7 + g * 0.3) * 8) / 8)
    pixels.append(pixel_case("ties", maps2, masks2))
    # Continuous float32 scores: binning merges nothing exactly here, tolerance 1e-3.
    masks3, maps3 = [], []
    for k in range(3):
        g = ellipse(16, 16, 5 + 3 * k, 8, 2 + k, 3)
        masks3.append(g)
        maps3.append((rng.random((16, 16)) * 0.8 + g * rng.random((16, 16)) * 0.4).astype(np.float32))
    pixels.append(pixel_case("continuous", maps3, masks3))

    json.dump({"generator": "make_golden.py", "labeller": LABELLER,
               "sklearn": __import__("sklearn").__version__, "numpy": np.__version__,
               "images": images, "pixels": pixels}, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
