package netdef

import (
	"fmt"

	"github.com/inspectd/inspectd/models/backbone"
	"github.com/inspectd/inspectd/models/onnx"
)

// imageNetMean and imageNetStd are the ImageNet normalisation applied
// inside the graphs to RGB input in [0, 1] (bundle.ImageNetMean/Std record
// the same values in the manifest).
func imageNetMean() []float32 { return []float32{0.485, 0.456, 0.406} }
func imageNetStd() []float32  { return []float32{0.229, 0.224, 0.225} }

// Channel counts of the backbone outputs.
const (
	Layer1Channels = 64
	Layer2Channels = 128
	Layer3Channels = 256
	// MixedChannels is the channel count of the concatenated feature map F_Mixed.
	MixedChannels = Layer1Channels + Layer2Channels + Layer3Channels
)

// BackboneGraph emits the frozen backbone alone. Input "image" is float32
// [1,3,H,W] RGB in [0,1]; outputs are "layer1" [1,64,H/4,W/4], "layer2"
// [1,128,H/8,W/8], "layer3" [1,256,H/16,W/16] and "mixed" [1,448,H/4,W/4] =
// concat(layer1, resize(layer2), resize(layer3)) with bilinear half_pixel resize.
func BackboneGraph(w *backbone.Weights, height, width int) ([]byte, error) {
	if err := checkSize("backbone graph", height, width); err != nil {
		return nil, err
	}
	g := onnx.NewGraph("backbone")
	img := g.Input("image", onnx.Float, 1, 3, int64(height), int64(width))
	e := emitter{g}
	l1, l2, l3, err := emitBackbone(e, w, img, [3]string{"layer1", "layer2", "layer3"})
	if err != nil {
		return nil, err
	}
	mixed := emitMixed(e, l1, l2, l3, height, width, "mixed")
	h, wd := int64(height), int64(width)
	g.Output(l1, onnx.Float, 1, Layer1Channels, h/4, wd/4)
	g.Output(l2, onnx.Float, 1, Layer2Channels, h/8, wd/8)
	g.Output(l3, onnx.Float, 1, Layer3Channels, h/16, wd/16)
	g.Output(mixed, onnx.Float, 1, MixedChannels, h/4, wd/4)
	return g.Marshal()
}

// emitBackbone emits normalisation and conv1..layer3. names gives the output
// names of layer1, layer2 and layer3 ("" to generate them).
func emitBackbone(e emitter, w *backbone.Weights, img string, names [3]string) (l1, l2, l3 string, err error) {
	if w == nil {
		return "", "", "", fmt.Errorf("backbone graph: no weights")
	}
	if err := w.Validate(); err != nil {
		return "", "", "", fmt.Errorf("backbone graph: %w", err)
	}
	convs := map[string]backbone.Conv{}
	for _, c := range backbone.Convs() {
		convs[c.Name] = c
	}
	conv := func(x, name string) string {
		c := convs[name]
		wt, _ := w.Tensor(name + ".weight")
		bt, _ := w.Tensor(name + ".bias")
		return e.conv(x, name, ConvWeights{Out: int(c.Out), In: int(c.In), Kernel: int(c.Kernel), Weight: wt.Data, Bias: bt.Data}, int(c.Stride), int(c.Pad))
	}
	g := e.g
	mean := g.Initializer("imagenet_mean", []int64{1, 3, 1, 1}, imageNetMean())
	std := g.Initializer("imagenet_std", []int64{1, 3, 1, 1}, imageNetStd())
	x := g.Op("Div", []string{g.Op("Sub", []string{img, mean}), std})
	x = e.relu(conv(x, "conv1"), "")
	x = g.Op("MaxPool", []string{x},
		onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1))
	var outs [3]string
	for layer := 1; layer <= 3; layer++ {
		for block := 0; block < 2; block++ {
			p := fmt.Sprintf("layer%d.%d.", layer, block)
			y := e.relu(conv(x, p+"conv1"), "")
			y = conv(y, p+"conv2")
			short := x
			if _, ok := convs[p+"downsample.0"]; ok {
				short = conv(x, p+"downsample.0")
			}
			name := ""
			if block == 1 {
				name = names[layer-1]
			}
			x = e.relu(g.Op("Add", []string{y, short}), name)
		}
		outs[layer-1] = x
	}
	return outs[0], outs[1], outs[2], nil
}

// emitMixed emits F_Mixed = concat(layer1, resize(layer2), resize(layer3)) on
// the layer1 grid; name names the output ("" to generate it).
func emitMixed(e emitter, l1, l2, l3 string, height, width int, name string) string {
	h4, w4 := int64(height/4), int64(width/4)
	r2 := e.resize(l2, [4]int64{1, Layer2Channels, h4, w4})
	r3 := e.resize(l3, [4]int64{1, Layer3Channels, h4, w4})
	return e.g.Node("Concat", []string{l1, r2, r3}, []string{name}, onnx.AttrInt("axis", 1))[0]
}
