package netdoc

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testTime is the fixed "now" of the golden documents.
var testTime = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// identityKey returns a fixed identity key: seed = SHA-256("chive netdoc test identity <name>").
func identityKey(tb testing.TB, name string) *layercrypt.IdentityKey {
	tb.Helper()
	seed := sha256.Sum256([]byte("chive netdoc test identity " + name))
	k, err := layercrypt.IdentityKeyFromSeed(seed[:])
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// onionKey returns a fixed onion public key.
func onionKey(tb testing.TB, name string) layercrypt.OnionPublicKey {
	tb.Helper()
	secret := sha256.Sum256([]byte("chive netdoc test onion key " + name))
	k, err := layercrypt.OnionKeyFromBytes(secret[:])
	if err != nil {
		tb.Fatal(err)
	}
	return k.Public()
}

func mustRule(tb testing.TB, s string) exitpolicy.Rule {
	tb.Helper()
	r, err := exitpolicy.ParseRule(s)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n%s", name, lineDiff(want, got))
	}
}

// lineDiff shows the first differing line.
func lineDiff(want, got []byte) string {
	w := strings.Split(string(want), "\n")
	g := strings.Split(string(got), "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n want %q\n  got %q", i+1, a, b)
		}
	}
	return "(lengths differ)"
}

// wantErr checks that err matches sentinel and, when line > 0, is a
// ParseError at that line.
func wantErr(t *testing.T, what string, err, sentinel error, line int) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, sentinel)
		return
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("%s: error %q does not match %v", what, err, sentinel)
		return
	}
	if line > 0 {
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != line {
			t.Errorf("%s: error %q: want line %d", what, err, line)
		}
	}
}

// testDescriptor is a descriptor with every field set.
func testDescriptor(t testing.TB, name string) (*Descriptor, *layercrypt.IdentityKey) {
	k := identityKey(t, name)
	pol := exitpolicy.Policy{
		Rules: []exitpolicy.Rule{
			mustRule(t, "reject 10.0.0.0/8:*"),
			mustRule(t, "reject [fc00::]/7:*"),
			mustRule(t, "accept *:80"),
			mustRule(t, "accept *:443"),
			mustRule(t, "accept [2001:db8::]/32:6660-6669"),
		},
		Default: exitpolicy.Reject,
	}
	d := &Descriptor{
		Nickname:     "Relay" + name,
		ID:           k.ID(),
		Published:    testTime.Add(-time.Hour),
		Platform:     "chive 0.1.0 linux/amd64 — test",
		Protocols:    Protocols{{"Circuit", Versions(1)}, {"Link", Versions(1, 2)}, {"Relay", Versions(1, 3, 4, 5)}},
		Addr:         netip.MustParseAddrPort("203.0.113.5:9001"),
		Addr6:        netip.MustParseAddrPort("[2001:db8::5]:9001"),
		OnionKey:     onionKey(t, name),
		PrevOnionKey: onionKey(t, name+"-old"),
		Bandwidth:    1 << 20,
		Uptime:       36 * time.Hour,
		DelayClasses: []uint8{0, 1, 2},
		Family:       NormalizeFamily(k.ID(), []layercrypt.RelayID{identityKey(t, "fam1").ID(), identityKey(t, "fam2").ID()}),
		Policy:       pol,
	}
	return d, k
}

// minimalDescriptor has only the required fields.
func minimalDescriptor(t testing.TB, name string) (*Descriptor, *layercrypt.IdentityKey) {
	k := identityKey(t, name)
	return &Descriptor{
		Nickname:     name,
		ID:           k.ID(),
		Published:    testTime.Add(-time.Hour),
		Protocols:    Protocols{{"Circuit", Versions(1)}, {"Link", Versions(1)}, {"Relay", Versions(1)}},
		Addr:         netip.MustParseAddrPort("127.0.0.1:5001"),
		OnionKey:     onionKey(t, name),
		Bandwidth:    0,
		Uptime:       0,
		DelayClasses: []uint8{0},
		Policy:       exitpolicy.RejectAll,
	}, k
}
