package relay

import (
	"bytes"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chive-net/chive/layercrypt"
)

// Key files. Each is PEM with a Created header (RFC 3339, UTC) and the raw
// 32-byte secret: the Ed25519 seed for the identity, the X25519 scalar for
// an onion key. They live in DataDir/keys, mode 0600 in a 0700 directory.
const (
	keysDirName      = "keys"
	identityFileName = "identity.key"
	identityPEMType  = "CHIVE ED25519 IDENTITY KEY"
	onionPEMType     = "CHIVE X25519 ONION KEY"
	onionFilePrefix  = "onion-"
	keyFileSuffix    = ".key"
	createdHeader    = "Created"
)

// ErrKeyPermissions is wrapped by errors about key files or directories
// that other users can access.
var ErrKeyPermissions = errors.New("relay: key file or directory accessible by other users")

// wipeGrace is how long an erased onion key stays in memory after it left
// the list handed to handshakes: a CREATE2 that picked it up just before
// finishes (a handshake takes microseconds) before the secret is zeroed
// under it.
var wipeGrace = time.Second

// onionKey is one onion key and when it was made.
type onionKey struct {
	key     *layercrypt.OnionPrivateKey
	created time.Time
	path    string
}

// keyStore holds a relay's identity and onion keys, on disk and in memory.
type keyStore struct {
	dir    string // DataDir/keys
	period time.Duration
	id     *layercrypt.IdentityKey

	mu    sync.Mutex  // guards the following fields
	onion []*onionKey // newest (current) first; at most two
	list  []*layercrypt.OnionPrivateKey
	// retired keys are erased from disk and wait wipeGrace to be wiped.
	retired map[*layercrypt.OnionPrivateKey]*time.Timer
	closed  bool
}

// KeygenResult says what Keygen did.
type KeygenResult struct {
	ID      layercrypt.RelayID
	Created bool // false: the identity already existed and was kept
	Path    string
}

// Keygen creates the relay's identity key in dataDir unless one exists, and
// returns the relay's ID. It never replaces an existing key.
func Keygen(dataDir string) (KeygenResult, error) {
	dir, err := prepareKeyDir(dataDir)
	if err != nil {
		return KeygenResult{}, err
	}
	path := filepath.Join(dir, identityFileName)
	id, created, err := loadOrCreateIdentity(path, time.Now())
	if err != nil {
		return KeygenResult{}, err
	}
	defer id.Wipe()
	return KeygenResult{ID: id.ID(), Created: created, Path: path}, nil
}

// openKeyStore loads (creating what is missing) the keys in dataDir and
// brings the onion keys up to date for now.
func openKeyStore(dataDir string, period time.Duration, now time.Time) (*keyStore, error) {
	dir, err := prepareKeyDir(dataDir)
	if err != nil {
		return nil, err
	}
	id, _, err := loadOrCreateIdentity(filepath.Join(dir, identityFileName), now)
	if err != nil {
		return nil, err
	}
	ks := &keyStore{dir: dir, period: period, id: id, retired: make(map[*layercrypt.OnionPrivateKey]*time.Timer)}
	if err := ks.loadOnion(); err != nil {
		ks.close()
		return nil, err
	}
	if _, err := ks.rotate(now); err != nil {
		ks.close()
		return nil, err
	}
	return ks, nil
}

