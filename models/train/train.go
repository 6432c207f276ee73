//go:build workstation

package train

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/inspectd/inspectd/buildinfo"
	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/metrics"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/models/train/alm"
	"github.com/inspectd/inspectd/models/train/imm"
)

// VerifyTolerance is the largest difference allowed between the scores
// training computed for the held-out images and the scores the exported
// bundle gives them through the daemon's engine.
const VerifyTolerance = 1e-3

// Options are the inputs of Run.
type Options struct {
	// GoodDir holds the defect-free images (PNG, JPEG or BMP).
	GoodDir string
	// Backbone is a directory of .npy weights or a torchvision .pth file.
	Backbone string
	// Out is the bundle directory to create (replaced atomically).
	Out string
	// Recipe holds every other setting.
	Recipe *Recipe
	// Defects is an optional MVTec-style test root (<Defects>/test/<kind>)
	// used only to report the F1-optimal threshold.
	Defects string
	// RuntimeLibrary is libonnxruntime.so.1 ("" = infer.DefaultLibraryPath).
	RuntimeLibrary string
	// Progress receives phase lines and progress bars (nil = silent).
	Progress io.Writer
}

// Result summarises a finished training.
type Result struct {
	Manifest   bundle.Manifest
	Holdout    []string
	MaxVerify  float64 // largest |training score − bundle score| on the holdout
	Durations  map[string]time.Duration
	IMMLosses  []float64
	ALMLosses  []float64
	F1Optimal  *metrics.PRF
	DefectsAUC float64
}

// goodImage is one training image, decoded and cropped.
type goodImage struct {
	name string
	img  image.Image
}

