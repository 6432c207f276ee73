package rollout

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// files of a small fake bundle; the first manifest line is its product.
func bundleFiles(product string) map[string]string {
	return map[string]string{
		"manifest.toml": product + "\nformat_version = 1\n",
		"align.onnx":    strings.Repeat("a", 3000),
		"sub/extra.bin": "extra " + product,
		"weights.bin":   noise, // incompressible: the archive is about 20 KB
	}
}

var noise = randomString(20 << 10)

// hits counts requests per path and records their Range headers.
type hits struct {
	mu     sync.Mutex
	n      map[string]int
	ranges []string
	agents []string
}

func (h *hits) record(r *http.Request) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[string]int{}
	}
	h.n[r.URL.Path]++
	h.ranges = append(h.ranges, r.Header.Get("Range"))
	h.agents = append(h.agents, r.Header.Get("User-Agent"))
	return h.n[r.URL.Path]
}

func (h *hits) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[path]
}

// serveBytes serves data with Range support.
func serveBytes(w http.ResponseWriter, r *http.Request, data []byte) {
	http.ServeContent(w, r, "bundle.tar.gz", time.Time{}, bytes.NewReader(data))
}

// newTLS starts an HTTPS server with a certificate from a throwaway CA
// and returns it with the CA's PEM file.
func newTLS(t *testing.T, h http.Handler) (*httptest.Server, string) {
	t.Helper()
	ca := newTestCA(t)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, "127.0.0.1")}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, ca.file
}

