package preprocess

// Outside-the-frame handling. An alignment warp that moves a part can pull
// points from beyond the crop into the model input; Fill replicates the
// crop's border there, and the localisation module sees streaks no good
// part has (a plate touching the frame edge becomes a bar across the
// input). Those pixels say nothing about the part, so the heatmap is
// suppressed on and near them, in the daemon and in training alike.

// OutsideMask marks, for each output pixel of spec (Width×Height,
// row-major), whether Fill samples it from beyond a cw×ch crop by more than
// half a pixel, i.e. from replicated border. dst is reused when large
// enough. The second result is the number of pixels outside; without a
// warp none is.
func (spec Spec) OutsideMask(cw, ch int, dst []bool) ([]bool, int) {
	n := spec.Width * spec.Height
	if cap(dst) < n {
		dst = make([]bool, n)
	}
	dst = dst[:n]
	clear(dst)
	if spec.Warp == nil || cw <= 0 || ch <= 0 {
		return dst, 0
	}
	w := *spec.Warp
	sx, sy := float64(cw)/float64(spec.Width), float64(ch)/float64(spec.Height)
	loX, loY, hiX, hiY := -0.5, -0.5, float64(cw)-0.5, float64(ch)-0.5
	found := 0
	for y := range spec.Height {
		v := (float64(y)+0.5)*sy - 0.5
		for x := range spec.Width {
			u := (float64(x)+0.5)*sx - 0.5
			xs, ys := w.Apply(u, v)
			if xs < loX || xs > hiX || ys < loY || ys > hiY {
				dst[y*spec.Width+x] = true
				found++
			}
		}
	}
	return dst, found
}

// SuppressOutside sets heat (w×h, row-major) to 0 on every pixel within
// margin pixels (Chebyshev distance) of an outside pixel (OutsideMask) and
// returns the maximum of what remains (0 when nothing does), the number of
// pixels suppressed, and scratch, grown if needed (pass it back in to
// allocate nothing).
func SuppressOutside[T float32 | float64](heat []T, w, h int, outside []bool, margin int, scratch []int32) (best T, suppressed int, _ []int32) {
	margin = max(margin, 0)
	// Dilate the mask by margin along rows, then along columns: the
	// Chebyshev ball is the product of the two intervals.
	if cap(scratch) < w*h+w {
		scratch = make([]int32, w*h+w)
	}
	dist, run := scratch[:w*h], scratch[w*h:w*h+w]
	big := int32(margin + 1)
	for i, o := range outside[:w*h] {
		dist[i] = big
		if o {
			dist[i] = 0
		}
	}
	for y := range h {
		nearestAlongRow(dist[y*w:(y+1)*w], 0, big) // distance along the row to an outside pixel
	}
	// Along the columns, to a row within the margin: all columns at once,
	// row by row (a running distance per column), which reads memory in
	// order instead of striding down each column.
	m := int32(margin)
	for x := range run {
		run[x] = big
	}
	for y := range h {
		row := dist[y*w : (y+1)*w]
		for x, v := range row {
			if v <= m {
				run[x] = 0
			} else if run[x] < big {
				run[x]++
			}
			row[x] = run[x] // 0 exactly at the seeds, which the backward pass needs
		}
	}
	for x := range run {
		run[x] = big
	}
	for y := h - 1; y >= 0; y-- {
		row := dist[y*w : (y+1)*w]
		for x, v := range row {
			if v == 0 {
				run[x] = 0
			} else if run[x] < big {
				run[x]++
			}
			row[x] = min(v, run[x])
		}
	}
	for i, d := range dist {
		if d <= int32(margin) {
			heat[i] = 0
			suppressed++
		} else if heat[i] > best {
			best = heat[i]
		}
	}
	return best, suppressed, scratch
}

// nearestAlongRow replaces each value of row by the distance along it
// (capped at big) to the nearest seed, a value at most thr.
func nearestAlongRow(row []int32, thr, big int32) {
	d := big
	for i, v := range row {
		if v <= thr {
			d = 0
		} else if d < big {
			d++
		}
		row[i] = d // 0 exactly at the seeds, which the backward pass needs
	}
	d = big
	for i := len(row) - 1; i >= 0; i-- {
		if row[i] == 0 {
			d = 0
		} else if d < big {
			d++
		}
		row[i] = min(row[i], d)
	}
}
