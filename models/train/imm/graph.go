//go:build workstation

package imm

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive,staticcheck // graph-building DSL
)

// numParams is the number of weight tensors of the regressor, in the order
// of [flatten]: 4 N_P convs (weight, bias), 2 N_R convs, hidden and output
// dense layers.
const numParams = 16

// Adam hyper-parameters (PyTorch defaults).
const (
	adamBeta1 = 0.9
	adamBeta2 = 0.999
	adamEps   = 1e-8
)

// conv3s2 is Conv 3×3, stride 2, pad 1 (+ bias) on NCHW x with PyTorch
// weight layout [O, C, 3, 3], written as im2col + one matrix product: nine
// strided slices of the zero-padded input are stacked into patches
// [B, C·9, Ho·Wo] (row c·9 + ky·3 + kx, the order of the flattened weight).
func conv3s2(x, w, b *Node) *Node {
	dims := x.Shape().Dimensions
	B, C, H, W := dims[0], dims[1], dims[2], dims[3]
	O := w.Shape().Dimensions[0]
	Ho, Wo := (H+1)/2, (W+1)/2
	zero := ScalarZero(x.Graph(), x.DType())
	xp := Pad(x, zero, compute.PadAxis{}, compute.PadAxis{}, compute.PadAxis{Start: 1, End: 1}, compute.PadAxis{Start: 1, End: 1})
	patches := make([]*Node, 0, 9)
	for ky := range 3 {
		for kx := range 3 {
			patches = append(patches, Slice(xp, AxisRange(), AxisRange(),
				AxisRange(ky, ky+2*(Ho-1)+1).Stride(2), AxisRange(kx, kx+2*(Wo-1)+1).Stride(2)))
		}
	}
	p := Reshape(Stack(patches, 2), B, C*9, Ho*Wo)
	y := Einsum("ok,bkp->bop", Reshape(w, O, C*9), p)
	return Add(Reshape(y, B, O, Ho, Wo), Reshape(b, 1, O, 1, 1))
}

func relu(x *Node) *Node { return MaxScalar(x, 0) }

// dense is y = x·Wᵀ + b with W [Out, In] (PyTorch Linear, ONNX Gemm transB=1).
func dense(x, w, b *Node) *Node {
	return Add(Einsum("bi,oi->bo", x, w), InsertAxes(b, 0))
}

// features is N_P: 4× (conv3s2 + ReLU).
func features(x *Node, p []*Node) *Node {
	for i := range 4 {
		x = relu(conv3s2(x, p[2*i], p[2*i+1]))
	}
	return x
}

// forward is the regressor: images [B,C,H,W], template [1,C,H,W] → [B,3]
// = (tx, ty, θ). The template's features are computed once and broadcast.
func forward(images, template *Node, p []*Node) *Node {
	fi := features(images, p)
	ft := features(template, p)
	ft = BroadcastToDims(ft, fi.Shape().Dimensions...)
	x := Concatenate([]*Node{fi, ft}, 1)
	for i := range 2 {
		x = relu(conv3s2(x, p[8+2*i], p[8+2*i+1]))
	}
	x = ReduceMean(x, 2, 3)
	x = relu(dense(x, p[12], p[13]))
	return dense(x, p[14], p[15])
}