// testOptions are a store's options for tests: 1 MiB cap, short timeouts,
// plenty of free space.
func testOptions(t *testing.T, ca string, pubs ...publisher) Options {
	o := Options{
		Dir: filepath.Join(t.TempDir(), "models"), CAFile: ca,
		MaxBytes: 1 << 20, DownloadTimeout: 20 * time.Second, StallTimeout: 2 * time.Second, Retries: 2,
		UserAgent: "inspectd/test station/st01",
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		FreeSpace: func(string) (uint64, error) { return 1 << 40, nil },
	}
	for _, p := range pubs {
		o.TrustedKeys = append(o.TrustedKeys, p.pub)
	}
	return o
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func mustOpen(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInstallActivateRollback(t *testing.T) {
	p := newPublisher(t)
	a, b := packFiles(t, bundleFiles("gear")), packFiles(t, bundleFiles("gear-v2"))
	var h hits
	srv, ca := newTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.record(r)
		switch r.URL.Path {
		case "/a.tar.gz":
			serveBytes(w, r, a.data)
		case "/b.tar.gz":
			serveBytes(w, r, b.data)
		default:
			http.NotFound(w, r)
		}
	}))
	o := testOptions(t, ca, p)
	s := mustOpen(t, o)
	var stages []string
	progress := func(m inspection.ModelProgress) {
		if len(stages) == 0 || stages[len(stages)-1] != m.Stage {
			stages = append(stages, m.Stage)
		}
	}
	ia, err := s.Install(context.Background(), a.request(p, srv.URL+"/a.tar.gz"), fakeVerify, progress)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(stages, ","); got != "download,verify,unpack,load,available" {
		t.Errorf("progress stages %s", got)
	}
	if ia.SHA256 != a.sha || ia.Product != "gear" || ia.Dir != filepath.Join(o.Dir, a.sha) || ia.Bytes != int64(len(a.data)) || ia.BundleHash == "" {
		t.Errorf("installed %+v", ia)
	}
	if h.agents[0] != o.UserAgent {
		t.Errorf("User-Agent %q", h.agents[0])
	}
	data, err := os.ReadFile(filepath.Join(ia.Dir, "sub", "extra.bin"))
	if err != nil || string(data) != "extra gear" {
		t.Fatalf("unpacked file: %q %v", data, err)
	}
	for p, want := range map[string]os.FileMode{ia.Dir: 0o750, filepath.Join(ia.Dir, "sub"): 0o750, filepath.Join(ia.Dir, "align.onnx"): 0o640} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", p, fi.Mode().Perm(), want, err)
		}
	}
	if _, ok := s.Current("gear"); ok {
		t.Error("an install made the bundle current")
	}
	// Idempotent: the same archive again is not downloaded again.
	again, err := s.Install(context.Background(), a.request(p, srv.URL+"/a.tar.gz"), fakeVerify, nil)
	if err != nil || again.SHA256 != a.sha || h.count("/a.tar.gz") != 1 {
		t.Fatalf("second install: %+v %v, %d downloads", again, err, h.count("/a.tar.gz"))
	}
	ib, err := s.Install(context.Background(), b.request(p, srv.URL+"/b.tar.gz"), fakeVerify, nil)
	if err != nil {
		t.Fatal(err)
	}
	if prev, err := s.Activate("gear", a.sha); err != nil || prev.SHA256 != "" {
		t.Fatalf("activate a: %+v %v", prev, err)
	}
	if prev, err := s.Activate("gear", ib.SHA256); err != nil || prev.SHA256 != a.sha {
		t.Fatalf("activate b: %+v %v", prev, err)
	}
	if _, err := s.Activate("gear", strings.Repeat("0", 64)); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("activate unknown: %v", err)
	}
	if _, err := s.Rollback("other"); !errors.Is(err, ErrNoPrevious) || !strings.Contains(err.Error(), `product "other"`) {
		t.Fatalf("rollback without previous: %v", err)
	}
	// Reopen: the state survives.
	s2 := mustOpen(t, o)
	if cur, ok := s2.Current("gear"); !ok || cur.SHA256 != b.sha || cur.Dir != ib.Dir {
		t.Fatalf("current after reopen: %+v %v", cur, ok)
	}
	back, err := s2.Rollback("gear")
	if err != nil || back.SHA256 != a.sha {
		t.Fatalf("rollback: %+v %v", back, err)
	}
	if cur, _ := s2.Current("gear"); cur.SHA256 != a.sha {
		t.Fatalf("current after rollback %s", cur.SHA256)
	}
	if prev, _ := s2.Previous("gear"); prev.SHA256 != b.sha {
		t.Fatalf("previous after rollback %s", prev.SHA256)
	}
	if len(s2.Cleaned()) != 0 || len(leftovers(t, o.Dir)) != 0 {
		t.Errorf("cleaned %v, leftovers %v", s2.Cleaned(), leftovers(t, o.Dir))
	}
}

// installFailure is one way an install goes wrong.
type installFailure struct {
	name    string
	handler func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) // n: request number for the path
	archive func(t *testing.T) archive                                        // default: a good archive
	req     func(r *inspection.ModelInstall, srv string, plain string)
	opts    func(o *Options)
	verify  func(ctx context.Context, dir string) (string, string, error)
	want    error
	text    string
	hits    int // expected requests, -1 = any
}

