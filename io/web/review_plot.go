package web

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/archive/layout"
)

// Plot geometry (SVG user units) and colours: the status page's OK green
// and NG red.
const (
	plotW, plotH                     = 420.0, 170.0
	plotLeft, plotRight              = 44.0, 10.0
	plotTop, plotBottom              = 22.0, 28.0
	colourOK, colourNG, colourAccent = "#1e9e3e", "#d62828", "#1f5fbf"
	histBins                         = 30
	timeBuckets                      = 24
	maxPlotProducts                  = 4
)

// plotData is the results the plots summarise, oldest first, and where
// they come from.
type plotData struct {
	results []inspection.Result
	source  string // a caption: which parts are shown
}

// plotResults gathers the parts for the plots of product ("" all): the
// archive's newest results when it keeps every part (archive.save = "all"),
// else (it keeps only rejects, which would make every rate 100 %) the
// parts the server holds in memory, all verdicts.
func (s *Server) plotResults(product string) (plotData, error) {
	l, err := s.review.rd.List(layout.Filter{Product: product, PerPage: layout.MaxPerPage})
	if err != nil {
		return plotData{}, err
	}
	hasOK := false
	byID := map[string]bool{}
	var out []inspection.Result
	for _, rec := range l.Records {
		hasOK = hasOK || rec.Result.Verdict == inspection.OK
		byID[rec.Result.ID] = true
		out = append(out, rec.Result)
	}
	src := fmt.Sprintf("newest %d archived parts", len(out))
	if !hasOK {
		out = out[:0]
		for _, r := range s.recentResults(s.history) {
			if product == "" || r.Model.Product == product {
				out = append(out, r)
			}
		}
		src = fmt.Sprintf("last %d parts in memory (the archive keeps rejects only)", len(out))
	} else {
		for _, r := range s.recentResults(s.history) {
			if !byID[r.ID] && (product == "" || r.Model.Product == product) {
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, func(a, b inspection.Result) int { return a.VerdictTime.Compare(b.VerdictTime) })
	return plotData{results: out, source: src}, nil
}

// svgOpen starts a plot with its title.
func svgOpen(b *strings.Builder, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="%s">`,
		plotW, plotH, plotW, plotH, html.EscapeString(title))
	fmt.Fprintf(b, `<title>%s</title><rect x="0" y="0" width="%g" height="%g" fill="#fff"/>`, html.EscapeString(title), plotW, plotH)
	fmt.Fprintf(b, `<text x="%g" y="14" font-size="12" font-weight="600" fill="#222">%s</text>`, plotLeft, html.EscapeString(title))
}

// axes draws the frame, y ticks (lo..hi) and x labels.
func axes(b *strings.Builder, ylo, yhi float64, yfmt string, xlabels [2]string) {
	x0, x1 := plotLeft, plotW-plotRight
	y0, y1 := plotH-plotBottom, plotTop
	fmt.Fprintf(b, `<path d="M%g %gV%gH%g" stroke="#888" fill="none"/>`, x0, y1, y0, x1)
	for i := 0; i <= 2; i++ {
		v := ylo + (yhi-ylo)*float64(i)/2
		y := y0 - (y0-y1)*float64(i)/2
		fmt.Fprintf(b, `<text x="%g" y="%g" font-size="10" text-anchor="end" fill="#555">%s</text>`, x0-4, y+3, fmt.Sprintf(yfmt, v))
		if i > 0 {
			fmt.Fprintf(b, `<path d="M%g %gH%g" stroke="#eee"/>`, x0, y, x1)
		}
	}
	fmt.Fprintf(b, `<text x="%g" y="%g" font-size="10" fill="#555">%s</text>`, x0, plotH-10, html.EscapeString(xlabels[0]))
	fmt.Fprintf(b, `<text x="%g" y="%g" font-size="10" text-anchor="end" fill="#555">%s</text>`, x1, plotH-10, html.EscapeString(xlabels[1]))
}

// emptyPlot is a plot with a message instead of data.
func emptyPlot(title, msg string) string {
	var b strings.Builder
	svgOpen(&b, title)
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="12" text-anchor="middle" fill="#777">%s</text></svg>`, plotW/2, plotH/2, html.EscapeString(msg))
	return b.String()
}

// scoreHistogram plots the scores of the OK (green) and NG (red) parts,
// stacked, with the threshold of the newest part as a dashed line.
// ERROR parts have no score and are left out.
func scoreHistogram(rs []inspection.Result, title string) string {
	var scored []inspection.Result
	for _, r := range rs {
		if r.Verdict != inspection.Error && !math.IsNaN(r.Score) && !math.IsInf(r.Score, 0) {
			scored = append(scored, r)
		}
	}
	if len(scored) == 0 {
		return emptyPlot(title, "no scored parts yet")
	}
	thr := scored[len(scored)-1].Threshold
	hi := thr * 1.5
	lo := 0.0
	for _, r := range scored {
		hi = max(hi, r.Score)
		lo = min(lo, r.Score)
	}
	if hi <= lo {
		hi = lo + 1
	}
	var ok, ng [histBins]int
	for _, r := range scored {
		i := min(int((r.Score-lo)/(hi-lo)*histBins), histBins-1)
		if r.Verdict == inspection.OK {
			ok[i]++
		} else {
			ng[i]++
		}
	}
	top := 1
	for i := range ok {
		top = max(top, ok[i]+ng[i])
	}
	var b strings.Builder
	svgOpen(&b, title)
	axes(&b, 0, float64(top), "%.0f", [2]string{fmt.Sprintf("score %.2f", lo), fmt.Sprintf("%.2f", hi)})
	x0, x1 := plotLeft, plotW-plotRight
	y0, y1 := plotH-plotBottom, plotTop
	bw := (x1 - x0) / histBins
	for i := range ok {
		hOK := (y0 - y1) * float64(ok[i]) / float64(top)
		hNG := (y0 - y1) * float64(ng[i]) / float64(top)
		x := x0 + bw*float64(i)
		if ok[i] > 0 {
			fmt.Fprintf(&b, `<rect class="bar-ok" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, x+0.5, y0-hOK, bw-1, hOK, colourOK)
		}
		if ng[i] > 0 {
			fmt.Fprintf(&b, `<rect class="bar-ng" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, x+0.5, y0-hOK-hNG, bw-1, hNG, colourNG)
		}
	}
	tx := x0 + (x1-x0)*(thr-lo)/(hi-lo)
	fmt.Fprintf(&b, `<path class="threshold" d="M%.1f %gV%g" stroke="#222" stroke-dasharray="4 3"/>`, tx, y1, y0)
	fmt.Fprintf(&b, `<text x="%.1f" y="%g" font-size="10" fill="#222">threshold %.3f</text>`, tx+3, y1+10, thr)
	nOK, nNG := 0, 0
	for i := range ok {
		nOK, nNG = nOK+ok[i], nNG+ng[i]
	}
	fmt.Fprintf(&b, `<text x="%g" y="14" font-size="10" text-anchor="end"><tspan fill="%s">■ OK %d</tspan> <tspan fill="%s">■ NG %d</tspan></text>`,
		x1, colourOK, nOK, colourNG, nNG)
	b.WriteString(`</svg>`)
	return b.String()
}

// bucket is the parts of one time slice.
type bucket struct {
	n, rejected int
	latencies   []float64
}

// buckets splits rs (oldest first) into timeBuckets equal time slices.
func buckets(rs []inspection.Result) ([]bucket, time.Time, time.Time) {
	t0, t1 := rs[0].VerdictTime, rs[len(rs)-1].VerdictTime
	span := t1.Sub(t0)
	bs := make([]bucket, timeBuckets)
	for _, r := range rs {
		i := timeBuckets - 1
		if span > 0 {
			i = min(int(float64(r.VerdictTime.Sub(t0))/float64(span)*timeBuckets), timeBuckets-1)
		}
		bs[i].n++
		if r.Verdict.Rejects() {
			bs[i].rejected++
		}
		if r.Latency.TotalMs > 0 {
			bs[i].latencies = append(bs[i].latencies, r.Latency.TotalMs)
		}
	}
	return bs, t0, t1
}

// percentile returns the p-quantile (nearest rank) of vs, sorting them.
func percentile(vs []float64, p float64) float64 {
	slices.Sort(vs)
	i := int(math.Ceil(p*float64(len(vs)))) - 1
	return vs[max(0, min(i, len(vs)-1))]
}

func timeLabels(t0, t1 time.Time) [2]string {
	f := "15:04"
	if t1.Sub(t0) > 24*time.Hour {
		f = "01-02 15:04"
	}
	return [2]string{t0.UTC().Format(f) + " UTC", t1.UTC().Format(f)}
}

// series draws a polyline through the buckets that have a value.
func series(b *strings.Builder, class, colour string, vals []float64, has []bool, yhi float64) {
	x0, x1 := plotLeft, plotW-plotRight
	y0, y1 := plotH-plotBottom, plotTop
	var pts []string
	for i, v := range vals {
		if !has[i] {
			continue
		}
		x := x0 + (x1-x0)*(float64(i)+0.5)/float64(len(vals))
		y := y0 - (y0-y1)*v/yhi
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="2" fill="%s"/>`, x, y, colour)
	}
	fmt.Fprintf(b, `<polyline class="%s" points="%s" fill="none" stroke="%s" stroke-width="1.5"/>`, class, strings.Join(pts, " "), colour)
}

// ngRatePlot plots the share of rejected parts (NG and ERROR) per time
// slice.
func ngRatePlot(rs []inspection.Result, title string) string {
	if len(rs) == 0 {
		return emptyPlot(title, "no parts yet")
	}
	bs, t0, t1 := buckets(rs)
	vals, has := make([]float64, len(bs)), make([]bool, len(bs))
	yhi := 0.05
	for i, bk := range bs {
		if bk.n > 0 {
			vals[i], has[i] = 100*float64(bk.rejected)/float64(bk.n), true
			yhi = max(yhi, vals[i])
		}
	}
	yhi = niceCeil(yhi)
	var b strings.Builder
	svgOpen(&b, title)
	axes(&b, 0, yhi, "%.3g%%", timeLabels(t0, t1))
	series(&b, "ngrate", colourNG, vals, has, yhi)
	b.WriteString(`</svg>`)
	return b.String()
}

// latencyPlot plots the p50 and p99 of the trigger-to-verdict latency per
// time slice.
func latencyPlot(rs []inspection.Result, title string) string {
	if len(rs) == 0 {
		return emptyPlot(title, "no parts yet")
	}
	bs, t0, t1 := buckets(rs)
	p50, p99, has := make([]float64, len(bs)), make([]float64, len(bs)), make([]bool, len(bs))
	yhi := 1.0
	for i, bk := range bs {
		if len(bk.latencies) > 0 {
			p50[i], p99[i], has[i] = percentile(bk.latencies, 0.5), percentile(bk.latencies, 0.99), true
			yhi = max(yhi, p99[i])
		}
	}
	yhi = niceCeil(yhi)
	var b strings.Builder
	svgOpen(&b, title)
	axes(&b, 0, yhi, "%.0f ms", timeLabels(t0, t1))
	series(&b, "p50", colourAccent, p50, has, yhi)
	series(&b, "p99", colourNG, p99, has, yhi)
	fmt.Fprintf(&b, `<text x="%g" y="14" font-size="10" text-anchor="end"><tspan fill="%s">— p50</tspan> <tspan fill="%s">— p99</tspan></text>`,
		plotW-plotRight, colourAccent, colourNG)
	b.WriteString(`</svg>`)
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// plotGroup is the plots of one product on the page.
type plotGroup struct {
	Product string
	Source  string
	Plots   []template.HTML
}

// plotGroups renders the plots per product: the filtered product, else
// the products of the recent parts (at most maxPlotProducts).
func (s *Server) plotGroups(product string) ([]plotGroup, error) {
	all, err := s.plotResults(product)
	if err != nil {
		return nil, err
	}
	products := []string{product}
	if product == "" {
		products = products[:0]
		for i := len(all.results) - 1; i >= 0 && len(products) < maxPlotProducts; i-- {
			if p := all.results[i].Model.Product; !slices.Contains(products, p) {
				products = append(products, p)
			}
		}
		slices.Sort(products)
	}
	var gs []plotGroup
	for _, p := range products {
		var rs []inspection.Result
		for _, r := range all.results {
			if r.Model.Product == p {
				rs = append(rs, r)
			}
		}
		name := p
		if name == "" {
			name = "(no product)"
		}
		gs = append(gs, plotGroup{Product: name, Source: all.source, Plots: []template.HTML{
			template.HTML(scoreHistogram(rs, "Score vs threshold — "+name)),       // #nosec: built by this file, text escaped
			template.HTML(ngRatePlot(rs, "NG rate over time — "+name)),            // #nosec
			template.HTML(latencyPlot(rs, "Latency p50 / p99 over time — "+name)), // #nosec
		}})
	}
	return gs, nil
}

// handlePlot serves GET /api/review/plots.svg?kind=score|ngrate|latency&product=….
func (s *Server) handlePlot(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	product := q.Get("product")
	data, err := s.plotResults(product)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading the archive failed: "+err.Error())
		return
	}
	rs := data.results
	if product != "" {
		product = " — " + product
	}
	var svg string
	switch q.Get("kind") {
	case "score":
		svg = scoreHistogram(rs, "Score vs threshold"+product)
	case "ngrate":
		svg = ngRatePlot(rs, "NG rate over time"+product)
	case "latency":
		svg = latencyPlot(rs, "Latency p50 / p99 over time"+product)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter kind %q is not known; use score, ngrate or latency", truncateText(q.Get("kind"), 40)))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/svg+xml")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = w.Write([]byte(svg))
}
