//go:build workstation

package alm

import (
	"math"
	"math/rand/v2"
)

// pcaSamples bounds the number of locations whose covariance defines PCA.
const pcaSamples = 16384

// reduction is the fixed affine map R(x) = P·(x − μ) from F_Mixed to D channels.
type reduction struct {
	// p is D×448 row-major with orthonormal rows.
	p []float64
	// mu is the subtracted mean (448 values, zeros for a global centre).
	mu []float64
}

// randomOrthogonal returns d orthonormal rows of length n (Gram–Schmidt on
// Gaussian vectors, twice for stability).
func randomOrthogonal(r *rand.Rand, d, n int) []float64 {
	p := make([]float64, d*n)
	for i := range p {
		p[i] = r.NormFloat64()
	}
	orthonormalise(p, d, n)
	return p
}

// orthonormalise applies modified Gram–Schmidt (two passes) to the d rows of m.
func orthonormalise(m []float64, d, n int) {
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < d; i++ {
			ri := m[i*n : (i+1)*n]
			for j := 0; j < i; j++ {
				rj := m[j*n : (j+1)*n]
				var dot float64
				for k := range ri {
					dot += ri[k] * rj[k]
				}
				for k := range ri {
					ri[k] -= dot * rj[k]
				}
			}
			var s float64
			for _, v := range ri {
				s += v * v
			}
			s = 1 / math.Sqrt(s)
			for k := range ri {
				ri[k] *= s
			}
		}
	}
}

// pcaDirections returns the top-d eigenvectors (rows, d×n) of the covariance
// of the sample vectors (each of length n) about mu.
func pcaDirections(samples [][]float32, mu []float64, d int) []float64 {
	n := len(mu)
	cov := make([]float64, n*n)
	diff := make([]float64, n)
	for _, s := range samples {
		for k := range diff {
			diff[k] = float64(s[k]) - mu[k]
		}
		for i := 0; i < n; i++ {
			di := diff[i]
			if di == 0 {
				continue
			}
			row := cov[i*n : i*n+i+1]
			for j := range row {
				row[j] += di * diff[j]
			}
		}
	}
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			v := cov[i*n+j] / float64(max(len(samples)-1, 1))
			cov[i*n+j], cov[j*n+i] = v, v
		}
	}
	vals, vecs := jacobiEigen(cov, n)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	// Sort indices by descending eigenvalue (insertion sort; n is small).
	for i := 1; i < n; i++ {
		for j := i; j > 0 && vals[order[j]] > vals[order[j-1]]; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	p := make([]float64, d*n)
	for r := 0; r < d; r++ {
		c := order[r]
		for k := 0; k < n; k++ {
			p[r*n+k] = vecs[k*n+c]
		}
	}
	return p
}

// jacobiEigen diagonalises the symmetric n×n matrix a (destroyed) with the
// cyclic Jacobi method. It returns the eigenvalues and the eigenvectors as
// the columns of a row-major n×n matrix.
func jacobiEigen(a []float64, n int) ([]float64, []float64) {
	vt := make([]float64, n*n) // rows are the eigenvectors
	for i := 0; i < n; i++ {
		vt[i*n+i] = 1
	}
	var diag float64
	for i := 0; i < n; i++ {
		diag += a[i*n+i] * a[i*n+i]
	}
	for sweep := 0; sweep < 50; sweep++ {
		var off float64
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				off += a[i*n+j] * a[i*n+j]
			}
		}
		if off <= 1e-24*diag || off == 0 {
			break
		}
		for p := 0; p < n-1; p++ {
			for q := p + 1; q < n; q++ {
				apq := a[p*n+q]
				app, aqq := a[p*n+p], a[q*n+q]
				if math.Abs(apq) <= 1e-14*math.Sqrt(math.Abs(app*aqq)) || apq == 0 {
					continue
				}
				theta := (aqq - app) / (2 * apq)
				t := math.Copysign(1, theta) / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				c := 1 / math.Sqrt(t*t+1)
				s := t * c
				// Rotate rows p and q (contiguous), mirror them into the
				// columns, then set the 2×2 block exactly.
				rp, rq := a[p*n:(p+1)*n], a[q*n:(q+1)*n]
				for k := 0; k < n; k++ {
					apk, aqk := rp[k], rq[k]
					np, nq := c*apk-s*aqk, s*apk+c*aqk
					rp[k], rq[k] = np, nq
					a[k*n+p], a[k*n+q] = np, nq
				}
				rp[p] = c*c*app - 2*c*s*apq + s*s*aqq
				rq[q] = s*s*app + 2*c*s*apq + c*c*aqq
				rp[q], rq[p] = 0, 0
				vp, vq := vt[p*n:(p+1)*n], vt[q*n:(q+1)*n]
				for k := 0; k < n; k++ {
					x, y := vp[k], vq[k]
					vp[k], vq[k] = c*x-s*y, s*x+c*y
				}
			}
		}
	}
	vals := make([]float64, n)
	vecs := make([]float64, n*n)
	for i := range vals {
		vals[i] = a[i*n+i]
		for k := 0; k < n; k++ {
			vecs[k*n+i] = vt[i*n+k]
		}
	}
	return vals, vecs
}

// apply writes R(x) (D values) for one 448-vector x into dst.
func (r *reduction) apply(dst []float64, x []float32) {
	n := len(r.mu)
	for o := range dst {
		row := r.p[o*n : (o+1)*n]
		var s float64
		for k, w := range row {
			s += w * (float64(x[k]) - r.mu[k])
		}
		dst[o] = s
	}
}

// PCA returns the mean (n values) of the sample vectors, each of length n,
// and the top-d principal directions about it (d×n row-major, orthonormal
// rows, by descending variance). The local-memory trainer shares it.
func PCA(samples [][]float32, d int) (mean, directions []float64) {
	if len(samples) == 0 {
		return nil, nil
	}
	n := len(samples[0])
	mean = make([]float64, n)
	for _, s := range samples {
		for k, v := range s {
			mean[k] += float64(v)
		}
	}
	for k := range mean {
		mean[k] /= float64(len(samples))
	}
	return mean, pcaDirections(samples, mean, d)
}
