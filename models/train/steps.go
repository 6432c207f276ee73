//go:build workstation

package train

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/inspectd/inspectd/infer/backend"
	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/ecc"
	"github.com/inspectd/inspectd/models/metrics"
	"github.com/inspectd/inspectd/models/preprocess"
)

// loadGoodImages decodes every image in dir, sorted by name. Unless
// stretch, images whose size differs from the majority's are refused.
func loadGoodImages(dir string, stretch bool) ([]goodImage, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("train: good images: %w", err)
	}
	var out []goodImage
	for _, e := range entries {
		if e.IsDir() || !dataset.IsImageFile(e.Name()) {
			continue
		}
		img, err := dataset.LoadImage(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		out = append(out, goodImage{name: e.Name(), img: img})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("train: %s holds no PNG, JPEG or BMP images", dir)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	if stretch {
		return out, nil
	}
	if err := checkSameSize(dir, out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkSameSize refuses good images whose size differs from the majority's
// (ties: the first image's). Every image is resized to the model input, so
// a thumbnail or a frame of another camera would be squashed without a word
// and would distort the features, the template and the calibrated
// threshold (measured: one 1×1 image raised it from 0.106 to 0.646).
// Refusing rather than skipping keeps the holdout split and the count in
// the manifest what the folder says.
func checkSameSize(dir string, images []goodImage) error {
	count := map[image.Point]int{}
	for _, g := range images {
		count[g.img.Bounds().Size()]++
	}
	want := images[0].img.Bounds().Size()
	for _, g := range images {
		if sz := g.img.Bounds().Size(); count[sz] > count[want] {
			want = sz
		}
	}
	var odd []string
	for _, g := range images {
		if sz := g.img.Bounds().Size(); sz != want {
			odd = append(odd, fmt.Sprintf("%s is %dx%d", g.name, sz.X, sz.Y))
		}
	}
	if len(odd) == 0 {
		return nil
	}
	const show = 5
	more := ""
	if len(odd) > show {
		more = fmt.Sprintf(" and %d more", len(odd)-show)
		odd = odd[:show]
	}
	return fmt.Errorf("train: %s: %d of %d good images differ in size from the others (%dx%d): %s%s; remove or crop them (a good image of another size would be squashed into the model input), or set input.mixed_sizes = \"stretch\" in the recipe if the parts come pre-cropped at varying sizes",
		dir, len(images)-count[want], len(images), want.X, want.Y, strings.Join(odd, ", "), more)
}

// loadBackbone reads a .npy directory or a torchvision .pth file.
func loadBackbone(path string) (*backbone.Weights, error) {
	if path == "" {
		p, err := backbone.Locate()
		if err != nil {
			return nil, fmt.Errorf("train: --backbone not given and %w", err)
		}
		path = p
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("train: backbone: %w", err)
	}
	if st.IsDir() {
		w, err := backbone.LoadNPYDir(path)
		if err != nil {
			return nil, fmt.Errorf("train: backbone: %w", err)
		}
		return w, nil
	}
	if err := checkPTH(path); err != nil {
		return nil, err
	}
	w, err := backbone.LoadTorchvisionPTH(path)
	if err != nil {
		return nil, fmt.Errorf("train: --backbone %s: not a usable torchvision resnet18 .pth: %w", path, err)
	}
	return w, nil
}

// checkPTH refuses a backbone file that is not what torch.save writes (a
// zip archive since PyTorch 1.6, a pickle before), naming what was
// expected, instead of the pickle reader's "the meta stack is empty".
func checkPTH(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("train: backbone: %w", err)
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if bytes.HasPrefix(head, []byte("PK\x03\x04")) || (n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) {
		return nil
	}
	return fmt.Errorf("train: --backbone %s is neither a directory of .npy files nor a torchvision resnet18 .pth (a torch.save zip or pickle file); "+
		"want the shared folder (e.g. ../shared/backbones/resnet18) or a file such as resnet18-f37072fd.pth", path)
}

// chooseTemplate returns the explicit template or, without one, the
// medoid of the training images: the one whose summed squared difference
// to all the others (inputs, at the regressor's resolution) is smallest —
// the most typical part, so that as few parts as possible differ from the
// template in appearance (an unusual template, a rusted plate say, sends
// parts that look different to odd poses).
func chooseTemplate(r *Recipe, trainSet []goodImage, inputs [][]float32) (image.Image, string, error) {
	if r.Align.Template != "" {
		for _, g := range trainSet {
			if g.name == r.Align.Template {
				return g.img, g.name, nil
			}
		}
		return nil, "", fmt.Errorf("train: align.template %q is not among the training images (it may be in the holdout; pick another or change the seed)", r.Align.Template)
	}
	g := trainSet[medoid(inputs)]
	return g.img, g.name, nil
}

// medoid returns the index of the vector with the smallest summed squared
// distance to all others: Σ_j ‖x_i − x_j‖² = N‖x_i‖² − 2·x_i·S + const,
// with S = Σ_j x_j. Ties go to the first.
func medoid(xs [][]float32) int {
	sum := make([]float64, len(xs[0]))
	for _, x := range xs {
		for k, v := range x {
			sum[k] += float64(v)
		}
	}
	best, bestCost := 0, math.Inf(1)
	n := float64(len(xs))
	for i, x := range xs {
		var sq, dot float64
		for k, v := range x {
			sq += float64(v) * float64(v)
			dot += float64(v) * sum[k]
		}
		if c := n*sq - 2*dot; c < bestCost {
			best, bestCost = i, c
		}
	}
	return best
}

// tensorPNG encodes a C×H×W [0,1] tensor as an 8-bit PNG.
func tensorPNG(t []float32, c, h, w int) ([]byte, error) {
	q := func(v float32) uint8 { return uint8(math.Round(float64(min(max(v, 0), 1)) * 255)) }
	var img image.Image
	if c == 1 {
		g := image.NewGray(image.Rect(0, 0, w, h))
		for i := range h * w {
			g.Pix[i] = q(t[i])
		}
		img = g
	} else {
		rgba := image.NewRGBA(image.Rect(0, 0, w, h))
		for i := range h * w {
			rgba.SetRGBA(i%w, i/w, color.RGBA{q(t[i]), q(t[h*w+i]), q(t[2*h*w+i]), 255})
		}
		img = rgba
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("train: encode template: %w", err)
	}
	return buf.Bytes(), nil
}

// calibrate sets the thresholds from good images' scores and heatmap
// values: threshold = min(1, squash(margin × quantile)). The values are in
// the localisation method's distance domain; squash maps them to the
// heatmap's (the identity for the centres; b/(b+s) for the local memory,
// so that the margin means the same multiple of a distance for both).
// source says which images the scores came from.
func calibrate(c RecipeCalibration, scores, pixels []float64, squash func(float64) float64, source string) bundle.Calibration {
	mapped := make([]float64, len(scores))
	for i, v := range scores {
		mapped[i] = squash(v)
	}
	img := math.Min(1, squash(c.ImageMargin*quantile(scores, c.ImageQuantile)))
	// The pixel threshold never exceeds the image threshold: the image
	// score is the heatmap's maximum, so every rejected part then shows at
	// least one defect region (measured without: metal_plate's pixel
	// threshold 0.588 above its image threshold 0.536, parts rejected with
	// nothing drawn).
	px := math.Min(img, squash(c.PixelMargin*quantile(pixels, c.PixelQuantile)))
	return bundle.Calibration{
		ImageThreshold: math.Max(img, 1e-6),
		PixelThreshold: math.Max(px, 1e-6),
		Rule: fmt.Sprintf("image: %g × the %g-quantile of the scores of %s; pixel: %g × the %g-quantile of their heatmap values, at most the image threshold",
			c.ImageMargin, c.ImageQuantile, source, c.PixelMargin, c.PixelQuantile),
		GoodScores: stats(mapped),
	}
}

// decisionGood is one calibration good image as the daemon's decision
// sees it, in the localisation method's distance domain: its image score
// and its region level, the pixel threshold at and above which the
// decision keeps no defect region on its heatmap (decision.Decider.Level
// at the calibrated-for min_defect_area; -Inf when none is ever kept).
type decisionGood struct {
	score, level float64
}

// calibrateForDecision raises cal's pixel threshold so that the daemon's
// decision — NG when the score exceeds the image threshold or a defect
// region of at least minDefectArea frame pixels lies above the pixel
// threshold — rejects no more calibration good images than the image
// threshold promises: at most n − ⌈q·n⌉ of the n goods, those its
// q-quantile leaves above itself, or the image threshold's own rejects
// when they are more (the good at the quantile itself, whose float32
// score may round above the threshold). The pixel threshold is at least
//
//   - the pixel-quantile rule of calibrate (the floor that draws regions),
//   - squash(image margin × the q-quantile of the goods' region levels):
//     the image threshold's own rule applied to the region rule, so that
//     the margin the image threshold keeps for parts unlike the
//     calibration goods holds for regions too,
//
// raised further, level by level, while the decision still rejects more
// goods than promised, and never above the image threshold (where a region
// implies a score above it, so the decision is the score's alone). With
// minDefectArea 0 (the daemon's default) a good's level is its score: the
// pixel threshold then equals the image threshold. The manifest records
// minDefectArea and the goods the decision rejects; Rule says so.
func calibrateForDecision(c RecipeCalibration, cal bundle.Calibration, goods []decisionGood, minDefectArea int, squash func(float64) float64) bundle.Calibration {
	n := len(goods)
	if n == 0 {
		return cal
	}
	img := cal.ImageThreshold
	// squashed maps a distance-domain value to the heatmap's, in float32
	// as the daemon's heatmap and score are; -Inf (no region at any
	// threshold) stays below every threshold.
	squashed := func(v float64) float64 {
		if math.IsInf(v, -1) {
			return v
		}
		return float64(float32(squash(v)))
	}
	levels := make([]float64, n)
	for i, g := range goods {
		levels[i] = g.level
	}
	px := cal.PixelThreshold
	if q := quantile(levels, c.ImageQuantile); !math.IsInf(q, -1) {
		px = math.Max(px, squash(c.ImageMargin*q)) // the image threshold's own rule
	}
	px = math.Min(px, img)
	rejects := func(px float64) (all, byRegion int) {
		for _, g := range goods {
			switch {
			case squashed(g.score) > img:
				all++
			case float64(float32(px)) < squashed(g.level): // decision.Decider.Level's rule
				all++
				byRegion++
			}
		}
		return all, byRegion
	}
	promise := n - int(math.Ceil(c.ImageQuantile*float64(n)))
	imageOnly := 0
	for _, g := range goods {
		if squashed(g.score) > img {
			imageOnly++
		}
	}
	budget := max(promise, imageOnly)
	all, byRegion := rejects(px)
	if all > budget {
		// The next levels above px, lowest first: each lifts the goods
		// whose region appears only below it.
		above := make([]float64, 0, n)
		for _, l := range levels {
			if v := squashed(l); v > px && v < img {
				above = append(above, v)
			}
		}
		sort.Float64s(above)
		for _, v := range above {
			if all, byRegion = rejects(v); all <= budget {
				px = v
				break
			}
		}
		if all > budget {
			px = img
			all, byRegion = rejects(px)
		}
	}
	cal.PixelThreshold = math.Max(px, 1e-6)
	cal.PixelMinDefectArea = minDefectArea
	cal.GoodRejects, cal.GoodRejectsByRegion = all, byRegion
	cal.Rule += fmt.Sprintf("; then raised to at least %g × the %g-quantile of the good images' region levels and until the daemon's decision "+
		"(score above the image threshold, or a region of at least decision.min_defect_area = %d frame pixels above the pixel threshold) "+
		"rejects at most the %d of %d good images the image quantile promises (the image threshold alone rejects %d): it rejects %d (%d by region alone)",
		c.ImageMargin, c.ImageQuantile, minDefectArea, promise, n, imageOnly, all, byRegion)
	return cal
}

func stats(v []float64) bundle.ScoreStats {
	s := bundle.ScoreStats{Count: len(v)}
	if len(v) == 0 {
		return s
	}
	s.Min, s.Max = math.Inf(1), math.Inf(-1)
	for _, x := range v {
		s.Min, s.Max = math.Min(s.Min, x), math.Max(s.Max, x)
		s.Mean += x
	}
	s.Mean /= float64(len(v))
	for _, x := range v {
		s.Std += (x - s.Mean) * (x - s.Mean)
	}
	s.Std = math.Sqrt(s.Std / float64(len(v)))
	s.P99 = quantile(v, 0.99)
	return s
}

// quantile is the nearest-rank q-quantile (q = 1 is the maximum).
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// alignImages runs the exported align graph on every image, as the
// daemon's engine does, into transforms, refining each transform against
// the template by the align.refine method named by refine, as the engine
// does. Like the engine it refuses a regressor output that is not a
// number.
func alignImages(be backend.Backend, graph []byte, tplTensor []float32, spec preprocess.Spec, refine string, images []goodImage, transforms map[string]preprocess.Transform) (err error) {
	sess, err := be.NewSession(graph, 1)
	if err != nil {
		return fmt.Errorf("train: align graph: %w", err)
	}
	defer func() {
		if cerr := sess.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("train: align graph: %w", cerr)
		}
	}()
	in, err1 := sess.Input(bundle.InputImage)
	tin, err2 := sess.Input(bundle.InputTemplate)
	out, err3 := sess.Output(bundle.OutputTransform)
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("train: align graph: %w", err)
	}
	if len(tin) != len(tplTensor) || len(in) != spec.Len() || len(out) < 3 {
		return fmt.Errorf("train: align graph: tensors of %d, %d and %d values; want %d (image), %d (template), 3 (transform)",
			len(in), len(tin), len(out), spec.Len(), len(tplTensor))
	}
	copy(tin, tplTensor)
	var refiner ecc.Refiner
	method, known := refiner.MethodNamed(refine)
	if !known {
		return fmt.Errorf("train: align.refine %q is not a refinement (want %q, %q or %q)", refine, bundle.RefineNone, bundle.RefineECC, bundle.RefineSearch)
	}
	for _, g := range images {
		if err := preprocess.Fill(in, g.img, spec); err != nil {
			return fmt.Errorf("train: %s: %w", g.name, err)
		}
		if err := sess.Run(); err != nil {
			return fmt.Errorf("train: align %s: %w", g.name, err)
		}
		tr := preprocess.Transform{Tx: float64(out[0]), Ty: float64(out[1]), Theta: float64(out[2])}
		if !finite(tr.Tx) || !finite(tr.Ty) || !finite(tr.Theta) {
			return fmt.Errorf("train: align %s: the regressor returned %v (the image matching module diverged; lower align.learning_rate)", g.name, out[:3])
		}
		if method != nil {
			crop := spec.Crop
			if crop.Empty() {
				crop = g.img.Bounds()
			}
			tr, _ = method(in, tplTensor, spec.Channels, spec.Width, spec.Height, crop.Dx(), crop.Dy(), tr)
		}
		transforms[g.name] = tr
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// verify reloads the bundle through the daemon's engine and re-scores the
// held-out images; every score must match training's within
// VerifyTolerance.
func verify(be backend.Backend, dir string, holdout []goodImage, want []float64, roi image.Rectangle) (float64, error) {
	b, err := bundle.Load(dir)
	if err != nil {
		return 0, fmt.Errorf("train: verify: the bundle just written does not load: %w", err)
	}
	eng, err := be.NewEngine(b, 2)
	if err != nil {
		return 0, fmt.Errorf("train: verify: %w", err)
	}
	defer eng.Close()
	hm := eng.NewHeatmap()
	worst := 0.0
	var bad []string
	for i, g := range holdout {
		t, err := eng.Align(g.img, roi)
		if err != nil {
			return 0, fmt.Errorf("train: verify %s: %w", g.name, err)
		}
		got, err := eng.Localize(g.img, roi, t, hm)
		if err != nil {
			return 0, fmt.Errorf("train: verify %s: %w", g.name, err)
		}
		d := math.Abs(float64(got) - want[i])
		worst = math.Max(worst, d)
		if d > VerifyTolerance {
			bad = append(bad, fmt.Sprintf("%s: training %.6f, bundle %.6f", g.name, want[i], got))
		}
	}
	if len(bad) > 0 {
		return worst, fmt.Errorf("train: verify: the exported bundle scores %d held-out images differently from training (tolerance %g); refusing to write it:\n  %s",
			len(bad), VerifyTolerance, strings.Join(bad, "\n  "))
	}
	return worst, nil
}

// defectsOperatingPoint scores a labelled test root with the bundle and
// returns the F1-optimal operating point over its images plus the held-out
// good images, and the image AUROC.
func defectsOperatingPoint(ctx context.Context, be backend.Backend, dir, root string, holdScores []float64, roi image.Rectangle) (*metrics.PRF, float64, error) {
	cat, err := dataset.OpenCategory(root)
	if err != nil {
		return nil, 0, fmt.Errorf("train: --defects: %w", err)
	}
	b, err := bundle.Load(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("train: %w", err)
	}
	eng, err := be.NewEngine(b, 2)
	if err != nil {
		return nil, 0, fmt.Errorf("train: %w", err)
	}
	defer eng.Close()
	hm := eng.NewHeatmap()
	scores := append([]float64(nil), holdScores...)
	labels := make([]bool, len(scores))
	for _, s := range cat.Test {
		if err := ctx.Err(); err != nil {
			return nil, 0, fmt.Errorf("train: %w", err)
		}
		img, _, err := s.Load()
		if err != nil {
			return nil, 0, fmt.Errorf("train: --defects: %w", err)
		}
		t, err := eng.Align(img, roi)
		if err != nil {
			return nil, 0, fmt.Errorf("train: %s: %w", s.Path, err)
		}
		sc, err := eng.Localize(img, roi, t, hm)
		if err != nil {
			return nil, 0, fmt.Errorf("train: %s: %w", s.Path, err)
		}
		scores = append(scores, float64(sc))
		labels = append(labels, s.Anomalous())
	}
	prf, err := metrics.BestF1(scores, labels)
	if err != nil {
		return nil, 0, fmt.Errorf("train: --defects %s: %w", root, err)
	}
	auc, err := metrics.AUROC(scores, labels)
	if err != nil {
		return nil, 0, fmt.Errorf("train: --defects %s: %w", root, err)
	}
	return &prf, auc, nil
}

// sha256 identifies the recipe's effective settings.
func (r *Recipe) sha256() string {
	var buf bytes.Buffer
	_ = toml.NewEncoder(&buf).Encode(r)
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:])
}
