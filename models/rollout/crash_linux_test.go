//go:build linux

package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspection"
)

// childEnv carries a child process's job (JSON childJob) in the
// environment of the re-executed test binary.
const childEnv = "INSPECTD_ROLLOUT_CHILD"

// childJob is what a child process does: one Install, with its store's
// options, optionally under a file size limit, optionally stopping (to be
// killed) when it reaches a stage.
type childJob struct {
	Dir         string
	TrustedKeys []string
	CAFile      string
	Req         inspection.ModelInstall
	StopAt      string // "unpack", "load": write Marker and sleep at that stage
	Marker      string
	FileLimit   uint64 // RLIMIT_FSIZE, 0 = none
}

// TestChild is the child process's entry point; it does nothing in a
// normal run.
func TestChild(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("runs only as a child process of the crash and disk-full tests")
	}
	var job childJob
	if err := json.Unmarshal([]byte(raw), &job); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{
		Dir: job.Dir, TrustedKeys: job.TrustedKeys, CAFile: job.CAFile,
		MaxBytes: 1 << 20, DownloadTimeout: 20 * time.Second, StallTimeout: 2 * time.Second, Retries: 2,
		FreeSpace: func(string) (uint64, error) { return 1 << 40, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if job.FileLimit > 0 {
		signal.Ignore(syscall.SIGXFSZ) // EFBIG instead of being killed
		lim := syscall.Rlimit{Cur: job.FileLimit, Max: job.FileLimit}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	stop := func(stage string) {
		if job.StopAt == stage {
			os.WriteFile(job.Marker, []byte(stage), 0o644)
			time.Sleep(time.Hour)
		}
	}
	verify := func(ctx context.Context, dir string) (string, string, error) {
		stop("load")
		return fakeVerify(ctx, dir)
	}
	_, err = s.Install(context.Background(), job.Req, verify, func(m inspection.ModelProgress) {
		if m.Stage == "unpack" && m.Bytes > 0 {
			stop("unpack")
		}
	})
	// The parent reads the outcome from the output.
	fmt.Printf("CHILD-RESULT %q\n", fmt.Sprint(err))
}

func startChild(t *testing.T, job childJob) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	raw, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKilledMidInstall kills (SIGKILL) a process in the middle of an
// install — during the download, during the unpack, during the caller's
// verification — and opens the store again: the leftovers are removed
// and reported, the state file and the installed bundle are untouched,
// and the same install then succeeds.
func TestKilledMidInstall(t *testing.T) {
	p := newPublisher(t)
	a := packFiles(t, bundleFiles("gear-v2"))
	for _, stage := range []string{"download", "unpack", "load"} {
		t.Run(stage, func(t *testing.T) {
			sent := make(chan struct{}, 1)
			release := make(chan struct{})
			defer close(release)
			var h hits
			srv, ca := newTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := h.record(r)
				if r.URL.Path == "/base.tar.gz" {
					serveBytes(w, r, baseArchive.data)
					return
				}
				if stage == "download" && n == 1 {
					w.Header().Set("Content-Length", strconv.Itoa(len(a.data)))
					w.Write(a.data[:len(a.data)/2])
					w.(http.Flusher).Flush()
					sent <- struct{}{}
					select {
					case <-release:
					case <-r.Context().Done():
					}
					return
				}
				serveBytes(w, r, a.data)
			}))
			o := testOptions(t, ca, p)
			_, before := storeWithBase(t, o, p, srv.URL)
			marker := filepath.Join(t.TempDir(), "marker")
			job := childJob{Dir: o.Dir, TrustedKeys: o.TrustedKeys, CAFile: o.CAFile, Req: a.request(p, srv.URL+"/bundle.tar.gz"), StopAt: stage, Marker: marker}
			cmd, out := startChild(t, job)
			switch stage {
			case "download":
				select {
				case <-sent:
				case <-time.After(20 * time.Second):
					t.Fatalf("the child did not start the download:\n%s", out)
				}
				part := filepath.Join(o.Dir, downloadPrefix+a.sha)
				waitFor(t, "half the download on disk", func() bool {
					fi, err := os.Stat(part)
					return err == nil && fi.Size() == int64(len(a.data)/2)
				})
			default:
				waitFor(t, "the child at stage "+stage, func() bool { _, err := os.Stat(marker); return err == nil })
			}
			left := leftovers(t, o.Dir)
			if len(left) == 0 {
				t.Fatalf("nothing in progress at the kill:\n%s", out)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child ended with %v:\n%s", err, out)
			}
			t.Logf("killed at %s with %v in progress", stage, left)

			s := mustOpen(t, o)
			if got := len(s.Cleaned()); got != len(left) {
				t.Errorf("Open cleaned %v; in progress were %v", s.Cleaned(), left)
			}
			assertUnchanged(t, o.Dir, before)
			if cur, ok := s.Current("gear"); !ok || cur.SHA256 != baseArchive.sha {
				t.Fatalf("current %+v %v", cur, ok)
			}
			if _, ok := s.Lookup(a.sha); ok {
				t.Fatal("the interrupted archive is listed")
			}
			if _, err := s.Install(context.Background(), a.request(p, srv.URL+"/bundle.tar.gz"), fakeVerify, nil); err != nil {
				t.Fatalf("install after the crash: %v", err)
			}
		})
	}
}

// TestDiskFullWrite fills the "disk" for real: a child process runs the
// install under a file size limit (RLIMIT_FSIZE, which binds root too),
// so the kernel fails the write with EFBIG as a full disk fails it with
// ENOSPC — in the download, and in the unpack of a file that compresses
// well. The install fails with ErrNoSpace, nothing is left behind.
func TestDiskFullWrite(t *testing.T) {
	p := newPublisher(t)
	compressible := packFiles(t, map[string]string{"manifest.toml": "gear\n", "zeros.bin": strings.Repeat("\x00", 600<<10)})
	incompressible := packFiles(t, map[string]string{"manifest.toml": "gear\n", "noise.bin": randomString(600 << 10)})
	for _, tc := range []struct {
		name string
		a    archive
		want string
	}{
		{"download", incompressible, "not enough disk space: write"},
		{"unpack", compressible, "not enough disk space: write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "unpack" && len(tc.a.data) > 200<<10 {
				t.Fatalf("the compressible archive is %d bytes", len(tc.a.data))
			}
			srv, ca := newTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/base.tar.gz" {
					serveBytes(w, r, baseArchive.data)
					return
				}
				serveBytes(w, r, tc.a.data)
			}))
			o := testOptions(t, ca, p)
			_, before := storeWithBase(t, o, p, srv.URL)
			cmd, out := startChild(t, childJob{Dir: o.Dir, TrustedKeys: o.TrustedKeys, CAFile: o.CAFile, Req: tc.a.request(p, srv.URL+"/x"), FileLimit: 300 << 10})
			if err := cmd.Wait(); err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			res := ""
			for _, l := range strings.Split(out.String(), "\n") {
				if rest, ok := strings.CutPrefix(l, "CHILD-RESULT "); ok {
					res, _ = strconv.Unquote(rest)
				}
			}
			if !strings.Contains(res, tc.want) || !strings.Contains(res, "file too large") {
				t.Fatalf("install error %q; want %q and the kernel's EFBIG\n%s", res, tc.want, out)
			}
			assertUnchanged(t, o.Dir, before)
		})
	}
}
