//go:build workstation

// Package memory builds the local-memory localisation module: at every
// feature-map location, a small memory of good features, chosen from the
// training images' features at that location and its neighbours by greedy
// k-center (coverage-preserving) selection, and the anomaly score is the
// distance to the nearest entry. It generalises the paper's one centre per
// location (ALM) to K, keeps the graph fixed (netdef.MemoryGraph) and needs
// no gradient training.
package memory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/inspectd/inspectd/infer/backend"
	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/bundle"
	"github.com/inspectd/inspectd/models/netdef"
	"github.com/inspectd/inspectd/models/train/alm"
)

// Config sets the memory's size and how it is chosen.
type Config struct {
	// Height, Width of the model input (multiples of 16).
	Height, Width int
	// Layers are the ResNet-18 stages whose features the memory holds
	// (netdef.MemoryLayerChoices; nil = [1 2 3]).
	Layers []int
	// Stride is the grid's input pixels per cell (4, 8, 16; 0 = the first
	// layer's).
	Stride int
	// D is the width of the compared features: a PCA projection to D
	// directions, or 0 for every channel of the layers (no projection).
	D int
	// Entries is the number K of memory entries per location.
	Entries int
	// Global is the number G of entries shared by every location, chosen
	// by greedy k-center among the features of every location (0: none).
	// More than globalProjectAbove of them are chosen in a random
	// projection to selectionDims directions, as PatchCore chooses its
	// coreset: the same coverage at a fraction of the work.
	Global int
	// AverageEachLayer averages each layer's features over 3×3 cells at
	// its own resolution (PatchCore's patches) instead of on the grid.
	AverageEachLayer bool
	// GlobalInt8 stores the global entries as int8 and compares them with
	// the features quantised to uint8 (netdef.MemorySpec.GlobalInt8);
	// needs Global > 0.
	GlobalInt8 bool
	// Radius r: the candidates of location p are every training image's
	// features at the grid locations within r cells (Chebyshev) of p. It absorbs
	// the residual misalignment left by the image matching module.
	Radius int
	// MaxCandidates bounds the candidates per location (a seeded random
	// subset when there are more); 0 means DefaultMaxCandidates.
	MaxCandidates int
	// GlobalCandidates bounds the candidates of the global entries; 0
	// means DefaultGlobalCandidates. When the images hold more locations,
	// each image contributes an equal share, chosen by greedy k-center
	// within the image (see globalPool).
	GlobalCandidates int
	// BlurSigma of the heatmap (pixels; 0 = netdef.DefaultBlurSigma).
	BlurSigma float64
	// Threads for feature extraction and selection.
	Threads int
	// Seed of the PCA sample, candidate subsets and folds.
	Seed uint64
	// Folds > 1 builds that many extra memories, each without one fold of
	// the training images, to score every training image out of fold
	// (Model.OutOfFold); their shared entries reuse the whole memory's
	// selection (globalChoice.without). 0 or 1: none.
	Folds int
}

// DefaultMaxCandidates bounds the greedy selection's work per location.
const DefaultMaxCandidates = 8192

// MaxGlobal is the most global entries a memory may hold.
const MaxGlobal = bundle.MaxGlobalEntries

// globalProjectAbove and selectionDims: banks of more global entries than
// globalProjectAbove are chosen by greedy k-center in a seeded Gaussian
// random projection of the candidates to selectionDims directions.
const (
	globalProjectAbove = 1024
	selectionDims      = 128
)

// DefaultGlobalCandidates bounds the candidates of the global entries:
// every location of every image when they fit, else an equal share of each
// image's (see globalPool).
const DefaultGlobalCandidates = 1 << 17

// pcaImages and pcaSamples bound the work of the projection's PCA.
const (
	pcaImages  = 64
	pcaSamples = 16384
)

