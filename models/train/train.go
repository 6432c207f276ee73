//go:build workstation

package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/inspectd/inspectd/buildinfo"
	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/decision"
	"github.com/inspectd/inspectd/infer/backend"
	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/metrics"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/models/train/alm"
	"github.com/inspectd/inspectd/models/train/imm"
	"github.com/inspectd/inspectd/models/train/memory"
)

// VerifyTolerance is the largest difference allowed between the scores
// training computed for the held-out images and the scores the exported
// bundle gives them through the daemon's engine.
const VerifyTolerance = 1e-3

// Options are the inputs of Run.
type Options struct {
	// GoodDir holds the defect-free images (PNG, JPEG or BMP), all of one size.
	GoodDir string
	// ReviewedGoodDir optionally holds good parts a reviewer confirmed
	// after a station rejected them (false rejects, e.g. train/good of
	// `inspectd dataset from-archive`). They join the training images
	// but never the calibration: a station's false rejects are its
	// hardest good parts, not a sample of its good parts, and letting
	// them set the threshold would raise it until defects pass.
	ReviewedGoodDir string
	// RelearnedDir optionally is a category written by `inspectd dataset
	// from-archive`: its provenance says which of its good parts the
	// station passed (ordinary good images: trained, held out and
	// calibrated on) and which it rejected before a reviewer labelled them
	// good (trained on only, as ReviewedGoodDir).
	RelearnedDir string
	// Backbone is a directory of .npy weights or a torchvision .pth file.
	Backbone string
	// Out is the bundle directory to create (replaced atomically).
	Out string
	// Recipe holds every other setting (nil: DefaultRecipe).
	Recipe *Recipe
	// Defects is an optional MVTec-style test root (<Defects>/test/<kind>)
	// used only to report the F1-optimal threshold.
	Defects string
	// Backend runs the exported graphs (backbone features, the align
	// graph, the verification engine): infer.NewBackend in inspectd. This
	// package stays pure Go; the native runtime is passed in.
	Backend backend.Backend
	// Progress receives phase lines and progress bars (nil = silent).
	Progress io.Writer
	// TFLite also writes the graphs' TensorFlow Lite twins
	// (bundle.LocalizeTFLiteName, bundle.AlignTFLiteName), re-emitted
	// from the exported ONNX graphs' weights by netdef.TFLiteTwins.
	TFLite bool
}

// Result summarises a finished training.
type Result struct {
	Manifest  bundle.Manifest
	Holdout   []string
	MaxVerify float64 // largest |training score − bundle score| on the holdout
	Durations map[string]time.Duration
	IMMLosses []float64
	// IMMSteps is the number of IMM training steps run (fewer than the
	// recipe's when the pose error converged); IMMPoseError and
	// IMMPoseErrorUntrained its validation pose error (median corner
	// displacement, regressor pixels) at the end and before training.
	IMMSteps                            int
	IMMPoseError, IMMPoseErrorUntrained float64
	ALMLosses                           []float64
	F1Optimal                           *metrics.PRF
	DefectsAUC                          float64
	// AlignFallback, when not empty, says why the trained IMM was dropped
	// and the bundle aligns nothing (see trainer.checkAlignment, and
	// KeepIMMRatio under align.method = "auto").
	AlignFallback string
	// PoseSpread is the good images' pose spread against the template,
	// measured before the IMM (nil when align.method = "none").
	PoseSpread *PoseSpread
	// AlignSkipped, when not empty, says why align.method = "auto" trained
	// no IMM (fixtured parts, or no pose to measure) or dropped the one it
	// trained; the bundle then aligns nothing.
	AlignSkipped string
	// AlignWarning, when not empty, says which poses of the configured
	// range the good images leave untested, and what to do about it.
	AlignWarning string
}

// goodImage is one training image, decoded and cropped.
type goodImage struct {
	name string
	img  image.Image
	// reviewed: from Options.ReviewedGoodDir — trained on, never
	// calibrated on.
	reviewed bool
}

