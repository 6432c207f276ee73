// Package synth draws synthetic industrial parts for fast unit tests and for
// the alignment module: a few procedurally drawn objects (a gear, an L-shaped
// bracket, a plate with holes and a printed label) on a textured background,
// each in a random pose (rotation about the image centre and a shift), with
// painted defects of several kinds and their exact masks.
//
// Render draws one image in memory; Generate writes an MVTec-AD-layout tree
// (train/good, test/good, test/<defect>, ground_truth/<defect>/<name>_mask.png)
// with a <name>.pose.json record next to every image. Everything is a pure
// function of the seed and the options: the same seed gives the same bytes.
package synth

import (
	"fmt"
	"hash/fnv"
	"image"
	"math"
	"math/rand/v2"

	"github.com/inspectd/inspectd/models/preprocess"
)

// Object names accepted in Options.Objects and by Render.
const (
	Gear    = "gear"
	Bracket = "bracket"
	Plate   = "plate"
)

// Objects returns the names of all drawable objects.
func Objects() []string { return []string{Gear, Bracket, Plate} }

// Defect is a kind of painted defect; the empty Defect means a good part.
type Defect string

// The defect kinds. Each is painted on the part only, and its mask marks
// exactly the pixels it changed the meaning of.
const (
	// None is a defect-free part.
	None Defect = ""
	// Scratch is a thin bright line segment.
	Scratch Defect = "scratch"
	// Dent is a dark elliptic spot.
	Dent Defect = "dent"
	// Missing removes a piece at the part's edge, showing the background.
	Missing Defect = "missing"
	// Contamination is an irregular blob of foreign dark material.
	Contamination Defect = "contamination"
	// Colour is a region of changed hue (a brightness change in grey mode).
	Colour Defect = "colour"
)

// Defects returns all defect kinds (not None).
func Defects() []Defect { return []Defect{Scratch, Dent, Missing, Contamination, Colour} }

// Pose is where a part lies in an image: rotated by RotationDeg
// (counter-clockwise as seen on screen, image y pointing down) about the
// image centre, then shifted by ShiftXFrac·width and ShiftYFrac·height pixels.
type Pose struct {
	RotationDeg float64 `json:"rotation_deg"`
	ShiftXFrac  float64 `json:"shift_x_frac"`
	ShiftYFrac  float64 `json:"shift_y_frac"`
}

// Matrix returns the 2×3 affine matrix M that maps a pixel (x, y) of the
// canonical image (the same part at the zero pose) to the pixel
// (M[0][0]x + M[0][1]y + M[0][2], M[1][0]x + M[1][1]y + M[1][2]) of an image
// w×h where the part has pose p. Pixel coordinates are those of pixel
// centres, the image centre being ((w-1)/2, (h-1)/2).
func (p Pose) Matrix(w, h int) [2][3]float64 {
	return RotShiftMatrix(p.RotationDeg, p.ShiftXFrac*float64(w), p.ShiftYFrac*float64(h), w, h)
}

// RotShiftMatrix returns the matrix of a rotation by deg (counter-clockwise
// on screen) about the centre ((w-1)/2, (h-1)/2) followed by a shift of
// (tx, ty) pixels: [preprocess.RotShift].
func RotShiftMatrix(deg, tx, ty float64, w, h int) [2][3]float64 {
	return preprocess.RotShift(deg, tx, ty, w, h)
}

// RandomPose draws a pose uniformly within ±maxRotDeg and ±maxShiftFrac.
func RandomPose(r *rand.Rand, maxRotDeg, maxShiftFrac float64) Pose {
	return Pose{
		RotationDeg: (2*r.Float64() - 1) * maxRotDeg,
		ShiftXFrac:  (2*r.Float64() - 1) * maxShiftFrac,
		ShiftYFrac:  (2*r.Float64() - 1) * maxShiftFrac,
	}
}

// Sample is one rendered image.
type Sample struct {
	// Image is *image.Gray in grey mode, *image.RGBA otherwise.
	Image image.Image
	// Mask is 255 on defect pixels, 0 elsewhere (all 0 for a good part).
	Mask *image.Gray
	// Pose is the part's pose.
	Pose Pose
	// Object and Defect are what was drawn.
	Object string
	Defect Defect
}

// MaskPixels returns the number of defect pixels of s.Mask.
func (s Sample) MaskPixels() int {
	n := 0
	for _, v := range s.Mask.Pix {
		if v != 0 {
			n++
		}
	}
	return n
}

