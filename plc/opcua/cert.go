package opcua

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// loadOrCreateCert returns the server certificate (DER) and key. With
// certFile/keyFile empty, the pair lives in <stateDir>/opcua/ and is
// generated on first start: self-signed, RSA 2048, SHA-256, valid 10
// years, with the application URI, host names and IPs in the SAN, as OPC
// UA Part 6 6.2.2 asks of an application instance certificate.
func loadOrCreateCert(certFile, keyFile, stateDir, appURI string, hosts []string) ([]byte, *rsa.PrivateKey, error) {
	if certFile == "" {
		if stateDir == "" {
			return nil, nil, errors.New("no plc.opcua.cert_file and no state folder to keep a generated certificate in")
		}
		dir := filepath.Join(stateDir, "opcua")
		certFile, keyFile = filepath.Join(dir, "server.der"), filepath.Join(dir, "server.key")
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, nil, fmt.Errorf("create certificate folder %s: %w", dir, err)
			}
			if err := generateCert(certFile, keyFile, appURI, hosts); err != nil {
				return nil, nil, err
			}
		}
	}
	return loadCert(certFile, keyFile)
}

func generateCert(certFile, keyFile, appURI string, hosts []string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate OPC UA server key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return fmt.Errorf("generate certificate serial: %w", err)
	}
	u, err := url.Parse(appURI)
	if err != nil {
		return fmt.Errorf("application URI %q: %w", appURI, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "segad-edge OPC UA server", Organization: []string{"segad-edge"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create OPC UA server certificate: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, der, 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// loadCert reads a DER or PEM certificate and a PEM RSA key (PKCS#1 or
// PKCS#8) and checks that they belong together.
func loadCert(certFile, keyFile string) ([]byte, *rsa.PrivateKey, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read OPC UA certificate: %w", err)
	}
	if blk, _ := pem.Decode(cb); blk != nil {
		cb = blk.Bytes
	}
	cert, err := x509.ParseCertificate(cb)
	if err != nil {
		return nil, nil, fmt.Errorf("OPC UA certificate %s: %w", certFile, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read OPC UA key: %w", err)
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, nil, fmt.Errorf("OPC UA key %s: not PEM", keyFile)
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		key = k
	} else if k8, err8 := x509.ParsePKCS8PrivateKey(blk.Bytes); err8 == nil {
		rk, ok := k8.(*rsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("OPC UA key %s: %T, an RSA key is needed (Basic256Sha256)", keyFile, k8)
		}
		key = rk
	} else {
		return nil, nil, fmt.Errorf("OPC UA key %s: %w", keyFile, err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || pub.N.Cmp(key.N) != 0 {
		return nil, nil, fmt.Errorf("OPC UA certificate %s and key %s do not belong together", certFile, keyFile)
	}
	if n := key.N.BitLen(); n < 2048 || n > 4096 {
		return nil, nil, fmt.Errorf("OPC UA key %s: %d bits; Basic256Sha256 needs 2048 to 4096", keyFile, n)
	}
	return cb, key, nil
}

type rsaKey = *rsa.PrivateKey