// trainer holds the state passed from one step of Run to the next.
type trainer struct {
	opts     Options
	r        *Recipe
	progress io.Writer
	res      *Result
	rng      *rand.Rand

	goods, trainSet, holdout []goodImage
	// memSet are the images the local memory is built from: the training
	// set, and the held-out images too when out-of-fold scores calibrate
	// (memHoldsHoldout) — every good image then serves the memory, and
	// each is still scored by a memory that has not seen it.
	memSet          []goodImage
	memHoldsHoldout bool
	roi             image.Rectangle
	bb              *backbone.Weights

	man        bundle.Manifest
	files      map[string][]byte
	transforms map[string]preprocess.Transform

	fe         *alm.BackboneFeatures
	lm         *alm.Model
	mem        *memory.Model
	holdScores []float64
	staging    string
}

// step is one named phase of Run; skip, when set and true, leaves it out
// (and out of the progress lines).
type step struct {
	name string
	run  func(context.Context) error
	skip func() bool
}

// Run trains a bundle. Nothing is written at opts.Out unless the bundle
// was fully verified; an interrupted or failed run leaves no bundle behind.
func Run(ctx context.Context, opts Options) (*Result, error) {
	t, err := newTrainer(opts)
	if err != nil {
		return nil, err
	}
	defer t.close()
	for _, s := range []step{
		{"load", t.load, nil},
		{"align", t.align, func() bool { return t.r.Align.Method == "none" }},
		{"localise", t.localise, nil},
		{"calibrate", t.calibrate, nil},
		{"export", t.export, nil},
	} {
		if s.skip != nil && s.skip() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		start := time.Now()
		if err := s.run(ctx); err != nil {
			return nil, err
		}
		t.res.Durations[s.name] = time.Since(start)
		fmt.Fprintf(t.progress, "%-12s done in %s\n", s.name, time.Since(start).Round(100*time.Millisecond))
	}
	t.res.Manifest = t.man
	return t.res, nil
}