// Run trains a bundle. Nothing is written at opts.Out unless the bundle
// was fully verified; an interrupted or failed run leaves no bundle behind.
func Run(ctx context.Context, opts Options) (*Result, error) {
	r := opts.Recipe
	if r == nil {
		d := DefaultRecipe()
		r = &d
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	res := &Result{Durations: map[string]time.Duration{}}
	phase := func(name string, start time.Time) {
		res.Durations[name] = time.Since(start)
		fmt.Fprintf(progress, "%-12s done in %s\n", name, time.Since(start).Round(100*time.Millisecond))
	}

	// Refuse a destination that is not a bundle before hours of work, not
	// after: a mistyped --out must never delete images or configuration.
	if err := bundle.CheckReplaceable(opts.Out); err != nil {
		return nil, fmt.Errorf("train: --out: %w", err)
	}
	t0 := time.Now()
	goods, err := loadGoodImages(opts.GoodDir)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(r.Seed), 0x7261696e))
	nHold := max(1, int(math.Round(r.HoldoutFraction*float64(len(goods)))))
	if len(goods)-nHold < 2 {
		return nil, fmt.Errorf("train: %s has %d good images; need at least %d to train and hold out %d for calibration", opts.GoodDir, len(goods), nHold+2, nHold)
	}
	perm := rng.Perm(len(goods))
	var trainSet, holdout []goodImage
	for i, p := range perm {
		if i < nHold {
			holdout = append(holdout, goods[p])
		} else {
			trainSet = append(trainSet, goods[p])
		}
	}
	sort.Slice(holdout, func(i, j int) bool { return holdout[i].name < holdout[j].name })
	for _, h := range holdout {
		res.Holdout = append(res.Holdout, h.name)
	}
	roi := image.Rect(r.Input.ROI.X, r.Input.ROI.Y, r.Input.ROI.X+r.Input.ROI.Width, r.Input.ROI.Y+r.Input.ROI.Height)
	for _, g := range goods {
		if !roi.Empty() && !roi.In(g.img.Bounds()) {
			return nil, fmt.Errorf("train: input.roi %v lies outside %s (%v)", roi, g.name, g.img.Bounds())
		}
	}
	fmt.Fprintf(progress, "data         %d good images: %d for training, %d held out (seed %d)\n", len(goods), len(trainSet), len(holdout), r.Seed)

	bb, err := loadBackbone(opts.Backbone)
	if err != nil {
		return nil, err
	}
	libPath := opts.RuntimeLibrary
	if libPath == "" {
		if libPath, err = infer.DefaultLibraryPath(); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	rt, err := infer.OpenRuntime(libPath)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer rt.Close()
	phase("load", t0)

	// Template and alignment.
	H, W := r.Input.Height, r.Input.Width
	alignSpec := preprocess.Spec{Width: r.Align.Size, Height: r.Align.Size, Channels: r.Align.Channels, Crop: roi}
	tpl, tplSource, err := chooseTemplate(r, trainSet, rng)
	if err != nil {
		return nil, err
	}
	man := bundle.Manifest{
		Product:   r.Product,
		Created:   time.Now().UTC().Truncate(time.Second),
		CreatedBy: fmt.Sprintf("inspectd %s (%s) train", buildinfo.Get().Version, buildinfo.Get().Commit),
		Input:     bundle.Input{Height: H, Width: W, ColourOrder: r.Input.Colour, Mean: bundle.ImageNetMean(), Std: bundle.ImageNetStd()},
		Align:     bundle.Align{Method: bundle.AlignNone, TemplateSeed: -1},
		Localize: bundle.Localize{Graph: bundle.LocalizeGraphName, D: r.ALM.D, Reduction: r.ALM.Reduction,
			Centre: r.ALM.Centre, BlurSigma: r.ALM.BlurSigma},
		Backbone: bundle.Backbone{Name: "resnet18-imagenet-layer3", Fingerprint: bb.Fingerprint(), Source: opts.Backbone},
		Training: bundle.Training{GoodImages: len(goods), HoldoutImages: len(holdout), Seed: r.Seed},
	}
	files := map[string][]byte{}
	transforms := map[string]preprocess.Transform{}
	if r.Align.Method == "imm" {
		t1 := time.Now()
		// The bundle stores the template as an 8-bit PNG and the engine
		// reads it back from there: train and align against exactly those
		// values, or the daemon's transforms (and so its scores) drift from
		// training's (measured: 2e-3 on a rotated metal plate's score).
		tplTensor := make([]float32, alignSpec.Len())
		if err := preprocess.Fill(tplTensor, tpl, alignSpec); err != nil {
			return nil, fmt.Errorf("train: template %s: %w", tplSource, err)
		}
		tplPNG, err := tensorPNG(tplTensor, r.Align.Channels, r.Align.Size, r.Align.Size)
		if err != nil {
			return nil, err
		}
		stored, err := png.Decode(bytes.NewReader(tplPNG))
		if err != nil {
			return nil, fmt.Errorf("train: template %s: %w", tplSource, err)
		}
		if err := preprocess.Fill(tplTensor, stored, preprocess.Spec{Width: r.Align.Size, Height: r.Align.Size, Channels: r.Align.Channels}); err != nil {
			return nil, fmt.Errorf("train: template %s: %w", tplSource, err)
		}
		inputs := make([][]float32, len(trainSet))
		for i, g := range trainSet {
			inputs[i] = make([]float32, alignSpec.Len())
			if err := preprocess.Fill(inputs[i], g.img, alignSpec); err != nil {
				return nil, fmt.Errorf("train: %s: %w", g.name, err)
			}
		}
		fmt.Fprintf(progress, "align        training the image matching module (%d steps)\n", r.Align.Steps)
		model, err := imm.Train(ctx, immConfig(r), tplTensor, inputs, progress)
		if err != nil {
			return nil, fmt.Errorf("train: align: %w", err)
		}
		res.IMMLosses = model.Losses
		graph, err := netdef.AlignGraph(netdef.AlignSpec{Channels: r.Align.Channels, Height: r.Align.Size, Width: r.Align.Size}, model.Weights)
		if err != nil {
			return nil, fmt.Errorf("train: export align graph: %w", err)
		}
		files[bundle.AlignGraphName] = graph
		files[bundle.TemplateName] = tplPNG
		man.Align = bundle.Align{Method: bundle.AlignIMM, Graph: bundle.AlignGraphName, Template: bundle.TemplateName,
			Height: r.Align.Size, Width: r.Align.Size, Channels: r.Align.Channels, TemplateSeed: r.Seed, TemplateSource: tplSource}
		if r.Align.Template != "" {
			man.Align.TemplateSeed = -1
		}
		// Align every image with the exported graph, as the daemon will.
		sess, err := rt.NewSession(graph, infer.SessionOptions{IntraOpThreads: 1})
		if err != nil {
			return nil, fmt.Errorf("train: align graph: %w", err)
		}
		in, _ := sess.Input(bundle.InputImage)
		tin, _ := sess.Input(bundle.InputTemplate)
		out, _ := sess.Output(bundle.OutputTransform)
		copy(tin, tplTensor)
		for _, g := range goods {
			if err := preprocess.Fill(in, g.img, alignSpec); err != nil {
				sess.Close()
				return nil, fmt.Errorf("train: %s: %w", g.name, err)
			}
			if err := sess.Run(); err != nil {
				sess.Close()
				return nil, fmt.Errorf("train: align %s: %w", g.name, err)
			}
			transforms[g.name] = preprocess.Transform{Tx: float64(out[0]), Ty: float64(out[1]), Theta: float64(out[2])}
		}
		sess.Close()
		phase("align", t1)
	}

	// Localisation.
	t2 := time.Now()
	prepare := func(g goodImage) ([]float32, error) {
		spec := preprocess.Spec{Width: W, Height: H, Channels: 3, Crop: roi}
		if t, ok := transforms[g.name]; ok {
			crop := roi
			if crop.Empty() {
				crop = g.img.Bounds()
			}
			warp := t.Pixel(crop.Dx(), crop.Dy())
			spec.Warp = &warp
		}
		dst := make([]float32, spec.Len())
		if err := preprocess.Fill(dst, g.img, spec); err != nil {
			return nil, fmt.Errorf("train: %s: %w", g.name, err)
		}
		return dst, nil
	}
	trainTensors := make([][]float32, len(trainSet))
	for i, g := range trainSet {
		if trainTensors[i], err = prepare(g); err != nil {
			return nil, err
		}
	}
	fe, err := alm.NewORTFeatures(rt, bb, H, W, r.Threads)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer fe.Close()
	fmt.Fprintf(progress, "localise     training the anomaly localisation module (%d epochs, DGM %v)\n", r.ALM.Epochs, r.DGM.Enabled)
	lm, err := alm.Train(ctx, almConfig(r), trainTensors, H, W, fe, progress)
	if err != nil {
		return nil, fmt.Errorf("train: localise: %w", err)
	}
	res.ALMLosses = lm.Losses
	phase("localise", t2)

	// Calibration on the held-out images, scored by the training side.
	t3 := time.Now()
	holdScores := make([]float64, len(holdout))
	var pixels []float64
	for i, g := range holdout {
		x, err := prepare(g)
		if err != nil {
			return nil, err
		}
		mixed, err := fe.Mixed(x)
		if err != nil {
			return nil, fmt.Errorf("train: %s: %w", g.name, err)
		}
		heat, score, err := lm.Score(mixed, r.ALM.BlurSigma)
		if err != nil {
			return nil, fmt.Errorf("train: score %s: %w", g.name, err)
		}
		holdScores[i] = float64(score)
		for j := 0; j < len(heat); j += 7 { // a deterministic subsample bounds memory
			pixels = append(pixels, float64(heat[j]))
		}
	}
	man.Calibration = calibrate(r.Calibration, holdScores, pixels)
	phase("calibrate", t3)

	// Export, then verify through the daemon's engine before publishing.
	t4 := time.Now()
	loc, err := netdef.LocalizeGraph(netdef.LocalizeSpec{Height: H, Width: W, D: r.ALM.D, BlurSigma: r.ALM.BlurSigma}, bb, lm.Mapping, lm.Centre)
	if err != nil {
		return nil, fmt.Errorf("train: export localise graph: %w", err)
	}
	files[bundle.LocalizeGraphName] = loc
	man.Training.RecipeSHA256 = r.sha256()
	staging := fmt.Sprintf("%s.verifying-%d", filepath.Clean(opts.Out), os.Getpid())
	if err := bundle.Write(staging, &man, files); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer os.RemoveAll(staging)
	worst, err := verify(rt, staging, holdout, holdScores, roi)
	if err != nil {
		return nil, err
	}
	res.MaxVerify = worst
	if opts.Defects != "" {
		prf, auc, err := defectsOperatingPoint(ctx, rt, staging, opts.Defects, holdScores, roi)
		if err != nil {
			return nil, err
		}
		res.F1Optimal, res.DefectsAUC = prf, auc
		man.Calibration.F1OptimalThreshold = math.Min(1, math.Max(prf.Threshold, 1e-6))
		if err := bundle.Write(staging, &man, files); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		if _, err := bundle.Load(staging); err != nil {
			return nil, fmt.Errorf("train: rewritten bundle: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if err := bundle.Replace(staging, opts.Out); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	phase("export", t4)
	res.Manifest = man
	return res, nil
}
