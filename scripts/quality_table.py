#!/usr/bin/python3
"""Prints make quality's table (Markdown) from RESULTS/<root>/<category>/.

usage: quality_table.py RESULTS root/category...

inspectd's row comes from eval.json (inspectd eval --json), bench.json
(inspectd bench --json) and inspectd.json (training seconds, bundle MB); a
second row from peer-metrics.json (scripts/peer_metrics.py: the same heatmaps
scored by the peers' metric code, which the peers' rows use); each peer's
from <peer>.json (../shared/peers/peers.py).
"""
import json
import math
import os
import statistics
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def fmt(v, digits=3):
    return "–" if v is None else f"{v:.{digits}f}"


def stage_ms(bench, name):
    return (bench.get("stages") or {}).get(name, {}).get("median_ms")


def inspectd_row(d, cat):
    ev, meta, bench = load(f"{d}/eval.json"), load(f"{d}/inspectd.json"), load(f"{d}/bench.json")
    if not ev or not meta:
        return None
    c = ev["categories"][cat]
    good = c.get("per_defect", {}).get("good", {})
    recall = c.get("recall_at_threshold")
    row = {
        "method": "inspectd",
        "img": c.get("image_auroc"), "px": c.get("pixel_auroc"), "ap": c.get("pixel_ap"), "pro": c.get("aupro"),
        "f1": c.get("f1_at_threshold"), "frr": good.get("detection_rate"),
        "escape": None if recall is None else 1 - recall,
        "train_s": meta["train_s"], "mb": meta["bundle_mb"], "ms": None, "ratio": None,
    }
    if bench:
        loc, bb = stage_ms(bench, "localize"), stage_ms(bench, "backbone")
        al = stage_ms(bench, "align") or 0
        row["ms"] = None if loc is None else loc + al
        row["ratio"] = None if loc is None or not bb else loc / bb
    return row


def peer_code_row(d):
    m = load(f"{d}/peer-metrics.json")
    if not m:
        return None
    return {
        "method": "inspectd, scored by the peers' code",
        "img": m.get("image_auroc"), "px": m.get("pixel_auroc"), "ap": m.get("pixel_ap"), "pro": m.get("aupro_0.3"),
        "f1": None, "frr": None, "escape": None, "train_s": None, "mb": None, "ms": None, "ratio": None,
    }


def peer_row(d, peer):
    r = load(f"{d}/{peer}.json")
    if not r:
        return None
    m, t = r["metrics"], r["timing"]
    method = {"paper": "paper ALM, no IMM"}.get(peer, peer)
    ratio = (r.get("config") or {}).get("coreset_ratio")
    if peer == "patchcore" and ratio not in (None, 0.1):
        method += f" ({ratio:.0%} coreset)"  # the peer's default is 10 %
    return {
        "method": method,
        "img": m.get("image_auroc"), "px": m.get("pixel_auroc"), "ap": m.get("pixel_ap"), "pro": m.get("aupro_0.3"),
        "f1": None, "frr": None, "escape": None,
        "train_s": t.get("train_s"), "mb": None, "ms": t.get("latency_ms_median"), "ratio": None,
    }


def pixel_affine(tx, ty, deg, w, h):
    """preprocess.PixelAffine: template-frame pixel -> image pixel."""
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    dx, dy = tx * w / 2, ty * h / 2
    return [[c, -s, cx - c * cx + s * cy + dx], [s, c, cy - s * cx - c * cy + dy]]


def apply(m, x, y):
    return m[0][0] * x + m[0][1] * y + m[0][2], m[1][0] * x + m[1][1] * y + m[1][2]


def corner_error(got, want, w, h):
    """Mean displacement, in pixels, of a w×h template's four corners
    between two template-pixel -> image-pixel maps (callables of x, y)."""
    e = 0
    for cx, cy in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
        gx, gy = got(cx, cy)
        wx, wy = want(cx, cy)
        e += math.hypot(gx - wx, gy - wy) / 4
    return e


def alignment_consistency(results, data, s, cat):
    """Placement invariance of the alignment, where the truth is known.

    An RTO image J is the original I moved by the recorded matrix M (source
    pixel -> destination pixel). If a bundle aligns I with P_o (template
    pixel -> image pixel), the right alignment of J is M∘P_o. Returns, for
    the bundle trained on the original set, the per-image mean displacement
    of the four template corners between its alignment of J and M∘P_o, in
    image pixels.
    """
    root = s.split("/")[0]
    orig = load(os.path.join(results, root[:-4], cat, "eval.json"))
    rto = load(os.path.join(results, root, cat, "eval-original-bundle.json"))
    if not orig or not rto:
        return None
    by_path = {x["path"]: x["align"] for x in orig["categories"][cat]["image_scores"]}
    errs = []
    for x in rto["categories"][cat]["image_scores"]:
        rec = load(os.path.join(data, root, cat, os.path.splitext(x["path"])[0] + ".rto.json"))
        if rec is None or x["path"] not in by_path:
            continue
        w, h, m = rec["width"], rec["height"], rec["matrix"]
        po, pr = pixel_affine(*by_path[x["path"]], w, h), pixel_affine(*x["align"], w, h)
        errs.append(corner_error(lambda cx, cy: apply(pr, cx, cy), lambda cx, cy: apply(m, *apply(po, cx, cy)), w, h))
    return errs


def main():
    results, sets = sys.argv[1], sys.argv[2:]
    print("| set | method | image AUROC | pixel AUROC | pixel AP | AUPRO | F1 @thr | FRR @thr | escape @thr "
          "| latency ms | localise/backbone | training s | bundle MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in sets:
        root, cat = s.split("/", 1)
        d = os.path.join(results, root, cat)
        rows = [inspectd_row(d, cat), peer_code_row(d)] + [peer_row(d, p) for p in ("patchcore", "padim", "paper")]
        for r in rows:
            if r is None:
                continue
            print(f"| {s} | {r['method']} | {fmt(r['img'])} | {fmt(r['px'])} | {fmt(r['ap'])} | {fmt(r['pro'])} "
                  f"| {fmt(r['f1'], 2)} | {fmt(r['frr'], 2)} | {fmt(r['escape'], 2)} | {fmt(r['ms'], 1)} "
                  f"| {fmt(r['ratio'], 2)} | {fmt(r['train_s'], 0)} | {fmt(r['mb'], 0)} |")
    data = os.path.join(os.path.dirname(os.path.normpath(results)), "data")
    rows = []
    for s in sets:
        root, cat = s.split("/", 1)
        if not root.endswith("-rto"):
            continue
        errs = alignment_consistency(results, data, s, cat)
        if errs:
            errs.sort()
            p90 = errs[min(len(errs) - 1, int(0.9 * len(errs)))]
            big = sum(e > 25 for e in errs) / len(errs)
            ev = load(os.path.join(results, root, cat, "eval-original-bundle.json"))["categories"][cat]
            rows.append(f"| {s} | {len(errs)} | {statistics.median(errs):.1f} | {p90:.1f} | {100 * big:.0f} % "
                         f"| {fmt(ev.get('image_auroc'))} / {fmt(ev.get('pixel_auroc'))} / {fmt(ev.get('pixel_ap'))} / {fmt(ev.get('aupro'))} |")
    if rows:
        print()
        print("Alignment of the bundle trained on the original set, on the RTO copy's test images, against the")
        print("truth (its alignment of the original image moved by the recorded rotation and shift); mean")
        print("displacement of the template's corners, image pixels:")
        print()
        print("| set | test images | median px | 90th percentile px | > 25 px | that bundle on the copy: image AUROC / pixel AUROC / AP / AUPRO |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