// Validate checks the values Train needs.
func (c Config) Validate() error {
	var errs []error
	if c.Height < 32 || c.Width < 32 || c.Height%16 != 0 || c.Width%16 != 0 {
		errs = append(errs, fmt.Errorf("memory: input %d×%d, want multiples of 16 from 32", c.Width, c.Height))
	}
	if channels, err := netdef.MemoryChannels(c.Layers); err != nil {
		errs = append(errs, fmt.Errorf("memory: %w", err))
	} else if c.Stride != 0 && !slices.Contains(netdef.MemoryStrides, c.Stride) {
		errs = append(errs, fmt.Errorf("memory: stride = %d, want 4, 8 or 16", c.Stride))
	} else if c.D < 0 || c.D > channels {
		errs = append(errs, fmt.Errorf("memory: d = %d, want 0 (every channel) or 1..%d (the layers' channels)", c.D, channels))
	}
	if c.Entries < 0 || c.Entries > 4096 {
		errs = append(errs, fmt.Errorf("memory: entries = %d, want 0..4096", c.Entries))
	}
	if c.Global < 0 || c.Global > MaxGlobal {
		errs = append(errs, fmt.Errorf("memory: global entries = %d, want 0..%d", c.Global, MaxGlobal))
	}
	if c.Entries == 0 && c.Global == 0 {
		errs = append(errs, errors.New("memory: no entries per location and no global ones, want some of either"))
	}
	if c.GlobalInt8 && c.Global == 0 {
		errs = append(errs, errors.New("memory: int8 global entries, but no global entries"))
	}
	if c.Radius < 0 || c.Radius > 16 {
		errs = append(errs, fmt.Errorf("memory: radius = %d, want 0..16 cells", c.Radius))
	}
	if c.Folds < 0 || c.Folds > 20 {
		errs = append(errs, fmt.Errorf("memory: folds = %d, want 0..20", c.Folds))
	}
	if c.MaxCandidates < 0 {
		errs = append(errs, fmt.Errorf("memory: max candidates = %d, want ≥ 0", c.MaxCandidates))
	}
	if c.GlobalCandidates < 0 {
		errs = append(errs, fmt.Errorf("memory: global candidates = %d, want ≥ 0", c.GlobalCandidates))
	}
	return errors.Join(errs...)
}

// Model is a built local memory, ready for netdef.MemoryGraph.
type Model struct {
	// Spec is the graph's shape, Scale included.
	Spec netdef.MemorySpec
	// Projection is the 1×1 convolution channels→D (PCA directions, bias
	// −P·μ); the zero value when Config.D is 0.
	Projection netdef.ConvWeights
	// Bank holds the entries, location-major: [gridH·gridW][K][D].
	Bank []float32
	// Global holds the entries every location shares: [G][D].
	Global []float32
	// OutOfFold holds, for every training image in order, the blurred
	// distance map (H·W, before the b/(b+Scale) map) it gets from a memory
	// built without its fold: scores of good images the memory has not
	// seen, for calibration on small sets (nil with Config.Folds < 2).
	OutOfFold [][]float64

	extract *Extractor
	be      backend.Backend
	threads int
}

// Extractor runs netdef.MemoryFeaturesGraph: the exact features the
// deployed graph compares with the memory. One goroutine at a time.
type Extractor struct {
	sess    backend.Session
	in, out []float32
}

// NewExtractor compiles the feature graph of spec and projection.
func NewExtractor(be backend.Backend, bb *backbone.Weights, spec netdef.MemorySpec, projection netdef.ConvWeights, threads int) (*Extractor, error) {
	g, err := netdef.MemoryFeaturesGraph(spec, bb, projection)
	if err != nil {
		return nil, fmt.Errorf("memory features: %w", err)
	}
	sess, err := be.NewSession(g, threads)
	if err != nil {
		return nil, fmt.Errorf("memory features: %w", err)
	}
	in, err1 := sess.Input("image")
	out, err2 := sess.Output("features")
	if err := errors.Join(err1, err2); err != nil {
		sess.Close()
		return nil, fmt.Errorf("memory features: %w", err)
	}
	return &Extractor{sess: sess, in: in, out: out}, nil
}

// Features returns the D×gridH×gridW features of image (CHW 3×H×W in
// [0,1]) transposed to location-major [gridH·gridW][D], into dst (reused when
// large enough).
func (e *Extractor) Features(image, dst []float32, d int) ([]float32, error) {
	if len(image) != len(e.in) {
		return nil, fmt.Errorf("memory features: image has %d values, want %d", len(image), len(e.in))
	}
	copy(e.in, image)
	if err := e.sess.Run(); err != nil {
		return nil, fmt.Errorf("memory features: %w", err)
	}
	n := len(e.out) / d
	if cap(dst) < len(e.out) {
		dst = make([]float32, len(e.out))
	}
	dst = dst[:len(e.out)]
	for c := range d {
		for p, v := range e.out[c*n : (c+1)*n] {
			dst[p*d+c] = v
		}
	}
	return dst, nil
}

// Close releases the session.
func (e *Extractor) Close() error { return e.sess.Close() }

