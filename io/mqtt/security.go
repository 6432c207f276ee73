package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/inspectd/inspectd/config"
)

// maxPasswordBytes bounds the password file (MQTT allows 65535 bytes).
const maxPasswordBytes = 65535

// credentials is what CheckFiles loads: the TLS configuration (nil for a
// plain connection) and the password ("" without password_file).
type credentials struct {
	tls      *tls.Config
	password string
}

// CheckFiles validates the files the [mqtt] section names: password_file is
// readable and holds one non-empty line, ca_file holds at least one PEM
// certificate, cert_file and key_file form a key pair, and TLS files are
// only set for a TLS broker URL. `inspectd check-config` calls it; New calls
// it too. Each problem names its configuration key; the password itself never
// appears in an error.
func CheckFiles(cfg config.MQTT) error {
	_, err := loadCredentials(cfg)
	return err
}

func loadCredentials(cfg config.MQTT) (credentials, error) {
	var (
		cr   credentials
		errs []error
	)
	if cfg.PasswordFile != "" {
		p, err := readPassword(cfg.PasswordFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("mqtt.password_file: %w", err))
		}
		cr.password = p
		if cfg.Username == "" {
			errs = append(errs, errors.New("mqtt.username: must be set when mqtt.password_file is set"))
		}
	}
	secure := isTLSScheme(cfg.Broker)
	hasTLSFiles := cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != ""
	if hasTLSFiles && !secure {
		errs = append(errs, fmt.Errorf("mqtt.broker: %q is a plain connection but ca_file/cert_file/key_file are set; use ssl://host:8883 (or wss://) for TLS", cfg.Broker))
	}
	if secure {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if u, err := url.Parse(cfg.Broker); err == nil {
			tc.ServerName = u.Hostname()
		}
		if cfg.CAFile != "" {
			pool, err := loadCA(cfg.CAFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("mqtt.ca_file: %w", err))
			}
			tc.RootCAs = pool
		}
		switch {
		case cfg.CertFile != "" && cfg.KeyFile != "":
			pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("mqtt.cert_file/key_file: %s and %s: %w", cfg.CertFile, cfg.KeyFile, err))
			}
			tc.Certificates = []tls.Certificate{pair}
		case cfg.CertFile != "" || cfg.KeyFile != "":
			errs = append(errs, errors.New("mqtt.cert_file: cert_file and key_file must be set together for a client certificate"))
		}
		cr.tls = tc
	}
	if len(errs) > 0 {
		return credentials{}, errors.Join(errs...)
	}
	return cr, nil
}

func isTLSScheme(broker string) bool {
	u, err := url.Parse(broker)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "ssl", "tls", "mqtts", "wss", "tcps", "mqtt+ssl":
		return true
	}
	return false
}

// readPassword reads the first line of path. Errors never contain the
// file's content.
func readPassword(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPasswordBytes+2))
	if err != nil {
		return "", fmt.Errorf("%s: read: %w", path, errors.Unwrap(err))
	}
	s := strings.TrimRight(string(b), "\r\n")
	switch {
	case len(s) > maxPasswordBytes:
		return "", fmt.Errorf("%s: password is longer than %d bytes", path, maxPasswordBytes)
	case strings.TrimSpace(s) == "":
		return "", fmt.Errorf("%s: file is empty; write the broker password on its first line", path)
	case strings.ContainsAny(s, "\r\n"):
		return "", fmt.Errorf("%s: file has more than one line; write only the password", path)
	}
	return s, nil
}

func loadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, errors.Unwrap(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate found (expected \"-----BEGIN CERTIFICATE-----\")", path)
	}
	return pool, nil
}

// connectError explains why the broker connection failed, and whether the
// reason is a configuration mistake (credentials, TLS, wrong port) that
// retrying cannot fix.
func connectError(broker, user string, err error) (fatal bool, _ error) {
	var (
		unknownCA x509.UnknownAuthorityError
		verify    *tls.CertificateVerificationError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		recHdr    tls.RecordHeaderError
		alert     tls.AlertError
		netOp     *net.OpError
	)
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised), errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		who := "anonymous clients"
		if user != "" {
			who = fmt.Sprintf("user %q", user)
		}
		return true, fmt.Errorf("broker %s refused %s (not authorized): check mqtt.username and mqtt.password_file: %w", broker, who, err)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return true, fmt.Errorf("broker %s rejected the client id: check mqtt.client_id: %w", broker, err)
	case errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		return true, fmt.Errorf("broker %s does not speak MQTT 3.1.1: %w", broker, err)
	case errors.As(err, &unknownCA):
		return true, fmt.Errorf("TLS to %s: the broker's certificate is not signed by a CA in mqtt.ca_file: %w", broker, err)
	case errors.As(err, &hostErr):
		return true, fmt.Errorf("TLS to %s: the broker's certificate does not name this host (use the name or IP in its subjectAltName): %w", broker, err)
	case errors.As(err, &invalid):
		return true, fmt.Errorf("TLS to %s: the broker's certificate is invalid (expired or not yet valid?): %w", broker, err)
	case errors.As(err, &verify):
		return true, fmt.Errorf("TLS to %s: cannot verify the broker's certificate (check mqtt.ca_file): %w", broker, err)
	case errors.As(err, &recHdr):
		return true, fmt.Errorf("TLS to %s: the port does not speak TLS (use tcp:// for a plain listener): %w", broker, err)
	case errors.As(err, &alert), strings.Contains(err.Error(), "remote error: tls"):
		return true, fmt.Errorf("TLS to %s: the broker refused the handshake (client certificate missing or not trusted? check mqtt.cert_file/key_file): %w", broker, err)
	case errors.As(err, &netOp) && netOp.Op == "dial", errors.Is(err, syscall.ECONNREFUSED), isTimeout(err):
		return false, fmt.Errorf("broker %s is unreachable: %w", broker, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		if !isTLSScheme(broker) {
			return true, fmt.Errorf("broker %s closed the connection during the MQTT handshake: is that port a TLS listener (then use ssl://)? %w", broker, err)
		}
		return true, fmt.Errorf("broker %s closed the connection during the handshake: %w", broker, err)
	}
	return false, fmt.Errorf("connect to %s: %w", broker, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
