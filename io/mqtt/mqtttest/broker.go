// Package mqtttest runs a real mosquitto broker for tests: on 127.0.0.1 and a
// free port, optionally with TLS (certificates generated at test time) and a
// password file, with Stop/Start/Kill for outage tests; and a Subscriber
// that collects messages.
//
// It needs the mosquitto and mosquitto_passwd binaries (Debian package
// mosquitto; `make deps` installs it). When they are missing the test fails:
// a silently skipped broker test proves nothing.
package mqtttest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BrokerOptions configures StartBroker.
type BrokerOptions struct {
	// TLS makes the listener speak TLS only, with a server certificate for
	// 127.0.0.1/localhost signed by a CA generated for the test (see
	// Broker.CAFile). With RequireClientCert the broker also demands a
	// client certificate signed by that CA (Broker.ClientCertFile/KeyFile).
	TLS               bool
	RequireClientCert bool
	// Users, when not empty, turns anonymous access off and writes a
	// password file (mosquitto_passwd) with these users and passwords.
	Users map[string]string
	// Persistence keeps sessions and queued messages across Stop/Start
	// (not across Kill) in the broker's temporary directory, so that a
	// subscriber with CleanSession(false) misses nothing during an outage.
	Persistence bool
}

// Broker is a mosquitto process owned by a test.
type Broker struct {
	// Port is the listener's port (stable across Stop/Start).
	Port int
	// URL is the broker URL for clients: tcp://127.0.0.1:PORT, or
	// ssl://127.0.0.1:PORT with TLS.
	URL string
	// Dir is the broker's temporary directory (config, certificates, log).
	Dir string
	// CAFile, ClientCertFile and ClientKeyFile are set with TLS. OtherCAFile
	// is a CA that did not sign anything the broker uses (for "wrong CA"
	// tests).
	CAFile, ClientCertFile, ClientKeyFile, OtherCAFile string
	// PasswordFile is mosquitto's password file (hashed), set with Users.
	PasswordFile string

	t       testing.TB
	conf    string
	logFile string
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
}

// StartBroker starts mosquitto for t and stops it when the test ends.
func StartBroker(t testing.TB, o BrokerOptions) *Broker {
	t.Helper()
	mosq, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			t.Fatalf("mosquitto not installed: run make deps (%v)", err)
		}
		mosq = "/usr/sbin/mosquitto"
	}
	_ = mosq
	b := &Broker{t: t, Dir: t.TempDir(), Port: freePort(t)}
	b.logFile = filepath.Join(b.Dir, "mosquitto.log")
	var conf strings.Builder
	fmt.Fprintf(&conf, "per_listener_settings false\n")
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", b.Port)
	fmt.Fprintf(&conf, "log_dest file %s\nlog_type all\n", b.logFile)
	fmt.Fprintf(&conf, "max_queued_messages 100000\nmax_inflight_messages 0\n")
	if os.Geteuid() == 0 {
		fmt.Fprintf(&conf, "user root\n")
	}
	if o.Persistence {
		fmt.Fprintf(&conf, "persistence true\npersistence_location %s/\nautosave_interval 1\n", b.Dir)
	} else {
		fmt.Fprintf(&conf, "persistence false\n")
	}
	if len(o.Users) > 0 {
		b.PasswordFile = filepath.Join(b.Dir, "passwd")
		writePasswords(t, b.PasswordFile, o.Users)
		fmt.Fprintf(&conf, "allow_anonymous false\npassword_file %s\n", b.PasswordFile)
	} else {
		fmt.Fprintf(&conf, "allow_anonymous true\n")
	}
	b.URL = fmt.Sprintf("tcp://127.0.0.1:%d", b.Port)
	if o.TLS {
		pki := writePKI(t, b.Dir)
		b.CAFile, b.ClientCertFile, b.ClientKeyFile, b.OtherCAFile = pki.ca, pki.clientCert, pki.clientKey, pki.otherCA
		fmt.Fprintf(&conf, "cafile %s\ncertfile %s\nkeyfile %s\ntls_version tlsv1.2\n", pki.ca, pki.serverCert, pki.serverKey)
		if o.RequireClientCert {
			fmt.Fprintf(&conf, "require_certificate true\n")
		}
		b.URL = fmt.Sprintf("ssl://127.0.0.1:%d", b.Port)
	}
	b.conf = filepath.Join(b.Dir, "mosquitto.conf")
	if err := os.WriteFile(b.conf, []byte(conf.String()), 0o600); err != nil {
		t.Fatalf("mqtttest: write config: %v", err)
	}
	b.Start()
	t.Cleanup(b.Kill)
	return b
}

// Addr is 127.0.0.1:PORT.
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port)) }

// Start (re)starts the broker on the same port and waits until it accepts
// connections.
func (b *Broker) Start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return
	}
	bin := "mosquitto"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	var out bytes.Buffer
	deadline := time.Now().Add(10 * time.Second)
	for {
		cmd := exec.Command(bin, "-c", b.conf)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			b.t.Fatalf("mosquitto not installed: run make deps (%v)", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		if waitPort(b.Addr(), done, deadline) {
			b.cmd, b.done = cmd, done
			return
		}
		select {
		case <-done:
			// Exited: most likely the port is still held by the previous
			// instance for a moment; retry until the deadline.
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(b.logFile)
				b.t.Fatalf("mqtttest: mosquitto exited: %s\n%s\n%s", cmd.ProcessState, out.String(), tail(log, 2000))
			}
			time.Sleep(100 * time.Millisecond)
		default:
			cmd.Process.Kill()
			<-done
			b.t.Fatalf("mqtttest: mosquitto did not accept connections on %s within 10s", b.Addr())
		}
	}
}

// Stop terminates the broker gracefully (SIGTERM: it saves persistence
// and closes connections) and waits for it to exit.
func (b *Broker) Stop() { b.signal(syscall.SIGTERM) }

// Kill terminates the broker with SIGKILL and waits for it to exit.
func (b *Broker) Kill() { b.signal(syscall.SIGKILL) }

func (b *Broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(sig)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd, b.done = nil, nil
}

// Log returns the broker's log so far.
func (b *Broker) Log() string {
	data, _ := os.ReadFile(b.logFile)
	return string(data)
}

func waitPort(addr string, exited <-chan struct{}, deadline time.Time) bool {
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mqtttest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writePasswords(t testing.TB, path string, users map[string]string) {
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Fatalf("mosquitto not installed: run make deps (mosquitto_passwd: %v)", err)
	}
	first := true
	for u, p := range users {
		args := []string{"-b", path, u, p}
		if first {
			args = append([]string{"-c"}, args...)
			first = false
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("mqtttest: mosquitto_passwd: %v: %s", err, out)
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
