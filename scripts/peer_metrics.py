#!/usr/bin/env python3
"""Score saved heatmaps with the peers' metric code, so that inspectd and the
peers are compared by one protocol.

    inspectd eval --bundle B --data ROOT --categories C --save-maps MAPS
    scripts/peer_metrics.py --data ROOT --category C MAPS/C_maps.npz [peers_dir/C/patchcore_maps.npz ...]

Each archive holds maps [N,H,W], scores [N], labels [N] and paths [N] relative
to ROOT (the layout of `peers.py --save-maps`, which `inspectd eval
--save-maps` writes too). Ground-truth masks are loaded and resampled by
peers.py itself (nearest neighbour at the maps' size), and image AUROC, pixel
AUROC, pixel AP and AUPRO come from its compute_metrics: one line of JSON per
archive. The peers live in ../shared/peers unless --peers or $INSPECTD_PEERS
says otherwise.
"""
import argparse
import json
import os
import sys


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', required=True, help='dataset root (MVTec layout)')
    ap.add_argument('--category', required=True)
    ap.add_argument('--peers', default=os.environ.get('INSPECTD_PEERS', os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'peers')),
                    help='directory holding peers.py')
    ap.add_argument('archives', nargs='+', help='.npz files of saved maps')
    args = ap.parse_args(argv)
    if not os.path.isfile(os.path.join(args.peers, 'peers.py')):
        ap.error(f'no peers.py in {args.peers} (set --peers or $INSPECTD_PEERS)')
    sys.path.insert(0, os.path.abspath(args.peers))
    import numpy as np
    import peers as P

    _, items, has_masks = P.list_category(args.data, args.category)
    by_path = {os.path.relpath(it['path'], args.data): it for it in items}
    for path in args.archives:
        z = np.load(path)
        maps, scores, labels = z['maps'].astype(np.float32), z['scores'], z['labels']
        rel = [str(p) for p in z['paths']]
        missing = [p for p in rel if p not in by_path]
        if missing:
            sys.exit(f'{path}: {len(missing)} images are not test images of {args.category} under {args.data} (first: {missing[0]})')
        if len(set(rel)) != len(items):
            sys.exit(f'{path}: {len(set(rel))} distinct images, the category has {len(items)} test images')
        for k, p in enumerate(rel):
            if int(labels[k]) != by_path[p]['label']:
                sys.exit(f'{path}: {p} is labelled {int(labels[k])}, the dataset says {by_path[p]["label"]}')
        masks = None
        if has_masks:
            size = maps.shape[-1]
            if maps.shape[-2] != size:
                sys.exit(f'{path}: maps are {maps.shape[-1]}x{maps.shape[-2]}; the peers resample masks to square maps only')
            masks = np.stack([P.load_mask(by_path[p]['mask'], size) for p in rel])
        m = P.compute_metrics(labels.tolist(), scores.tolist(), masks, maps if has_masks else None)
        print(json.dumps({'archive': path, 'images': len(rel), **{k: (round(v, 4) if v is not None else None) for k, v in m.items()}}))


if __name__ == '__main__':
    main()