func TestInstallFailures(t *testing.T) {
	p := newPublisher(t)
	stranger := newPublisher(t)
	good := packFiles(t, bundleFiles("gear-v2"))
	other := packFiles(t, bundleFiles("other"))
	big := make([]byte, 3<<20)
	rand.Read(big)
	cases := []installFailure{
		{name: "stall", want: ErrDownload, text: "stalled: no byte received for 300ms (rollout.stall_timeout)", hits: 2,
			opts: func(o *Options) { o.StallTimeout = 300 * time.Millisecond },
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				w.Header().Set("Content-Length", strconv.Itoa(len(good.data)))
				w.Write(good.data[:100])
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}},
		{name: "truncated body", want: ErrDownload, text: "the connection broke after 1000 of", hits: 2,
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				w.Header().Set("Content-Length", strconv.Itoa(len(good.data)))
				w.Write(good.data[:1000])
			}},
		{name: "content-length too short", want: ErrHash, text: "have sha256", hits: 1,
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				w.Header().Set("Content-Length", strconv.Itoa(len(good.data)-10))
				w.Write(good.data[:len(good.data)-10])
			}},
		{name: "size differs from request", want: ErrDownload, text: "the server sends", hits: 1,
			req:     func(r *inspection.ModelInstall, _, _ string) { r.Size = 1234 },
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) { serveBytes(w, r, good.data) }},
		{name: "redirect loop", want: ErrDownload, text: "too many redirects after 5 redirects", hits: 6,
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				http.Redirect(w, r, r.URL.Path, http.StatusFound)
			}},
		{name: "https to http redirect", want: ErrDownload, text: "redirect from https to http refused", hits: 1,
			opts: func(o *Options) { o.AllowHTTP = true },
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				http.Redirect(w, r, r.Header.Get("X-Plain"), http.StatusFound)
			}},
		{name: "plain http url", want: ErrDownload, text: "plain http refused (rollout.allow_http = false)", hits: 0,
			req: func(r *inspection.ModelInstall, _, plain string) { r.URL = plain + "/bundle.tar.gz" }},
		{name: "oversized by content-length", want: ErrTooLarge, text: "the archive is 3145728 bytes (Content-Length), more than the cap of 1048576 bytes", hits: 1,
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) { serveBytes(w, r, big) }},
		{name: "oversized without content-length", want: ErrTooLarge, text: "the download passed the cap of 1048576 bytes", hits: 1,
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				for i := 0; i < len(big); i += 64 << 10 {
					if _, err := w.Write(big[i : i+64<<10]); err != nil {
						return
					}
					w.(http.Flusher).Flush()
				}
			}},
		{name: "request size over cap", want: ErrTooLarge, text: "the request says the archive is 5000000 bytes", hits: 0,
			req: func(r *inspection.ModelInstall, _, _ string) { r.Size = 5_000_000 }},
		{name: "wrong hash", want: ErrHash, text: "the request says " + good.sha, hits: 1,
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) { serveBytes(w, r, other.data) }},
		{name: "bad signature", want: ErrSignature, text: "does not verify with any trusted key (" + p.id + ")", hits: 0,
			req: func(r *inspection.ModelInstall, _, _ string) { r.Signature = Sign(p.priv, other.sha) }},
		{name: "signature not base64", want: ErrSignature, text: "the signature is not standard base64", hits: 0,
			req: func(r *inspection.ModelInstall, _, _ string) { r.Signature = "%%%" }},
		{name: "signature wrong length", want: ErrSignature, text: "the signature is 3 bytes, expected 64", hits: 0,
			req: func(r *inspection.ModelInstall, _, _ string) { r.Signature = "AAAA" }},
		{name: "unknown key", want: ErrSignature, text: "signed by an unknown key", hits: 0,
			req: func(r *inspection.ModelInstall, _, _ string) { r.Signature = Sign(stranger.priv, good.sha) }},
		{name: "revoked key", want: ErrSignature, text: "signed by key " + p.id + ", which is revoked (rollout.revoked_keys)", hits: 0,
			opts: func(o *Options) { o.RevokedKeys = []string{p.id} }},
		{name: "bad sha256", want: ErrRequest, text: `sha256 "xyz" is not 64 hex characters`, hits: 0,
			req: func(r *inspection.ModelInstall, _, _ string) { r.SHA256 = "xyz" }},
		{name: "http 404", want: ErrDownload, text: "HTTP 404 Not Found", hits: 1,
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) { http.NotFound(w, r) }},
		{name: "http 503 retried", want: ErrDownload, text: "HTTP 503 Service Unavailable (gave up after 2 attempts", hits: 2,
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				http.Error(w, "busy", http.StatusServiceUnavailable)
			}},
		{name: "untrusted certificate", want: ErrDownload, text: "the server's certificate is not trusted (rollout.ca_file)", hits: -1,
			opts:    func(o *Options) { o.CAFile = newTestCA(t).file },
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) { serveBytes(w, r, good.data) }},
		{name: "download timeout", want: ErrDownload, text: "not complete within 500ms (rollout.download_timeout)", hits: 1,
			opts: func(o *Options) { o.DownloadTimeout = 500 * time.Millisecond },
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				w.Header().Set("Content-Length", strconv.Itoa(len(good.data)))
				for i := range good.data {
					if _, err := w.Write(good.data[i : i+1]); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}},
		{name: "no space for the download", want: ErrNoSpace, text: "the download needs", hits: 1,
			opts: func(o *Options) {
				o.FreeSpace = func(string) (uint64, error) { return MinFreeBytes + 100, nil }
			},
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) { serveBytes(w, r, good.data) }},
		{name: "no space for the download by request size", want: ErrNoSpace, text: "the download needs 5000 bytes", hits: 0,
			req: func(r *inspection.ModelInstall, _, _ string) { r.Size = 5000 },
			opts: func(o *Options) {
				o.FreeSpace = func(string) (uint64, error) { return MinFreeBytes + 100, nil }
			}},
		{name: "no space for unpacking", want: ErrNoSpace, text: "the unpacked bundle needs", hits: 1,
			opts: func(o *Options) {
				var calls atomic.Int32
				o.FreeSpace = func(string) (uint64, error) {
					if calls.Add(1) == 1 {
						return 1 << 40, nil
					}
					return MinFreeBytes + 1000, nil
				}
			},
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) { serveBytes(w, r, good.data) }},
		{name: "verify fails", want: ErrVerify, text: "bundle verification failed: manifest.toml: localize graph missing", hits: 1,
			verify: func(context.Context, string) (string, string, error) {
				return "", "", errors.New("manifest.toml: localize graph missing")
			}},
		{name: "truncated archive", want: ErrArchive, text: "bad bundle archive: reading entry", hits: 1,
			archive: func(t *testing.T) archive {
				a := packFiles(t, bundleFiles("gear"))
				return newArchive(a.data[:len(a.data)/2])
			}},
		{name: "corrupt gzip checksum", want: ErrArchive, text: "bad bundle archive: the gzip stream is corrupt: gzip: invalid checksum", hits: 1,
			archive: func(t *testing.T) archive {
				a := packFiles(t, bundleFiles("gear"))
				d := append([]byte(nil), a.data...)
				d[len(d)-8] ^= 0x5a // the member's CRC-32
				return newArchive(d)
			}},
		{name: "corrupt gzip data", want: ErrArchive, text: "bad bundle archive: ", hits: 1,
			archive: func(t *testing.T) archive {
				a := packFiles(t, bundleFiles("gear"))
				d := append([]byte(nil), a.data...)
				for i := len(d) / 2; i < len(d)/2+40; i++ {
					d[i] ^= 0x5a
				}
				return newArchive(d)
			}},
		{name: "not gzip", want: ErrArchive, text: "bad bundle archive: not a gzip stream", hits: 1,
			archive: func(t *testing.T) archive { return newArchive([]byte("PK\x03\x04 this is a zip file")) }},
		{name: "zip slip", want: ErrArchive, text: `entry "../evil.sh": the path climbs out of the bundle directory`, hits: 1,
			archive: func(t *testing.T) archive {
				return rawArchive(t, []rawEntry{{name: "manifest.toml", body: "x"}, {name: "../evil.sh", body: "rm -rf /"}}, nil)
			}},
		{name: "zip slip inside", want: ErrArchive, text: `entry "sub/../../evil"`, hits: 1,
			archive: func(t *testing.T) archive {
				return rawArchive(t, []rawEntry{{name: "sub/../../evil", body: "x"}}, nil)
			}},
		{name: "absolute path", want: ErrArchive, text: `entry "/etc/cron.d/x": absolute path`, hits: 1,
			archive: func(t *testing.T) archive {
				return rawArchive(t, []rawEntry{{name: "/etc/cron.d/x", body: "x"}}, nil)
			}},
		{name: "symlink", want: ErrArchive, text: `entry "align.onnx": a symbolic link (to "/etc/shadow")`, hits: 1,
			archive: func(t *testing.T) archive {
				return rawArchive(t, []rawEntry{{name: "manifest.toml", body: "x"}, {name: "align.onnx", typ: tar.TypeSymlink, linkname: "/etc/shadow"}}, nil)
			}},
		{name: "hard link", want: ErrArchive, text: `a hard link (to "manifest.toml")`, hits: 1,
			archive: func(t *testing.T) archive {
				return rawArchive(t, []rawEntry{{name: "manifest.toml", body: "x"}, {name: "b", typ: tar.TypeLink, linkname: "manifest.toml"}}, nil)
			}},
		{name: "device", want: ErrArchive, text: `entry "null": a device`, hits: 1,
			archive: func(t *testing.T) archive {
				return rawArchive(t, []rawEntry{{name: "null", typ: tar.TypeChar}}, nil)
			}},
		{name: "fifo", want: ErrArchive, text: `entry "pipe": a named pipe`, hits: 1,
			archive: func(t *testing.T) archive {
				return rawArchive(t, []rawEntry{{name: "pipe", typ: tar.TypeFifo}}, nil)
			}},
		{name: "duplicate name", want: ErrArchive, text: `entry "./manifest.toml" appears twice`, hits: 1,
			archive: func(t *testing.T) archive {
				return rawArchive(t, []rawEntry{{name: "manifest.toml", body: "a"}, {name: "./manifest.toml", body: "b"}}, nil)
			}},
		{name: "huge entry", want: ErrTooLarge, text: `entry "align.onnx" is 1048577 bytes, more than the 1048576-byte cap`, hits: 1,
			archive: func(t *testing.T) archive {
				return rawArchive(t, []rawEntry{{name: "manifest.toml", body: "x"}, {name: "align.onnx", size: 1<<20 + 1}}, nil)
			}},
		{name: "total over twice the cap", want: ErrTooLarge, text: "the files add up to more than 2097152 bytes", hits: 1,
			archive: func(t *testing.T) archive {
				return rawArchive(t, []rawEntry{{name: "a", size: 1000 << 10}, {name: "b", size: 1000 << 10}, {name: "c", size: 1000 << 10}}, nil)
			}},
		{name: "too many entries", want: ErrArchive, text: "more than 64 entries", hits: 1,
			archive: func(t *testing.T) archive {
				var es []rawEntry
				for i := range 65 {
					es = append(es, rawEntry{name: fmt.Sprintf("f%02d", i), body: "x"})
				}
				return rawArchive(t, es, nil)
			}},
		{name: "empty archive", want: ErrArchive, text: "the archive is empty", hits: 1,
			archive: func(t *testing.T) archive { return rawArchive(t, nil, nil) }},
	}
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serveBytes(w, r, good.data) }))
	defer plain.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			arch := good
			if tc.archive != nil {
				arch = tc.archive(t)
			}
			var h hits
			srv, ca := newTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := h.record(r)
				switch {
				case r.URL.Path == "/base.tar.gz":
					serveBytes(w, r, baseArchive.data)
				case tc.handler != nil:
					r.Header.Set("X-Plain", plain.URL+"/bundle.tar.gz")
					tc.handler(t, w, r, n)
				default:
					serveBytes(w, r, arch.data)
				}
			}))
			o := testOptions(t, ca, p)
			s, before := storeWithBase(t, o, p, srv.URL)
			if tc.opts != nil {
				tc.opts(&o)
				var err error
				if s, err = Open(o); err != nil {
					t.Fatal(err)
				}
			}
			req := arch.request(p, srv.URL+"/bundle.tar.gz")
			if tc.req != nil {
				tc.req(&req, srv.URL, plain.URL)
			}
			verify := fakeVerify
			if tc.verify != nil {
				verify = tc.verify
			}
			start := time.Now()
			_, err := s.Install(context.Background(), req, verify, nil)
			if err == nil {
				t.Fatal("install succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v; want it to wrap %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q\nwant it to contain %q", err, tc.text)
			}
			if n := h.count("/bundle.tar.gz"); tc.hits >= 0 && n != tc.hits {
				t.Errorf("%d requests, want %d", n, tc.hits)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %s", d)
			}
			assertUnchanged(t, o.Dir, before)
			if _, ok := s.Lookup(arch.sha); ok {
				t.Error("the failed archive is listed")
			}
		})
	}
}