// Close releases the model's feature session.
func (m *Model) Close() error {
	if m.extract == nil {
		return nil
	}
	err := m.extract.Close()
	m.extract = nil
	return err
}

// Train builds the memory from the (aligned) training images, CHW 3×H×W
// tensors in [0,1]: with Config.D > 0 the PCA projection of the layers'
// features, every image's features through the exported feature graph,
// then K entries per location by greedy k-center selection. Scale is set
// to the mean of the training images' largest blurred distance.
func Train(ctx context.Context, cfg Config, images [][]float32, be backend.Backend, bb *backbone.Weights, progress io.Writer) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(images) == 0 {
		return nil, errors.New("memory: no training images")
	}
	if progress == nil {
		progress = io.Discard
	}
	threads := max(cfg.Threads, 1)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6d656d6f))
	channels, _ := netdef.MemoryChannels(cfg.Layers) // checked by Validate
	spec := netdef.MemorySpec{Height: cfg.Height, Width: cfg.Width, Layers: cfg.Layers, Stride: cfg.Stride, D: channels, Entries: cfg.Entries, Global: cfg.Global,
		AverageEachLayer: cfg.AverageEachLayer, GlobalInt8: cfg.GlobalInt8, BlurSigma: cfg.BlurSigma, Scale: 1}
	ex, err := NewExtractor(be, bb, spec, netdef.ConvWeights{}, threads)
	if err != nil {
		return nil, err
	}
	var proj netdef.ConvWeights
	if cfg.D > 0 {
		proj, err = projection(ctx, cfg, ex, channels, images, rng)
		ex.Close()
		if err != nil {
			return nil, err
		}
		spec.D = cfg.D
		if ex, err = NewExtractor(be, bb, spec, proj, threads); err != nil {
			return nil, err
		}
	}
	d := spec.D
	m := &Model{Spec: spec, Projection: proj, extract: ex, be: be, threads: threads}
	feats := make([][]float32, len(images))
	for i, img := range images {
		if err := ctx.Err(); err != nil {
			m.Close()
			return nil, fmt.Errorf("memory: %w", err)
		}
		if feats[i], err = ex.Features(img, nil, d); err != nil {
			m.Close()
			return nil, err
		}
	}
	gh, gw := spec.Grid()
	fmt.Fprintf(progress, "memory       features of %d images (%d values at %d×%d locations), choosing %d entries per location (radius %d) and %d shared ones\n",
		len(images), d, gw, gh, cfg.Entries, cfg.Radius, cfg.Global)
	if err := m.build(ctx, cfg, feats, rng, progress); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// build chooses m's entries from the training images' features (feats,
// location-major, in m.Spec's width), the out-of-fold memories' with
// cfg.Folds, and sets Scale and OutOfFold.
func (m *Model) build(ctx context.Context, cfg Config, feats [][]float32, rng *rand.Rand, progress io.Writer) error {
	d := m.Spec.D
	pool, err := newGlobalPool(ctx, cfg, d, feats, len(feats))
	if err != nil {
		return err
	}
	if pool != nil {
		fmt.Fprintf(progress, "memory       shared entries chosen among %d locations of each image (greedy k-center within the image; %d locations in all)\n",
			pool.share(len(feats), cfg), pool.share(len(feats), cfg)*len(feats))
	}
	if m.Bank, err = selectBank(ctx, cfg, m.Spec, feats); err != nil {
		return err
	}
	choice, err := chooseGlobal(ctx, cfg, d, feats, pool)
	if err != nil {
		return err
	}
	if choice != nil {
		m.Global, m.Spec.GlobalScale = choice.entries(choice.g.picked, feats, d, cfg)
	}
	var oof [][]float32
	if cfg.Folds > 1 && len(feats) >= cfg.Folds {
		if oof, err = m.outOfFold(ctx, cfg, feats, choice, rng, progress); err != nil {
			return err
		}
	}
	all, err := m.distancesAll(ctx, feats)
	if err != nil {
		return err
	}
	var sum float64
	for _, d := range all {
		sum += slices.Max(netdef.MemoryBlurred(m.Spec, d))
	}
	m.Spec.Scale = math.Max(sum/float64(len(feats)), 1e-6)
	for _, d := range oof {
		m.OutOfFold = append(m.OutOfFold, netdef.MemoryBlurred(m.Spec, d))
	}
	return nil
}

