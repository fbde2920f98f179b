package relay

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chive-net/chive/layercrypt"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func onionFiles(t *testing.T, dataDir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dataDir, keysDirName, onionFilePrefix+"*"+keyFileSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestKeysCreatedPrivateAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	res, err := Keygen(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created {
		t.Error("Keygen on an empty dir: Created = false")
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("data dir mode %04o, want 0700", got)
	}
	if got := mode(t, filepath.Join(dir, keysDirName)); got != 0o700 {
		t.Errorf("keys dir mode %04o, want 0700", got)
	}
	if got := mode(t, res.Path); got != 0o600 {
		t.Errorf("identity file mode %04o, want 0600", got)
	}
	again, err := Keygen(dir)
	if err != nil || again.Created || again.ID != res.ID {
		t.Fatalf("second Keygen: %+v, %v; want the same ID %v, not created", again, err, res.ID)
	}

	ks, err := openKeyStore(dir, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if ks.id.ID() != res.ID {
		t.Errorf("key store ID %v, Keygen said %v", ks.id.ID(), res.ID)
	}
	files := onionFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("onion key files %v, want one", files)
	}
	if got := mode(t, files[0]); got != 0o600 {
		t.Errorf("onion key file mode %04o, want 0600", got)
	}
	cur, prev := ks.publicKeys()
	if !prev.IsZero() {
		t.Error("a fresh relay has a previous onion key")
	}
	ks.close()

	// Restart, a little later: same identity, same onion key.
	ks2, err := openKeyStore(dir, time.Hour, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer ks2.close()
	if ks2.id.ID() != res.ID {
		t.Errorf("restart changed the ID: %v -> %v", res.ID, ks2.id.ID())
	}
	if cur2, _ := ks2.publicKeys(); cur2 != cur {
		t.Errorf("restart changed the onion key")
	}
}

func TestKeysRefuseBadPermissions(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(dir string) error
		want    string
	}{
		{"identity readable", func(d string) error { return os.Chmod(filepath.Join(d, keysDirName, identityFileName), 0o644) }, "chmod 600"},
		{"identity group", func(d string) error { return os.Chmod(filepath.Join(d, keysDirName, identityFileName), 0o640) }, "chmod 600"},
		{"onion readable", func(d string) error {
			m, _ := filepath.Glob(filepath.Join(d, keysDirName, onionFilePrefix+"*"))
			return os.Chmod(m[0], 0o604)
		}, "chmod 600"},
		{"keys dir", func(d string) error { return os.Chmod(filepath.Join(d, keysDirName), 0o755) }, "chmod 700"},
		{"data dir", func(d string) error { return os.Chmod(d, 0o750) }, "chmod 700"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := dataDir(t)
			ks, err := openKeyStore(dir, time.Hour, t0)
			if err != nil {
				t.Fatal(err)
			}
			ks.close()
			if err := tc.breakIt(dir); err != nil {
				t.Fatal(err)
			}
			_, err = openKeyStore(dir, time.Hour, t0)
			if !errors.Is(err, ErrKeyPermissions) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open with bad permissions: %v; want ErrKeyPermissions saying %q", err, tc.want)
			}
		})
	}
}

func TestKeysRefuseCorruptFile(t *testing.T) {
	dir := dataDir(t)
	if _, err := Keygen(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, keysDirName, identityFileName)
	if err := os.WriteFile(path, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openKeyStore(dir, time.Hour, t0); err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("open with a corrupt identity: %v", err)
	}
}

// TestOnionRotationSchedule drives rotate with explicit times.
func TestOnionRotationSchedule(t *testing.T) {
	old := wipeGrace
	wipeGrace = 10 * time.Millisecond
	defer func() { wipeGrace = old }()
	const p = time.Hour
	dir := dataDir(t)
	ks, err := openKeyStore(dir, p, t0)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.close()
	a := ks.onion[0]
	if next := ks.nextRotation(); !next.Equal(t0.Add(p)) {
		t.Errorf("next rotation %v, want %v", next, t0.Add(p))
	}
	// Not yet due.
	if changed, err := ks.rotate(t0.Add(p - time.Second)); changed || err != nil {
		t.Fatalf("rotate before due: %v, %v", changed, err)
	}
	// One rotation: b current, a previous.
	if changed, err := ks.rotate(t0.Add(p)); !changed || err != nil {
		t.Fatalf("rotate when due: %v, %v", changed, err)
	}
	keys := ks.onionKeys()
	if len(keys) != 2 || keys[1] != a.key || keys[0] == a.key {
		t.Fatalf("after one rotation: %d keys, previous is the old one: %v", len(keys), len(keys) == 2 && keys[1] == a.key)
	}
	if n := len(onionFiles(t, dir)); n != 2 {
		t.Errorf("%d onion key files after one rotation, want 2", n)
	}
	b := ks.onion[0]
	// A restart keeps both.
	ks.close()
	ks, err = openKeyStore(dir, p, t0.Add(p+time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if cur, prev := ks.publicKeys(); cur != b.key.Public() || prev != a.key.Public() {
		t.Fatal("restart lost the current or previous onion key")
	}
	// Two rotations: a erased from disk and, after the grace, wiped.
	a = ks.onion[1]
	if changed, err := ks.rotate(t0.Add(2 * p)); !changed || err != nil {
		t.Fatalf("second rotation: %v, %v", changed, err)
	}
	if _, err := os.Stat(a.path); !os.IsNotExist(err) {
		t.Errorf("the twice-rotated key's file still exists: %v", err)
	}
	keys = ks.onionKeys()
	if len(keys) != 2 || keys[1].Public() != b.key.Public() {
		t.Fatal("after two rotations the previous key is not the second one")
	}
	waitFor(t, "the erased key to be wiped", 2*time.Second, func() bool { return isWiped(ks, a.key) })
}

func isWiped(ks *keyStore, k *layercrypt.OnionPrivateKey) bool {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return bytes.Equal(k.Bytes(), make([]byte, layercrypt.OnionKeyLen))
}

// TestOnionKeysExpireWhileDown: keys older than two periods are erased at
// start, whatever their order.
func TestOnionKeysExpireWhileDown(t *testing.T) {
	const p = time.Hour
	dir := dataDir(t)
	ks, err := openKeyStore(dir, p, t0)
	if err != nil {
		t.Fatal(err)
	}
	ks.rotate(t0.Add(p))
	old := ks.onion
	ks.close()
	// Back after 1.5 periods: the current key is replaced, the one before
	// it is past two periods and erased, the last current is kept.
	ks, err = openKeyStore(dir, p, t0.Add(2*p+p/2))
	if err != nil {
		t.Fatal(err)
	}
	if cur, prev := ks.publicKeys(); cur == old[0].key.Public() || prev != old[0].key.Public() {
		t.Error("after 1.5 periods down: want a new current key and the last one as previous")
	}
	ks.close()
	// Back after many periods: only a fresh key.
	ks, err = openKeyStore(dir, p, t0.Add(10*p))
	if err != nil {
		t.Fatal(err)
	}
	defer ks.close()
	if _, prev := ks.publicKeys(); !prev.IsZero() {
		t.Error("after a long downtime an expired previous key is still accepted")
	}
	if n := len(onionFiles(t, dir)); n != 1 {
		t.Errorf("%d onion key files, want 1", n)
	}
}

// dataDir returns a path for a data directory that does not exist yet
// (t.TempDir itself is 0755, which the relay refuses).
func dataDir(t testing.TB) string {
	return filepath.Join(t.TempDir(), "data")
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