var baseArchive = func() archive {
	// Built once: a fixed bundle installed and activated before every
	// failure, which must survive it.
	dir, err := os.MkdirTemp("", "rollout-base-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	var names []string
	for name, content := range bundleFiles("gear") {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			panic(err)
		}
		names = append(names, name)
	}
	var buf bytes.Buffer
	if err := WriteArchive(context.Background(), &buf, dir, names); err != nil {
		panic(err)
	}
	return newArchive(buf.Bytes())
}()

// storeWithBase opens a store, installs and activates baseArchive (served
// at /base.tar.gz) and returns the directory's snapshot.
func storeWithBase(t *testing.T, o Options, p publisher, srvURL string) (*Store, map[string]string) {
	t.Helper()
	s := mustOpen(t, o)
	if _, err := s.Install(context.Background(), baseArchive.request(p, srvURL+"/base.tar.gz"), fakeVerify, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Activate("gear", baseArchive.sha); err != nil {
		t.Fatal(err)
	}
	return s, dirSnapshot(t, o.Dir)
}

// assertUnchanged checks that the store's directory is as before: the
// state file, the installed bundles, and nothing left behind.
func assertUnchanged(t *testing.T, dir string, before map[string]string) {
	t.Helper()
	if l := leftovers(t, dir); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
	if k, ok := equalSnap(before, dirSnapshot(t, dir)); !ok {
		t.Errorf("the store's directory changed at %s", k)
	}
}

func TestInstallResumesWithRange(t *testing.T) {
	p := newPublisher(t)
	a := packFiles(t, map[string]string{"manifest.toml": "gear\n", "big.bin": randomString(200 << 10)})
	for _, mode := range []string{"206", "200 ignoring Range", "206 at the wrong offset"} {
		t.Run(mode, func(t *testing.T) {
			var h hits
			srv, ca := newTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := h.record(r)
				if n == 1 {
					w.Header().Set("Content-Length", strconv.Itoa(len(a.data)))
					w.Write(a.data[:50_000])
					return
				}
				switch mode {
				case "206":
					serveBytes(w, r, a.data)
				case "200 ignoring Range":
					r.Header.Del("Range")
					serveBytes(w, r, a.data)
				default:
					if n == 2 {
						w.Header().Set("Content-Range", fmt.Sprintf("bytes 10-%d/%d", len(a.data)-1, len(a.data)))
						w.WriteHeader(http.StatusPartialContent)
						w.Write(a.data[10:])
						return
					}
					serveBytes(w, r, a.data)
				}
			}))
			o := testOptions(t, ca, p)
			o.Retries = 3
			s := mustOpen(t, o)
			in, err := s.Install(context.Background(), a.request(p, srv.URL+"/a"), fakeVerify, nil)
			if err != nil {
				t.Fatal(err)
			}
			if h.ranges[1] != "bytes=50000-" {
				t.Errorf("second request Range %q", h.ranges[1])
			}
			if mode == "206 at the wrong offset" && (len(h.ranges) != 3 || h.ranges[2] != "") {
				t.Errorf("after a wrong Content-Range the download restarts: ranges %q", h.ranges)
			}
			if in.Bytes != int64(len(a.data)) {
				t.Errorf("bytes %d", in.Bytes)
			}
		})
	}
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return string(b)
}

