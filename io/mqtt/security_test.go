package mqtt

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/inspectd/inspectd/config"
)

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw := write("pw", "s3cret-pw\n")
	empty := write("empty", "\n")
	twoLines := write("two", "a\nb\n")
	notPEM := write("ca.txt", "hello")
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		cfg  config.MQTT
		want string // "" = no error
	}{
		{"plain, no files", config.MQTT{Broker: "tcp://h:1883"}, ""},
		{"password ok", config.MQTT{Broker: "tcp://h:1883", Username: "u", PasswordFile: pw}, ""},
		{"password file missing", config.MQTT{Broker: "tcp://h:1883", Username: "u", PasswordFile: missing}, "mqtt.password_file: " + missing + ": no such file or directory"},
		{"password file empty", config.MQTT{Broker: "tcp://h:1883", Username: "u", PasswordFile: empty}, "mqtt.password_file: " + empty + ": file is empty"},
		{"password file two lines", config.MQTT{Broker: "tcp://h:1883", Username: "u", PasswordFile: twoLines}, "has more than one line"},
		{"password without user", config.MQTT{Broker: "tcp://h:1883", PasswordFile: pw}, "mqtt.username: must be set"},
		{"ca not PEM", config.MQTT{Broker: "ssl://h:8883", CAFile: notPEM}, "mqtt.ca_file: " + notPEM + ": no PEM certificate found"},
		{"ca missing", config.MQTT{Broker: "ssl://h:8883", CAFile: missing}, "mqtt.ca_file: " + missing + ": no such file"},
		{"ca with tcp", config.MQTT{Broker: "tcp://h:1883", CAFile: notPEM}, "mqtt.broker: \"tcp://h:1883\" is a plain connection but ca_file/cert_file/key_file are set"},
		{"cert without key", config.MQTT{Broker: "ssl://h:8883", CertFile: notPEM}, "cert_file and key_file must be set together"},
		{"bad key pair", config.MQTT{Broker: "ssl://h:8883", CertFile: notPEM, KeyFile: notPEM}, "mqtt.cert_file/key_file: " + notPEM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFiles(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}

func TestConnectErrorClassification(t *testing.T) {
	for _, tc := range []struct {
		name   string
		broker string
		err    error
		fatal  bool
		want   string
	}{
		{"not authorized", "tcp://h:1", packets.ErrorRefusedNotAuthorised, true, `refused user "u" (not authorized): check mqtt.username and mqtt.password_file`},
		{"bad password", "tcp://h:1", packets.ErrorRefusedBadUsernameOrPassword, true, "not authorized"},
		{"refused", "tcp://h:1", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, false, "is unreachable"},
		{"reset plain", "tcp://h:1", fmt.Errorf("read: %w", syscall.ECONNRESET), true, "is that port a TLS listener (then use ssl://)?"},
		{"eof plain", "tcp://h:1", io.EOF, true, "is that port a TLS listener"},
		{"other", "tcp://h:1", errors.New("weird"), false, "connect to tcp://h:1: weird"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fatal, err := connectError(tc.broker, "u", tc.err)
			if fatal != tc.fatal || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("fatal=%v %v; want fatal=%v and %q", fatal, err, tc.fatal, tc.want)
			}
		})
	}
}
