#!/usr/bin/env bash
# make ablations: the paper's ablations (its Tables 1–2) and the local
# memory, each a recipe switch, trained and evaluated on one set:
# global vs local centre, DGM on/off, IMM on/off, centres vs memory, and
# the memory's features (PCA or not, layers, averaging), size (shared
# entries, entries per cell) and precision. Results
# are kept under $QUALITY_OUT/ablations (default .quality); a second run
# reuses what exists. About 30 minutes on 2 cores for metal_plate.
#
#   ABLATION_SET     root/category under $INSPECTD_SHARED/datasets (default mpdd/metal_plate)
#   ABLATION_ONLY    space-separated variant numbers to run (default: all)
#   INSPECTD_SHARED  the shared assets folder (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${QUALITY_OUT:-.quality}
shared=${INSPECTD_SHARED:-../shared}
set_=${ABLATION_SET:-mpdd/metal_plate}
root=$shared/datasets/${set_%/*} cat=${set_#*/}
[ -d "$root/$cat/train/good" ] || { echo "ablations: $root/$cat/train/good not found; set INSPECTD_SHARED or ABLATION_SET" >&2; exit 1; }
if [ -e "$out" ] && [ ! -f "$out/.inspectd-quality" ]; then
	echo "ablations: $out exists and was not made by make quality/ablations; move it away or set QUALITY_OUT" >&2
	exit 1
fi
mkdir -p "$out/ablations/$cat"
touch "$out/.inspectd-quality"
bash scripts/deps.sh >/dev/null
make -s build-workstation
export INSPECTD_ONNXRUNTIME_LIB=${INSPECTD_ONNXRUNTIME_LIB:-$PWD/.deps/onnxruntime/linux-x64/libonnxruntime.so.1}
ws=$PWD/bin/inspectd-workstation

# name|recipe lines after recipe_version (\n-separated)
variants=(
	"memory, IMM on (default)|"
	"memory, IMM off|[align]\nmethod = \"none\""
	"centres local + DGM, IMM on|[alm]\nmethod = \"centres\""
	"centres local + DGM, IMM off|[align]\nmethod = \"none\"\n[alm]\nmethod = \"centres\""
	"centres global + DGM, IMM off|[align]\nmethod = \"none\"\n[alm]\nmethod = \"centres\"\ncentre = \"global\""
	"centres local, no DGM, IMM off|[align]\nmethod = \"none\"\n[alm]\nmethod = \"centres\"\n[dgm]\nenabled = false"
	"memory, PCA to 64, IMM off|[align]\nmethod = \"none\"\n[memory]\nd = 64"
	"memory, shared entries in float32, IMM off|[align]\nmethod = \"none\"\n[memory]\nglobal_precision = \"float32\""
	"memory, 4096 shared entries, IMM off|[align]\nmethod = \"none\"\n[memory]\nglobal_entries = 4096"
	"memory, 8192 shared entries, IMM off|[align]\nmethod = \"none\"\n[memory]\nglobal_entries = 8192"
	"memory, + 16 entries per cell, IMM off|[align]\nmethod = \"none\"\n[memory]\nentries = 16"
	"memory, averaged on the grid, IMM off|[align]\nmethod = \"none\"\n[memory]\naverage = \"grid\""
	"memory, layers 1–3 on the grid, 16 per cell + 256 float32 shared (previous default), IMM off|[align]\nmethod = \"none\"\n[memory]\nlayers = [1, 2, 3]\naverage = \"grid\"\nentries = 16\nglobal_entries = 256\nglobal_precision = \"float32\""
	"memory, layers 1–3 on the grid, 32 per cell, none shared (the one before), IMM off|[align]\nmethod = \"none\"\n[memory]\nlayers = [1, 2, 3]\naverage = \"grid\"\nentries = 32\nglobal_entries = 0"
)
only=${ABLATION_ONLY:-$(seq -s ' ' 1 ${#variants[@]})}
i=0
for v in "${variants[@]}"; do
	i=$((i + 1))
	case " $only " in *" $i "*) ;; *) continue ;; esac
	name=${v%%|*} body=${v#*|}
	dir=$out/ablations/$cat/$i
	if [ ! -f "$dir/eval.json" ]; then
		echo "ablations: $name" >&2
		rm -rf "$dir"
		mkdir -p "$dir"
		printf 'recipe_version = 1\nproduct = "%s"\n%b\n' "$cat" "$body" >"$dir/recipe.toml"
		start=$(date +%s)
		"$ws" train --good "$root/$cat/train/good" --backbone "$shared/backbones/resnet18" --recipe "$dir/recipe.toml" --out "$dir/bundle" >"$dir/train.log" 2>&1 ||
			{ tail -5 "$dir/train.log" >&2; exit 1; }
		echo $(($(date +%s) - start)) >"$dir/train_s"
		"$ws" eval --bundle "$dir/bundle" --data "$root" --categories "$cat" --quiet --json "$dir/eval.json.tmp" >"$dir/eval.log" 2>&1 ||
			{ tail -5 "$dir/eval.log" >&2; exit 1; }
		mv "$dir/eval.json.tmp" "$dir/eval.json"
	fi
	echo "$name" >"$dir/name"
done

/usr/bin/python3 - "$out/ablations/$cat" "$cat" $only <<'EOF' | tee "$out/ablations/$cat/ablations.md"
import json, sys
d, cat, runs = sys.argv[1], sys.argv[2], [int(a) for a in sys.argv[3:]]
f = lambda v: "–" if v is None else f"{v:.3f}"
print(f"| {cat}: variant | image AUROC | pixel AUROC | pixel AP | AUPRO | training s |")
print("|---|---|---|---|---|---|")
for i in runs:
    c = json.load(open(f"{d}/{i}/eval.json"))["categories"][cat]
    name = open(f"{d}/{i}/name").read().strip()
    secs = open(f"{d}/{i}/train_s").read().strip()
    print(f"| {name} | {f(c.get('image_auroc'))} | {f(c.get('pixel_auroc'))} | {f(c.get('pixel_ap'))} | {f(c.get('aupro'))} | {secs} |")
EOF
