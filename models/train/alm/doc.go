//go:build workstation

// Package alm trains the anomaly localisation module (ALM) of the paper
// (sections 2.2–2.3): the mapping network N_M that maps the frozen backbone
// features F_Mixed (448 channels on the H/4×W/4 grid) to D channels, and the
// per-location centre F_C it is trained towards, optionally with the defect
// generation module (DGM, outlier exposure, eq. 5).
//
// Pipeline ([Train]):
//
//  1. F_Mixed of every good training image is computed once through a
//     [Features] implementation (normally [BackboneFeatures]: the netdef backbone
//     graph under ONNX Runtime) and cached location-major.
//  2. A fixed affine reduction R(x) = P·(x − μ) to D channels is built
//     (P a random orthogonal D×448 matrix or the top-D PCA directions; μ the
//     global mean of F_Mixed for Centre "local", zero for "global").
//  3. F_C is the per-location mean of R(F_Mixed) over the training images
//     (Centre "local"), or one global mean vector broadcast to every location
//     (Centre "global", the paper's ablation).
//  4. N_M's first layer is initialised to R, shifted by a constant s so that
//     its ReLU is almost never active; middle layers are the identity and the
//     last layer subtracts s again. The untrained N_M therefore computes R
//     (and maps good features close to their centres), and training starts
//     from the reduction rather than from noise.
//  5. N_M is trained with Adam on L_map = mean 0.5·(1 − cos(F_M, F_C))
//     (eq. 3–4) over random (image, location) pairs, a GoMLX graph of matmuls
//     on the pure-Go backend. N_M is a stack of 1×1 convolutions, so it acts
//     on each location independently and uniform sampling of locations gives
//     an unbiased estimate of eq. 3 (and of eq. 5 with DGM) and its gradient.
//  6. With DGM, a pool of augmented copies of good images (synthetic dark,
//     light or texture-pasted regions, see [DGMConfig]) is kept with its
//     features and downscaled masks; a fraction of the sampled locations comes
//     from it, and locations under the mask get the hinge
//     max(0, δ − 0.5·(1 − cos)) of eq. 5. The pool is regenerated every
//     RefreshEpochs epochs.
//
// [Model.Score] is a pure-Go forward pass of exactly what
// netdef.LocalizeGraph exports (N_M, cosine distance with netdef.CosineEps,
// bilinear upsampling and Gaussian blur through netdef.UpsampleBlurMatrix,
// maximum), used for calibration and to verify the exported graph.
//
// The package is built only with the "workstation" tag: the edge binary
// must not link GoMLX.
package alm
