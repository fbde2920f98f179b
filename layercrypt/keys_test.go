package layercrypt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// RFC 8032 section 7.1, TEST 2 (one-byte message).
func TestIdentityKeyRFC8032(t *testing.T) {
	seed := mustHex(t, "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
	wantPub := mustHex(t, "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
	wantSig := mustHex(t, "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"+
		"085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")
	k, err := IdentityKeyFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	id := k.ID()
	if !bytes.Equal(id[:], wantPub) {
		t.Fatalf("ID = %x, want %x", id[:], wantPub)
	}
	sig := k.Sign([]byte{0x72})
	if !bytes.Equal(sig, wantSig) {
		t.Fatalf("signature = %x, want %x", sig, wantSig)
	}
	if !Verify(id, []byte{0x72}, sig) {
		t.Fatal("Verify rejected the RFC 8032 signature")
	}
	if Verify(id, []byte{0x73}, sig) {
		t.Fatal("Verify accepted a signature over another message")
	}
	if Verify(id, []byte{0x72}, sig[:63]) {
		t.Fatal("Verify accepted a truncated signature")
	}
	if !bytes.Equal(k.Seed(), seed) {
		t.Fatal("Seed does not round-trip")
	}
	k2, _ := IdentityKeyFromSeed(seed)
	if !k.Equal(k2) {
		t.Fatal("Equal(same seed) = false")
	}
	k.Wipe()
	if k.Equal(k2) || !bytes.Equal(k.PrivateKey(), make([]byte, identityPrivateLen)) {
		t.Fatal("Wipe left key material")
	}
}

// RFC 7748 section 6.1 (Alice and Bob).
func TestOnionKeyRFC7748(t *testing.T) {
	alice, err := OnionKeyFromBytes(mustHex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := OnionKeyFromBytes(mustHex(t, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
	wantAlicePub := mustHex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	wantShared := mustHex(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
	ap := alice.Public()
	if !bytes.Equal(ap[:], wantAlicePub) {
		t.Fatalf("alice public = %x, want %x", ap[:], wantAlicePub)
	}
	bp := bob.Public()
	s1, err := alice.ECDH(bp[:])
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := bob.ECDH(ap[:])
	if !bytes.Equal(s1[:], wantShared) || s1 != s2 {
		t.Fatalf("shared = %x / %x, want %x", s1, s2, wantShared)
	}
	if _, err := alice.ECDH(make([]byte, 32)); !errors.Is(err, ErrLowOrderPoint) {
		t.Fatalf("ECDH(zero point) error = %v, want ErrLowOrderPoint", err)
	}
	if _, err := alice.ECDH(make([]byte, 31)); !errors.Is(err, ErrBadKeyLength) {
		t.Fatalf("ECDH(short) error = %v, want ErrBadKeyLength", err)
	}
	alice.Wipe()
	if !bytes.Equal(alice.Bytes(), make([]byte, 32)) {
		t.Fatal("Wipe left the secret")
	}
}

func TestKeyText(t *testing.T) {
	k, _ := IdentityKeyFromSeed(make([]byte, 32))
	id := k.ID()
	s := id.String()
	if len(s) != 43 {
		t.Fatalf("len(String()) = %d, want 43", len(s))
	}
	got, err := ParseRelayID(s)
	if err != nil || !got.Equal(id) {
		t.Fatalf("ParseRelayID(%q) = %v, %v", s, got, err)
	}
	for _, bad := range []string{"", s[:42], s + "A", "!" + s[1:]} {
		if _, err := ParseRelayID(bad); err == nil {
			t.Errorf("ParseRelayID(%q) succeeded, want error", bad)
		}
	}
	var ok OnionPublicKey
	if err := ok.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if ok.String() != s {
		t.Fatalf("onion key text round trip: %q != %q", ok.String(), s)
	}
}
