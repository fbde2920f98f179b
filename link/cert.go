package link

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/chive-net/chive/layercrypt"
)

// ALPN is the application protocol both ends of a link must negotiate.
const ALPN = "chive/1"

// Errors a caller may branch on.
var (
	ErrWrongIdentity = errors.New("link: peer presented a different identity")
	ErrNoIdentity    = errors.New("link: peer presented no usable Ed25519 identity certificate")
	ErrALPN          = errors.New("link: peer did not negotiate ALPN " + ALPN)
)

// certLifetime bounds the self-signed certificate's validity window. Nothing
// checks it (identity comes from the key alone), but a real-looking window
// keeps the certificate unremarkable.
const certLifetime = 365 * 24 * time.Hour

// selfSignedCert makes a TLS certificate whose key is the identity key itself:
// the TLS 1.3 CertificateVerify signature then proves possession of the
// identity, with no CA and no hostname.
func selfSignedCert(id *layercrypt.IdentityKey, now time.Time) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "chive relay"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	priv := id.PrivateKey()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

// peerIdentity extracts the Ed25519 identity from the leaf certificate a peer
// presented. TLS 1.3 has already checked that the peer holds the matching
// private key (CertificateVerify).
func peerIdentity(rawCerts [][]byte) (layercrypt.RelayID, error) {
	if len(rawCerts) == 0 {
		return layercrypt.RelayID{}, ErrNoIdentity
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return layercrypt.RelayID{}, fmt.Errorf("%w: %v", ErrNoIdentity, err)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return layercrypt.RelayID{}, ErrNoIdentity
	}
	return layercrypt.RelayIDFromBytes(pub)
}

// clientTLSConfig is the initiator's TLS configuration: it accepts exactly the
// expected identity and presents its own when it has one (relays do, clients
// do not).
func clientTLSConfig(expect layercrypt.RelayID, own *tls.Certificate) *tls.Config {
	cfg := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{ALPN},
		InsecureSkipVerify:     true, // identity is checked below, against the pinned key
		SessionTicketsDisabled: true, // resumption would link a client's connections
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			got, err := peerIdentity(rawCerts)
			if err != nil {
				return err
			}
			if !got.Equal(expect) {
				return ErrWrongIdentity
			}
			return nil
		},
	}
	if own != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return own, nil
		}
	}
	return cfg
}

// serverTLSConfig is the responder's TLS configuration. It asks for, but does
// not require, the initiator's certificate: relays extending to us present
// theirs (so the link can be reused both ways), clients stay anonymous.
func serverTLSConfig(own tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{ALPN},
		Certificates:           []tls.Certificate{own},
		ClientAuth:             tls.RequestClientCert,
		SessionTicketsDisabled: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 {
				return nil
			}
			_, err := peerIdentity(rawCerts)
			return err
		},
	}
}
