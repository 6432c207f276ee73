#!/usr/bin/python3
"""Write a torchvision-layout resnet18 state_dict whose BatchNorm-folded values
equal the folded .npy weights in NPY_DIR.

Usage: make_pth.py NPY_DIR OUT.pth [BROKEN.pth]

Every conv gets non-trivial BN parameters (gamma, beta, running mean and var,
seeded), and its weight is "unfolded" so that folding gives back the .npy values:
  scale = gamma / sqrt(var + eps);  w = w' / scale;  beta = b' + mean * scale.
Junk layer4.*, fc.* and num_batches_tracked entries are added, as in a real
torchvision checkpoint. If BROKEN.pth is given, a copy without
"conv1.weight" and "layer2.0.bn1.running_var" is written there too. Arithmetic is done in float64 and stored as float32.
"""
import collections
import os
import sys

import numpy as np
import torch

EPS = 1e-5


def convs():
    out = [("conv1", "bn1")]
    for layer in (1, 2, 3):
        for block in (0, 1):
            p = "layer%d.%d." % (layer, block)
            out += [(p + "conv1", p + "bn1"), (p + "conv2", p + "bn2")]
            if block == 0 and layer > 1:
                out.append((p + "downsample.0", p + "downsample.1"))
    return out


def main(npy_dir, out_path, broken_path=None):
    rng = np.random.default_rng(1234)
    sd = collections.OrderedDict()
    for conv, bn in convs():
        w = np.load(os.path.join(npy_dir, conv + ".weight.npy")).astype(np.float64)
        b = np.load(os.path.join(npy_dir, conv + ".bias.npy")).astype(np.float64)
        n = w.shape[0]
        gamma = rng.uniform(0.5, 1.5, n)
        var = rng.uniform(0.5, 2.0, n)
        mean = rng.normal(0.0, 0.2, n)
        scale = gamma / np.sqrt(var + EPS)
        sd[conv + ".weight"] = torch.from_numpy((w / scale[:, None, None, None]).astype(np.float32))
        sd[bn + ".weight"] = torch.from_numpy(gamma.astype(np.float32))
        sd[bn + ".bias"] = torch.from_numpy((b + mean * scale).astype(np.float32))
        sd[bn + ".running_mean"] = torch.from_numpy(mean.astype(np.float32))
        sd[bn + ".running_var"] = torch.from_numpy(var.astype(np.float32))
        sd[bn + ".num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    # Junk that a full resnet18 state_dict has and the loader must ignore.
    sd["layer4.0.conv1.weight"] = torch.zeros(512, 256, 3, 3)
    sd["layer4.0.bn1.running_var"] = torch.ones(512)
    sd["fc.weight"] = torch.zeros(1000, 512)
    sd["fc.bias"] = torch.zeros(1000)
    torch.save(sd, out_path)
    if broken_path:
        del sd["conv1.weight"]
        del sd["layer2.0.bn1.running_var"]
        torch.save(sd, broken_path)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: make_pth.py NPY_DIR OUT.pth [BROKEN.pth]")
    main(*sys.argv[1:])
