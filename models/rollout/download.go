package rollout

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// MaxRedirects is the most HTTP redirects a download follows.
const MaxRedirects = 5

// NewHTTPClient returns the client downloads use: TLS 1.2 or newer
// verified against the PEM certificates in caFile ("" = the system
// roots), at most MaxRedirects redirects, never from https to http, and
// http at all only with allowHTTP. Response headers must arrive within
// stall.
func NewHTTPClient(caFile string, allowHTTP bool, stall time.Duration) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		data, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("rollout.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("rollout.ca_file %s holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"); give the CA that signed the file server's certificate", caFile)
		}
		tlsCfg.RootCAs = pool
	}
	if stall <= 0 {
		stall = 30 * time.Second
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: stall, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   stall,
		ResponseHeaderTimeout: stall,
		ForceAttemptHTTP2:     true,
		// The archive's bytes are hashed as served: never let the
		// transport decompress them.
		DisableCompression: true,
		MaxIdleConns:       4,
		IdleConnTimeout:    90 * time.Second,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > MaxRedirects {
				return fmt.Errorf("%w after %d redirects (last to %s)", errTooManyRedirects, MaxRedirects, redact(req.URL))
			}
			prev := via[len(via)-1].URL
			if prev.Scheme == "https" && req.URL.Scheme != "https" {
				return fmt.Errorf("%w: %s redirects to %s", errInsecureRedirect, redact(prev), redact(req.URL))
			}
			if req.URL.Scheme != "https" && !allowHTTP {
				return fmt.Errorf("%w: redirect to %s", errHTTPRefused, redact(req.URL))
			}
			return nil
		},
	}, nil
}

var (
	errTooManyRedirects = errors.New("too many redirects")
	errInsecureRedirect = errors.New("redirect from https to http refused")
	errHTTPRefused      = errors.New("plain http refused (rollout.allow_http = false)")
)

// redact drops the user info and query of u for messages (they may hold
// tokens).
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		c.RawQuery = "…"
	}
	return c.String()
}

// checkURL parses a download URL: https, or http with allowHTTP.
func checkURL(raw string, allowHTTP bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: url: %v", ErrRequest, err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowHTTP:
	case u.Scheme == "http":
		return nil, fmt.Errorf("%w: url %s: %w; use https, or set allow_http = true on a trusted network", ErrDownload, redact(u), errHTTPRefused)
	default:
		return nil, fmt.Errorf("%w: url %q: scheme %q is not https", ErrRequest, abbreviate(raw), u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: url %q has no host", ErrRequest, abbreviate(raw))
	}
	return u, nil
}

// downloader fetches one archive into a file with retries and resume.
type downloader struct {
	client    *http.Client
	userAgent string
	maxBytes  int64
	stall     time.Duration
	timeout   time.Duration
	attempts  int
	space     func(need int64) error
	progress  func(inspection.ModelProgress)
	logf      func(msg string, args ...any)
}

// attemptErr is the outcome of one failed attempt.
type attemptErr struct {
	err   error
	retry bool
}

// fetch downloads u into f (empty, opened read-write) and returns the
// number of bytes written.
func (d *downloader) fetch(ctx context.Context, u *url.URL, f *os.File, wantSize int64) (int64, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, d.timeout,
		fmt.Errorf("%w: not complete within %s (rollout.download_timeout)", ErrDownload, d.timeout))
	defer cancel()
	attempts := max(d.attempts, 1)
	var offset int64
	var last *attemptErr
	for n := 1; n <= attempts; n++ {
		var ae *attemptErr
		offset, ae = d.attempt(ctx, u, f, offset, wantSize)
		if ae == nil {
			if err := f.Sync(); err != nil {
				return offset, writeErr(err)
			}
			return offset, nil
		}
		last = ae
		if ctx.Err() != nil {
			return offset, context.Cause(ctx)
		}
		if !ae.retry || n == attempts {
			break
		}
		wait := min(500*time.Millisecond<<(n-1), 10*time.Second)
		d.logf("download attempt failed; retrying", "attempt", n, "of", attempts, "have_bytes", offset, "retry_in", wait, "err", ae.err)
		select {
		case <-ctx.Done():
			return offset, context.Cause(ctx)
		case <-time.After(wait):
		}
	}
	if attempts > 1 && last.retry {
		return offset, fmt.Errorf("%w (gave up after %d attempts, rollout.retries)", last.err, attempts)
	}
	return offset, last.err
}

