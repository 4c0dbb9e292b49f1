package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// clientTLS builds the client-side TLS configuration from file paths,
// naming the file and key in every error.
func clientTLS(t TLSConfig) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in, documented as never for production
	if t.CA != "" {
		pool, err := loadPool(t.CA)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.cert/key: load %s and %s: %w", t.Cert, t.Key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// serverTLS builds the embedded broker's listener TLS configuration. A CA
// makes client certificates mandatory.
func serverTLS(t TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("mqtt.embedded.tls.cert/key: load %s and %s: %w", t.Cert, t.Key, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if t.CA != "" {
		pool, err := loadPool(t.CA)
		if err != nil {
			return nil, fmt.Errorf("mqtt.embedded.tls.ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// explainConnectError turns paho's connect errors into messages that say
// what to change, always naming the broker.
func explainConnectError(broker string, err error) error {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("connect to MQTT broker %s: TLS: the broker's certificate is not signed by a trusted CA (set mqtt.tls.ca to the CA file that signed it): %w", broker, err)
	case errors.As(err, &hostErr):
		return fmt.Errorf("connect to MQTT broker %s: TLS: the broker's certificate does not name this host (fix the URL or set mqtt.tls.server_name): %w", broker, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("connect to MQTT broker %s: TLS: the broker's certificate is invalid (expired or not for servers): %w", broker, err)
	case errors.As(err, &recordErr):
		return fmt.Errorf("connect to MQTT broker %s: TLS handshake got a non-TLS answer (use tcp:// for a plain listener): %w", broker, err)
	case errors.Is(err, packets.ErrorRefusedNotAuthorised), errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword),
		contains(msg, "not Authorized", "bad user name or password"):
		return fmt.Errorf("connect to MQTT broker %s: refused: not authorized (check mqtt.username and mqtt.password, and the broker's ACL): %w", broker, err)
	case errors.Is(err, packets.ErrorRefusedIDRejected), contains(msg, "identifier rejected"):
		return fmt.Errorf("connect to MQTT broker %s: refused the client ID (check mqtt.client_id): %w", broker, err)
	case contains(msg, "connection refused"):
		return fmt.Errorf("connect to MQTT broker %s: nothing listens there (broker down or wrong port): %w", broker, err)
	}
	return fmt.Errorf("connect to MQTT broker %s: %w", broker, err)
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
