//go:build workstation

package alm

import (
	"fmt"
	"image"
	_ "image/jpeg" // decoders for DGM.SourceDir
	_ "image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/inspectd/inspectd/models/preprocess"
	"github.com/inspectd/inspectd/models/synth"
)

// maxSourceImages bounds how many SourceDir images are loaded.
const maxSourceImages = 256

// minCellChange is the smallest mean absolute pixel change (over a 4×4 cell
// and its three channels) for a cell under the region to count as a defect
// location: darkening a black background changes nothing and must not be
// labelled anomalous.
const minCellChange = 0.02

// featherPixels is the width of the alpha ramp of soft edges.
const featherPixels = 3.0

// defectGen synthesises defects on h×w CHW images.
type defectGen struct {
	cfg     DGMConfig
	h, w    int
	sources [][]float32
}

// newDefectGen prepares the generator, loading SourceDir images (sorted by
// name, at most maxSourceImages) resized to h×w.
func newDefectGen(cfg DGMConfig, h, w int) (*defectGen, error) {
	g := &defectGen{cfg: cfg, h: h, w: w}
	if cfg.SourceDir == "" {
		return g, nil
	}
	entries, err := os.ReadDir(cfg.SourceDir)
	if err != nil {
		return nil, fmt.Errorf("alm DGM.SourceDir: %w", err)
	}
	var names []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.IsDir() && (ext == ".png" || ext == ".jpg" || ext == ".jpeg") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	if len(names) > maxSourceImages {
		names = names[:maxSourceImages]
	}
	for _, name := range names {
		path := filepath.Join(cfg.SourceDir, name)
		img, err := decodeFile(path)
		if err != nil {
			return nil, fmt.Errorf("alm DGM.SourceDir: %w", err)
		}
		t := make([]float32, 3*h*w)
		if err := preprocess.Fill(t, img, preprocess.Spec{Width: w, Height: h, Channels: 3}); err != nil {
			return nil, fmt.Errorf("alm DGM.SourceDir %s: %w", path, err)
		}
		g.sources = append(g.sources, t)
	}
	if len(g.sources) == 0 {
		return nil, fmt.Errorf("alm DGM.SourceDir %s: no .png or .jpg images", cfg.SourceDir)
	}
	return g, nil
}

func decodeFile(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// augment returns a copy of img with one synthetic defect and the defect
// mask downscaled to the (h/4)×(w/4) feature grid. other is another training
// image, a possible texture source.
func (g *defectGen) augment(r *rand.Rand, img, other []float32) ([]float32, []bool) {
	var out []float32
	var cells []bool
	for try := 0; try < 8; try++ {
		alpha := g.region(r)
		out = g.paint(r, img, other, alpha)
		var n int
		cells, n = g.cells(img, out, alpha)
		if n > 0 {
			break
		}
	}
	return out, cells
}

// region draws an alpha map (h×w, values in [0,1]) of one random region.
func (g *defectGen) region(r *rand.Rand) []float32 {
	h, w := g.h, g.w
	side := float64(min(h, w))
	size := func() float64 { return (g.cfg.MinSize + r.Float64()*(g.cfg.MaxSize-g.cfg.MinSize)) * side / 2 }
	rx, ry := max(size(), 1), max(size(), 1)
	cx, cy := r.Float64()*float64(w), r.Float64()*float64(h)
	sin, cos := math.Sincos(r.Float64() * math.Pi)
	shape := g.cfg.Shapes[r.IntN(len(g.cfg.Shapes))]
	noiseSeed := r.Uint64()
	freq := 2.5 / min(rx, ry)
	feather := 0.0
	if g.cfg.SoftEdges {
		feather = featherPixels
	}
	alpha := make([]float32, h*w)
	reach := math.Hypot(rx, ry)*1.6 + feather + 1
	y0, y1 := max(int(cy-reach), 0), min(int(cy+reach)+1, h)
	x0, x1 := max(int(cx-reach), 0), min(int(cx+reach)+1, w)
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			dx, dy := float64(x)+0.5-cx, float64(y)+0.5-cy
			u, v := dx*cos+dy*sin, -dx*sin+dy*cos
			var d float64 // signed distance to the border in pixels, < 0 inside
			switch shape {
			case ShapeRectangle:
				d = max(math.Abs(u)-rx, math.Abs(v)-ry)
			case ShapeEllipse:
				d = (math.Hypot(u/rx, v/ry) - 1) * min(rx, ry)
			default: // ShapeBlob
				q := math.Hypot(u/rx, v/ry) / 1.5
				f := (1 - q) + 0.9*(fractalNoise(float64(x)*freq, float64(y)*freq, noiseSeed)-0.5) - 0.25
				d = -f * min(rx, ry)
			}
			var a float64
			if feather > 0 {
				a = math.Min(math.Max(0.5-d/feather, 0), 1)
			} else if d <= 0 {
				a = 1
			}
			alpha[y*w+x] = float32(a)
		}
	}
	return alpha
}