// outOfFold returns every training image's per-location distances to a
// memory like m built from the other folds (assigned at random, seeded).
// Each fold's global entries reuse the whole set's selection (choice; see
// globalChoice.without): its entries from the other folds' images, then
// greedy k-center among the other folds' candidates up to cfg.Global.
func (m *Model) outOfFold(ctx context.Context, cfg Config, feats [][]float32, choice *globalChoice, rng *rand.Rand, progress io.Writer) ([][]float32, error) {
	spec := m.Spec
	fold := make([]int, len(feats))
	for i, p := range rng.Perm(len(feats)) {
		fold[p] = i % cfg.Folds
	}
	out := make([][]float32, len(feats))
	held := make([]bool, len(feats))
	for f := range cfg.Folds {
		fmt.Fprintf(progress, "memory       out-of-fold scores: fold %d of %d\n", f+1, cfg.Folds)
		var rest [][]float32
		for i, x := range feats {
			held[i] = fold[i] == f
			if !held[i] {
				rest = append(rest, x)
			}
		}
		other := &Model{Spec: spec, be: m.be, threads: m.threads}
		var err error
		if other.Bank, err = selectBank(ctx, cfg, spec, rest); err != nil {
			return nil, err
		}
		if choice != nil {
			picked, err := choice.without(ctx, held, cfg.Global, workers(cfg.Threads))
			if err != nil {
				return nil, err
			}
			other.Global, other.Spec.GlobalScale = choice.entries(picked, feats, spec.D, cfg)
		}
		var heldFeats [][]float32
		var at []int
		for i, x := range feats {
			if held[i] {
				heldFeats, at = append(heldFeats, x), append(at, i)
			}
		}
		dists, err := other.distancesAll(ctx, heldFeats)
		if err != nil {
			return nil, err
		}
		for j, d := range dists {
			out[at[j]] = d
		}
	}
	return out, nil
}

// projection computes the PCA of the layers' 3×3-averaged features (raw
// runs the feature graph without projection) at up to pcaSamples locations
// of up to pcaImages images and returns it as a 1×1 convolution.
func projection(ctx context.Context, cfg Config, raw *Extractor, channels int, images [][]float32, rng *rand.Rand) (netdef.ConvWeights, error) {
	step := max(1, len(images)/pcaImages)
	var picked []int
	for i := 0; i < len(images) && len(picked) < pcaImages; i += step {
		picked = append(picked, i)
	}
	perImage := max(1, pcaSamples/len(picked))
	var samples [][]float32
	var f []float32
	for _, i := range picked {
		if err := ctx.Err(); err != nil {
			return netdef.ConvWeights{}, fmt.Errorf("memory: %w", err)
		}
		var err error
		if f, err = raw.Features(images[i], f, channels); err != nil {
			return netdef.ConvWeights{}, err
		}
		n := len(f) / channels
		for range min(perImage, n) {
			p := rng.IntN(n)
			samples = append(samples, slices.Clone(f[p*channels:(p+1)*channels]))
		}
	}
	mean, dirs := alm.PCA(samples, cfg.D)
	c := channels
	w := netdef.ConvWeights{Out: cfg.D, In: c, Kernel: 1, Weight: make([]float32, cfg.D*c), Bias: make([]float32, cfg.D)}
	for o := range cfg.D {
		var b float64
		for k := range c {
			w.Weight[o*c+k] = float32(dirs[o*c+k])
			b -= dirs[o*c+k] * mean[k]
		}
		w.Bias[o] = float32(b)
	}
	return w, nil
}

// selectGlobal chooses cfg.Global entries ([G][D]) by greedy k-center
// among the features of every location of every image, or, when they are
// more than cfg's global candidates, among each image's share of pool
// (which holds feats' images); nil when cfg.Global is 0.
func selectGlobal(ctx context.Context, cfg Config, d int, feats [][]float32, pool *globalPool) ([]float32, error) {
	choice, err := chooseGlobal(ctx, cfg, d, feats, pool)
	if err != nil || choice == nil {
		return nil, err
	}
	return choice.entryVectors(choice.g.picked, feats, d, cfg.Global), nil
}