// newTrainer checks everything that needs no data: the recipe (every value
// the trainers require), the backend and the destination.
func newTrainer(opts Options) (*trainer, error) {
	r := opts.Recipe
	if r == nil {
		d := DefaultRecipe()
		r = &d
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("train: invalid recipe:\n%w", err)
	}
	// The recipe check is meant to cover the trainers' own; a gap would
	// otherwise surface only after the data is loaded.
	if err := errors.Join(immConfig(r).Validate(), almConfig(r).Validate(), memoryConfig(r).Validate()); err != nil {
		return nil, fmt.Errorf("train: recipe accepted but refused by the trainer (a bug in the recipe check): %w", err)
	}
	if opts.Backend == nil {
		return nil, errors.New("train: no inference backend (Options.Backend)")
	}
	// Refuse a destination that is not a bundle before hours of work, not
	// after: a mistyped --out must never delete images or configuration.
	if err := bundle.CheckReplaceable(opts.Out); err != nil {
		return nil, fmt.Errorf("train: --out: %w", err)
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	return &trainer{
		opts: opts, r: r, progress: progress,
		res:        &Result{Durations: map[string]time.Duration{}},
		rng:        rand.New(rand.NewPCG(uint64(r.Seed), 0x7261696e)),
		files:      map[string][]byte{},
		transforms: map[string]preprocess.Transform{},
	}, nil
}

func (t *trainer) close() {
	if t.fe != nil {
		t.fe.Close()
	}
	if t.mem != nil {
		t.mem.Close()
	}
	if t.staging != "" {
		os.RemoveAll(t.staging)
	}
}

// load decodes the good images, splits off the holdout, checks the ROI,
// loads the backbone and starts the manifest.
func (t *trainer) load(context.Context) error {
	r := t.r
	goods, err := loadGoodImages(t.opts.GoodDir, r.Input.MixedSizes == "stretch")
	if err != nil {
		return err
	}
	passed, rejected, err := t.loadRelearned(goods[0].img.Bounds().Size(), r.Input.MixedSizes == "stretch")
	if err != nil {
		return err
	}
	goods = append(goods, passed...)
	t.goods = goods
	if err := t.split(); err != nil {
		return err
	}
	reviewed, err := t.loadReviewed()
	if err != nil {
		return err
	}
	reviewed = append(reviewed, rejected...)
	// Reviewed parts train every module but are never held out.
	t.trainSet = append(t.trainSet, reviewed...)
	t.roi = image.Rect(r.Input.ROI.X, r.Input.ROI.Y, r.Input.ROI.X+r.Input.ROI.Width, r.Input.ROI.Y+r.Input.ROI.Height)
	if !t.roi.Empty() {
		for _, g := range goods { // sizes differ only with input.mixed_sizes = "stretch"
			if !t.roi.In(g.img.Bounds()) {
				return fmt.Errorf("train: input.roi %v lies outside the images (%s is %v)", t.roi, g.name, g.img.Bounds())
			}
		}
	}
	if err := t.chooseInput(); err != nil {
		return err
	}
	r = t.r // the recipe with the chosen input
	fmt.Fprintf(t.progress, "data         %d good images: %d for training, %d held out (seed %d)\n", len(goods), len(t.trainSet)-len(reviewed), len(t.holdout), r.Seed)
	if len(reviewed) > 0 {
		fmt.Fprintf(t.progress, "data         %d reviewed good parts the station had rejected: trained on, not used for the thresholds\n", len(reviewed))
	}
	if len(passed) > 0 {
		fmt.Fprintf(t.progress, "data         %d good parts the station passed (%s) are among the good images\n", len(passed), t.opts.RelearnedDir)
	}
	if t.bb, err = loadBackbone(t.opts.Backbone); err != nil {
		return err
	}
	t.man = bundle.Manifest{
		Product:   r.Product,
		Created:   time.Now().UTC().Truncate(time.Second),
		CreatedBy: fmt.Sprintf("inspectd %s (%s) train", buildinfo.Get().Version, buildinfo.Get().Commit),
		Input:     bundle.Input{Height: r.Input.Height, Width: r.Input.Width, ColourOrder: r.Input.Colour, Mean: bundle.ImageNetMean(), Std: bundle.ImageNetStd()},
		Align:     bundle.Align{Method: bundle.AlignNone, TemplateSeed: -1},
		Localize: bundle.Localize{Graph: bundle.LocalizeGraphName, Method: bundle.LocalizeCentres, D: r.ALM.D, Reduction: r.ALM.Reduction,
			Centre: r.ALM.Centre, BlurSigma: r.ALM.BlurSigma},
		Backbone: bundle.Backbone{Name: "resnet18-imagenet-layer3", Fingerprint: t.bb.Fingerprint(), Source: t.opts.Backbone},
		Training: bundle.Training{GoodImages: len(goods) + len(reviewed), HoldoutImages: len(t.holdout), Seed: r.Seed},
	}
	return nil
}

// loadReviewed loads Options.ReviewedGoodDir (none when unset); the
// images must have the good images' size unless input.mixed_sizes is
// "stretch".
func (t *trainer) loadReviewed() ([]goodImage, error) {
	dir := t.opts.ReviewedGoodDir
	if dir == "" {
		return nil, nil
	}
	stretch := t.r.Input.MixedSizes == "stretch"
	imgs, err := loadGoodImages(dir, stretch)
	if err != nil {
		return nil, fmt.Errorf("reviewed good parts: %w", err)
	}
	want := t.goods[0].img.Bounds().Size()
	for i := range imgs {
		if got := imgs[i].img.Bounds().Size(); !stretch && got != want {
			return nil, fmt.Errorf("train: reviewed good part %s is %dx%d, the good images are %dx%d; set input.mixed_sizes = \"stretch\" to resize them",
				filepath.Join(dir, imgs[i].name), got.X, got.Y, want.X, want.Y)
		}
		imgs[i].name = "reviewed/" + imgs[i].name
		imgs[i].reviewed = true
	}
	return imgs, nil
}

// split keeps holdout_fraction of the good images (seeded) for calibration.
func (t *trainer) split() error {
	nHold := max(1, int(math.Round(t.r.HoldoutFraction*float64(len(t.goods)))))
	if len(t.goods)-nHold < 2 {
		return fmt.Errorf("train: %s has %d good images; need at least %d to train and hold out %d for calibration", t.opts.GoodDir, len(t.goods), nHold+2, nHold)
	}
	for i, p := range t.rng.Perm(len(t.goods)) {
		if i < nHold {
			t.holdout = append(t.holdout, t.goods[p])
		} else {
			t.trainSet = append(t.trainSet, t.goods[p])
		}
	}
	sort.Slice(t.holdout, func(i, j int) bool { return t.holdout[i].name < t.holdout[j].name })
	for _, h := range t.holdout {
		t.res.Holdout = append(t.res.Holdout, h.name)
	}
	return nil
}

func (t *trainer) alignSpec() preprocess.Spec {
	return preprocess.Spec{Width: t.r.Align.Size, Height: t.r.Align.Size, Channels: t.r.Align.Channels, Crop: t.roi}
}

// align trains the image matching module, exports align.onnx and the
// template, and aligns every good image with the exported graph, as the
// daemon will.
func (t *trainer) align(ctx context.Context) error {
	r := t.r
	spec := t.alignSpec()
	inputs := make([][]float32, len(t.trainSet))
	for i, g := range t.trainSet {
		inputs[i] = make([]float32, spec.Len())
		if err := preprocess.Fill(inputs[i], g.img, spec); err != nil {
			return fmt.Errorf("train: %s: %w", g.name, err)
		}
	}
	tpl, tplSource, err := chooseTemplate(r, t.trainSet, inputs)
	if err != nil {
		return err
	}
	tplPNG, tplTensor, err := t.storedTemplate(tpl, tplSource)
	if err != nil {
		return err
	}
	fmt.Fprintf(t.progress, "align        template %s\n", tplSource)
	spread := t.measureSpread(inputs, tplTensor, tplSource)
	t.res.PoseSpread = &spread
	fmt.Fprintf(t.progress, "align        %s\n", spread)
	if r.Align.Method == "auto" {
		if why := skipReason(spread); why != "" {
			t.skipAlignment(why, spread)
			return nil
		}
	}
	fmt.Fprintf(t.progress, "align        training the image matching module (%d steps)\n", r.Align.Steps)
	model, err := imm.Train(ctx, immConfig(r), tplTensor, inputs, t.progress)
	if err != nil {
		return fmt.Errorf("train: align: %w", err)
	}
	t.res.IMMLosses = model.Losses
	t.res.IMMSteps, t.res.IMMPoseError = model.Steps, model.PoseError
	if len(model.PoseErrors) > 0 {
		t.res.IMMPoseErrorUntrained = model.PoseErrors[0]
	}
	if why := immNotBetter(t.res.IMMPoseError, t.res.IMMPoseErrorUntrained); why != "" {
		if r.Align.Method == "auto" {
			t.skipAlignment(why, spread)
			t.res.AlignFallback = why
			return nil
		}
		fmt.Fprintf(t.progress, "align        warning: %s; kept because align.method = \"imm\"\n", why)
	}
	graph, err := netdef.AlignGraph(netdef.AlignSpec{Channels: r.Align.Channels, Height: r.Align.Size, Width: r.Align.Size}, model.Weights)
	if err != nil {
		return fmt.Errorf("train: export align graph: %w", err)
	}
	t.files[bundle.AlignGraphName] = graph
	t.files[bundle.TemplateName] = tplPNG
	t.man.Align = bundle.Align{Method: bundle.AlignIMM, Graph: bundle.AlignGraphName, Template: bundle.TemplateName,
		Height: r.Align.Size, Width: r.Align.Size, Channels: r.Align.Channels, TemplateSeed: -1, TemplateSource: tplSource,
		Refine: r.Align.Refine}
	if err := alignImages(t.opts.Backend, graph, tplTensor, spec, r.Align.Refine, t.goods, t.transforms); err != nil {
		return err
	}
	t.checkAlignment()
	t.warnCoverage(spread)
	return nil
}

// maxOutOfFrameShare is the share of good images the trained IMM may place
// out of frame (as the daemon judges it) before training drops it: the
// false-reject rate a line tolerates.
const maxOutOfFrameShare = 0.05

// checkAlignment judges the trained IMM as the daemon would judge its
// alignments: a part whose alignment pulls more than
// config.DefaultMaxOutsideFraction of the model input from outside the
// frame is rejected as out_of_frame. When
// more than maxOutOfFrameShare of the good images would be, the IMM does
// not align this product — a texture or pre-cropped parts without a pose
// to find (magnetic tiles: half of them sent out of view) — and the bundle
// is trained without alignment instead, which the progress, the result
// and the manifest's training notes say.
func (t *trainer) checkAlignment() {
	w, h := t.r.Input.Width, t.r.Input.Height
	out := 0
	var spans []preprocess.Span
	for _, g := range t.goods {
		spec, crop := inputSpec(g, t.roi, w, h, t.transforms)
		var n int
		if spans, n = spec.InsideSpans(crop.X, crop.Y, spans); float64(n)/float64(w*h) > config.DefaultMaxOutsideFraction {
			out++
		}
	}
	if float64(out) <= maxOutOfFrameShare*float64(len(t.goods)) {
		return
	}
	why := fmt.Sprintf("the trained alignment places %d of %d good images more than %g outside the frame (the daemon would reject them as out_of_frame): this product is trained without alignment (align.method = \"none\" skips the IMM)",
		out, len(t.goods), config.DefaultMaxOutsideFraction)
	fmt.Fprintf(t.progress, "align        %s\n", why)
	t.res.AlignFallback = why
	t.noteAlign(why)
	t.man.Align = bundle.Align{Method: bundle.AlignNone, TemplateSeed: -1}
	delete(t.files, bundle.AlignGraphName)
	delete(t.files, bundle.TemplateName)
	clear(t.transforms)
}

// storedTemplate returns the template as the bundle stores it (an 8-bit
// PNG) and the tensor the engine will read back from that PNG. Training
// and aligning against exactly those values keeps the daemon's transforms
// (and so its scores) equal to training's (measured without: 2e-3 on a
// rotated metal plate's score).
func (t *trainer) storedTemplate(tpl image.Image, source string) ([]byte, []float32, error) {
	r := t.r
	spec := t.alignSpec()
	tensor := make([]float32, spec.Len())
	if err := preprocess.Fill(tensor, tpl, spec); err != nil {
		return nil, nil, fmt.Errorf("train: template %s: %w", source, err)
	}
	data, err := tensorPNG(tensor, r.Align.Channels, r.Align.Size, r.Align.Size)
	if err != nil {
		return nil, nil, err
	}
	stored, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, nil, fmt.Errorf("train: template %s: %w", source, err)
	}
	if err := preprocess.Fill(tensor, stored, preprocess.Spec{Width: r.Align.Size, Height: r.Align.Size, Channels: r.Align.Channels}); err != nil {
		return nil, nil, fmt.Errorf("train: template %s: %w", source, err)
	}
	return data, tensor, nil
}

