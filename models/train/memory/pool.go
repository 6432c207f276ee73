//go:build workstation

package memory

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
)

// globalPool holds the candidates of the global entries when the training
// images have more locations than the selection can weigh
// (Config.GlobalCandidates): every image's locations in the order greedy
// k-center picks them within that image. A selection over n of the images
// takes the first GlobalCandidates/n of each, so every image contributes
// its most distinct locations — a rare normal structure that appears in a
// few images stays a candidate, where a uniform random sample would keep
// it only by chance (measured on magnetic_tile: image AUROC +0.01, and the
// spread between seeds halved). Greedy orders nest, so one pool would serve
// every subset of the images too; the out-of-fold memories reuse the whole
// set's selection instead (globalChoice.without), among the same shares.
type globalPool struct {
	// order lists, per image, location indices in greedy k-center order.
	order [][]int32
	// vecs holds, per image, the selection-space vectors of order's
	// locations (dims values each): a seeded random projection when the
	// features are wider than selectionDims, else the features.
	vecs [][]float32
	dims int
	// projected reports whether vecs are projections.
	projected bool
}

// globalCandidates is the bound on the global entries' candidates.
func (c Config) globalCandidates() int {
	if c.GlobalCandidates > 0 {
		return c.GlobalCandidates
	}
	return DefaultGlobalCandidates
}

// newGlobalPool orders every image's locations by greedy k-center within
// the image, far enough for a selection over as few as smallest images;
// nil when there are no global entries or every location of every image
// is a candidate anyway.
func newGlobalPool(ctx context.Context, cfg Config, d int, feats [][]float32, smallest int) (*globalPool, error) {
	if cfg.Global == 0 || len(feats) == 0 {
		return nil, nil
	}
	perImage := len(feats[0]) / d
	limit := cfg.globalCandidates()
	if perImage*len(feats) <= limit {
		return nil, nil
	}
	length := min(perImage, (limit+max(smallest, 1)-1)/max(smallest, 1))
	p := &globalPool{order: make([][]int32, len(feats)), vecs: make([][]float32, len(feats)), dims: d}
	var proj []float32
	if d > selectionDims {
		proj = gaussianProjection(rand.New(rand.NewPCG(cfg.Seed, 0x706f6f6c)), d, selectionDims)
		p.dims, p.projected = selectionDims, true
	}
	threads := workers(cfg.Threads)
	var wg sync.WaitGroup
	errs := make([]error, threads)
	for t := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := t; i < len(feats); i += threads {
				v := feats[i]
				if proj != nil {
					v = project(v, perImage, d, proj, selectionDims)
				}
				picked, _, err := kCenterThreads(ctx, nil, v, perImage, p.dims, length, nil, 1)
				if err != nil {
					errs[t] = err
					return
				}
				order := make([]int32, len(picked))
				vecs := make([]float32, 0, len(picked)*p.dims)
				for k, at := range picked {
					order[k] = int32(at)
					vecs = append(vecs, v[at*p.dims:(at+1)*p.dims]...)
				}
				p.order[i], p.vecs[i] = order, vecs
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// share is how many locations of each of n images a selection takes.
func (p *globalPool) share(n int, cfg Config) int {
	return max(1, min(len(p.order[0]), cfg.globalCandidates()/n))
}

// subset returns the pool of the images at the given indices.
func (p *globalPool) subset(at []int) *globalPool {
	if p == nil {
		return nil
	}
	s := &globalPool{order: make([][]int32, len(at)), vecs: make([][]float32, len(at)), dims: p.dims, projected: p.projected}
	for k, i := range at {
		s.order[k], s.vecs[k] = p.order[i], p.vecs[i]
	}
	return s
}

// choose chooses cfg.Global entries by greedy k-center among each image's
// share of the pool: in the selection space when the entries are many
// (globalProjectAbove) or the pool holds features, else in every
// dimension.
func (p *globalPool) choose(ctx context.Context, cfg Config, d int, feats [][]float32) (*globalChoice, error) {
	per := p.share(len(feats), cfg)
	count := per * len(feats) // candidate k is image k/per's location order[k/per][k%per]
	inSelectionSpace := !p.projected || cfg.Global > globalProjectAbove
	width := d
	if inSelectionSpace {
		width = p.dims
	}
	c := &globalChoice{width: width, image: make([]int32, 0, count), at: make([]int32, 0, count)}
	cand := make([]float32, 0, count*width)
	for i, o := range p.order {
		for _, at := range o[:per] {
			c.image, c.at = append(c.image, int32(i)), append(c.at, at)
		}
		if inSelectionSpace {
			cand = append(cand, p.vecs[i][:per*p.dims]...)
			continue
		}
		for _, at := range o[:per] {
			cand = append(cand, feats[i][int(at)*d:(int(at)+1)*d]...)
		}
	}
	c.cand = cand
	c.g = newGreedy(cand, count, width, nil, true)
	if err := c.g.extend(ctx, cfg.Global, workers(cfg.Threads)); err != nil {
		return nil, err
	}
	return c, nil
}

// gaussianProjection returns d×dims seeded Gaussian directions scaled by
// 1/√dims: distances between projected vectors are the originals' up to a
// small random factor (Johnson–Lindenstrauss).
func gaussianProjection(r *rand.Rand, d, dims int) []float32 {
	p := make([]float32, d*dims)
	for i := range p {
		p[i] = float32(r.NormFloat64() / math.Sqrt(float64(dims)))
	}
	return p
}

// project returns the count vectors of v (d values each) projected by
// proj ([d][dims]), [count][dims].
func project(v []float32, count, d int, proj []float32, dims int) []float32 {
	out := make([]float32, count*dims)
	for i := range count {
		x, o := v[i*d:(i+1)*d], out[i*dims:(i+1)*dims]
		for c, a := range x {
			if a == 0 {
				continue
			}
			for k, w := range proj[c*dims : (c+1)*dims] {
				o[k] += a * w
			}
		}
	}
	return out
}