// chooseGlobal runs selectGlobal's selection and returns it whole, for
// the out-of-fold memories to reuse; nil when cfg.Global is 0.
func chooseGlobal(ctx context.Context, cfg Config, d int, feats [][]float32, pool *globalPool) (*globalChoice, error) {
	if cfg.Global == 0 {
		return nil, nil
	}
	total := 0
	for _, f := range feats {
		total += len(f) / d
	}
	if total > cfg.globalCandidates() {
		if pool == nil || len(pool.order) != len(feats) {
			return nil, errors.New("memory: internal error: more locations than global candidates, and no candidate pool for these images")
		}
		return pool.choose(ctx, cfg, d, feats)
	}
	count := total
	r := rand.New(rand.NewPCG(cfg.Seed, 0x676c6f62))
	// A partial Fisher–Yates shuffle of the indices picks count of them.
	idx := make([]int32, total)
	for i := range idx {
		idx[i] = int32(i)
	}
	for i := range count {
		j := i + r.IntN(total-i)
		idx[i], idx[j] = idx[j], idx[i]
	}
	perImage := len(feats[0]) / d
	c := &globalChoice{width: d, image: make([]int32, count), at: make([]int32, count)}
	cand := make([]float32, 0, count*d)
	for k, i := range idx[:count] {
		c.image[k], c.at[k] = i/int32(perImage), i%int32(perImage)
		f, p := feats[c.image[k]], int(c.at[k])
		cand = append(cand, f[p*d:(p+1)*d]...)
	}
	c.cand = cand
	if cfg.Global > globalProjectAbove && d > selectionDims {
		c.cand, c.width = randomProjection(cand, count, d, selectionDims, r, workers(cfg.Threads)), selectionDims
	}
	c.g = newGreedy(c.cand, count, c.width, nil, true)
	if err := c.g.extend(ctx, cfg.Global, workers(cfg.Threads)); err != nil {
		return nil, err
	}
	return c, nil
}

// randomProjection returns the count vectors of cand (d values each)
// projected on dims seeded Gaussian directions (gaussianProjection),
// [count][dims], on threads goroutines.
func randomProjection(cand []float32, count, d, dims int, r *rand.Rand, threads int) []float32 {
	p := gaussianProjection(r, d, dims)
	out := make([]float32, count*dims)
	var wg sync.WaitGroup
	for t := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lo, hi := t*count/threads, (t+1)*count/threads
			copy(out[lo*dims:hi*dims], project(cand[lo*d:hi*d], hi-lo, d, p, dims))
		}()
	}
	wg.Wait()
	return out
}

// quantize rounds entries in place to multiples of one step, the largest
// magnitude over 127, and returns the step: entry = step × int8.
func quantize(entries []float32) float32 {
	var top float32
	for _, v := range entries {
		top = max(top, float32(math.Abs(float64(v))))
	}
	step := max(top, 1e-6) / 127
	for i, v := range entries {
		entries[i] = step * float32(netdef.Int8Step(v, step))
	}
	return step
}

