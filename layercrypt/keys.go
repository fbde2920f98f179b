// Package layercrypt holds chive's cryptography: key types for each role,
// the ntor-v3 circuit handshake (Tor proposal 332) and the Counter Galois
// Onion relay-cell encryption (Tor proposal 359).
//
// The package is pure: it performs no I/O, starts no goroutines and logs
// nothing. Secrets live in fixed-size arrays inside role-specific types, are
// compared in constant time and are wiped with Wipe when their owner is done.
package layercrypt

import (
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/curve25519"
)

// Key and ID sizes.
const (
	RelayIDLen         = ed25519.PublicKeySize // a relay's identity is its Ed25519 public key
	IdentitySeedLen    = ed25519.SeedSize
	SignatureLen       = ed25519.SignatureSize
	OnionKeyLen        = curve25519.ScalarSize // X25519 secret and public keys
	onionPublicKeyLen  = curve25519.PointSize
	identityPrivateLen = ed25519.PrivateKeySize
)

// Sentinel errors.
var (
	ErrBadKeyLength  = errors.New("layercrypt: key has the wrong length")
	ErrBadKeyText    = errors.New("layercrypt: key is not valid unpadded base64")
	ErrLowOrderPoint = errors.New("layercrypt: X25519 produced the all-zero shared secret (low-order point)")
)

// keyText is how keys and IDs are written in configs, documents and logs
// (when unsafe logging is on): standard base64 without padding, as Tor writes
// Ed25519 identities.
var keyText = base64.RawStdEncoding.Strict()

// RelayID names a relay (or an authority): its Ed25519 public key. It is
// public, but comparisons are still constant time so that code handling IDs
// never needs to think about which comparisons might matter.
type RelayID [RelayIDLen]byte

// Equal reports whether id and o are the same ID, in constant time.
func (id RelayID) Equal(o RelayID) bool { return subtle.ConstantTimeCompare(id[:], o[:]) == 1 }

// IsZero reports whether id is unset.
func (id RelayID) IsZero() bool { return id == RelayID{} }

// String returns the unpadded base64 form (43 characters).
func (id RelayID) String() string { return keyText.EncodeToString(id[:]) }

// Short returns the first 8 characters of String, for log lines.
func (id RelayID) Short() string { return id.String()[:8] }

// MarshalText implements encoding.TextMarshaler.
func (id RelayID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *RelayID) UnmarshalText(b []byte) error {
	v, err := ParseRelayID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// PublicKey returns id as an ed25519.PublicKey (a fresh copy).
func (id RelayID) PublicKey() ed25519.PublicKey {
	return append(ed25519.PublicKey(nil), id[:]...)
}

// ParseRelayID parses the String form of a RelayID.
func ParseRelayID(s string) (RelayID, error) {
	var id RelayID
	if err := decodeFixed(id[:], s); err != nil {
		return RelayID{}, fmt.Errorf("relay ID %q: %w", s, err)
	}
	return id, nil
}

// RelayIDFromBytes copies a 32-byte Ed25519 public key into a RelayID.
func RelayIDFromBytes(b []byte) (RelayID, error) {
	var id RelayID
	if len(b) != len(id) {
		return RelayID{}, ErrBadKeyLength
	}
	copy(id[:], b)
	return id, nil
}

// Verify reports whether sig is id's valid Ed25519 signature of msg.
func Verify(id RelayID, msg, sig []byte) bool {
	if len(sig) != SignatureLen {
		return false
	}
	return ed25519.Verify(id[:], msg, sig)
}

// IdentityKey is an Ed25519 private key: a relay's or an authority's
// long-term identity. Its public half is the RelayID.
type IdentityKey struct {
	priv [identityPrivateLen]byte // seed || public key, as crypto/ed25519 lays it out
}

// GenerateIdentityKey makes a new identity key from rand.
func GenerateIdentityKey(rand io.Reader) (*IdentityKey, error) {
	var seed [IdentitySeedLen]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("generate identity key: %w", err)
	}
	return IdentityKeyFromSeed(seed[:])
}

// IdentityKeyFromSeed rebuilds an identity key from its 32-byte seed (the
// form kept on disk).
func IdentityKeyFromSeed(seed []byte) (*IdentityKey, error) {
	if len(seed) != IdentitySeedLen {
		return nil, ErrBadKeyLength
	}
	k := new(IdentityKey)
	priv := ed25519.NewKeyFromSeed(seed)
	copy(k.priv[:], priv)
	clear(priv)
	return k, nil
}

// ID returns the key's public identity.
func (k *IdentityKey) ID() RelayID {
	var id RelayID
	copy(id[:], k.priv[IdentitySeedLen:])
	return id
}

// Sign signs msg with Ed25519.
func (k *IdentityKey) Sign(msg []byte) []byte {
	return ed25519.Sign(k.priv[:], msg)
}