func TestTrailingGarbageIsIgnored(t *testing.T) {
	p := newPublisher(t)
	a := packFiles(t, bundleFiles("gear"))
	a = newArchive(append(append([]byte(nil), a.data...), "trailing garbage from a careless upload"...))
	srv, ca := newTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serveBytes(w, r, a.data) }))
	s := mustOpen(t, testOptions(t, ca, p))
	if _, err := s.Install(context.Background(), a.request(p, srv.URL+"/a"), fakeVerify, nil); err != nil {
		t.Fatal(err)
	}
}

func TestPruneKeepsCurrentPreviousAndNewest(t *testing.T) {
	p := newPublisher(t)
	var archives []archive
	for i := range 7 {
		archives = append(archives, packFiles(t, bundleFiles(fmt.Sprintf("gear-%d", i))))
	}
	srv, ca := newTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		serveBytes(w, r, archives[i].data)
	}))
	o := testOptions(t, ca, p)
	s := mustOpen(t, o)
	foreign := filepath.Join(o.Dir, "notes.txt")
	if err := os.WriteFile(foreign, []byte("operator's notes"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, a := range archives {
		if _, err := s.Install(context.Background(), a.request(p, fmt.Sprintf("%s/%d", srv.URL, i)), fakeVerify, nil); err != nil {
			t.Fatal(err)
		}
		if i <= 1 {
			if _, err := s.Activate("gear", a.sha); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Millisecond) // distinct InstalledAt
	}
	// 0 previous, 1 current, and the 3 newest of 2..6 (4, 5, 6).
	want := map[int]bool{0: true, 1: true, 4: true, 5: true, 6: true}
	for i, a := range archives {
		_, listed := s.Lookup(a.sha)
		_, statErr := os.Stat(filepath.Join(o.Dir, a.sha))
		if listed != want[i] || (statErr == nil) != want[i] {
			t.Errorf("archive %d: listed %v, dir exists %v; want %v", i, listed, statErr == nil, want[i])
		}
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("a file the store did not create was touched: %v", err)
	}
}

func TestOpen(t *testing.T) {
	p := newPublisher(t)
	t.Run("corrupt state is an error, never reset", func(t *testing.T) {
		o := testOptions(t, "", p)
		os.MkdirAll(o.Dir, 0o750)
		sp := filepath.Join(o.Dir, StateFile)
		os.WriteFile(sp, []byte(`{"version":1,"installed":{`), 0o640)
		_, err := Open(o)
		if err == nil || !strings.Contains(err.Error(), "state file "+sp+" is corrupt") || !strings.Contains(err.Error(), "left as it is") {
			t.Fatalf("Open: %v", err)
		}
		if data, _ := os.ReadFile(sp); string(data) != `{"version":1,"installed":{` {
			t.Errorf("state file changed to %q", data)
		}
	})
	t.Run("state naming a missing install", func(t *testing.T) {
		o := testOptions(t, "", p)
		os.MkdirAll(o.Dir, 0o750)
		os.WriteFile(filepath.Join(o.Dir, StateFile), []byte(`{"version":1,"installed":{},"products":{"gear":{"current":"`+strings.Repeat("a", 64)+`"}}}`), 0o640)
		if _, err := Open(o); err == nil || !strings.Contains(err.Error(), `product "gear" names aaaa`) {
			t.Fatalf("Open: %v", err)
		}
	})
	t.Run("leftovers removed, nothing else", func(t *testing.T) {
		o := testOptions(t, "", p)
		os.MkdirAll(o.Dir, 0o750)
		orphan := strings.Repeat("b", 64)
		pruned := strings.Repeat("e", 64) // dropped from the state by prune, not yet removed
		mine := []string{".staging-abc-123", ".download-" + orphan, ".state-1.tmp", orphan, pruned}
		for _, n := range mine {
			os.MkdirAll(filepath.Join(o.Dir, n, "x"), 0o750)
		}
		// The orphan is this store's only while the state names it as the
		// install being renamed; a 64-hex directory someone else put
		// there is not.
		os.WriteFile(filepath.Join(o.Dir, StateFile), []byte(`{"version":1,"installed":{},"products":{},"pending":"`+orphan+`","pruned":["`+pruned+`"]}`), 0o640)
		theirs := []string{"notes.txt", "staging-not-ours", strings.Repeat("c", 63)}
		for _, n := range theirs {
			os.WriteFile(filepath.Join(o.Dir, n), []byte("x"), 0o644)
		}
		notRenaming := strings.Repeat("d", 64)
		os.MkdirAll(filepath.Join(o.Dir, notRenaming, "x"), 0o750)
		theirs = append(theirs, notRenaming)
		s := mustOpen(t, o)
		if data, _ := os.ReadFile(filepath.Join(o.Dir, StateFile)); strings.Contains(string(data), "pending") || strings.Contains(string(data), "pruned") {
			t.Errorf("Open left the pending install or the pruning recorded: %s", data)
		}
		if got := len(s.Cleaned()); got != len(mine) {
			t.Errorf("cleaned %v", s.Cleaned())
		}
		for _, n := range mine {
			if _, err := os.Stat(filepath.Join(o.Dir, n)); err == nil {
				t.Errorf("%s not removed", n)
			}
		}
		for _, n := range theirs {
			if _, err := os.Stat(filepath.Join(o.Dir, n)); err != nil {
				t.Errorf("%s removed", n)
			}
		}
	})
	for _, tc := range []struct {
		name string
		mod  func(o *Options)
		text string
	}{
		{"no trusted key", func(o *Options) { o.TrustedKeys = nil }, "no trusted_keys"},
		{"bad trusted key", func(o *Options) { o.TrustedKeys = []string{p.pub, "ed25519:AAAA"} }, "trusted_keys[1]: \"ed25519:AAAA\": the key is 3 bytes, expected 32"},
		{"bad revoked id", func(o *Options) { o.RevokedKeys = []string{"xyz"} }, `revoked_keys[0]: "xyz" is not a key id`},
		{"ca file without certificates", func(o *Options) {
			o.CAFile = filepath.Join(t.TempDir(), "ca.pem")
			os.WriteFile(o.CAFile, []byte("not a certificate\n"), 0o644)
		}, "holds no PEM certificate"},
		{"missing ca file", func(o *Options) { o.CAFile = "/nonexistent/ca.pem" }, "rollout.ca_file: open /nonexistent/ca.pem: no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t, "", p)
			tc.mod(&o)
			if _, err := Open(o); err == nil || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Open: %v; want %q", err, tc.text)
			}
		})
	}
}

func TestScanArchiveAndWriteArchiveDeterministic(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "b"), []byte("bbb"), 0o600)
	os.WriteFile(filepath.Join(dir, "a"), []byte("aa"), 0o644)
	var one, two bytes.Buffer
	if err := WriteArchive(context.Background(), &one, dir, []string{"b", "a"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(dir, "a"), now, now)
	if err := WriteArchive(context.Background(), &two, dir, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Error("the same files packed twice differ")
	}
	info, err := ScanArchive(bytes.NewReader(one.Bytes()), 1<<20)
	if err != nil || info.Entries != 2 || info.Bytes != 5 {
		t.Fatalf("scan: %+v %v", info, err)
	}
	if _, err := ScanArchive(io.LimitReader(bytes.NewReader(one.Bytes()), int64(one.Len()/2)), 1<<20); !errors.Is(err, ErrArchive) {
		t.Fatalf("half an archive: %v", err)
	}
}

func TestStatfsFree(t *testing.T) {
	free, err := statfsFree(t.TempDir())
	if err != nil || free == 0 {
		t.Fatalf("statfs: %d %v", free, err)
	}
	if _, err := statfsFree("/nonexistent/dir"); err == nil {
		t.Fatal("statfs of a missing directory succeeded")
	}
}