// prepare warps (by the image's transform, if any) and resizes one good
// image to the model input.
func (t *trainer) prepare(g goodImage) ([]float32, error) {
	spec, _ := t.inputSpec(g)
	dst := make([]float32, spec.Len())
	if err := preprocess.Fill(dst, g.img, spec); err != nil {
		return nil, fmt.Errorf("train: %s: %w", g.name, err)
	}
	return dst, nil
}

// inputSpec is how g becomes a model input: its ROI, warped by its
// alignment when there is one, and the size of that ROI.
func (t *trainer) inputSpec(g goodImage) (preprocess.Spec, image.Point) {
	return inputSpec(g, t.roi, t.r.Input.Width, t.r.Input.Height, t.transforms)
}

func inputSpec(g goodImage, roi image.Rectangle, w, h int, transforms map[string]preprocess.Transform) (preprocess.Spec, image.Point) {
	spec := preprocess.Spec{Width: w, Height: h, Channels: 3, Crop: roi}
	crop := roi
	if crop.Empty() {
		crop = g.img.Bounds()
	}
	if tr, ok := transforms[g.name]; ok {
		warp := tr.Pixel(crop.Dx(), crop.Dy())
		spec.Warp = &warp
	}
	return spec, crop.Size()
}

// localizeManifest is the manifest's localize section as the recipe
// defines it (the memory's is completed once it is built).
func (t *trainer) localizeManifest() bundle.Localize {
	r := t.r
	if r.ALM.Method != bundle.LocalizeMemory {
		return t.man.Localize
	}
	reduction := "pca"
	if r.Memory.D == 0 {
		reduction = "none"
	}
	precision := r.Memory.GlobalPrecision
	if r.Memory.GlobalEntries == 0 {
		precision = "" // nothing is shared: no precision to state
	}
	return bundle.Localize{Graph: bundle.LocalizeGraphName, Method: bundle.LocalizeMemory, D: r.Memory.D,
		Entries: r.Memory.Entries, GlobalEntries: r.Memory.GlobalEntries, Radius: r.Memory.Radius, Layers: slices.Clone(r.Memory.Layers), Stride: r.Memory.Stride,
		Average: r.Memory.Average, GlobalPrecision: precision, Reduction: reduction, BlurSigma: r.ALM.BlurSigma}
}

