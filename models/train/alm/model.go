//go:build workstation

package alm

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/inspectd/inspectd/models/netdef"
)

// Model is a trained ALM: N_M and F_C, ready for netdef.LocalizeGraph.
type Model struct {
	// Mapping is N_M.
	Mapping netdef.MappingWeights
	// Centre is F_C, D×(Height/4)×(Width/4) row-major (CHW); a global centre
	// is broadcast to every location.
	Centre []float32
	// D is the channel count of F_M and F_C; Height, Width the input size.
	D, Height, Width int
	// Losses is the mean training loss of each epoch.
	Losses []float64
	// Reduction is the reduction that defined F_C and initialised N_M.
	Reduction string
	// CentreMode is CentreLocal or CentreGlobal.
	CentreMode string
	// LocationsPerSecond is the measured training throughput (0 without training).
	LocationsPerSecond float64
}

// LocalizeSpec returns the netdef spec for exporting m with the given blur σ.
func (m *Model) LocalizeSpec(blurSigma float64) netdef.LocalizeSpec {
	return netdef.LocalizeSpec{Height: m.Height, Width: m.Width, D: m.D, BlurSigma: blurSigma}
}

// Score computes, in pure Go, what netdef.LocalizeGraph computes from
// F_Mixed (mixed, 448×(H/4)×(W/4) CHW): N_M, the per-location distance
// 0.5·(1 − F_M·F_C / (max(‖F_M‖, CosineNormFloor)·‖F_C‖ + CosineEps)), bilinear upsampling to H×W
// and the Gaussian blur of σ = blurSigma pixels (0 means
// netdef.DefaultBlurSigma) through netdef.UpsampleBlurMatrix. It returns the
// heatmap (H×W row-major) and the image score, the heatmap maximum.
func (m *Model) Score(mixed []float32, blurSigma float64) ([]float32, float32, error) {
	if blurSigma == 0 {
		blurSigma = netdef.DefaultBlurSigma
	}
	if !(blurSigma > 0) || math.IsInf(blurSigma, 0) {
		return nil, 0, fmt.Errorf("alm score: blur sigma %g, want > 0", blurSigma)
	}
	dist, err := m.Distances(mixed)
	if err != nil {
		return nil, 0, err
	}
	h4, w4 := m.Height/4, m.Width/4
	kernel := netdef.GaussianKernel(blurSigma)
	H, W := m.Height, m.Width
	ay := netdef.UpsampleBlurMatrix(h4, H, kernel)
	ax := netdef.UpsampleBlurMatrix(w4, W, kernel)
	rows := make([]float32, H*w4) // ay · dist
	for i := 0; i < H; i++ {
		dst := rows[i*w4 : (i+1)*w4]
		for k := 0; k < h4; k++ {
			a := ay[i*h4+k]
			if a == 0 {
				continue
			}
			src := dist[k*w4 : (k+1)*w4]
			for j, v := range src {
				dst[j] += a * v
			}
		}
	}
	heat := make([]float32, H*W) // rows · axᵀ
	score := float32(math.Inf(-1))
	for i := 0; i < H; i++ {
		r := rows[i*w4 : (i+1)*w4]
		for j := 0; j < W; j++ {
			a := ax[j*w4 : (j+1)*w4]
			var s float32
			for k, v := range r {
				s += v * a[k]
			}
			heat[i*W+j] = s
			score = max(score, s)
		}
	}
	return heat, score, nil
}

// Distances returns the low-resolution anomaly map of mixed (F_Mixed,
// 448×(H/4)×(W/4) CHW): 0.5·(1 − cos(F_M, F_C)) per location, (H/4)×(W/4)
// row-major, with the cosine of netdef.LocalizeGraph.
func (m *Model) Distances(mixed []float32) ([]float32, error) {
	h4, w4 := m.Height/4, m.Width/4
	n := h4 * w4
	if len(mixed) != mixedChannels*n {
		return nil, fmt.Errorf("alm score: features have %d values, want %d·%d·%d = %d", len(mixed), mixedChannels, h4, w4, mixedChannels*n)
	}
	if err := m.Mapping.Validate(m.D); err != nil {
		return nil, fmt.Errorf("alm score: %w", err)
	}
	if len(m.Centre) != m.D*n {
		return nil, fmt.Errorf("alm score: centre has %d values, want %d", len(m.Centre), m.D*n)
	}
	fm := mixed
	for l, layer := range m.Mapping.Layers {
		if l > 0 {
			for i, v := range fm {
				if v < 0 {
					fm[i] = 0
				}
			}
		}
		fm = conv1x1(layer, fm, n)
	}
	dist := make([]float32, n)
	for p := 0; p < n; p++ {
		var dot, nf, nc float64
		for o := 0; o < m.D; o++ {
			a, b := float64(fm[o*n+p]), float64(m.Centre[o*n+p])
			dot += a * b
			nf += a * a
			nc += b * b
		}
		cos := dot / (math.Max(math.Sqrt(nf), netdef.CosineNormFloor)*math.Sqrt(nc) + netdef.CosineEps)
		dist[p] = float32(0.5 * (1 - cos))
	}
	return dist, nil
}

// conv1x1 applies a 1×1 convolution to x (In×n CHW) and returns Out×n.
// Output channels are split across GOMAXPROCS goroutines.
func conv1x1(c netdef.ConvWeights, x []float32, n int) []float32 {
	out := make([]float32, c.Out*n)
	workers := min(runtime.GOMAXPROCS(0), c.Out)
	var wg sync.WaitGroup
	for wk := 0; wk < workers; wk++ {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			for o := lo; o < hi; o++ {
				row := out[o*n : (o+1)*n]
				b := c.Bias[o]
				for p := range row {
					row[p] = b
				}
				for i, wv := range c.Weight[o*c.In : (o+1)*c.In] {
					if wv == 0 {
						continue
					}
					src := x[i*n : (i+1)*n]
					for p, v := range src {
						row[p] += wv * v
					}
				}
			}
		}(wk*c.Out/workers, (wk+1)*c.Out/workers)
	}
	wg.Wait()
	return out
}
