// Package metrics computes the evaluation figures of inspectd (DESIGN.md §1
// "Evaluation"): image AUROC, pixel AUROC, pixel average precision (AP),
// AUPRO (per-region overlap integrated up to a false-positive rate of 0.3 and
// normalised, as defined for MVTec AD by Bergmann et al.), and precision,
// recall and F1 at a threshold or at the F1-optimal threshold.
//
// Image-level functions (AUROC, AveragePrecision, PRF1At, BestF1) are exact
// and follow scikit-learn's roc_auc_score, average_precision_score and
// precision_recall_curve, including the handling of tied scores.
//
// Pixel-level figures over a whole test set do not fit in memory when
// computed exactly (about 10^8 pixels for 100 images of 1024²), so they are
// computed with a PixelAccumulator: score maps are added image by image
// into a fixed number of score bins, and every figure is derived from the
// per-bin counts. The exact reference implementations (ExactPixelAUROC,
// ExactPixelAP, ExactAUPRO) exist for tests and small sets.
//
// A metric that is undefined for the given data (for example AUROC when only
// one class is present) returns an error rather than NaN.
package metrics