// suppressOutside zeroes heat (model input size) on and near the pixels
// g's alignment pulled from outside its ROI, as the daemon's engine does,
// and returns the maximum of what remains.
func (t *trainer) suppressOutside(g goodImage, heat []float64) float64 {
	spec, crop := t.inputSpec(g)
	inside, found := spec.InsideSpans(crop.X, crop.Y, nil)
	if found == 0 {
		return slices.Max(heat)
	}
	best, _, _ := preprocess.SuppressOutside(heat, spec.Width, spec.Height, inside, t.man.Localize.OutsideMargin(), nil)
	return best
}

// localise trains the anomaly localisation module on the aligned training
// images.
func (t *trainer) localise(ctx context.Context) error {
	r := t.r
	t.memSet = t.trainSet
	if r.ALM.Method == bundle.LocalizeMemory && r.Calibration.Folds > 1 && len(t.trainSet)+len(t.holdout) >= r.Calibration.Folds {
		t.memSet, t.memHoldsHoldout = append(slices.Clone(t.trainSet), t.holdout...), len(t.holdout) > 0
	}
	tensors := make([][]float32, len(t.memSet))
	for i, g := range t.memSet {
		var err error
		if tensors[i], err = t.prepare(g); err != nil {
			return err
		}
	}
	if r.ALM.Method == bundle.LocalizeMemory {
		cfg := memoryConfig(r)
		fmt.Fprintf(t.progress, "localise     building the memory of %d good images (%s of layers %v on %d-pixel cells; %s)\n",
			len(t.memSet), memoryWidth(r.Memory.D), r.Memory.Layers, r.Memory.Stride, memoryEntries(r))
		var err error
		if t.mem, err = memory.Train(ctx, cfg, tensors, t.opts.Backend, t.bb, t.progress); err != nil {
			return fmt.Errorf("train: localise: %w", err)
		}
		t.man.Localize = t.localizeManifest()
		t.man.Localize.D = t.mem.Spec.D
		return nil
	}
	fe, err := alm.NewBackboneFeatures(t.opts.Backend, t.bb, r.Input.Height, r.Input.Width, r.Threads)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	t.fe = fe
	fmt.Fprintf(t.progress, "localise     training the anomaly localisation module (%d epochs, DGM %v)\n", r.ALM.Epochs, r.DGM.Enabled)
	if t.lm, err = alm.Train(ctx, almConfig(r), tensors, r.Input.Height, r.Input.Width, fe, t.progress); err != nil {
		return fmt.Errorf("train: localise: %w", err)
	}
	t.res.ALMLosses = t.lm.Losses
	return nil
}

