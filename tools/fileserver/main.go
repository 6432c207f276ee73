// Command fileserver is a small static file server for the rollout demo
// (scripts/fleet-demo.sh) and tests: it serves the files of one directory
// over HTTPS (with -cert and -key) or plain HTTP, answers Range requests
// (http.ServeContent), logs every request, and can serve a corrupted copy
// of every file to chosen stations (-corrupt-for st03,st07): a client whose
// User-Agent contains the token "station/<id>" (inspectd's rollout sends
// "inspectd/<version> station/<id>") gets the same length with one byte
// changed, so its SHA-256 check fails.
//
//	fileserver -dir DIR [-addr 127.0.0.1:0] [-cert FILE -key FILE]
//	           [-corrupt-for st03,st07] [-addr-file FILE]
//
// With -addr-file the listening address (host:port) is written to FILE
// once the server accepts connections (stage-then-rename), for scripts that
// ask for port 0. SIGINT/SIGTERM stop it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "fileserver: %v\n", err)
		os.Exit(1)
	}
}

// config is the parsed command line.
type config struct {
	dir, addr, cert, key, addrFile string
	corruptFor                     []string
}

func parseArgs(args []string, stderr io.Writer) (config, error) {
	var c config
	fl := flag.NewFlagSet("fileserver", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.StringVar(&c.dir, "dir", "", "directory whose files are served (required)")
	fl.StringVar(&c.addr, "addr", "127.0.0.1:0", "listen `host:port` (port 0: any free port; see -addr-file)")
	fl.StringVar(&c.cert, "cert", "", "TLS certificate `file` (PEM); with -key serves HTTPS, without both plain HTTP")
	fl.StringVar(&c.key, "key", "", "TLS private key `file` (PEM)")
	fl.StringVar(&c.addrFile, "addr-file", "", "write the listening host:port to this `file` once serving")
	corrupt := fl.String("corrupt-for", "", "comma-separated station `ids` that get a corrupted copy (User-Agent token station/<id>)")
	if err := fl.Parse(args); err != nil {
		return c, err
	}
	if fl.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags only)", fl.Arg(0))
	}
	if c.dir == "" {
		return c, errors.New("-dir is required: the directory whose files are served")
	}
	if st, err := os.Stat(c.dir); err != nil {
		return c, fmt.Errorf("-dir: %w", err)
	} else if !st.IsDir() {
		return c, fmt.Errorf("-dir: %s is not a directory", c.dir)
	}
	if (c.cert == "") != (c.key == "") {
		return c, errors.New("-cert and -key go together: give both for HTTPS, neither for plain HTTP")
	}
	for _, id := range strings.Split(*corrupt, ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		if strings.ContainsAny(id, " /") {
			return c, fmt.Errorf("-corrupt-for: station id %q contains a space or a slash", id)
		}
		c.corruptFor = append(c.corruptFor, id)
	}
	return c, nil
}

// run serves until ctx ends. ready, when not nil, receives the listening
// address (tests).
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	c, err := parseArgs(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "fileserver")
	root, err := os.OpenRoot(c.dir)
	if err != nil {
		return fmt.Errorf("-dir: %w", err)
	}
	defer root.Close()
	h := &handler{root: root, corruptFor: c.corruptFor, log: log}

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	scheme := "http"
	if c.cert != "" {
		scheme = "https"
	}
	addr := ln.Addr().String()
	errc := make(chan error, 1)
	go func() {
		if c.cert != "" {
			errc <- srv.ServeTLS(ln, c.cert, c.key)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	if c.addrFile != "" {
		if err := writeFileAtomic(c.addrFile, []byte(addr+"\n")); err != nil {
			srv.Close()
			return fmt.Errorf("-addr-file: %w", err)
		}
	}
	log.Info("serving", "dir", c.dir, "url", scheme+"://"+addr+"/", "corrupt_for", strings.Join(c.corruptFor, ","))
	if ready != nil {
		ready <- addr
	}
	select {
	case err := <-errc:
		// ServeTLS fails at once on an unreadable certificate or key.
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	log.Info("stopped", "requests", h.requests.Load())
	return nil
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it into place, so a reader never sees half an address.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fileserver-addr-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// handler serves the regular files under root (GET and HEAD).
type handler struct {
	root       *os.Root
	corruptFor []string
	log        *slog.Logger
	requests   atomic.Int64
}

// station returns the station id named by a "station/<id>" token of the
// User-Agent, or "".
func station(userAgent string) string {
	for _, tok := range strings.Fields(userAgent) {
		if id, ok := strings.CutPrefix(tok, "station/"); ok {
			return id
		}
	}
	return ""
}

// statusWriter records the status code for the request log.
type statusWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	st := station(r.UserAgent())
	corrupt := st != "" && slices.Contains(h.corruptFor, st)
	defer func() {
		h.log.Info("request", "method", r.Method, "path", r.URL.Path, "range", r.Header.Get("Range"),
			"station", st, "corrupted", corrupt, "status", sw.code, "bytes", sw.bytes,
			"remote", r.RemoteAddr, "duration", time.Since(start).Round(time.Microsecond))
	}()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(sw, "only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "."
	}
	f, err := h.root.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			http.Error(sw, "not found", http.StatusNotFound)
		} else {
			http.Error(sw, "cannot open: "+err.Error(), http.StatusForbidden)
		}
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		http.Error(sw, "not a regular file", http.StatusNotFound)
		return
	}
	if !corrupt {
		http.ServeContent(sw, r, info.Name(), info.ModTime(), f)
		return
	}
	data, err := io.ReadAll(f)
	if err != nil {
		http.Error(sw, "read: "+err.Error(), http.StatusInternalServerError)
		return
	}
	http.ServeContent(sw, r, info.Name(), info.ModTime(), bytes.NewReader(corrupted(data)))
}

// corrupted returns a copy of data of the same length with the byte in
// the middle inverted (an empty file stays empty).
func corrupted(data []byte) []byte {
	out := bytes.Clone(data)
	if len(out) > 0 {
		out[len(out)/2] ^= 0xff
	}
	return out
}
