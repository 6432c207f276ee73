#!/usr/bin/env bash
# make quality: trains inspectd's default recipe on each shared set (and on
# RTO copies: every image rotated ±30° and shifted ±10 %), evaluates it,
# times its stages, runs the PyTorch peers (PatchCore, PaDiM, the paper's
# ALM without alignment) on the same data, and prints one table side by
# side. Results are kept under $QUALITY_OUT (default .quality): a second
# run reuses what exists (delete a set's folder to redo it). Hours on 2
# cores; never run it beside another heavy job.
#
#   QUALITY_SETS    space-separated root/category (default: below)
#   QUALITY_PEERS   peers to run (default "patchcore padim paper"; "" for none)
#   QUALITY_RECIPE  recipe file (default: the built-in defaults)
#   QUALITY_STRETCH categories whose good images vary in size, trained with
#                   input.mixed_sizes = "stretch" added to the recipe
#                   (default "magnetic_tile": pre-cropped tiles)
#   INSPECTD_SHARED the shared assets folder (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${QUALITY_OUT:-.quality}
shared=${INSPECTD_SHARED:-../shared}
sets=${QUALITY_SETS:-"mvtec/bottle mpdd/metal_plate mvtec-rto/bottle mpdd-rto/metal_plate"}
peers=${QUALITY_PEERS-"patchcore padim paper"}
recipe=${QUALITY_RECIPE:-}
stretch=${QUALITY_STRETCH-magnetic_tile}
[ -d "$shared/datasets" ] || { echo "quality: $shared/datasets not found; set INSPECTD_SHARED" >&2; exit 1; }
[ -z "$recipe" ] || [ -f "$recipe" ] || { echo "quality: QUALITY_RECIPE=$recipe is not a file" >&2; exit 1; }
if [ -e "$out" ] && [ ! -f "$out/.inspectd-quality" ]; then
	echo "quality: $out exists and was not made by make quality; move it away or set QUALITY_OUT" >&2
	exit 1
fi
mkdir -p "$out"
touch "$out/.inspectd-quality"

bash scripts/deps.sh >/dev/null
if [ -n "$peers" ] && ! /usr/bin/python3 -c 'import torch, numpy, PIL, scipy, sklearn' 2>/dev/null; then
	echo "quality: installing the peers' Python packages (Debian)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch python3-numpy python3-pil python3-scipy python3-sklearn >/dev/null
fi
make -s build build-workstation
export INSPECTD_ONNXRUNTIME_LIB=${INSPECTD_ONNXRUNTIME_LIB:-$PWD/.deps/onnxruntime/linux-x64/libonnxruntime.so.1}
ws=$PWD/bin/inspectd-workstation
edge=$PWD/bin/inspectd

# root_dir ROOT: the dataset root for a set name; the -rto roots are made
# here from the shared ones (seed 1, ±30°, ±10 %).
root_dir() {
	case $1 in
	*-rto)
		local src=$shared/datasets/${1%-rto} dst=$out/data/$1
		if [ ! -d "$dst" ]; then
			echo "quality: making the RTO copy $dst" >&2
			mkdir -p "$out/data"
			"$ws" dataset rto --src "$src" --dst "$dst" --max-rotation 30 --max-shift 0.1 --seed 1 >&2
		fi
		echo "$dst"
		;;
	*) echo "$shared/datasets/$1" ;;
	esac
}

for set in $sets; do
	name=${set%/*} cat=${set#*/}
	root=$(root_dir "$name")
	dir=$out/results/$name/$cat
	mkdir -p "$dir"
	if [ ! -f "$dir/inspectd.json" ]; then
		echo "quality: inspectd on $set (training, then evaluation)" >&2
		rm -rf "$dir/bundle" "$dir/maps"
		setrecipe=$recipe
		if [[ " $stretch " == *" $cat "* ]]; then
			# The same recipe with input.mixed_sizes = "stretch".
			setrecipe=$dir/recipe.toml
			{ if [ -n "$recipe" ]; then cat "$recipe"; else echo "recipe_version = 1"; fi; } |
				/usr/bin/python3 -c 'import sys,re; s=sys.stdin.read(); print(re.sub(r"(?m)^\[input\]\s*$", "[input]\nmixed_sizes = \"stretch\"", s) if re.search(r"(?m)^\[input\]\s*$", s) else s.rstrip()+"\n\n[input]\nmixed_sizes = \"stretch\"")' >"$setrecipe"
		fi
		start=$(date +%s)
		"$ws" train --good "$root/$cat/train/good" --backbone "$shared/backbones/resnet18" --out "$dir/bundle" ${setrecipe:+--recipe "$setrecipe"} >"$dir/train.log" 2>&1 ||
			{ tail -5 "$dir/train.log" >&2; exit 1; }
		end=$(date +%s)
		"$ws" eval --bundle "$dir/bundle" --data "$root" --categories "$cat" --quiet --json "$dir/eval.json" --report "$dir/report" \
			--save-maps "$dir/maps" >"$dir/eval.log" 2>&1 ||
			{ tail -5 "$dir/eval.log" >&2; exit 1; }
		# The same heatmaps scored by the peers' own metric code (their mask
		# resampling included): the row to compare with theirs.
		/usr/bin/python3 scripts/peer_metrics.py --data "$root" --category "$cat" --peers "$shared/peers" "$dir/maps/${cat}_maps.npz" \
			>"$dir/peer-metrics.json" 2>"$dir/peer-metrics.log" || { tail -5 "$dir/peer-metrics.log" >&2; exit 1; }
		"$edge" bench --bundle "$dir/bundle" --iterations 100 --json >"$dir/bench.json" 2>"$dir/bench.log" ||
			{ tail -5 "$dir/bench.log" >&2; exit 1; }
		/usr/bin/python3 - "$dir" "$((end - start))" "$(du -sm "$dir/bundle" | cut -f1)" <<'EOF'
import json, sys
d, secs, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
json.dump({"train_s": secs, "bundle_mb": mb}, open(d + "/inspectd.json", "w"))
EOF
	fi
	# The bundle of the original set on its RTO copy: the same parts moved
	# (±30°, ±10 %); the table compares its alignments with the truth.
	if [ "${name%-rto}" != "$name" ] && [ -d "$out/results/${name%-rto}/$cat/bundle" ] && [ ! -f "$dir/eval-original-bundle.json" ]; then
		"$ws" eval --bundle "$out/results/${name%-rto}/$cat/bundle" --data "$root" --categories "$cat" --quiet \
			--json "$dir/eval-original-bundle.json" >"$dir/eval-original-bundle.log" 2>&1 || { tail -5 "$dir/eval-original-bundle.log" >&2; exit 1; }
	fi
	for p in $peers; do
		if [ ! -f "$dir/$p.json" ]; then
			echo "quality: peer $p on $set" >&2
			/usr/bin/python3 "$shared/peers/peers.py" "$p" --root "$root" --category "$cat" --weights "$shared/backbones/resnet18" \
				--out "$out/peers" --threads 2 >"$dir/$p.log" 2>&1 || { tail -5 "$dir/$p.log" >&2; exit 1; }
			cp "$out/peers/$(basename "$root")/$cat/$p.json" "$dir/$p.json"
		fi
	done
done

/usr/bin/python3 scripts/quality_table.py "$out/results" $sets | tee "$out/quality.md"