// selectBank chooses Entries memory entries per location from feats (one
// location-major [gridH·gridW][D] slice per image) by greedy k-center over
// the candidates within Radius cells, on cfg.Threads goroutines, returning
// the bank [gridH·gridW][K][D].
func selectBank(ctx context.Context, cfg Config, spec netdef.MemorySpec, feats [][]float32) ([]float32, error) {
	if cfg.Entries == 0 {
		return []float32{}, nil
	}
	h4, w4 := spec.Grid()
	n, d, k := h4*w4, spec.D, cfg.Entries
	limit := cfg.MaxCandidates
	if limit == 0 {
		limit = DefaultMaxCandidates
	}
	bank := make([]float32, n*k*d)
	var next sync.Mutex
	p0 := 0
	var wg sync.WaitGroup
	for range workers(cfg.Threads) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cand, minD []float32
			for {
				if ctx.Err() != nil {
					return
				}
				next.Lock()
				p := p0
				p0++
				next.Unlock()
				if p >= n {
					return
				}
				cand = gather(cand[:0], feats, p, h4, w4, d, cfg.Radius)
				count := len(cand) / d
				if count > limit {
					cand = subsample(cand, count, limit, d, rand.New(rand.NewPCG(cfg.Seed, uint64(p))))
					count = limit
				}
				minD = kCenter(bank[p*k*d:(p+1)*k*d], cand, count, d, k, minD)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	return bank, nil
}

// gather appends every image's feature vectors within radius of p.
func gather(dst []float32, feats [][]float32, p, h4, w4, d, radius int) []float32 {
	y, x := p/w4, p%w4
	for _, f := range feats {
		for yy := max(0, y-radius); yy <= min(h4-1, y+radius); yy++ {
			for xx := max(0, x-radius); xx <= min(w4-1, x+radius); xx++ {
				q := yy*w4 + xx
				dst = append(dst, f[q*d:(q+1)*d]...)
			}
		}
	}
	return dst
}

// subsample keeps limit of the count vectors, chosen at random, in place.
func subsample(cand []float32, count, limit, d int, r *rand.Rand) []float32 {
	for i := range limit {
		j := i + r.IntN(count-i)
		if i != j {
			a, b := cand[i*d:(i+1)*d], cand[j*d:(j+1)*d]
			for c := range d {
				a[c], b[c] = b[c], a[c]
			}
		}
	}
	return cand[:limit*d]
}

// kCenter writes k entries of the count candidates into out ([k][d]):
// first the candidate nearest their mean, then repeatedly the candidate
// farthest from every entry chosen so far. With fewer candidates than k the
// last one chosen fills the rest (a duplicate changes no minimum).
func kCenter(out, cand []float32, count, d, k int, minD []float32) []float32 {
	_, minD, _ = kCenterThreads(context.Background(), out, cand, count, d, k, minD, 1)
	return minD
}

// kCenterParallel is kCenter with each step's distance updates split over
// threads goroutines (the same entries: ties go to the lowest index either
// way), stopping when ctx is done.
func kCenterParallel(ctx context.Context, out, cand []float32, count, d, k, threads int) error {
	_, _, err := kCenterThreads(ctx, out, cand, count, d, k, nil, threads)
	return err
}

// kCenterThreads is kCenterParallel returning the indices of the chosen
// candidates in order (min(k, count) of them) and the distances left;
// with out nil it only chooses.
func kCenterThreads(ctx context.Context, out, cand []float32, count, d, k int, minD []float32, threads int) ([]int, []float32, error) {
	g := newGreedy(cand, count, d, minD, false)
	if err := g.extend(ctx, k, threads); err != nil {
		return nil, g.minD, err
	}
	if out != nil && len(g.picked) > 0 {
		for e := range k {
			i := g.picked[min(e, len(g.picked)-1)]
			copy(out[e*d:(e+1)*d], cand[i*d:(i+1)*d])
		}
	}
	return g.picked, g.minD, nil
}

// greedy is the state of a greedy k-center selection over count
// candidates of d values: the candidates chosen so far, in order, every
// candidate's squared distance to its nearest chosen one and, when kept,
// which one that is; next is the candidate the next step chooses.
type greedy struct {
	cand     []float32
	count, d int
	picked   []int
	minD     []float32
	// nearest[i] is the position in picked of candidate i's nearest
	// entry (nil when not kept).
	nearest []int32
	next    int
}

// newGreedy starts a selection: nothing chosen, every distance +Inf, the
// candidate nearest the candidates' mean first. minD is reused when large
// enough; keepNearest keeps every candidate's nearest entry.
func newGreedy(cand []float32, count, d int, minD []float32, keepNearest bool) *greedy {
	mean := make([]float64, d)
	for i := range count {
		for c, v := range cand[i*d : (i+1)*d] {
			mean[c] += float64(v)
		}
	}
	first, best := 0, math.Inf(1)
	for i := range count {
		var s float64
		for c, v := range cand[i*d : (i+1)*d] {
			t := float64(v) - mean[c]/float64(count)
			s += t * t
		}
		if s < best {
			first, best = i, s
		}
	}
	if cap(minD) < count {
		minD = make([]float32, count)
	}
	minD = minD[:count]
	for i := range minD {
		minD[i] = float32(math.Inf(1))
	}
	g := &greedy{cand: cand, count: count, d: d, minD: minD, next: first}
	if keepNearest {
		g.nearest = make([]int32, count)
	}
	return g
}

// extend chooses candidates until k are chosen (or every candidate is),
// each the farthest from every one chosen before (ties to the lowest
// index), with each step's distance updates split over threads goroutines
// (the same choice either way), stopping when ctx is done.
func (g *greedy) extend(ctx context.Context, k, threads int) error {
	count, d := g.count, g.d
	// update lowers minD[lo:hi] by the distances to the e-th entry sel and
	// returns the farthest candidate of the range.
	update := func(sel []float32, e int32, lo, hi int) (int, float32) {
		far, farD := lo, float32(-1)
		for i := lo; i < hi; i++ {
			v := sqDist(g.cand[i*d:(i+1)*d], sel)
			if v < g.minD[i] {
				g.minD[i] = v
				if g.nearest != nil {
					g.nearest[i] = e
				}
			}
			if g.minD[i] > farD {
				far, farD = i, g.minD[i]
			}
		}
		return far, farD
	}
	chunks := max(1, min(threads, count/1024))
	fars, farDs := make([]int, chunks), make([]float32, chunks)
	for len(g.picked) < min(k, count) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		pick, e := g.next, int32(len(g.picked))
		g.picked = append(g.picked, pick)
		sel := g.cand[pick*d : (pick+1)*d]
		if chunks == 1 {
			g.next, _ = update(sel, e, 0, count)
			continue
		}
		var wg sync.WaitGroup
		for c := range chunks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fars[c], farDs[c] = update(sel, e, c*count/chunks, (c+1)*count/chunks)
			}()
		}
		wg.Wait()
		g.next = fars[0]
		for c := 1; c < chunks; c++ {
			if farDs[c] > farDs[0] {
				g.next, farDs[0] = fars[c], farDs[c]
			}
		}
	}
	return nil
}

