#!/usr/bin/env python3
"""PyTorch reference for inspectd's localisation network.

Rebuilds, in plain PyTorch, the network stored in a bundle's localize.onnx
(ResNet-18 conv1..layer3 with folded BatchNorm, F_Mixed = concat(layer1,
up(layer2), up(layer3)), the 1x1 mapping network N_M, cosine distance to the
per-location centre, bilinear upsampling and the separable Gaussian blur),
from the same weights read out of the ONNX file, and times it on the CPU.

Usage: /usr/bin/python3 bench/torch_reference.py --bundle DIR [--threads 2]
       [--iterations 50] [--json] [--dump heatmap.npy]

The timing input is the tensor (i mod 251)/251 over the flat [1,3,H,W] index;
--dump saves its heatmap so a test can check this network against ONNX Runtime.
Needs Debian's python3-torch and python3-onnx (installed by `make deps`).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

import tomllib  # Python 3.11+ (Debian 12's python3)


def load_weights(path):
    model = onnx.load(path)
    return {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}


def mapping_layers(w):
    """Returns N_M as a list of (weight[D,448 or D,1,1], bias) in order."""
    first_w = torch.cat([w["mapping.0.layer1.weight"], w["mapping.0.layer2.weight"], w["mapping.0.layer3.weight"]], dim=1)
    layers = [(first_w, w["mapping.0.bias"].reshape(-1))]
    i = 1
    while f"mapping.{i}.weight" in w:
        layers.append((w[f"mapping.{i}.weight"], w[f"mapping.{i}.bias"]))
        i += 1
    return layers


def gaussian_kernel(sigma):
    """The normalised 1-D Gaussian of netdef.GaussianKernel: 2*ceil(3*sigma)+1 taps."""
    r = int(np.ceil(3 * sigma))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-x * x / (2 * sigma * sigma))
    return torch.from_numpy((k / k.sum()).astype(np.float32))


class Localize(torch.nn.Module):
    def __init__(self, w, blur_sigma):
        super().__init__()
        self.w = w
        self.mapping = mapping_layers(w)
        k = gaussian_kernel(blur_sigma)
        self.kv = k.reshape(1, 1, -1, 1)
        self.kh = k.reshape(1, 1, 1, -1)
        self.rad = k.shape[0] // 2

    def conv(self, x, name, stride=1, pad=None):
        wt = self.w[name + ".weight"]
        if pad is None:
            pad = wt.shape[2] // 2
        return F.conv2d(x, wt, self.w[name + ".bias"], stride=stride, padding=pad)

    def forward(self, img):
        w = self.w
        x = (img - w["imagenet_mean"]) / w["imagenet_std"]
        x = F.relu(self.conv(x, "conv1", 2, 3))
        x = F.max_pool2d(x, 3, 2, 1)
        feats = []
        for layer in (1, 2, 3):
            for block in (0, 1):
                p = f"layer{layer}.{block}."
                stride = 2 if (layer > 1 and block == 0) else 1
                y = F.relu(self.conv(x, p + "conv1", stride))
                y = self.conv(y, p + "conv2")
                short = self.conv(x, p + "downsample.0", 2, 0) if p + "downsample.0.weight" in w else x
                x = F.relu(y + short)
            feats.append(x)
        size = feats[0].shape[2:]
        mixed = torch.cat([feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]], 1)
        x = mixed
        for i, (wt, b) in enumerate(self.mapping):
            if i > 0:
                x = F.relu(x)
            x = F.conv2d(x, wt, b)
        centre = w["centre"]
        cos = (x * centre).sum(1, keepdim=True) / (x.norm(dim=1, keepdim=True).clamp_min(0.1) * w["centre_norm"] + 1e-8)
        dist = 0.5 * (1 - cos)
        up = F.interpolate(dist, size=img.shape[2:], mode="bilinear", align_corners=False)
        up = F.pad(up, (self.rad, self.rad, self.rad, self.rad), mode="reflect")
        heat = F.conv2d(F.conv2d(up, self.kv), self.kh)
        return heat, heat.amax()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, help="bundle directory holding localize.onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--dump", help="write the heatmap of the timing input to this .npy file (for parity checks)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    w = load_weights(os.path.join(args.bundle, "localize.onnx"))
    with open(os.path.join(args.bundle, "manifest.toml"), "rb") as f:
        m = tomllib.load(f)
    h, wd = m["input"]["height"], m["input"]["width"]
    net = Localize(w, m["localize"]["blur_sigma"]).eval()
    img = torch.from_numpy((np.arange(3 * h * wd, dtype=np.float32) % 251 / 251).reshape(1, 3, h, wd))
    times = []
    with torch.no_grad():
        if args.dump:
            np.save(args.dump, net(img)[0].numpy())
        for _ in range(3):
            net(img)
        for _ in range(args.iterations):
            t0 = time.perf_counter()
            net(img)
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    res = {
        "threads": args.threads, "height": h, "width": wd, "torch": torch.__version__,
        "localize": {"min_ms": times[0], "median_ms": float(np.median(times)),
                     "p99_ms": times[min(len(times) - 1, int(np.ceil(0.99 * len(times))) - 1)]},
    }
    if args.json:
        json.dump(res, sys.stdout)
        print()
    else:
        l = res["localize"]
        print(f"torch {res['torch']} localize {wd}x{h}, {args.threads} threads: "
              f"min {l['min_ms']:.2f} ms, median {l['median_ms']:.2f} ms, p99 {l['p99_ms']:.2f} ms")


if __name__ == "__main__":
    main()
