# Sourced by scripts/soak.sh and scripts/soak_reload.sh: installs what is
# missing, builds the edge binary into $BIN and prepares, once, what both
# soaks replay in .soak/: a looped 640×480 image replay and a random-weight
# 256×256 bundle of the training default's architecture.
bash scripts/deps.sh
go build -o "$BIN" ./cmd/inspectd
mkdir -p "$DIR"
if [ ! -d "$DIR/replay" ]; then
  rm -rf "$DIR/.replay.partial"
  mkdir -p "$DIR/.replay.partial"
  gst-launch-1.0 -q videotestsrc num-buffers=30 pattern=ball ! video/x-raw,width=640,height=480 \
    ! videoconvert ! pngenc ! multifilesink location="$DIR/.replay.partial/frame%03d.png"
  mv "$DIR/.replay.partial" "$DIR/replay"
fi
if [ ! -f "$DIR/bundle/manifest.toml" ]; then
  "$BIN" bench --save-bundle "$DIR/bundle" --iterations 1 >/dev/null
fi
