package config

import (
	"regexp"
	"strconv"
	"strings"
)

// Product is one [[product]] table: a recipe of the line, with its own
// model bundle and, optionally, its own decision settings and ROI.
type Product struct {
	// Name identifies the product in selections, results and metrics:
	// 1 to 64 of A-Z a-z 0-9 _ . -, unique.
	Name string `toml:"name"`
	// Code is the product's number for the PLC register and the GPIO code
	// lines (1 to 65535, unique); 0 = none (required by sources "plc" and
	// "gpio").
	Code int `toml:"code"`
	// Bundle is the product's model bundle directory (required; relative
	// paths are relative to this file's directory).
	Bundle string `toml:"bundle"`
	// Decision overrides keys of [decision] for this product; a key left
	// out inherits [decision].
	Decision ProductDecision `toml:"decision"`
	// ROI replaces camera.roi for this product when set.
	ROI *ROI `toml:"roi"`
}

// ProductDecision is [product.decision]: the keys of [decision], each
// nil when the product inherits it.
type ProductDecision struct {
	Threshold          *float64 `toml:"threshold"`
	PixelThreshold     *float64 `toml:"pixel_threshold"`
	MinDefectArea      *int     `toml:"min_defect_area"`
	MaxRegions         *int     `toml:"max_regions"`
	MaxOutsideFraction *float64 `toml:"max_outside_fraction"`
}

// EffectiveDecision is base ([decision]) with the product's overrides.
func (p Product) EffectiveDecision(base Decision) Decision {
	d := base
	o := p.Decision
	if o.Threshold != nil {
		d.Threshold = *o.Threshold
	}
	if o.PixelThreshold != nil {
		d.PixelThreshold = *o.PixelThreshold
	}
	if o.MinDefectArea != nil {
		d.MinDefectArea = *o.MinDefectArea
	}
	if o.MaxRegions != nil {
		d.MaxRegions = *o.MaxRegions
	}
	if o.MaxOutsideFraction != nil {
		d.MaxOutsideFraction = *o.MaxOutsideFraction
	}
	return d
}

// EffectiveROI is the product's ROI when it has one, else base
// (camera.roi).
func (p Product) EffectiveROI(base ROI) ROI {
	if p.ROI != nil {
		return *p.ROI
	}
	return base
}

// ProductList returns the station's products: the [[product]]s, or —
// without any — the one product of model.bundle, whose Name is "" (the
// daemon names it after the bundle manifest's product).
func (c *Config) ProductList() []Product {
	if len(c.Products) > 0 {
		return append([]Product(nil), c.Products...)
	}
	return []Product{{Bundle: c.Model.Bundle}}
}

// productIndex returns the index of the [[product]] named name, or -1.
func (c *Config) productIndex(name string) int {
	for i, p := range c.Products {
		if p.Name == name {
			return i
		}
	}
	return -1
}

// productNameRE is what a product name may hold: it goes into metric
// labels, MQTT payloads and file names.
var productNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func quoteNames(ps []Product) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = strconv.Quote(p.Name)
	}
	return strings.Join(names, ", ")
}

// validateProducts checks every [[product]] (keys product[N].…, N from 1)
// and that model.bundle is not set beside them.
func (c *Config) validateProducts(v *Checker, modelBundleSet bool) {
	if len(c.Products) == 0 {
		return
	}
	if modelBundleSet {
		v.ProblemAt("model.bundle", "must not be set when [[product]] tables are configured: each product names its own bundle (product.bundle); remove model.bundle")
	}
	names := map[string]int{}
	codes := map[int]int{}
	for i, p := range c.Products {
		pv := v.In("product[" + strconv.Itoa(i+1) + "]")
		switch {
		case p.Name == "":
			pv.Errorf("name", "must not be empty; name the product (1 to 64 of A-Z a-z 0-9 _ . -), e.g. \"gear\"")
		case !productNameRE.MatchString(p.Name):
			pv.Errorf("name", "%q is not a product name; use 1 to 64 of A-Z a-z 0-9 _ . -", p.Name)
		default:
			if j, dup := names[p.Name]; dup {
				pv.Errorf("name", "%q is already the name of product[%d]; names are unique", p.Name, j+1)
			} else {
				names[p.Name] = i
			}
		}
		pv.IntRange("code", p.Code, 0, 65535, "(0 = none)")
		if p.Code > 0 {
			if j, dup := codes[p.Code]; dup {
				pv.Errorf("code", "%d is already the code of product[%d] %q; codes are unique", p.Code, j+1, c.Products[j].Name)
			} else {
				codes[p.Code] = i
			}
		}
		if strings.TrimSpace(p.Bundle) == "" {
			pv.Errorf("bundle", "must not be empty; set the path of the product's model bundle directory")
		} else {
			pv.ExistingDir("bundle", p.Bundle)
		}
		p.Decision.validate(pv.In("decision"))
		if p.ROI != nil {
			validateROI(pv.In("roi"), *p.ROI, c.Camera)
		}
	}
}

func (d ProductDecision) validate(v *Checker) {
	if d.Threshold != nil {
		v.FloatRange("threshold", *d.Threshold, 0, 1, "(0 = calibrated value from the bundle)")
	}
	if d.PixelThreshold != nil {
		v.FloatRange("pixel_threshold", *d.PixelThreshold, 0, 1, "(0 = calibrated value from the bundle)")
	}
	if d.MinDefectArea != nil {
		v.IntRange("min_defect_area", *d.MinDefectArea, 0, 1<<24, "pixels")
	}
	if d.MaxRegions != nil {
		v.IntRange("max_regions", *d.MaxRegions, 1, 1000, "")
	}
	if d.MaxOutsideFraction != nil {
		v.FloatRange("max_outside_fraction", *d.MaxOutsideFraction, 0, 1, "of the model input")
	}
}

// validateROI checks a product's ROI like camera.roi.
func validateROI(v *Checker, r ROI, cam Camera) {
	v.IntRange("x", r.X, 0, 16384, "pixels")
	v.IntRange("y", r.Y, 0, 16384, "pixels")
	v.IntRange("width", r.Width, 0, 16384, "pixels (0 = full frame)")
	v.IntRange("height", r.Height, 0, 16384, "pixels (0 = full frame)")
	if (r.Width == 0) != (r.Height == 0) {
		v.Errorf("width", "width %d and height %d must both be 0 (full frame) or both be set", r.Width, r.Height)
	}
	if cam.Width > 0 && r.Width > 0 && r.X+r.Width > cam.Width {
		v.Errorf("width", "x + width = %d exceeds camera.width %d", r.X+r.Width, cam.Width)
	}
	if cam.Height > 0 && r.Height > 0 && r.Y+r.Height > cam.Height {
		v.Errorf("height", "y + height = %d exceeds camera.height %d", r.Y+r.Height, cam.Height)
	}
}