func sqDist(a, b []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0, d1, d2, d3 := a[i]-b[i], a[i+1]-b[i+1], a[i+2]-b[i+2], a[i+3]-b[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		t := a[i] - b[i]
		s0 += t * t
	}
	return s0 + s1 + s2 + s3
}

// workers is the number of goroutines for a job asked to use threads: at
// least 1, at most the machine's CPUs.
func workers(threads int) int { return max(1, min(threads, runtime.NumCPU())) }

// distancesAll returns the per-location distances of every feature map in
// feats (location-major [n][D]), computed on the runtime by
// netdef.MemoryDistanceGraph: exactly the comparison the deployed graph
// makes, at its speed.
func (m *Model) distancesAll(ctx context.Context, feats [][]float32) ([][]float32, error) {
	g, err := netdef.MemoryDistanceGraph(m.Spec, m.Bank, m.Global)
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	sess, err := m.be.NewSession(g, m.threads)
	if err != nil {
		return nil, fmt.Errorf("memory distances: %w", err)
	}
	defer sess.Close()
	in, err1 := sess.Input("features")
	dist, err2 := sess.Output("distances")
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("memory distances: %w", err)
	}
	d := m.Spec.D
	n := len(in) / d
	out := make([][]float32, len(feats))
	for i, f := range feats {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("memory: %w", err)
		}
		if len(f) != n*d {
			return nil, fmt.Errorf("memory distances: feature map %d has %d values, want %d", i, len(f), n*d)
		}
		for p := range n {
			for c, v := range f[p*d : (p+1)*d] {
				in[c*n+p] = v
			}
		}
		if err := sess.Run(); err != nil {
			return nil, fmt.Errorf("memory distances: %w", err)
		}
		out[i] = slices.Clone(dist)
	}
	return out, nil
}

// distances returns, per location, the distance of f (location-major
// [n][D]) to its nearest memory entry, in float64 as the reference of the
// graph (its int8 comparison with Spec.GlobalInt8 included), on
// m.threads goroutines.
func (m *Model) distances(f []float32) []float32 {
	d, k := m.Spec.D, m.Spec.Entries
	n := len(f) / d
	out := make([]float32, n)
	// With int8 entries: ‖g_j‖², and DynamicQuantizeLinear's step and zero
	// point — the frame's range (with 0) over 255, and where 0 falls in it.
	var gsq []float64
	var gi []int8
	var sx float32
	var zp float64
	if m.Spec.GlobalInt8 {
		gsq, gi = m.globalSquares(), m.globalInt8s()
		lo, hi := float32(0), float32(0)
		for _, v := range f {
			lo, hi = min(lo, v), max(hi, v)
		}
		if sx = (hi - lo) / 255; sx > 0 {
			zp = min(255, max(0, math.RoundToEven(float64(-lo/sx))))
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers(m.threads), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			xq := make([]int32, d)
			for p := int(next.Add(1) - 1); p < n; p = int(next.Add(1) - 1) {
				x := f[p*d : (p+1)*d]
				best := nearestSquared(x, m.Bank[p*k*d:(p+1)*k*d])
				if m.Spec.GlobalInt8 {
					best = math.Min(best, m.nearestInt8(x, sx, zp, xq, gsq, gi))
				} else {
					best = math.Min(best, nearestSquared(x, m.Global))
				}
				out[p] = float32(math.Sqrt(math.Max(best, 0)))
			}
		}()
	}
	wg.Wait()
	return out
}

// globalSquares returns ‖g_j‖² of every global entry (float64 sums).
func (m *Model) globalSquares() []float64 {
	d := m.Spec.D
	sq := make([]float64, len(m.Global)/max(d, 1))
	for j := range sq {
		for _, v := range m.Global[j*d : (j+1)*d] {
			sq[j] += float64(v) * float64(v)
		}
	}
	return sq
}

