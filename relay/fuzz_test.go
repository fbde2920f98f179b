package relay

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzByteSize: whatever parses prints as a size that parses to the same
// value.
func FuzzByteSize(f *testing.F) {
	for _, s := range []string{"0", "1048576", "10MiB", "500 KB", "1GiB", "7B", "1.5MiB", "-1", "MiB", "99999999999GiB", " 3 KiB "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseByteSize(s)
		if err != nil {
			return
		}
		w, err := ParseByteSize(v.String())
		if err != nil || w != v {
			t.Fatalf("ParseByteSize(%q) = %d; its String %q parses to %d, %v", s, v, v.String(), w, err)
		}
	})
}

// FuzzKeyFile: readKeyFile never panics, and what it accepts is a 32-byte
// secret with a creation time, which writeKeyFile reproduces.
func FuzzKeyFile(f *testing.F) {
	dir := f.TempDir()
	good := filepath.Join(dir, "seed.key")
	if err := writeKeyFile(good, onionPEMType, make([]byte, 32), time.Unix(1700000000, 5).UTC()); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("-----BEGIN CHIVE X25519 ONION KEY-----\nCreated: yesterday\n\nAAAA\n-----END CHIVE X25519 ONION KEY-----\n"))
	f.Add([]byte("not a key"))
	f.Add(append(b, "trailing"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := t.TempDir()
		p := filepath.Join(d, "k.key")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		secret, created, err := readKeyFile(p, onionPEMType)
		if err != nil {
			return
		}
		if len(secret) != 32 || created.IsZero() {
			t.Fatalf("accepted a %d-byte secret created %v", len(secret), created)
		}
		q := filepath.Join(d, "again.key")
		if err := writeKeyFile(q, onionPEMType, secret, created); err != nil {
			t.Fatal(err)
		}
		s2, c2, err := readKeyFile(q, onionPEMType)
		if err != nil || string(s2) != string(secret) || !c2.Equal(created) {
			t.Fatalf("rewritten key reads back as %x %v %v", s2, c2, err)
		}
	})
}
