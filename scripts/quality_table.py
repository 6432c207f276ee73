#!/usr/bin/python3
"""Prints make quality's table (Markdown) from RESULTS/<root>/<category>/.

usage: quality_table.py RESULTS root/category...

inspectd's row comes from eval.json (inspectd eval --json), bench.json
(inspectd bench --json) and inspectd.json (training seconds, bundle MB);
each peer's from <peer>.json (../shared/peers/peers.py).
"""
import json
import os
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


def peer_row(d, peer):
    r = load(f"{d}/{peer}.json")
    if not r:
        return None
    m, t = r["metrics"], r["timing"]
    return {
        "method": {"paper": "paper ALM, no IMM"}.get(peer, peer),
        "img": m.get("image_auroc"), "px": m.get("pixel_auroc"), "ap": m.get("pixel_ap"), "pro": m.get("aupro_0.3"),
        "f1": None, "frr": None, "escape": None,
        "train_s": t.get("train_s"), "mb": None, "ms": t.get("latency_ms_median"), "ratio": None,
    }


def main():
    results, sets = sys.argv[1], sys.argv[2:]
    print("| set | method | image AUROC | pixel AUROC | pixel AP | AUPRO | F1 @thr | FRR @thr | escape @thr "
          "| latency ms | localise/backbone | training s | bundle MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in sets:
        root, cat = s.split("/", 1)
        d = os.path.join(results, root, cat)
        rows = [inspectd_row(d, cat)] + [peer_row(d, p) for p in ("patchcore", "padim", "paper")]
        for r in rows:
            if r is None:
                continue
            print(f"| {s} | {r['method']} | {fmt(r['img'])} | {fmt(r['px'])} | {fmt(r['ap'])} | {fmt(r['pro'])} "
                  f"| {fmt(r['f1'], 2)} | {fmt(r['frr'], 2)} | {fmt(r['escape'], 2)} | {fmt(r['ms'], 1)} "
                  f"| {fmt(r['ratio'], 2)} | {fmt(r['train_s'], 0)} | {fmt(r['mb'], 0)} |")


if __name__ == "__main__":
    main()
