package netdef

import (
	"fmt"

	"github.com/inspectd/inspectd/models/tflite"
)

// AlignTFLite emits the TFLite twin of [AlignGraph] from the same weights:
// inputs "image" and "template" float32 [1,h,w,C] (NHWC) in [0,1], output
// "transform" [1,3]. N_P's weights are one set of tensors used for both
// inputs; PyTorch's pad-1 stride-2 convolutions are an explicit PAD and a
// VALID CONV_2D.
func AlignTFLite(spec AlignSpec, w AlignWeights) ([]byte, error) {
	if spec.Channels != 1 && spec.Channels != 3 {
		return nil, fmt.Errorf("align tflite: %d channels, want 1 or 3", spec.Channels)
	}
	if err := checkSize("align tflite", spec.Height, spec.Width); err != nil {
		return nil, err
	}
	if err := w.Validate(spec.Channels); err != nil {
		return nil, fmt.Errorf("align tflite: %w", err)
	}
	m := tflite.NewModel("align")
	e := temitter{m}
	img := m.Input("image", tflite.Float32, 1, spec.Height, spec.Width, spec.Channels)
	tpl := m.Input("template", tflite.Float32, 1, spec.Height, spec.Width, spec.Channels)
	var ws, bs [4]tt
	for i, c := range w.Features {
		ws[i], bs[i] = e.convConsts(fmt.Sprintf("features.%d", i), c)
	}
	features := func(x tt) tt {
		for i, c := range w.Features {
			x = e.convShared(x, ws[i], bs[i], c.Out, 3, 2, 1, true)
		}
		return x
	}
	fi, ft := features(img), features(tpl)
	s := m.Shape(fi)
	x := m.Op(tflite.OpConcatenation, tflite.Concatenation(3), []tt{fi, ft}, 1, s[1], s[2], 2*s[3])
	for i, c := range w.Regress {
		x = e.conv(x, fmt.Sprintf("regress.%d", i), c, 2, 1, true)
	}
	x = e.reduce(tflite.OpMean, x, false, 1, 2) // global average pool → [1,128]
	x = e.fc(x, "hidden", w.Hidden, true)
	out := m.Rename(e.fc(x, "out", w.Out, false), "transform")
	m.Output(out)
	return m.Marshal()
}