// paint applies a random mode through alpha.
func (g *defectGen) paint(r *rand.Rand, img, other, alpha []float32) []float32 {
	h, w := g.h, g.w
	plane := h * w
	out := slices.Clone(img)
	switch g.cfg.Modes[r.IntN(len(g.cfg.Modes))] {
	case ModeDarken:
		f := float32(0.2 + 0.5*r.Float64())
		for c := 0; c < 3; c++ {
			for i, a := range alpha {
				if a > 0 {
					out[c*plane+i] = img[c*plane+i] * (1 - a*(1-f))
				}
			}
		}
	case ModeLighten:
		t := float32(0.3 + 0.5*r.Float64())
		for c := 0; c < 3; c++ {
			for i, a := range alpha {
				if a > 0 {
					v := img[c*plane+i]
					out[c*plane+i] = v + a*t*(1-v)
				}
			}
		}
	default: // ModeTexture
		tex := g.texture(r, other)
		for c := 0; c < 3; c++ {
			for i, a := range alpha {
				if a > 0 {
					out[c*plane+i] = (1-a)*img[c*plane+i] + a*tex[c*plane+i]
				}
			}
		}
	}
	return out
}

// texture returns an h×w CHW texture: a shifted SourceDir image when there
// are any, else a procedural texture or a shifted other training image.
func (g *defectGen) texture(r *rand.Rand, other []float32) []float32 {
	h, w := g.h, g.w
	plane := h * w
	shifted := func(src []float32) []float32 {
		dx, dy := r.IntN(w), r.IntN(h)
		t := make([]float32, 3*plane)
		for c := 0; c < 3; c++ {
			for y := 0; y < h; y++ {
				sy := (y + dy) % h
				for x := 0; x < w; x++ {
					t[c*plane+y*w+x] = src[c*plane+sy*w+(x+dx)%w]
				}
			}
		}
		return t
	}
	if len(g.sources) > 0 {
		return shifted(g.sources[r.IntN(len(g.sources))])
	}
	if other != nil && r.IntN(2) == 0 {
		return shifted(other)
	}
	var c1, c2 [3]float64
	for c := range c1 {
		c1[c], c2[c] = r.Float64(), r.Float64()
	}
	kind := r.IntN(3)
	freq := (2 + 10*r.Float64()) / float64(min(h, w)) * 2 * math.Pi
	sin, cos := math.Sincos(r.Float64() * math.Pi)
	seed := r.Uint64()
	noiseFreq := (4 + 12*r.Float64()) / float64(min(h, w))
	t := make([]float32, 3*plane)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var m float64
			switch kind {
			case 0: // stripes
				m = 0.5 + 0.5*math.Sin((float64(x)*cos+float64(y)*sin)*freq)
			case 1: // checker
				p := 2 * math.Pi / freq
				m = float64((int(math.Floor(float64(x)/p)) + int(math.Floor(float64(y)/p))) & 1)
			default: // cloudy noise
				m = fractalNoise(float64(x)*noiseFreq, float64(y)*noiseFreq, seed)
			}
			grain := 0.1 * (synth.Lattice(int64(x), int64(y), seed^0x9e37) - 0.5)
			for c := 0; c < 3; c++ {
				v := c1[c]*(1-m) + c2[c]*m + grain
				t[c*plane+y*w+x] = float32(math.Min(math.Max(v, 0), 1))
			}
		}
	}
	return t
}

// cells downscales the defect to the feature grid: a cell is a defect
// location when the mean alpha of its 4×4 pixels is at least 0.5 and the
// pixels changed by at least minCellChange on average. It returns the cell
// mask and the number of defect cells.
func (g *defectGen) cells(img, out, alpha []float32) ([]bool, int) {
	h, w := g.h, g.w
	h4, w4 := h/4, w/4
	plane := h * w
	mask := make([]bool, h4*w4)
	n := 0
	for cy := 0; cy < h4; cy++ {
		for cx := 0; cx < w4; cx++ {
			var a, change float64
			for y := cy * 4; y < cy*4+4; y++ {
				for x := cx * 4; x < cx*4+4; x++ {
					i := y*w + x
					a += float64(alpha[i])
					for c := 0; c < 3; c++ {
						change += math.Abs(float64(out[c*plane+i] - img[c*plane+i]))
					}
				}
			}
			if a/16 >= 0.5 && change/48 >= minCellChange {
				mask[cy*w4+cx] = true
				n++
			}
		}
	}
	return mask, n
}

// fractalNoise sums three octaves of value noise, normalised to [0, 1].
func fractalNoise(x, y float64, seed uint64) float64 {
	return (synth.ValueNoise(x, y, seed) + 0.5*synth.ValueNoise(2*x, 2*y, seed+1) + 0.25*synth.ValueNoise(4*x, 4*y, seed+2)) / 1.75
}