// calibrate scores the held-out images on the training side and sets the
// thresholds from them and, with the local memory, from the out-of-fold
// scores of every training image as well.
func (t *trainer) calibrate(ctx context.Context) error {
	t.holdScores = make([]float64, len(t.holdout))
	var scores, pixels []float64
	addPixels := func(heat []float64) {
		for j := 0; j < len(heat); j += 7 { // a deterministic subsample bounds memory
			pixels = append(pixels, heat[j])
		}
	}
	// Each calibration good as the daemon's decision sees it: its score
	// and the level of its heatmap's regions at the default
	// decision.min_defect_area, in frame pixels of the image's ROI (what
	// the daemon measures regions in).
	minDefectArea := config.Default().Decision.MinDefectArea
	var goods []decisionGood
	var dec decision.Decider
	var levelMap *preprocess.Heatmap
	addGood := func(g goodImage, score float64, heat []float64) {
		spec, crop := t.inputSpec(g)
		if levelMap == nil || levelMap.Width != spec.Width || levelMap.Height != spec.Height {
			levelMap = preprocess.NewHeatmap(spec.Width, spec.Height)
		}
		for j, v := range heat {
			levelMap.Values[j] = float32(v)
		}
		level := dec.Level(decision.Input{Heatmap: levelMap, ROI: image.Rectangle{Max: crop}, MinDefectArea: minDefectArea, MaxRegions: 1})
		goods = append(goods, decisionGood{score: score, level: level})
	}
	for i, g := range t.holdout {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("train: %w", err)
		}
		x, err := t.prepare(g)
		if err != nil {
			return err
		}
		if t.mem != nil {
			b, err := t.mem.Blurred(x)
			if err != nil {
				return fmt.Errorf("train: score %s: %w", g.name, err)
			}
			raw := t.suppressOutside(g, b)
			t.holdScores[i] = float64(float32(t.mem.Squash(raw)))
			if !t.memHoldsHoldout { // else its out-of-fold score counts below
				scores = append(scores, raw)
				addPixels(b)
				addGood(g, raw, b)
			}
			continue
		}
		mixed, err := t.fe.Mixed(x)
		if err != nil {
			return fmt.Errorf("train: %s: %w", g.name, err)
		}
		heat, score, err := t.lm.Score(mixed, t.r.ALM.BlurSigma)
		if err != nil {
			return fmt.Errorf("train: score %s: %w", g.name, err)
		}
		h := make([]float64, len(heat))
		for j, v := range heat {
			h[j] = float64(v)
		}
		// The graph's score is the heatmap maximum; the engine's, that of
		// what the outside suppression leaves.
		score = float32(t.suppressOutside(g, h))
		t.holdScores[i] = float64(score)
		scores = append(scores, float64(score))
		addPixels(h)
		addGood(g, float64(score), h)
	}
	squash, source := func(v float64) float64 { return v }, fmt.Sprintf("%d held-out good images", len(t.holdout))
	if t.mem != nil {
		squash = t.mem.Squash
		n := 0
		for i, b := range t.mem.OutOfFold { // in t.memSet's order
			if t.memSet[i].reviewed {
				continue // trained on, never calibrated on
			}
			raw := t.suppressOutside(t.memSet[i], b)
			scores = append(scores, raw)
			addPixels(b)
			addGood(t.memSet[i], raw, b)
			n++
		}
		switch {
		case n > 0 && t.memHoldsHoldout:
			source = fmt.Sprintf("%d good images out of fold (%d folds; the memory holds all of them, the %d held out included)", n, t.r.Calibration.Folds, len(t.holdout))
		case n > 0:
			source = fmt.Sprintf("%d held-out and %d out-of-fold (%d folds) good images", len(t.holdout), n, t.r.Calibration.Folds)
		}
	}
	t.man.Calibration = calibrate(t.r.Calibration, scores, pixels, squash, source)
	quantileRule := t.man.Calibration.PixelThreshold
	t.man.Calibration = calibrateForDecision(t.r.Calibration, t.man.Calibration, goods, minDefectArea, squash)
	cal := t.man.Calibration
	fmt.Fprintf(t.progress, "calibrate    pixel threshold %.4f (image %.4f; the pixel-quantile rule alone %.4f): the decision at min_defect_area %d rejects %d of %d calibration goods (%d by region alone)\n",
		cal.PixelThreshold, cal.ImageThreshold, quantileRule, minDefectArea, cal.GoodRejects, len(goods), cal.GoodRejectsByRegion)
	fmt.Fprintf(t.progress, "calibrate    %d good scores: median %.4f, 0.9 %.4f, 0.95 %.4f, 0.98 %.4f, max %.4f\n", len(scores),
		squash(quantile(scores, 0.5)), squash(quantile(scores, 0.9)), squash(quantile(scores, 0.95)), squash(quantile(scores, 0.98)), squash(quantile(scores, 1)))
	return nil
}