// hash64 mixes words into a 64-bit value (splitmix64 steps).
func hash64(words ...uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, w := range words {
		h ^= w + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
		h ^= h >> 30
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 27
		h *= 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

// hashString hashes a string with FNV-1a.
func hashString(s string) uint64 {
	f := fnv.New64a()
	f.Write([]byte(s))
	return f.Sum64()
}

// Lattice returns a pseudo-random value in [0,1) for an integer lattice
// point, reproducible from seed.
func Lattice(ix, iy int64, seed uint64) float64 {
	return float64(hash64(uint64(ix), uint64(iy), seed)>>11) / (1 << 53)
}

// ValueNoise is smooth 2-D value noise in [0,1) with unit lattice spacing,
// reproducible from seed (also used by the training defect generator).
func ValueNoise(x, y float64, seed uint64) float64 {
	fx, fy := math.Floor(x), math.Floor(y)
	ix, iy := int64(fx), int64(fy)
	tx, ty := x-fx, y-fy
	tx, ty = tx*tx*(3-2*tx), ty*ty*(3-2*ty)
	a := Lattice(ix, iy, seed)
	b := Lattice(ix+1, iy, seed)
	c := Lattice(ix, iy+1, seed)
	d := Lattice(ix+1, iy+1, seed)
	return a + (b-a)*tx + (c-a)*ty + (a-b-c+d)*tx*ty
}

// rgb is a linear colour with components in [0,1].
type rgb [3]float64

func (c rgb) scale(f float64) rgb { return rgb{c[0] * f, c[1] * f, c[2] * f} }
func (c rgb) add(f float64) rgb   { return rgb{c[0] + f, c[1] + f, c[2] + f} }

// part evaluates an object at canonical coordinates (u, v), in units of the
// image's smaller side with the origin at the image centre.
type part func(u, v float64) (inside bool, c rgb)

// disc reports whether (u,v) is within r of (cu,cv).
func disc(u, v, cu, cv, r float64) bool {
	du, dv := u-cu, v-cv
	return du*du+dv*dv <= r*r
}

// partFor returns the drawing function of a named object.
func partFor(name string) (part, error) {
	tex := hashString(name)
	switch name {
	case Gear:
		return func(u, v float64) (bool, rgb) {
			r := math.Hypot(u, v)
			a := math.Atan2(v, u)
			outer := 0.25
			if math.Cos(12*a) > -0.2 {
				outer = 0.29
			}
			if r > outer || r < 0.06 || (math.Abs(v) < 0.015 && u > 0 && u < 0.085) { // bore with key
				return false, rgb{}
			}
			c := rgb{0.62, 0.64, 0.70}.scale(0.9 + 0.08*math.Sin(r*260) + 0.05*ValueNoise(u*60, v*60, tex))
			if disc(u, v, 0.15, -0.05, 0.025) || (r > 0.18 && r < 0.19 && math.Abs(a) < 0.6) { // marker dot, arc
				c = rgb{0.15, 0.15, 0.2}
			}
			return true, c
		}, nil
	case Bracket:
		return func(u, v float64) (bool, rgb) {
			in := (u > -0.27 && u < 0.27 && v > 0.08 && v < 0.25) || (u > -0.27 && u < -0.1 && v > -0.27 && v < 0.25)
			if !in || disc(u, v, 0.14, 0.165, 0.04) || disc(u, v, -0.185, -0.17, 0.035) {
				return false, rgb{}
			}
			brushed := ValueNoise(u*300, v*12, tex)
			c := rgb{0.78, 0.62, 0.30}.scale(0.85 + 0.2*brushed)
			if u > -0.05 && u < 0.08 && v > 0.12 && v < 0.21 && int(math.Floor((u+0.05)*120))%3 == 0 { // stamped marks
				c = c.scale(0.55)
			}
			return true, c
		}, nil
	case Plate:
		return func(u, v float64) (bool, rgb) {
			const hw, hh, rc = 0.3, 0.19, 0.05
			du, dv := math.Max(math.Abs(u)-(hw-rc), 0), math.Max(math.Abs(v)-(hh-rc), 0)
			if math.Abs(u) > hw || math.Abs(v) > hh || du*du+dv*dv > rc*rc {
				return false, rgb{}
			}
			for _, h := range [][2]float64{{-0.24, -0.13}, {0.24, -0.13}, {-0.24, 0.13}, {0.24, 0.13}} {
				if disc(u, v, h[0], h[1], 0.028) {
					return false, rgb{}
				}
			}
			c := rgb{0.22, 0.52, 0.32}.scale(0.9 + 0.15*ValueNoise(u*40, v*40, tex))
			if u > -0.17 && u < 0.09 && v > -0.1 && v < 0.03 { // label with a bar code
				c = rgb{0.92, 0.92, 0.88}
				if v < 0 && u > -0.15 && u < 0.07 && Lattice(int64(math.Floor((u+0.15)*180)), 0, tex) < 0.5 {
					c = rgb{0.05, 0.05, 0.05}
				}
			}
			if disc(u, v, 0.17, 0.09, 0.03) { // round fiducial
				c = rgb{0.85, 0.75, 0.3}
			}
			return true, c
		}, nil
	}
	return nil, fmt.Errorf("synth: unknown object %q, expected one of %v", name, Objects())
}

// defectShape is a painted defect in canonical coordinates.
type defectShape struct {
	kind Defect
	// centre, radii, angle (ellipses, blobs, discs) or segment end points.
	cu, cv, ru, rv, ang float64
	u2, v2, hw          float64
	seed                uint64
	tint                rgb
}

// covers reports whether the defect's region contains (u,v).
func (d *defectShape) covers(u, v float64) bool {
	switch d.kind {
	case Scratch:
		// Distance to the segment (cu,cv)-(u2,v2).
		du, dv := d.u2-d.cu, d.v2-d.cv
		t := ((u-d.cu)*du + (v-d.cv)*dv) / (du*du + dv*dv)
		t = math.Max(0, math.Min(1, t))
		return math.Hypot(u-d.cu-t*du, v-d.cv-t*dv) <= d.hw
	case Missing:
		return disc(u, v, d.cu, d.cv, d.ru)
	case Contamination:
		a := math.Atan2(v-d.cv, u-d.cu)
		r := d.ru * (0.7 + 0.6*ValueNoise(math.Cos(a)*2+5, math.Sin(a)*2+5, d.seed))
		return disc(u, v, d.cu, d.cv, r)
	default: // Dent, Colour: rotated ellipse
		s, c := math.Sincos(d.ang)
		x, y := (u-d.cu)*c+(v-d.cv)*s, -(u-d.cu)*s+(v-d.cv)*c
		return (x*x)/(d.ru*d.ru)+(y*y)/(d.rv*d.rv) <= 1
	}
}

// paint returns the defective colour of a part pixel inside the region.
func (d *defectShape) paint(c rgb, u, v float64) rgb {
	switch d.kind {
	case Scratch:
		return c.scale(0.5).add(0.5)
	case Dent:
		return c.scale(0.35)
	case Contamination:
		return d.tint.scale(0.7 + 0.5*ValueNoise(u*150, v*150, d.seed))
	case Colour:
		return rgb{c[2], c[0], c[1]}.scale(1.1).add(0.12)
	}
	return c
}

// newDefect draws the parameters of a defect of kind k lying on part p;
// minPx is the size of one pixel in canonical units.
func newDefect(k Defect, p part, r *rand.Rand, px float64) (*defectShape, error) {
	// A random point on the part (rejection sampling in the part's box).
	onPart := func() (float64, float64) {
		for {
			u, v := 0.6*r.Float64()-0.3, 0.6*r.Float64()-0.3
			if in, _ := p(u, v); in {
				return u, v
			}
		}
	}
	size := func(lo, hi, minPx float64) float64 { return math.Max(lo+(hi-lo)*r.Float64(), minPx*px) }
	d := &defectShape{kind: k, seed: r.Uint64(), ang: r.Float64() * math.Pi}
	switch k {
	case Scratch:
		d.cu, d.cv = onPart()
		l := size(0.08, 0.2, 6)
		a := r.Float64() * 2 * math.Pi
		d.u2, d.v2 = d.cu+l*math.Cos(a), d.cv+l*math.Sin(a)
		d.hw = math.Max(0.004, 0.8*px)
	case Dent:
		d.cu, d.cv = onPart()
		d.ru, d.rv = size(0.02, 0.05, 2), size(0.015, 0.04, 2)
	case Colour:
		d.cu, d.cv = onPart()
		d.ru, d.rv = size(0.05, 0.09, 3), size(0.04, 0.07, 3)
	case Contamination:
		d.cu, d.cv = onPart()
		d.ru = size(0.03, 0.06, 3)
		d.tint = [...]rgb{{0.12, 0.08, 0.05}, {0.55, 0.25, 0.08}, {0.1, 0.1, 0.1}}[r.IntN(3)]
	case Missing:
		// A disc centred on the part's outline: march outwards from a part
		// point until leaving the part.
		d.ru = size(0.05, 0.08, 3)
		for {
			u, v := onPart()
			a := r.Float64() * 2 * math.Pi
			for s := 0.0; s < 0.6; s += px / 2 {
				if in, _ := p(u+s*math.Cos(a), v+s*math.Sin(a)); !in {
					d.cu, d.cv = u+s*math.Cos(a), v+s*math.Sin(a)
					return d, nil
				}
			}
		}
	default:
		return nil, fmt.Errorf("synth: unknown defect %q, expected one of %v", k, Defects())
	}
	return d, nil
}

// Render draws object at pose in a w×h image, with defect painted on it
// (None for a good part). seed fixes the background, the sensor noise and
// the defect's shape and place: the same arguments give the same pixels,
// and the same seed with and without a defect differ only under the mask.
// The mask is guaranteed to hold at least 4 pixels for a defective part.
func Render(object string, w, h int, grey bool, pose Pose, defect Defect, seed uint64) (Sample, error) {
	if w < 16 || h < 16 || w > 8192 || h > 8192 {
		return Sample{}, fmt.Errorf("synth: image size %dx%d, expected 16 to 8192 pixels a side", w, h)
	}
	p, err := partFor(object)
	if err != nil {
		return Sample{}, err
	}
	S := float64(min(w, h))
	var d *defectShape
	m := pose.Matrix(w, h)
	inv, err := preprocess.Affine(m).Invert()
	if err != nil {
		return Sample{}, fmt.Errorf("synth: pose %+v: %w", pose, err)
	}
	cx, cy := float64(w-1)/2, float64(h-1)/2
	canon := func(x, y int) (float64, float64) {
		sx := inv[0][0]*float64(x) + inv[0][1]*float64(y) + inv[0][2]
		sy := inv[1][0]*float64(x) + inv[1][1]*float64(y) + inv[1][2]
		return (sx - cx) / S, (sy - cy) / S
	}
	if defect != None {
		r := rand.New(rand.NewPCG(seed, hashString(string(defect))))
		for try := 0; ; try++ {
			if d, err = newDefect(defect, p, r, 1/S); err != nil {
				return Sample{}, err
			}
			n := 0
			for y := 0; y < h && n < 4; y++ {
				for x := 0; x < w && n < 4; x++ {
					u, v := canon(x, y)
					if in, _ := p(u, v); in && d.covers(u, v) {
						n++
					}
				}
			}
			if n >= 4 {
				break
			}
			if try == 100 {
				return Sample{}, fmt.Errorf("synth: could not place a %s defect of at least 4 pixels on %s in %dx%d", defect, object, w, h)
			}
		}
	}
	bgSeed := hash64(seed, 1)
	bgShiftX, bgShiftY := Lattice(0, 0, bgSeed)*1000, Lattice(1, 0, bgSeed)*1000
	rect := image.Rect(0, 0, w, h)
	mask := image.NewGray(rect)
	var gimg *image.Gray
	var cimg *image.RGBA
	if grey {
		gimg = image.NewGray(rect)
	} else {
		cimg = image.NewRGBA(rect)
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			u, v := canon(x, y)
			in, c := p(u, v)
			if in && d != nil && d.covers(u, v) {
				mask.Pix[y*mask.Stride+x] = 255
				if d.kind == Missing {
					in = false
				} else {
					c = d.paint(c, u, v)
				}
			}
			if !in {
				// Background: a belt with a coarse weave and fine grain.
				bx, by := float64(x)/S*24+bgShiftX, float64(y)/S*24+bgShiftY
				g := 0.16 + 0.08*ValueNoise(bx, by, bgSeed) + 0.04*ValueNoise(bx*5, by*5, bgSeed+1)
				if (int(math.Floor(bx))+int(math.Floor(by)))%2 == 0 {
					g += 0.02
				}
				c = rgb{g, g * 1.02, g * 1.05}
			}
			c = c.add(0.02 * (Lattice(int64(x), int64(y), seed) - 0.5)) // sensor noise
			if grey {
				gimg.Pix[y*gimg.Stride+x] = to8(0.299*c[0] + 0.587*c[1] + 0.114*c[2])
			} else {
				o := y*cimg.Stride + 4*x
				cimg.Pix[o], cimg.Pix[o+1], cimg.Pix[o+2], cimg.Pix[o+3] = to8(c[0]), to8(c[1]), to8(c[2]), 255
			}
		}
	}
	s := Sample{Mask: mask, Pose: pose, Object: object, Defect: defect}
	if grey {
		s.Image = gimg
	} else {
		s.Image = cimg
	}
	return s, nil
}

// to8 converts a [0,1] intensity to 8 bits with rounding and clamping.
func to8(f float64) uint8 {
	return uint8(math.Round(math.Max(0, math.Min(1, f)) * 255))
}
