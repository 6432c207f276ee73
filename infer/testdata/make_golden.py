#!/usr/bin/python3
"""Golden outputs for infer's parity tests, from a pure-PyTorch reimplementation.

Usage: make_golden.py [BACKBONE_DIR [OUT_DIR]]
  BACKBONE_DIR defaults to $INSPECTD_BACKBONE or ../../../shared/backbones/resnet18
  relative to this script; OUT_DIR defaults to this script's directory.

Writes float32 .npy files (computed in float64):
  input.npy      [1,3,48,64]  deterministic RGB image in [0,1] (a formula, no RNG)
  layer1.npy     [1,64,12,16]   layer2.npy [1,128,6,8]   layer3.npy [1,256,3,4]
  mixed.npy      [1,448,12,16]  concat(layer1, bilinear(layer2), bilinear(layer3))
  head0_weight.npy [16,448,1,1], head0_bias.npy [16], head1_weight.npy [16,16,1,1],
  head1_bias.npy [16]: the mapping net N_M (1x1 conv, ReLU, 1x1 conv), formula-made
  centre.npy     [1,16,12,16]   the per-location centre F_C, formula-made
  heatmap.npy    [1,1,48,64]    0.5*(1-cos) upsampled and Gaussian-blurred (sigma 4),
                 cos = F_M.F_C / (max(|F_M|, 0.1) |F_C| + 1e-8) as netdef builds it
  score.npy      [1]            max of the heatmap
and backbone.sha256 (the SHA-256 of conv1.weight.npy) to detect other weights.
"""
import hashlib
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

H, W, D = 48, 64, 16
SIGMA = 4.0
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def load(dir_, name):
    return torch.from_numpy(np.load(os.path.join(dir_, name + ".npy")).astype(np.float64))


def conv(x, dir_, name, stride, pad):
    return F.conv2d(x, load(dir_, name + ".weight"), load(dir_, name + ".bias"), stride=stride, padding=pad)


def backbone(x, d):
    mean = torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    x = (x - mean) / std
    x = F.relu(conv(x, d, "conv1", 2, 3))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for layer in (1, 2, 3):
        for block in (0, 1):
            p = "layer%d.%d." % (layer, block)
            stride = 2 if (block == 0 and layer > 1) else 1
            y = F.relu(conv(x, d, p + "conv1", stride, 1))
            y = conv(y, d, p + "conv2", 1, 1)
            short = conv(x, d, p + "downsample.0", 2, 0) if stride == 2 else x
            x = F.relu(y + short)
        outs.append(x)
    l1, l2, l3 = outs
    size = l1.shape[2:]
    up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return l1, l2, l3, torch.cat([l1, up(l2), up(l3)], 1)


def gaussian(sigma):
    r = int(math.ceil(3 * sigma))
    k = np.exp(-np.arange(-r, r + 1, dtype=np.float64) ** 2 / (2 * sigma * sigma))
    return torch.from_numpy(k / k.sum())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    d = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "INSPECTD_BACKBONE", os.path.join(here, "..", "..", "..", "shared", "backbones", "resnet18"))
    out = sys.argv[2] if len(sys.argv) > 2 else here

    c = np.arange(3, dtype=np.float64).reshape(3, 1, 1)
    y = np.arange(H, dtype=np.float64).reshape(1, H, 1)
    x = np.arange(W, dtype=np.float64).reshape(1, 1, W)
    img = 0.5 + 0.35 * np.sin(0.21 * x * (c + 1) + 0.13 * y) * np.cos(0.07 * (x - 2 * y) + c)
    img += 0.15 * ((x // 8 + y // 8 + c) % 2 - 0.5)  # a checkerboard edge pattern
    img = np.clip(img, 0, 1).astype(np.float32)[None]

    with torch.no_grad():
        l1, l2, l3, mixed = backbone(torch.from_numpy(img).double(), d)

        o = np.arange(D, dtype=np.float64)
        i = np.arange(448, dtype=np.float64)
        w0 = np.sin(1.3 * o[:, None] + 0.37 * i[None, :] + 0.5) * math.sqrt(2 / 448) * 1.5
        b0 = 0.1 * np.cos(o)
        w1 = np.cos(0.9 * o[:, None] - 1.7 * o[None, :]) * math.sqrt(2 / D)
        b1 = 0.05 * np.sin(2 * o)
        head = [w0.reshape(D, 448, 1, 1), b0, w1.reshape(D, D, 1, 1), b1]
        head = [h.astype(np.float32) for h in head]
        t = [torch.from_numpy(h).double() for h in head]
        fm = F.conv2d(F.relu(F.conv2d(mixed, t[0], t[1])), t[2], t[3])

        h4, w4 = H // 4, W // 4
        cc = np.arange(D, dtype=np.float64).reshape(D, 1, 1)
        yy = np.arange(h4, dtype=np.float64).reshape(1, h4, 1)
        xx = np.arange(w4, dtype=np.float64).reshape(1, 1, w4)
        centre = (np.sin(0.7 * cc + 0.3 * yy - 0.2 * xx) + 0.2).astype(np.float32)[None]
        fc = torch.from_numpy(centre).double()

        dot = (fm * fc).sum(1, keepdim=True)
        # netdef.CosineNormFloor: ‖F_M‖ is floored at 0.1 as in the exported graph.
        den = fm.norm(dim=1, keepdim=True).clamp_min(0.1) * fc.norm(dim=1, keepdim=True) + 1e-8
        dist = 0.5 * (1 - dot / den)
        up = F.interpolate(dist, size=(H, W), mode="bilinear", align_corners=False)
        k = gaussian(SIGMA)
        r = len(k) // 2
        pad = F.pad(up, (r, r, r, r), mode="reflect")
        heat = F.conv2d(F.conv2d(pad, k.view(1, 1, -1, 1)), k.view(1, 1, 1, -1))
        score = heat.max().view(1)

    arrays = {
        "input": img, "layer1": l1, "layer2": l2, "layer3": l3, "mixed": mixed,
        "head0_weight": head[0], "head0_bias": head[1], "head1_weight": head[2], "head1_bias": head[3],
        "centre": centre, "heatmap": heat, "score": score,
    }
    for name, a in arrays.items():
        if isinstance(a, torch.Tensor):
            a = a.numpy()
        np.save(os.path.join(out, name + ".npy"), np.ascontiguousarray(a, dtype=np.float32))
    with open(os.path.join(d, "conv1.weight.npy"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(out, "backbone.sha256"), "w") as f:
        f.write(digest + "  conv1.weight.npy\n")


if __name__ == "__main__":
    main()