// export writes the bundle to a staging directory, verifies it through
// the daemon's engine (and scores --defects), and only then moves it to
// --out.
func (t *trainer) export(ctx context.Context) error {
	r := t.r
	var loc []byte
	var err error
	if t.mem != nil {
		loc, err = t.mem.Graph(t.bb)
	} else {
		loc, err = netdef.LocalizeGraph(netdef.LocalizeSpec{Height: r.Input.Height, Width: r.Input.Width, D: r.ALM.D, BlurSigma: r.ALM.BlurSigma}, t.bb, t.lm.Mapping, t.lm.Centre)
	}
	if err != nil {
		return fmt.Errorf("train: export localise graph: %w", err)
	}
	t.files[bundle.LocalizeGraphName] = loc
	if t.opts.TFLite {
		twins, err := netdef.TFLiteTwins(&bundle.Bundle{Manifest: t.man, LocalizeGraph: loc, AlignGraph: t.files[bundle.AlignGraphName]})
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
		maps.Copy(t.files, twins)
	}
	t.man.Training.RecipeSHA256 = r.sha256()
	t.staging = fmt.Sprintf("%s.verifying-%d", filepath.Clean(t.opts.Out), os.Getpid())
	if err := bundle.Write(t.staging, &t.man, t.files); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if t.res.MaxVerify, err = verify(t.opts.Backend, t.staging, t.holdout, t.holdScores, t.roi); err != nil {
		return err
	}
	if t.opts.Defects != "" {
		if err := t.defects(ctx); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := bundle.Replace(t.staging, t.opts.Out); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	t.staging = ""
	return nil
}

// defects scores --defects with the staged bundle and records the
// F1-optimal threshold in its manifest.
func (t *trainer) defects(ctx context.Context) error {
	prf, auc, err := defectsOperatingPoint(ctx, t.opts.Backend, t.staging, t.opts.Defects, t.holdScores, t.roi)
	if err != nil {
		return err
	}
	t.res.F1Optimal, t.res.DefectsAUC = prf, auc
	t.man.Calibration.F1OptimalThreshold = math.Min(1, math.Max(prf.Threshold, 1e-6))
	if err := bundle.Write(t.staging, &t.man, t.files); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if _, err := bundle.Load(t.staging); err != nil {
		return fmt.Errorf("train: rewritten bundle: %w", err)
	}
	return nil
}
