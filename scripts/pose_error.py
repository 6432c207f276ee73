#!/usr/bin/python3
"""Alignment error of a bundle on a synthetic set whose poses are known.

usage: pose_error.py EVAL_JSON BUNDLE CATEGORY_DIR

EVAL_JSON is `inspectd eval --json` of BUNDLE on a set drawn by
`inspectd dataset synth`; CATEGORY_DIR that category's folder (with
train/good and test/...), where every image has <name>.pose.json (the matrix
that placed the canonical part: canonical pixel -> image pixel). The bundle's
template is the training image its manifest names (align.template_source).
For every test image the right alignment (template pixel -> image pixel) is M_image . M_template^-1; the
error is the mean displacement of the four template corners between it and
the bundle's alignment, in image pixels. Prints the count, median, 90th
percentile and mean.
"""
import json
import os
import statistics
import sys
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quality_table import apply, corner_error, pixel_affine  # noqa: E402


def invert(m):
    a, b, c = m[0]
    d, e, f = m[1]
    det = a * e - b * d
    return [[e / det, -b / det, (b * f - c * e) / det], [-d / det, a / det, (c * d - a * f) / det]]


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    report, bundle, catdir = sys.argv[1:4]
    with open(report) as f:
        ev = json.load(f)
    with open(os.path.join(bundle, "manifest.toml"), "rb") as f:
        align = tomllib.load(f).get("align", {})
    source = align.get("template_source")
    if align.get("method") != "imm" or not source:
        sys.exit(f"pose_error: {bundle} does not align (align.method {align.get('method')!r})")
    cats = ev["categories"]
    cat = os.path.basename(os.path.normpath(catdir))
    if cat not in cats:
        sys.exit(f"pose_error: {report} has no category {cat!r} (it has {', '.join(cats)})")
    with open(os.path.join(catdir, "train", "good", os.path.splitext(source)[0] + ".pose.json")) as f:
        tpl = invert(json.load(f)["matrix"])
    errs = []
    for x in cats[cat]["image_scores"]:
        path = os.path.join(catdir, os.path.splitext(x["path"])[0] + ".pose.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            p = json.load(f)
        w, h = p["width"], p["height"]
        got = pixel_affine(*x["align"], w, h)
        errs.append(corner_error(lambda cx, cy: apply(got, cx, cy), lambda cx, cy: apply(p["matrix"], *apply(tpl, cx, cy)), w, h))
    if not errs:
        sys.exit(f"pose_error: no test image of {catdir} has a .pose.json")
    errs.sort()
    print(f"{len(errs)} images: median {statistics.median(errs):.2f} px, "
          f"90th percentile {errs[min(len(errs) - 1, int(0.9 * len(errs)))]:.2f} px, mean {statistics.mean(errs):.2f} px")


if __name__ == "__main__":
    main()