func (d *downloader) attempt(ctx context.Context, u *url.URL, f *os.File, offset, wantSize int64) (int64, *attemptErr) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fail := func(retry bool, format string, args ...any) *attemptErr {
		return &attemptErr{err: fmt.Errorf(format, args...), retry: retry}
	}
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		return offset, fail(false, "%w: %v", ErrRequest, err)
	}
	if d.userAgent != "" {
		req.Header.Set("User-Agent", d.userAgent)
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := d.client.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return offset, &attemptErr{err: context.Cause(ctx)}
		case errors.Is(err, errTooManyRedirects), errors.Is(err, errInsecureRedirect), errors.Is(err, errHTTPRefused):
			return offset, fail(false, "%w: GET %s: %w", ErrDownload, redact(u), unwrapURLError(err))
		}
		var cert *tls.CertificateVerificationError
		if errors.As(err, &cert) {
			return offset, fail(false, "%w: GET %s: the server's certificate is not trusted (rollout.ca_file): %v", ErrDownload, redact(u), unwrapURLError(err))
		}
		return offset, fail(true, "%w: GET %s: %v", ErrDownload, redact(u), unwrapURLError(err))
	}
	defer resp.Body.Close()
	total := int64(-1)
	switch resp.StatusCode {
	case http.StatusOK:
		if offset > 0 {
			d.logf("server ignored the Range request; downloading again from the start", "had_bytes", offset)
			if err := f.Truncate(0); err != nil {
				return offset, fail(false, "%w", writeErr(err))
			}
			offset = 0
		}
		total = resp.ContentLength
	case http.StatusPartialContent:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if offset == 0 || !ok || start != offset {
			// Not the bytes asked for: start again from zero.
			if err := f.Truncate(0); err != nil {
				return offset, fail(false, "%w", writeErr(err))
			}
			return 0, fail(true, "%w: GET %s: 206 with Content-Range %q does not continue at byte %d; restarting", ErrDownload, redact(u), resp.Header.Get("Content-Range"), offset)
		}
		total = size
	case http.StatusRequestedRangeNotSatisfiable:
		if err := f.Truncate(0); err != nil {
			return offset, fail(false, "%w", writeErr(err))
		}
		return 0, fail(true, "%w: GET %s: the server refused to resume at byte %d (416); restarting", ErrDownload, redact(u), offset)
	default:
		retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests
		return offset, fail(retry, "%w: GET %s: HTTP %s", ErrDownload, redact(u), resp.Status)
	}
	if total >= 0 {
		if total > d.maxBytes {
			return offset, fail(false, "%w: the archive is %d bytes (Content-Length), more than the cap of %d bytes (rollout.max_bundle_mb)", ErrTooLarge, total, d.maxBytes)
		}
		if wantSize > 0 && total != wantSize {
			return offset, fail(false, "%w: the server sends %d bytes, the request says size %d", ErrDownload, total, wantSize)
		}
		if err := d.space(total - offset); err != nil {
			return offset, &attemptErr{err: err}
		}
	}
	d.report(offset, total)
	stalled := fmt.Errorf("%w: GET %s: stalled: no byte received for %s (rollout.stall_timeout)", ErrDownload, redact(u), d.stall)
	timer := time.AfterFunc(d.stall, func() { cancel(stalled) })
	defer timer.Stop()
	buf := make([]byte, 64<<10)
	lastReport := time.Now()
	reported := offset
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			timer.Reset(d.stall)
			if offset+int64(n) > d.maxBytes {
				return offset, fail(false, "%w: the download passed the cap of %d bytes (rollout.max_bundle_mb)", ErrTooLarge, d.maxBytes)
			}
			if _, err := f.WriteAt(buf[:n], offset); err != nil {
				return offset, fail(false, "%w", writeErr(err))
			}
			offset += int64(n)
			if offset-reported >= 1<<20 || time.Since(lastReport) > time.Second {
				d.report(offset, total)
				reported, lastReport = offset, time.Now()
			}
		}
		if rerr == nil {
			continue
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		switch {
		case ctx.Err() != nil:
			return offset, &attemptErr{err: context.Cause(ctx)}
		case actx.Err() != nil:
			return offset, &attemptErr{err: context.Cause(actx), retry: true}
		}
		return offset, fail(true, "%w: GET %s: the connection broke after %s: %v", ErrDownload, redact(u), ofTotal(offset, total), rerr)
	}
	if total >= 0 && offset != total {
		return offset, fail(true, "%w: GET %s: the body ended after %s", ErrDownload, redact(u), ofTotal(offset, total))
	}
	d.report(offset, total)
	return offset, nil
}

func (d *downloader) report(n, total int64) {
	if d.progress != nil {
		d.progress(inspection.ModelProgress{Stage: "download", Bytes: n, Total: max(total, 0)})
	}
}

func ofTotal(n, total int64) string {
	if total < 0 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d of %d bytes", n, total)
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// parseContentRange parses "bytes START-END/SIZE" (SIZE may be "*": -1).
func parseContentRange(s string) (start, size int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	size = -1
	if sz != "*" {
		n, err := strconv.ParseInt(sz, 10, 64)
		if err != nil || n <= end {
			return 0, 0, false
		}
		size = n
	}
	return start, size, true
}

// writeErr reports a failed write, as ErrNoSpace when the disk is full.
func writeErr(err error) error {
	if isNoSpace(err) {
		return spaceErr(err)
	}
	return err
}

func spaceErr(err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%w: %v", ErrNoSpace, err)
	}
	return err
}