// prepareKeyDir creates dataDir and dataDir/keys (0700) and refuses
// directories that other users can access.
func prepareKeyDir(dataDir string) (string, error) {
	if dataDir == "" {
		return "", errors.New("relay: no data directory configured (data_dir)")
	}
	dir := filepath.Join(dataDir, keysDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("relay: create key directory: %w", err)
	}
	for _, d := range []string{dataDir, dir} {
		if err := checkPrivate(d, true); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// checkPrivate refuses a file or directory with any group or other
// permission bits.
func checkPrivate(path string, isDir bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if isDir {
		return fmt.Errorf("%w: directory %s has mode %04o; keys must be private to the relay's user: run `chmod 700 %s`",
			ErrKeyPermissions, path, fi.Mode().Perm(), path)
	}
	return fmt.Errorf("%w: key file %s has mode %04o; run `chmod 600 %s` (and, if other users could read it, treat the key as compromised and make a new one)",
		ErrKeyPermissions, path, fi.Mode().Perm(), path)
}

func loadOrCreateIdentity(path string, now time.Time) (*layercrypt.IdentityKey, bool, error) {
	secret, _, err := readKeyFile(path, identityPEMType)
	if err == nil {
		defer clear(secret)
		k, err := layercrypt.IdentityKeyFromSeed(secret)
		if err != nil {
			return nil, false, fmt.Errorf("relay: identity key %s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	k, err := layercrypt.GenerateIdentityKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("relay: %w", err)
	}
	seed := k.Seed()
	defer clear(seed)
	if err := writeKeyFile(path, identityPEMType, seed, now); err != nil {
		k.Wipe()
		return nil, false, err
	}
	return k, true, nil
}

// readKeyFile reads a PEM key file after checking its permissions.
func readKeyFile(path, typ string) (secret []byte, created time.Time, err error) {
	if _, err := os.Stat(path); err != nil {
		return nil, time.Time{}, err
	}
	if err := checkPrivate(path, false); err != nil {
		return nil, time.Time{}, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("relay: %w", err)
	}
	defer clear(b)
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != typ || len(bytes.TrimSpace(rest)) != 0 || len(blk.Bytes) != 32 {
		if blk != nil {
			clear(blk.Bytes)
		}
		return nil, time.Time{}, fmt.Errorf("relay: key file %s is not a %s; move it away to have a new key made", path, typ)
	}
	created, err = time.Parse(time.RFC3339, blk.Headers[createdHeader])
	if err != nil {
		clear(blk.Bytes)
		return nil, time.Time{}, fmt.Errorf("relay: key file %s has no valid %s header", path, createdHeader)
	}
	return blk.Bytes, created.UTC(), nil
}

// writeKeyFile writes a key file atomically (temporary file, fsync, rename,
// fsync of the directory), mode 0600. It never replaces an existing file.
func writeKeyFile(path, typ string, secret []byte, created time.Time) error {
	blk := &pem.Block{Type: typ, Headers: map[string]string{createdHeader: created.UTC().Format(time.RFC3339Nano)}, Bytes: secret}
	data := pem.EncodeToMemory(blk)
	defer clear(data)
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-key-")
	if err != nil {
		return fmt.Errorf("relay: write key: %w", err)
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("relay: write key: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("relay: write key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("relay: write key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("relay: write key: %w", err)
	}
	// Link, not rename: fails if path exists, so a key is never replaced.
	if err := os.Link(tmpName, path); err != nil {
		return fmt.Errorf("relay: write key %s: %w", path, err)
	}
	os.Remove(tmpName)
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("relay: sync %s: %w", dir, err)
	}
	return nil
}

// eraseFile overwrites a key file with zeros before removing it. On
// journaling or copy-on-write file systems and SSDs the old blocks may
// survive the overwrite; it is the best a program can do, and keeps the key
// out of reach of anyone who can only read files.
func eraseFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("relay: erase %s: %w", path, err)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		f.WriteAt(make([]byte, fi.Size()), 0)
		f.Sync()
	}
	f.Close()
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("relay: erase %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// loadOnion reads every onion key file, newest first.
func (ks *keyStore) loadOnion() error {
	ents, err := os.ReadDir(ks.dir)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	var keys []*onionKey
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-key-") {
			os.Remove(filepath.Join(ks.dir, name)) // left by a crash mid-write
			continue
		}
		if !strings.HasPrefix(name, onionFilePrefix) || !strings.HasSuffix(name, keyFileSuffix) {
			continue
		}
		path := filepath.Join(ks.dir, name)
		secret, created, err := readKeyFile(path, onionPEMType)
		if err != nil {
			for _, k := range keys {
				k.key.Wipe()
			}
			return err
		}
		k, err := layercrypt.OnionKeyFromBytes(secret)
		clear(secret)
		if err != nil {
			return fmt.Errorf("relay: onion key %s: %w", path, err)
		}
		keys = append(keys, &onionKey{key: k, created: created, path: path})
	}
	slices.SortFunc(keys, func(a, b *onionKey) int { return b.created.Compare(a.created) })
	ks.mu.Lock()
	ks.onion = keys
	ks.mu.Unlock()
	return nil
}

// rotate brings the onion keys up to date for now: a new current key once
// the current one is a period old; the previous one kept until two periods
// after its creation (one period after it was replaced), then erased from
// disk and, after wipeGrace, wiped in memory. It reports whether the set of
// keys changed.
func (ks *keyStore) rotate(now time.Time) (bool, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.closed {
		return false, errors.New("relay: key store closed")
	}
	changed := false
	if len(ks.onion) == 0 || !now.Before(ks.onion[0].created.Add(ks.period)) {
		k, err := layercrypt.GenerateOnionKey(rand.Reader)
		if err != nil {
			return false, fmt.Errorf("relay: %w", err)
		}
		created := now.UTC()
		path := filepath.Join(ks.dir, fmt.Sprintf("%s%d%s", onionFilePrefix, created.UnixNano(), keyFileSuffix))
		secret := k.Bytes()
		err = writeKeyFile(path, onionPEMType, secret, created)
		clear(secret)
		if err != nil {
			k.Wipe()
			return false, err
		}
		ks.onion = append([]*onionKey{{key: k, created: created, path: path}}, ks.onion...)
		changed = true
	}
	keep := 1
	if len(ks.onion) > 1 && now.Before(ks.onion[1].created.Add(2*ks.period)) {
		keep = 2
	}
	var errs []error
	for _, old := range ks.onion[keep:] {
		errs = append(errs, eraseFile(old.path))
		k := old.key
		ks.retired[k] = time.AfterFunc(wipeGrace, func() {
			ks.mu.Lock()
			defer ks.mu.Unlock()
			k.Wipe()
			delete(ks.retired, k)
		})
		changed = true
	}
	ks.onion = slices.Clip(ks.onion[:keep])
	ks.list = make([]*layercrypt.OnionPrivateKey, len(ks.onion))
	for i, k := range ks.onion {
		ks.list[i] = k.key
	}
	return changed, errors.Join(errs...)
}

// nextRotation returns when rotate next has something to do.
func (ks *keyStore) nextRotation() time.Time {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	next := ks.onion[0].created.Add(ks.period)
	if len(ks.onion) > 1 {
		if t := ks.onion[1].created.Add(2 * ks.period); t.Before(next) {
			next = t
		}
	}
	return next
}

// onionKeys is circuit.RelayConfig.OnionKeys: current, then previous.
func (ks *keyStore) onionKeys() []*layercrypt.OnionPrivateKey {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.list
}

// publicKeys returns the current and (zero if none) previous onion public keys.
func (ks *keyStore) publicKeys() (cur, prev layercrypt.OnionPublicKey) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if len(ks.onion) == 0 { // closed
		return cur, prev
	}
	cur = ks.onion[0].key.Public()
	if len(ks.onion) > 1 {
		prev = ks.onion[1].key.Public()
	}
	return cur, prev
}

// close wipes every key in memory (pending wipes included).
func (ks *keyStore) close() {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.closed {
		return
	}
	ks.closed = true
	for k, t := range ks.retired {
		t.Stop()
		k.Wipe()
	}
	clear(ks.retired)
	for _, k := range ks.onion {
		k.key.Wipe()
	}
	ks.onion, ks.list = nil, nil
	ks.id.Wipe()
}