// Seed returns a copy of the 32-byte seed, for storing the key on disk. The
// caller wipes it when written.
func (k *IdentityKey) Seed() []byte { return append([]byte(nil), k.priv[:IdentitySeedLen]...) }

// PrivateKey returns the key as an ed25519.PrivateKey for crypto/tls. The
// returned slice aliases the key, so Wipe also clears what TLS holds.
func (k *IdentityKey) PrivateKey() ed25519.PrivateKey { return k.priv[:] }

// Equal reports whether two identity keys are the same, in constant time.
func (k *IdentityKey) Equal(o *IdentityKey) bool {
	return subtle.ConstantTimeCompare(k.priv[:], o.priv[:]) == 1
}

// Wipe zeroes the key.
func (k *IdentityKey) Wipe() { clear(k.priv[:]) }

// OnionPublicKey is the public half of a relay's X25519 onion key, the key
// that clients use in the ntor-v3 handshake. It is listed in the relay's
// descriptor and in the consensus.
type OnionPublicKey [onionPublicKeyLen]byte

// Equal reports whether two onion public keys are equal, in constant time.
func (k OnionPublicKey) Equal(o OnionPublicKey) bool {
	return subtle.ConstantTimeCompare(k[:], o[:]) == 1
}

// IsZero reports whether k is unset.
func (k OnionPublicKey) IsZero() bool { return k == OnionPublicKey{} }

// String returns the unpadded base64 form.
func (k OnionPublicKey) String() string { return keyText.EncodeToString(k[:]) }

// MarshalText implements encoding.TextMarshaler.
func (k OnionPublicKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *OnionPublicKey) UnmarshalText(b []byte) error {
	v, err := ParseOnionPublicKey(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ParseOnionPublicKey parses the String form of an onion public key.
func ParseOnionPublicKey(s string) (OnionPublicKey, error) {
	var k OnionPublicKey
	if err := decodeFixed(k[:], s); err != nil {
		return OnionPublicKey{}, fmt.Errorf("onion key %q: %w", s, err)
	}
	return k, nil
}

// OnionPrivateKey is a relay's X25519 onion key. Relays rotate it (default
// every 7 days) and wipe the old one after one more period, so that recorded
// circuits cannot later be decrypted.
type OnionPrivateKey struct {
	secret [OnionKeyLen]byte
	public OnionPublicKey
}

// GenerateOnionKey makes a fresh onion key from rand.
func GenerateOnionKey(rand io.Reader) (*OnionPrivateKey, error) {
	var b [OnionKeyLen]byte
	defer clear(b[:])
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return nil, fmt.Errorf("generate onion key: %w", err)
	}
	return OnionKeyFromBytes(b[:])
}

// OnionKeyFromBytes rebuilds an onion key from its 32 secret bytes.
func OnionKeyFromBytes(b []byte) (*OnionPrivateKey, error) {
	if len(b) != OnionKeyLen {
		return nil, ErrBadKeyLength
	}
	k := new(OnionPrivateKey)
	copy(k.secret[:], b)
	pub, err := curve25519.X25519(k.secret[:], curve25519.Basepoint)
	if err != nil {
		return nil, fmt.Errorf("onion key: %w", err)
	}
	copy(k.public[:], pub)
	return k, nil
}

// Public returns the public half.
func (k *OnionPrivateKey) Public() OnionPublicKey { return k.public }

// Bytes returns a copy of the secret, for storing on disk. The caller wipes it.
func (k *OnionPrivateKey) Bytes() []byte { return append([]byte(nil), k.secret[:]...) }

// ECDH computes X25519(secret, peer). A low-order peer point, which would give
// an all-zero shared secret, is an error.
func (k *OnionPrivateKey) ECDH(peer []byte) ([32]byte, error) {
	return x25519(k.secret[:], peer)
}

// Equal reports whether two onion private keys are the same, in constant time.
func (k *OnionPrivateKey) Equal(o *OnionPrivateKey) bool {
	return subtle.ConstantTimeCompare(k.secret[:], o.secret[:]) == 1
}

// Wipe zeroes the secret (the public half is kept, so the key can still be
// named in logs and errors).
func (k *OnionPrivateKey) Wipe() { clear(k.secret[:]) }

// x25519 is X25519 with the all-zero output rejected.
func x25519(secret, peer []byte) ([32]byte, error) {
	var out [32]byte
	if len(peer) != onionPublicKeyLen {
		return out, ErrBadKeyLength
	}
	s, err := curve25519.X25519(secret, peer)
	if err != nil {
		return out, ErrLowOrderPoint
	}
	copy(out[:], s)
	clear(s)
	return out, nil
}

func decodeFixed(dst []byte, s string) error {
	if keyText.DecodedLen(len(s)) != len(dst) {
		return ErrBadKeyLength
	}
	n, err := keyText.Decode(dst, []byte(s))
	if err != nil || n != len(dst) {
		return ErrBadKeyText
	}
	return nil
}
