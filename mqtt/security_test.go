package mqtt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"
)

// testCA is a CA generated in the test, with helpers to issue certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a server (or client) certificate and key signed by the CA.
func (ca *testCA) issue(t *testing.T, dir, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// connectErr starts a publisher and returns WaitConnected's result after d.
func connectErr(t *testing.T, cfg Config, d time.Duration) error {
	t.Helper()
	p := newPublisher(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return p.WaitConnected(ctx)
}

// TestTLS runs mosquitto with a TLS listener and a CA generated here.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "plant")
	other := newTestCA(t, dir, "other")
	cert, key := ca.issue(t, dir, "broker", true)
	m := startMosquitto(t, mosqOpts{TLSCA: ca.file, TLSCert: cert, TLSKey: key})

	tests := []struct {
		name    string
		ca      string
		wantErr []string // substrings; nil means it must connect and deliver
	}{
		{"trusted CA", ca.file, nil},
		{"untrusted CA", other.file, []string{m.URL(), "not signed by a trusted CA", "mqtt.tls.ca"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, m.URL(), "tls")
			cfg.TLS.CA = tc.ca
			if tc.wantErr == nil {
				p := newPublisher(t, cfg)
				waitConnected(t, p)
				if err := p.Publish(context.Background(), result.Result{Verdict: result.VerdictPass}); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "PUBACK over TLS", 5*time.Second, func() bool { return p.Stats().Published == 1 })
				return
			}
			err := connectErr(t, cfg, 2*time.Second)
			if err == nil {
				t.Fatal("connected with an untrusted CA")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestAuthFailure checks that a wrong password gives an error naming the broker.
func TestAuthFailure(t *testing.T) {
	m := startMosquitto(t, mosqOpts{Passwords: map[string]string{"line1": "s3cret"}})
	tests := []struct {
		name, user, pass string
		ok               bool
	}{
		{"right password", "line1", "s3cret", true},
		{"wrong password", "line1", "wrong", false},
		{"no credentials", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, m.URL(), "auth")
			cfg.Username, cfg.Password = tc.user, tc.pass
			err := connectErr(t, cfg, 2*time.Second)
			if tc.ok {
				if err != nil {
					t.Fatalf("WaitConnected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), m.URL()) || !strings.Contains(err.Error(), "not authorized") ||
				!strings.Contains(err.Error(), "mqtt.username") {
				t.Fatalf("error = %v; want it to name %s, say not authorized and point at mqtt.username/password", err, m.URL())
			}
			if strings.Contains(err.Error(), tc.pass) && tc.pass != "" {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

// TestEmbeddedBrokerTLS: the embedded broker's TLS listener serves a PLC
// (mosquitto_sub) that trusts the plant CA, and refuses one that does not.
func TestEmbeddedBrokerTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "plant")
	other := newTestCA(t, dir, "other")
	cert, key := ca.issue(t, dir, "broker", true)
	port := freePort(t)
	cfg := testConfig(t, Embedded, "etls")
	cfg.Embedded.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.Embedded.TLS = TLSConfig{Cert: cert, Key: key}
	cfg.Embedded.Users = []User{{Username: "plc", Password: "plcpw", ACL: []ACLRule{{Topic: "segad/#", Access: "read"}}}}
	p := newPublisher(t, cfg)
	waitConnected(t, p)
	sub := func(cafile string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return runClient(t, ctx, "mosquitto_sub", "-h", "127.0.0.1", "-p", fmt.Sprint(port), "--cafile", cafile,
			"--insecure", "-u", "plc", "-P", "plcpw", "-t", p.Topics().Status, "-C", "1", "-W", "5")
	}
	out, err := sub(ca.file)
	if err != nil || strings.TrimSpace(out) != "online" {
		t.Fatalf("PLC over TLS with the plant CA: %v %q", err, out)
	}
	if out, err := sub(other.file); err == nil {
		t.Fatalf("PLC trusting another CA connected: %q", out)
	}
}
