package synth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"github.com/inspectd/inspectd/models/staging"
)

// Options configures Generate.
type Options struct {
	// Seed fixes every random choice: the same Seed and options give the
	// same files.
	Seed int64
	// Objects are the objects to draw, one category directory each (see
	// Objects); empty means all of them.
	Objects []string
	// Width and Height are the image size in pixels (16 to 8192).
	Width, Height int
	// TrainGood, TestGood and TestPerDefect are the numbers of good training
	// images, good test images, and test images of each defect kind.
	TrainGood, TestGood, TestPerDefect int
	// MaxRotationDeg (0 to 180) and MaxShiftFrac (0 to 0.5, of the image
	// size) bound the random pose of every image, drawn uniformly.
	MaxRotationDeg, MaxShiftFrac float64
	// Grey writes 8-bit grey PNGs instead of RGB.
	Grey bool
}

// PoseRecord is the content of a <name>.pose.json file.
type PoseRecord struct {
	Object string `json:"object"`
	// Defect is "good" or a defect kind.
	Defect string `json:"defect"`
	Pose
	// Matrix maps canonical (zero-pose) pixel coordinates to this image's
	// pixel coordinates; see Pose.Matrix.
	Matrix [2][3]float64 `json:"matrix"`
	Width  int           `json:"width"`
	Height int           `json:"height"`
	// Seed is the per-image seed passed to Render.
	Seed uint64 `json:"seed"`
}

// validate checks opts and returns the objects to draw.
func (o Options) validate() ([]string, error) {
	objs := o.Objects
	if len(objs) == 0 {
		objs = Objects()
	}
	for _, ob := range objs {
		if !slices.Contains(Objects(), ob) {
			return nil, fmt.Errorf("synth: unknown object %q in Options.Objects, expected one of %v", ob, Objects())
		}
	}
	switch {
	case o.Width < 16 || o.Height < 16 || o.Width > 8192 || o.Height > 8192:
		return nil, fmt.Errorf("synth: image size %dx%d, expected 16 to 8192 pixels a side", o.Width, o.Height)
	case o.TrainGood < 1:
		return nil, fmt.Errorf("synth: TrainGood %d, expected at least 1", o.TrainGood)
	case o.TestGood < 0 || o.TestPerDefect < 0:
		return nil, fmt.Errorf("synth: TestGood %d, TestPerDefect %d, expected >= 0", o.TestGood, o.TestPerDefect)
	case !(o.MaxRotationDeg >= 0 && o.MaxRotationDeg <= 180):
		return nil, fmt.Errorf("synth: MaxRotationDeg %v, expected 0 to 180", o.MaxRotationDeg)
	case !(o.MaxShiftFrac >= 0 && o.MaxShiftFrac <= 0.5):
		return nil, fmt.Errorf("synth: MaxShiftFrac %v, expected 0 to 0.5", o.MaxShiftFrac)
	}
	return objs, nil
}

// ImageSeed returns the per-image seed Generate uses for the image of the
// given object, split ("train" or "test"), defect directory and index.
func ImageSeed(seed int64, object, split, defectDir string, index int) uint64 {
	return hash64(uint64(seed), hashString(object), hashString(split), hashString(defectDir), uint64(index))
}

// Generate writes an MVTec-AD-layout tree under dst, one category per
// object: <object>/train/good/NNN.png, <object>/test/good/NNN.png,
// <object>/test/<defect>/NNN.png and <object>/ground_truth/<defect>/NNN_mask.png
// (0/255), with a NNN.pose.json PoseRecord next to every image. Each
// image's pose and content derive from ImageSeed only. dst must not exist
// or be an empty directory; the tree is written to a staging directory and
// renamed into place when complete, so an error or ctx's end leaves nothing.
func Generate(ctx context.Context, dst string, opts Options) error {
	objs, err := opts.validate()
	if err != nil {
		return err
	}
	out, err := staging.New(dst)
	if err != nil {
		return fmt.Errorf("synth: --dst: %w", err)
	}
	defer out.Abort()
	if err := generate(ctx, out.Path(), objs, opts); err != nil {
		return err
	}
	if err := out.Commit(); err != nil {
		return fmt.Errorf("synth: --dst: %w", err)
	}
	return nil
}

func generate(ctx context.Context, dst string, objs []string, opts Options) error {
	for _, ob := range objs {
		type job struct {
			split, dir string
			defect     Defect
			n          int
		}
		jobs := []job{{"train", "good", None, opts.TrainGood}, {"test", "good", None, opts.TestGood}}
		if opts.TestPerDefect > 0 {
			for _, d := range Defects() {
				jobs = append(jobs, job{"test", string(d), d, opts.TestPerDefect})
			}
		}
		for _, j := range jobs {
			for i := 0; i < j.n; i++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				seed := ImageSeed(opts.Seed, ob, j.split, j.dir, i)
				r := rand.New(rand.NewPCG(seed, 0x5eed))
				pose := RandomPose(r, opts.MaxRotationDeg, opts.MaxShiftFrac)
				s, err := Render(ob, opts.Width, opts.Height, opts.Grey, pose, j.defect, seed)
				if err != nil {
					return err
				}
				name := fmt.Sprintf("%03d", i)
				dir := filepath.Join(dst, ob, j.split, j.dir)
				if err := writePNG(filepath.Join(dir, name+".png"), s.Image); err != nil {
					return err
				}
				rec := PoseRecord{Object: ob, Defect: j.dir, Pose: pose, Matrix: pose.Matrix(opts.Width, opts.Height),
					Width: opts.Width, Height: opts.Height, Seed: seed}
				b, err := json.MarshalIndent(rec, "", "  ")
				if err != nil {
					return fmt.Errorf("synth: encoding pose of %s: %w", filepath.Join(dir, name), err)
				}
				if err := writeFile(filepath.Join(dir, name+".pose.json"), append(b, '\n')); err != nil {
					return err
				}
				if j.defect != None {
					if err := writePNG(filepath.Join(dst, ob, "ground_truth", j.dir, name+"_mask.png"), s.Mask); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// writePNG encodes img as PNG into path, creating its directory.
func writePNG(path string, img image.Image) error {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return fmt.Errorf("synth: encoding %s: %w", path, err)
	}
	return writeFile(path, b.Bytes())
}

// writeFile writes b to path, creating its directory.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}
