package metrics

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// PRF is a precision / recall / F1 operating point. A sample is predicted
// anomalous when its score is >= Threshold. Precision is 0 when nothing is
// predicted anomalous (scikit-learn's zero_division=0), and F1 is 0 when
// precision and recall are both 0.
type PRF struct {
	Threshold float64
	Precision float64
	Recall    float64
	F1        float64
	// TP, FP, FN and TN are the confusion counts at Threshold.
	TP, FP, FN, TN uint64
}

// ErrOneClass is wrapped by the errors returned when a metric needs both
// anomalous and normal samples and only one class is present.
var ErrOneClass = errors.New("only one class present")

// errNoPositives is wrapped when a metric needs anomalous samples and has none.
func errNoPositives(what string) error {
	return fmt.Errorf("%s: %w: no anomalous (positive) samples", what, ErrOneClass)
}

// prfFromCounts builds a PRF from confusion counts.
func prfFromCounts(threshold float64, tp, fp, fn, tn uint64) PRF {
	p := PRF{Threshold: threshold, TP: tp, FP: fp, FN: fn, TN: tn}
	if tp+fp > 0 {
		p.Precision = float64(tp) / float64(tp+fp)
	}
	if tp+fn > 0 {
		p.Recall = float64(tp) / float64(tp+fn)
	}
	if p.Precision+p.Recall > 0 {
		p.F1 = 2 * p.Precision * p.Recall / (p.Precision + p.Recall)
	}
	return p
}

// group is one distinct score value with the number of positive and negative
// samples that have it, in descending score order.
type group struct {
	score    float64
	pos, neg uint64
}

// groups checks scores and labels and collapses them into descending groups
// of equal scores.
func groups(what string, scores []float64, labels []bool) ([]group, uint64, uint64, error) {
	if len(scores) != len(labels) {
		return nil, 0, 0, fmt.Errorf("%s: %d scores but %d labels, expected equal lengths", what, len(scores), len(labels))
	}
	if len(scores) == 0 {
		return nil, 0, 0, fmt.Errorf("%s: no samples", what)
	}
	idx := make([]int, len(scores))
	for i, s := range scores {
		if math.IsNaN(s) {
			return nil, 0, 0, fmt.Errorf("%s: score %d is NaN, expected a number", what, i)
		}
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	var out []group
	var P, N uint64
	for _, i := range idx {
		if len(out) == 0 || out[len(out)-1].score != scores[i] {
			out = append(out, group{score: scores[i]})
		}
		g := &out[len(out)-1]
		if labels[i] {
			g.pos++
			P++
		} else {
			g.neg++
			N++
		}
	}
	return out, P, N, nil
}

// aurocGroups integrates the ROC curve over descending groups with the
// trapezoidal rule; tied scores form one diagonal step, as in scikit-learn.
func aurocGroups(gs []group, P, N uint64) float64 {
	var tp, fp, area float64
	for _, g := range gs {
		ntp, nfp := tp+float64(g.pos), fp+float64(g.neg)
		area += (nfp - fp) * (ntp + tp) / 2
		tp, fp = ntp, nfp
	}
	return area / (float64(P) * float64(N))
}

// apGroups is scikit-learn's average precision: the sum over descending
// distinct thresholds of (R_k - R_{k-1}) * P_k, without interpolation.
func apGroups(gs []group, P uint64) float64 {
	var tp, fp, ap float64
	for _, g := range gs {
		if g.pos == 0 {
			fp += float64(g.neg)
			continue
		}
		tp += float64(g.pos)
		fp += float64(g.neg)
		ap += float64(g.pos) / float64(P) * tp / (tp + fp)
	}
	return ap
}

// bestF1Groups scans descending groups and returns the operating point with
// the highest F1; equal F1 values keep the higher threshold.
func bestF1Groups(gs []group, P, N uint64) PRF {
	var tp, fp uint64
	best := prfFromCounts(math.Inf(1), 0, 0, P, N)
	for _, g := range gs {
		tp += g.pos
		fp += g.neg
		p := prfFromCounts(g.score, tp, fp, P-tp, N-fp)
		if p.F1 > best.F1 {
			best = p
		}
	}
	return best
}

// AUROC returns the area under the ROC curve of scores (higher means more
// anomalous) against labels (true means anomalous). Tied scores are handled
// like sklearn.metrics.roc_auc_score (each tie is one diagonal segment, i.e.
// a tied positive/negative pair counts one half). It returns an error
// wrapping ErrOneClass when only one class is present.
func AUROC(scores []float64, labels []bool) (float64, error) {
	gs, P, N, err := groups("AUROC", scores, labels)
	if err != nil {
		return 0, err
	}
	if P == 0 || N == 0 {
		return 0, fmt.Errorf("AUROC: %w (%d anomalous, %d normal samples), expected both", ErrOneClass, P, N)
	}
	return aurocGroups(gs, P, N), nil
}

// AveragePrecision returns the average precision of scores against labels,
// as sklearn.metrics.average_precision_score: the sum over descending
// distinct thresholds of the recall increase times the precision. It returns
// an error wrapping ErrOneClass when there is no anomalous sample; with no
// normal sample the result is 1, as in scikit-learn.
func AveragePrecision(scores []float64, labels []bool) (float64, error) {
	gs, P, _, err := groups("average precision", scores, labels)
	if err != nil {
		return 0, err
	}
	if P == 0 {
		return 0, errNoPositives("average precision")
	}
	return apGroups(gs, P), nil
}

// PRF1At returns precision, recall and F1 when samples with score >=
// threshold are predicted anomalous. It returns an error wrapping
// ErrOneClass when there is no anomalous sample (recall is undefined).
func PRF1At(scores []float64, labels []bool, threshold float64) (PRF, error) {
	if len(scores) != len(labels) {
		return PRF{}, fmt.Errorf("PRF1At: %d scores but %d labels, expected equal lengths", len(scores), len(labels))
	}
	var tp, fp, fn, tn uint64
	for i, s := range scores {
		if math.IsNaN(s) {
			return PRF{}, fmt.Errorf("PRF1At: score %d is NaN, expected a number", i)
		}
		switch {
		case s >= threshold && labels[i]:
			tp++
		case s >= threshold:
			fp++
		case labels[i]:
			fn++
		default:
			tn++
		}
	}
	if tp+fn == 0 {
		return PRF{}, errNoPositives("PRF1At")
	}
	return prfFromCounts(threshold, tp, fp, fn, tn), nil
}

// BestF1 returns the F1-optimal operating point: the threshold, among the
// distinct scores, that maximises F1 (the maximum of F1 along
// sklearn.metrics.precision_recall_curve). When several thresholds reach the
// same F1 the highest one is returned. It returns an error wrapping
// ErrOneClass when there is no anomalous sample.
func BestF1(scores []float64, labels []bool) (PRF, error) {
	gs, P, N, err := groups("BestF1", scores, labels)
	if err != nil {
		return PRF{}, err
	}
	if P == 0 {
		return PRF{}, errNoPositives("BestF1")
	}
	return bestF1Groups(gs, P, N), nil
}