// nearestInt8 returns the graph's squared distance of x to its nearest
// global entry when they are int8: ‖x‖² + min_j(‖g_j‖² − 2·sx·step·(q(x) − zp)·g_j),
// x quantised as DynamicQuantizeLinear does with the frame's step sx and
// zero point zp (x / sx in float32, rounded half to even, plus zp,
// saturating to 0..255) and the product of the integers exact, as
// MatMulInteger's; xq is scratch of len(x), gi the entries' int8 values
// (m.globalInt8s) and gsq their squares.
func (m *Model) nearestInt8(x []float32, sx float32, zp float64, xq []int32, gsq []float64, gi []int8) float64 {
	var xx float64
	for c, v := range x {
		xx += float64(v) * float64(v)
		xq[c] = 0
		if sx > 0 {
			xq[c] = int32(min(255, max(0, math.RoundToEven(float64(v/sx))+zp)) - zp)
		}
	}
	d := len(x)
	scale := 2 * float64(sx) * float64(m.Spec.GlobalScale)
	best := math.Inf(1)
	j := 0
	// Four entries at a time: each value of q(x) is loaded once for four
	// products.
	for ; j+4 <= len(gsq); j += 4 {
		g := gi[j*d : (j+4)*d]
		g0, g1, g2, g3 := g[:d], g[d:2*d], g[2*d:3*d], g[3*d:4*d]
		var s0, s1, s2, s3 int32
		for c, q := range xq[:d] {
			s0 += q * int32(g0[c])
			s1 += q * int32(g1[c])
			s2 += q * int32(g2[c])
			s3 += q * int32(g3[c])
		}
		best = min(best, gsq[j]-scale*float64(s0), gsq[j+1]-scale*float64(s1), gsq[j+2]-scale*float64(s2), gsq[j+3]-scale*float64(s3))
	}
	for ; j < len(gsq); j++ {
		var s0 int32
		for c, v := range gi[j*d : (j+1)*d] {
			s0 += xq[c] * int32(v)
		}
		best = min(best, gsq[j]-scale*float64(s0))
	}
	return xx + best
}

// globalInt8s returns the int8 values of the global entries (entry =
// Spec.GlobalScale × value), [G][D].
func (m *Model) globalInt8s() []int8 {
	gi := make([]int8, len(m.Global))
	for i, v := range m.Global {
		gi[i] = netdef.Int8Step(v, m.Spec.GlobalScale)
	}
	return gi
}

// nearestSquared returns the least squared L2 distance, in float64, of x to
// the rows of block (len(x) values each); +Inf when block is empty.
func nearestSquared(x, block []float32) float64 {
	d := len(x)
	best := math.Inf(1)
	for r := 0; r+d <= len(block); r += d {
		var s float64
		for c, v := range block[r : r+d] {
			t := float64(x[c]) - float64(v)
			s += t * t
		}
		best = math.Min(best, s)
	}
	return best
}

// Squash is the graph's final map b/(b+Scale) of a blurred distance.
func (m *Model) Squash(b float64) float64 { return b / (b + m.Spec.Scale) }

// Blurred computes, from the image (CHW 3×H×W in [0,1], aligned as the
// daemon aligns it), the blurred distance map (H·W) before the final
// b/(b+Scale) map.
func (m *Model) Blurred(image []float32) ([]float64, error) {
	if m.extract == nil {
		return nil, errors.New("memory: model closed")
	}
	f, err := m.extract.Features(image, nil, m.Spec.D)
	if err != nil {
		return nil, err
	}
	return netdef.MemoryBlurred(m.Spec, m.distances(f)), nil
}

// Score computes, from the image (CHW 3×H×W in [0,1], aligned as the
// daemon aligns it), the heatmap and score the exported graph gives.
func (m *Model) Score(image []float32) ([]float32, float32, error) {
	if m.extract == nil {
		return nil, 0, errors.New("memory: model closed")
	}
	f, err := m.extract.Features(image, nil, m.Spec.D)
	if err != nil {
		return nil, 0, err
	}
	heat, score := netdef.MemoryHeatmap(m.Spec, m.distances(f))
	return heat, score, nil
}

// Graph emits the model's localisation graph.
func (m *Model) Graph(bb *backbone.Weights) ([]byte, error) {
	return netdef.MemoryGraph(m.Spec, bb, m.Projection, m.Bank, m.Global)
}
