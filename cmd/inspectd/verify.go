package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/inspectd/inspectd/camera"
	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/infer"
	"github.com/inspectd/inspectd/io/archive"
	"github.com/inspectd/inspectd/io/gpio"
	"github.com/inspectd/inspectd/io/mqtt"
	"github.com/inspectd/inspectd/io/web"
	"github.com/inspectd/inspectd/models/onnx"
	"github.com/inspectd/inspectd/tomlcheck"
)

// lookupTimeout bounds resolving http.listen's host name: a name that
// does not answer in this time does not resolve for the daemon either.
const lookupTimeout = 2 * time.Second

// verifyEnvironment checks what a valid configuration needs of this
// machine, everything `run` would otherwise refuse only when it gets
// there: the directories the daemon writes (state_dir, mqtt.outbox_dir,
// archive.dir, the TensorRT engine cache) are directories, or can be
// created, off kernel filesystems and writable (a file is created and
// removed); http.listen's host resolves and is an address of this
// machine; model.onnxruntime_library is a shared library that loads as
// ONNX Runtime, and a model.provider other than "cpu" is available
// (unless model.allow_fallback); gpio.chip is a GPIO chip; the camera
// source's keys hold (camera.CheckSource: for "images", at least one
// decodable image); the MQTT credential files load; with model.runtime =
// "tflite", TensorFlow Lite's C library, its delegate and the bundle's
// twins are there (checkTFLite).
//
// It returns nil or a config.Problems (ErrInvalid) with every problem,
// each naming its key and line as check-config prints them. It starts
// nothing and leaves nothing behind: check-config calls it after the
// configuration and the bundle, and run calls it before it opens any
// output. It loads ONNX Runtime (and closes its handle); a process that
// already holds the runtime from the same library shares it.
func verifyEnvironment(cfg *config.Config) error {
	var ps config.Problems
	add := func(key string, err error) {
		if err != nil {
			ps = append(ps, cfg.Problem(key, "%v", err))
		}
	}
	add("state_dir", checkDataDir(cfg.StateDir))
	if cfg.MQTT.Enabled {
		add("mqtt.outbox_dir", checkDataDir(cfg.MQTT.OutboxDir))
		if err := mqtt.CheckFiles(cfg.MQTT); err != nil {
			ps = append(ps, keyedProblems(cfg, "mqtt", err)...)
		}
	}
	if cfg.Archive.Save != archive.SaveNone {
		add("archive.dir", checkDataDir(cfg.Archive.Dir))
	}
	if cfg.Model.Provider == infer.ProviderTensorRT && cfg.Model.EngineCacheDir != "" {
		add("model.engine_cache_dir", checkDataDir(cfg.Model.EngineCacheDir))
	}
	if cfg.HTTP.Enabled {
		// One problem for the key: the bind, and whether this address may be
		// served without TLS and users (allow_insecure_remote).
		listenErr := checkListen(cfg.HTTP.Listen)
		if remote := cfg.HTTP.CheckRemote(); remote != nil {
			if listenErr != nil {
				listenErr = fmt.Errorf("%v; also, %w", listenErr, remote)
			} else {
				listenErr = remote
			}
		}
		add("http.listen", listenErr)
		if cfg.HTTP.UsersFile != "" {
			_, _, err := web.LoadUsers(cfg.HTTP.UsersFile)
			add("http.users_file", err)
		}
		if cfg.HTTP.TLS() {
			add("http.tls_cert", web.CheckTLSFiles(cfg.HTTP.TLSCert, cfg.HTTP.TLSKey))
		}
	}
	key, err := checkRuntime(cfg.Model)
	add(key, err)
	if cfg.Model.Runtime == config.RuntimeTFLite {
		add(checkTFLite(cfg))
	}
	if cfg.GPIO.Enabled {
		add("gpio.chip", checkGPIOChip(cfg.GPIO))
	}
	if err := camera.CheckSource(cfg.Camera); err != nil {
		ps = append(ps, keyedProblems(cfg, "camera", err)...)
	}
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// keyedProblems turns an error whose lines read "section.key: message"
// (as camera.CheckSource and mqtt.CheckFiles write them) into problems of
// those keys; a line without a key of section is a problem of section.
func keyedProblems(cfg *config.Config, section string, err error) config.Problems {
	var ps config.Problems
	for _, line := range strings.Split(err.Error(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, msg, ok := strings.Cut(line, ": ")
		if !ok || !strings.HasPrefix(key, section+".") || strings.ContainsAny(key, " \t/") {
			key, msg = section, line
		}
		ps = append(ps, cfg.Problem(key, "%s", msg))
	}
	return ps
}

// checkDataDir checks that dir is a directory the daemon can keep its
// files in: on no kernel filesystem (also once links are followed), a
// directory if it exists, or else creatable (its nearest existing parent
// is a directory), and writable: a file is created in it (or in that
// parent) and removed. check-config runs as root in most places, where
// permissions do not stop a write; the service user's may.
func checkDataDir(dir string) error {
	if dir == "" {
		return nil // config refuses an empty state_dir; derived ones are never empty
	}
	if fsName := tomlcheck.OnKernelFilesystem(dir); fsName != "" {
		return fmt.Errorf("%q is on %s, a kernel filesystem that cannot hold data; use a directory on a disk", dir, fsName)
	}
	existing := filepath.Clean(dir)
	var st fs.FileInfo
	for {
		var err error
		st, err = os.Stat(existing)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("%q: %v", dir, unwrapPath(err))
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			return fmt.Errorf("%q: no part of the path exists", dir)
		}
		existing = parent
	}
	if !st.IsDir() {
		if existing == filepath.Clean(dir) {
			return fmt.Errorf("%q is %s, not a directory", dir, tomlcheck.FileKind(st.Mode()))
		}
		return fmt.Errorf("%q cannot be created: %s is %s, not a directory", dir, existing, tomlcheck.FileKind(st.Mode()))
	}
	if resolved, err := filepath.EvalSymlinks(existing); err == nil {
		if fsName := tomlcheck.OnKernelFilesystem(resolved); fsName != "" {
			return fmt.Errorf("%q leads to %s, on %s, a kernel filesystem that cannot hold data; use a directory on a disk", dir, resolved, fsName)
		}
	}
	f, err := os.CreateTemp(existing, ".inspectd-check-*")
	if err != nil {
		what := "is not writable"
		if existing != filepath.Clean(dir) {
			what = fmt.Sprintf("cannot be created: %s is not writable", existing)
		}
		return fmt.Errorf("%q %s: %v", dir, what, unwrapPath(err))
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("%q: a file created there cannot be removed: %v", dir, unwrapPath(err))
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkListen checks that the daemon can listen on addr: a host name
// resolves on this machine (within lookupTimeout), and the address is one
// of this machine's. It binds port 0 of the host, never the configured
// port, which a running daemon holds.
func checkListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil // config reports a malformed address
	}
	if host == "" {
		return nil // every interface
	}
	if net.ParseIP(host) == nil {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
			return fmt.Errorf("%q: host %q does not resolve on this machine (%v); use an IP address, or a name in /etc/hosts", addr, host, err)
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return fmt.Errorf("%q: cannot listen on host %q: %v (is it an address of this machine?)", addr, host, unwrapSyscall(err))
	}
	ln.Close()
	return nil
}

// unwrapSyscall drops the net.OpError's own operation and address, which
// the message names already.
func unwrapSyscall(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// elfMagic starts every ELF file, shared libraries included.
const elfMagic = "\x7fELF"

// checkRuntime checks that ONNX Runtime loads from model.onnxruntime_library
// (or the default places) and, for a provider other than "cpu" without
// allow_fallback, that the provider is available. It returns the key a
// problem belongs to.
func checkRuntime(m config.Model) (string, error) {
	const libKey = "model.onnxruntime_library"
	path, err := runtimeLibrary(m.OnnxRuntimeLibrary)
	if err != nil {
		return libKey, fmt.Errorf("not set, and %v", err)
	}
	if err := checkSharedLibrary(path); err != nil {
		return libKey, err
	}
	rt, err := openRuntime(path)
	if err != nil {
		return libKey, fmt.Errorf("%q does not load as ONNX Runtime: %v", path, err)
	}
	defer rt.Close()
	if m.Provider == "" || m.Provider == infer.ProviderCPU || m.AllowFallback {
		return "", nil
	}
	if err := rt.CheckProvider(m.Provider); err != nil {
		return "model.provider", fmt.Errorf("%q is not available on this machine: %v; or use \"cpu\", or set model.allow_fallback = true to run on the CPU without it", m.Provider, err)
	}
	model, err := providerProbe()
	if err != nil {
		return "model.provider", err
	}
	s, err := rt.NewSession(model, infer.SessionOptions{Provider: m.Provider, IntraOpThreads: 1, TensorRTFP16: m.TensorRTFP16})
	if err != nil {
		return "model.provider", fmt.Errorf("%q is not available on this machine with %s: %v; use \"cpu\", or set model.allow_fallback = true to run on the CPU without it", m.Provider, rt.LibraryPath(), err)
	}
	s.Close()
	return "", nil
}

// checkSharedLibrary checks, before it is loaded, that path is a regular
// file starting with an ELF header (on Linux; elsewhere only the kind of
// file is checked).
func checkSharedLibrary(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%q: %v", path, unwrapPath(err))
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%q is %s; expected the ONNX Runtime shared library libonnxruntime.so.1", path, tomlcheck.FileKind(st.Mode()))
	}
	if runtime.GOOS != "linux" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%q: %v", path, unwrapPath(err))
	}
	defer f.Close()
	head := make([]byte, len(elfMagic))
	if _, err := io.ReadFull(f, head); err != nil || string(head) != elfMagic {
		return fmt.Errorf("%q is not a shared library (no ELF header); expected the ONNX Runtime library libonnxruntime.so.1", path)
	}
	return nil
}

// providerProbe is the smallest graph a session compiles: one Relu on four
// values, enough for ONNX Runtime to set the provider up.
func providerProbe() ([]byte, error) {
	g := onnx.NewGraph("provider_check")
	x := g.Input("x", onnx.Float, 1, 4)
	g.Output(g.Rename(g.Op("Relu", []string{x}), "y"), onnx.Float, 1, 4)
	return g.Marshal()
}

// checkGPIOChip opens the configured chip as run does (gpio.Open: the
// simulated chip "sim", or a Linux GPIO character device) and closes it;
// no line is requested, so a running daemon's lines are not disturbed.
func checkGPIOChip(cfg config.GPIO) error {
	chip, err := gpio.Open(cfg)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "gpio.chip ")
		// go-gpiocdev says "not a character device" of any device that
		// is not a GPIO chip, /dev/null included.
		msg = strings.Replace(msg, "not a character device", "not a GPIO chip", 1)
		return fmt.Errorf("%s; expected a GPIO chip such as \"gpiochip0\" (see `gpiodetect`), or \"sim\"", msg)
	}
	return chip.Close()
}
