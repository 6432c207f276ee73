#!/usr/bin/python3
"""Independent PyTorch reference for the alignment stage.

Usage: align_reference.py ALIGN_ONNX IMAGE_NPY TEMPLATE_NPY TRANSFORM_NPY OUT_DIR C,H,W

IMAGE_NPY and TEMPLATE_NPY hold C*H*W float32 values (any shape).

Rebuilds, in plain PyTorch (float64), the IMM regressor stored in
ALIGN_ONNX (netdef.AlignGraph: N_P = 4x conv3x3/2 + ReLU shared by image and
template, N_R = concat, 2x conv3x3/2 + ReLU, global average pool, Linear,
ReLU, Linear) from its initializers, and warps the image with the paper's
spatial transformer, F.affine_grid + F.grid_sample (align_corners=False),
for a given transform (tx, ty, theta) with the matrix

    [ cos   -sin*H/W  tx ]
    [ sin*W/H  cos    ty ]

(preprocess.AffineMatrix). Writes to OUT_DIR:
  transform.npy  [1,3]      the regressor's output on (IMAGE, TEMPLATE)
  warped.npy     [1,C,H,W]  IMAGE sampled through TRANSFORM_NPY ([3]),
                            bilinear, padding "border"
Needs Debian's python3-torch and python3-onnx.
"""
import math
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def main():
    model_path, image_path, template_path, transform_path, out = sys.argv[1:6]
    shape = (1,) + tuple(int(v) for v in sys.argv[6].split(","))
    w = {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float64))
         for t in onnx.load(model_path).graph.initializer}
    img = torch.from_numpy(np.load(image_path).astype(np.float64).reshape(shape))
    tpl = torch.from_numpy(np.load(template_path).astype(np.float64).reshape(shape))

    def features(x):
        for i in range(4):
            x = F.relu(F.conv2d(x, w["features.%d.weight" % i], w["features.%d.bias" % i], stride=2, padding=1))
        return x

    with torch.no_grad():
        x = torch.cat([features(img), features(tpl)], 1)
        for i in range(2):
            x = F.relu(F.conv2d(x, w["regress.%d.weight" % i], w["regress.%d.bias" % i], stride=2, padding=1))
        x = x.mean(dim=(2, 3))
        x = F.relu(F.linear(x, w["hidden.weight"], w["hidden.bias"]))
        transform = F.linear(x, w["out.weight"], w["out.bias"])

        tx, ty, th = [float(v) for v in np.load(transform_path).reshape(3)]
        _, _, H, W = img.shape
        A = torch.tensor([[[math.cos(th), -math.sin(th) * H / W, tx],
                           [math.sin(th) * W / H, math.cos(th), ty]]], dtype=torch.float64)
        grid = F.affine_grid(A, list(img.shape), align_corners=False)
        warped = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)

    np.save(os.path.join(out, "transform.npy"), transform.numpy().astype(np.float32))
    np.save(os.path.join(out, "warped.npy"), warped.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
