//go:build workstation

package memory

import (
	"context"
	"sync"
)

// globalChoice is a selection of the global entries, kept whole so that
// the out-of-fold memories can reuse it instead of choosing again.
type globalChoice struct {
	// cand holds the candidates in the selection space, [count][width].
	cand  []float32
	width int
	// image and at are each candidate's image (an index into the features
	// the selection drew on) and location within that image.
	image, at []int32
	// g is the finished selection, every candidate's nearest entry kept.
	g *greedy
}

// entryVectors returns the features of the candidates picked ([k][d], the
// last one repeated when fewer were picked).
func (c *globalChoice) entryVectors(picked []int, feats [][]float32, d, k int) []float32 {
	out := make([]float32, k*d)
	if len(picked) == 0 {
		return out
	}
	for e := range k {
		i := picked[min(e, len(picked)-1)]
		f, p := feats[c.image[i]], int(c.at[i])
		copy(out[e*d:(e+1)*d], f[p*d:(p+1)*d])
	}
	return out
}

// entries is entryVectors for cfg.Global entries, rounded to int8 steps
// with cfg.GlobalInt8 (step: their quantisation step, else 0); nil for a
// nil choice.
func (c *globalChoice) entries(picked []int, feats [][]float32, d int, cfg Config) (global []float32, step float32) {
	if c == nil {
		return nil, 0
	}
	global = c.entryVectors(picked, feats, d, cfg.Global)
	if cfg.GlobalInt8 {
		step = quantize(global)
	}
	return global, step
}

// without returns a selection of k entries among the candidates of the
// images not held (held[image]), in c's numbering, that reuses c's work:
// c's entries from those images, in order; every remaining candidate's
// distance to them — c's own where its nearest entry stays (the nearest
// of a subset it belongs to), computed anew only where that entry left;
// then greedy k-center among the remaining candidates from there, up to
// k. No candidate of a held image is ever chosen, so a memory of these
// entries scores the held images out of fold. Its coverage radius is that
// of a greedy selection continued from a set of well-spread entries
// (TestFoldSelectionCoversLikeAFreshOne).
func (c *globalChoice) without(ctx context.Context, held []bool, k, threads int) ([]int, error) {
	n := len(c.image)
	keep := make([]int32, 0, n) // the fold's candidate j is c's keep[j]
	renumbered := make([]int32, n)
	for i := range n {
		renumbered[i] = -1
		if !held[c.image[i]] {
			renumbered[i] = int32(len(keep))
			keep = append(keep, int32(i))
		}
	}
	w := c.width
	cand := make([]float32, len(keep)*w)
	for j, i := range keep {
		copy(cand[j*w:(j+1)*w], c.cand[int(i)*w:(int(i)+1)*w])
	}
	g := &greedy{cand: cand, count: len(keep), d: w, minD: make([]float32, len(keep)), nearest: make([]int32, len(keep))}
	entry := make([]int32, len(c.g.picked)) // c's entry e is the fold's entry[e], or -1
	for e, i := range c.g.picked {
		entry[e] = -1
		if j := renumbered[i]; j >= 0 {
			entry[e] = int32(len(g.picked))
			g.picked = append(g.picked, int(j))
		}
	}
	if len(g.picked) == 0 || len(keep) == 0 { // nothing to reuse
		g = newGreedy(cand, len(keep), w, nil, false)
	} else {
		var orphans []int32
		for j, i := range keep {
			if e := entry[c.g.nearest[i]]; e >= 0 {
				g.minD[j], g.nearest[j] = c.g.minD[i], e
			} else {
				orphans = append(orphans, int32(j))
			}
		}
		g.nearestAmongPicked(orphans, threads)
		g.next = g.farthest()
	}
	if err := g.extend(ctx, k, threads); err != nil {
		return nil, err
	}
	picked := make([]int, len(g.picked))
	for e, j := range g.picked {
		picked[e] = int(keep[j])
	}
	return picked, nil
}

// nearestAmongPicked sets minD and nearest of the candidates listed to
// their nearest picked entry, on threads goroutines.
func (g *greedy) nearestAmongPicked(list []int32, threads int) {
	d := g.d
	var wg sync.WaitGroup
	threads = max(1, min(threads, len(list)/64))
	for t := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, j := range list[t*len(list)/threads : (t+1)*len(list)/threads] {
				x := g.cand[int(j)*d : (int(j)+1)*d]
				best, at := float32(-1), int32(0)
				for e, p := range g.picked {
					if v := sqDist(g.cand[p*d:(p+1)*d], x); best < 0 || v < best {
						best, at = v, int32(e)
					}
				}
				g.minD[j], g.nearest[j] = best, at
			}
		}()
	}
	wg.Wait()
}

// farthest returns the candidate farthest from every entry (the lowest
// index among ties).
func (g *greedy) farthest() int {
	far, farD := 0, float32(-1)
	for i, v := range g.minD {
		if v > farD {
			far, farD = i, v
		}
	}
	return far
}