// warp is the spatial transformer: I_M(x_o) = I(A·x_o) with A =
// preprocess.AffineMatrix(tx, ty, θ, H, W) per image (normalised coordinates,
// align_corners=False), bilinear sampling with replicated borders (each of
// the four neighbours is clamped into the image, as preprocess.Fill does).
// images [B,C,H,W], pose [B,3] → [B,C,H,W]. Differentiable in pose through
// the bilinear weights (the integer corners are piecewise constant).
func warp(images, pose *Node) *Node {
	g := images.Graph()
	dims := images.Shape().Dimensions
	B, C, H, W := dims[0], dims[1], dims[2], dims[3]
	dt := images.DType()
	tx := Reshape(Slice(pose, AxisRange(), AxisElem(0)), B, 1, 1)
	ty := Reshape(Slice(pose, AxisRange(), AxisElem(1)), B, 1, 1)
	th := Reshape(Slice(pose, AxisRange(), AxisElem(2)), B, 1, 1)
	c, s := Cos(th), Sin(th)
	hw := float64(H) / float64(W)
	// Normalised output pixel centres: (2j+1)/W − 1, (2i+1)/H − 1.
	col := Iota(g, shapeOf(dt, 1, H, W), 2)
	row := Iota(g, shapeOf(dt, 1, H, W), 1)
	xo := AddScalar(MulScalar(col, 2/float64(W)), 1/float64(W)-1)
	yo := AddScalar(MulScalar(row, 2/float64(H)), 1/float64(H)-1)
	xs := Add(Sub(Mul(c, xo), MulScalar(Mul(s, yo), hw)), tx)
	ys := Add(Add(MulScalar(Mul(s, xo), 1/hw), Mul(c, yo)), ty)
	// Source pixel coordinates (centres at integers).
	u := MulScalar(AddScalar(MulScalar(AddScalar(xs, 1), float64(W)), -1), 0.5)
	v := MulScalar(AddScalar(MulScalar(AddScalar(ys, 1), float64(H)), -1), 0.5)
	u0, v0 := StopGradient(Floor(u)), StopGradient(Floor(v))
	fx, fy := Sub(u, u0), Sub(v, v0)
	iu := ConvertDType(u0, dtypes.Int32)
	iv := ConvertDType(v0, dtypes.Int32)
	clampI := func(x *Node, hi int) *Node {
		return Clip(x, ScalarZero(g, dtypes.Int32), Scalar(g, dtypes.Int32, hi))
	}
	x0, x1 := clampI(iu, W-1), clampI(AddScalar(iu, 1), W-1)
	y0, y1 := clampI(iv, H-1), clampI(AddScalar(iv, 1), H-1)
	base := MulScalar(Iota(g, shapeOf(dtypes.Int32, B, 1, 1), 0), H*W)
	flat := Reshape(TransposeAllAxes(images, 0, 2, 3, 1), B*H*W, C)
	at := func(y, x *Node) *Node { // → [B,H,W,C]
		idx := Add(Add(base, MulScalar(y, W)), x)
		return Gather(flat, InsertAxes(idx, -1))
	}
	w := func(a, b *Node) *Node { return InsertAxes(Mul(a, b), -1) }
	one := ScalarOne(g, dt)
	gx, gy := Sub(one, fx), Sub(one, fy)
	out := Add(Add(Mul(at(y0, x0), w(gx, gy)), Mul(at(y0, x1), w(fx, gy))),
		Add(Mul(at(y1, x0), w(gx, fy)), Mul(at(y1, x1), w(fx, fy))))
	return TransposeAllAxes(out, 0, 3, 1, 2)
}

// trainStep builds one Adam step. Inputs (in order): the numParams weights,
// their first and second moments, then lrT (the bias-corrected learning
// rate, scalar), auxW (scalar), source images [B,C,H,W], augmentation poses
// [B,3], template [1,C,H,W], auxiliary targets [B,3] and their mask [B].
// Outputs: new weights, moments, then L_reg and the auxiliary loss.
func trainStep(in []*Node) []*Node {
	params := in[:numParams]
	m1 := in[numParams : 2*numParams]
	m2 := in[2*numParams : 3*numParams]
	rest := in[3*numParams:]
	lrT, auxW, src, aug, tpl, target, mask := rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6]

	x := warp(src, aug)
	pred := forward(x, tpl, params)
	aligned := warp(x, pred)
	lreg := ReduceAllMean(Square(Sub(aligned, BroadcastToDims(tpl, aligned.Shape().Dimensions...))))
	perSample := ReduceSum(Square(Sub(pred, target)), 1)
	n := MaxScalar(ReduceAllSum(mask), 1)
	aux := Div(ReduceAllSum(Mul(perSample, mask)), n)
	loss := Add(lreg, Mul(auxW, aux))
	grads := Gradient(loss, params...)

	out := make([]*Node, 0, 3*numParams+2)
	newM1 := make([]*Node, numParams)
	newM2 := make([]*Node, numParams)
	for i, g := range grads {
		newM1[i] = Add(MulScalar(m1[i], adamBeta1), MulScalar(g, 1-adamBeta1))
		newM2[i] = Add(MulScalar(m2[i], adamBeta2), MulScalar(Square(g), 1-adamBeta2))
		step := Div(Mul(lrT, newM1[i]), AddScalar(Sqrt(newM2[i]), adamEps))
		out = append(out, Sub(params[i], step))
	}
	out = append(out, newM1...)
	out = append(out, newM2...)
	return append(out, lreg, aux)
}

// predictGraph: numParams weights, images [B,C,H,W], template [1,C,H,W] → [B,3].
func predictGraph(in []*Node) *Node {
	return forward(in[numParams], in[numParams+1], in[:numParams])
}

// warpGraph: images [B,C,H,W], poses [B,3] → warped images.
func warpGraph(images, poses *Node) *Node { return warp(images, poses) }

func shapeOf(dt dtypes.DType, dims ...int) shapes.Shape { return shapes.Make(dt, dims...) }
