package directory

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/chive-net/chive/internal/fsutil"
	"github.com/chive-net/chive/layercrypt"
)

// Files in the data directory.
const (
	KeyFile       = "identity.key" // the 32-byte Ed25519 seed, mode 0600
	ConsensusFile = "consensus"    // the last published consensus with its signatures
	descDir       = "descriptors"  // one file per relay: <hex relay ID>.desc
	voteDir       = "votes"        // <valid-after unix>-<hex authority ID>.vote
)

// LoadOrCreateKey loads the identity key from dataDir, creating dataDir
// (0700) and a new key (0600) if there is none. created reports whether the
// key is new. A key file that others can read is refused.
func LoadOrCreateKey(dataDir string) (key *layercrypt.IdentityKey, created bool, err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dataDir, KeyFile)
	f, err := os.Open(path)
	switch {
	case err == nil:
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return nil, false, fmt.Errorf("identity key: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, false, fmt.Errorf("identity key %s has mode %#o: others can read it; run chmod 600 %s", path, st.Mode().Perm(), path)
		}
		seed := make([]byte, 33)
		n, _ := f.Read(seed)
		defer clear(seed)
		if n != 32 {
			return nil, false, fmt.Errorf("identity key %s: %d bytes, want a 32-byte seed (move the file away to make a new key)", path, n)
		}
		k, err := layercrypt.IdentityKeyFromSeed(seed[:32])
		if err != nil {
			return nil, false, fmt.Errorf("identity key %s: %w", path, err)
		}
		return k, false, nil
	case errors.Is(err, fs.ErrNotExist):
		k, err := layercrypt.GenerateIdentityKey(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("identity key: %w", err)
		}
		seed := k.Seed()
		defer clear(seed)
		// O_EXCL: never overwrite a key another process just made.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("identity key: %w", err)
		}
		if _, err := f.Write(seed); err != nil {
			f.Close()
			os.Remove(path)
			return nil, false, fmt.Errorf("identity key: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			os.Remove(path)
			return nil, false, fmt.Errorf("identity key: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, false, fmt.Errorf("identity key: %w", err)
		}
		return k, true, nil
	default:
		return nil, false, fmt.Errorf("identity key: %w", err)
	}
}

// store is the authority's data directory.
type store struct{ dir string }

func openStore(dir string) (*store, error) {
	for _, d := range []string{dir, filepath.Join(dir, descDir), filepath.Join(dir, voteDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
	}
	return &store{dir: dir}, nil
}

func (s *store) descPath(id layercrypt.RelayID) string {
	return filepath.Join(s.dir, descDir, hex.EncodeToString(id[:])+".desc")
}

func (s *store) votePath(va time.Time, auth layercrypt.RelayID) string {
	return filepath.Join(s.dir, voteDir, strconv.FormatInt(va.Unix(), 10)+"-"+hex.EncodeToString(auth[:])+".vote")
}

func (s *store) consensusPath() string { return filepath.Join(s.dir, ConsensusFile) }

func (s *store) putDescriptor(id layercrypt.RelayID, b []byte) error {
	return writeFileAtomic(s.descPath(id), b)
}

func (s *store) deleteDescriptor(id layercrypt.RelayID) error {
	if err := os.Remove(s.descPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (s *store) putVote(va time.Time, auth layercrypt.RelayID, b []byte) error {
	return writeFileAtomic(s.votePath(va, auth), b)
}

func (s *store) putConsensus(b []byte) error { return writeFileAtomic(s.consensusPath(), b) }

// readDir returns the contents of every regular file in sub whose name ends
// in ext, keyed by file name.
func (s *store) readDir(sub, ext string) (map[string][]byte, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, sub))
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte)
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ext) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, sub, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = b
	}
	return out, nil
}

// pruneVotes deletes stored votes for periods that started before cutoff.
func (s *store) pruneVotes(cutoff time.Time) error {
	ents, err := os.ReadDir(filepath.Join(s.dir, voteDir))
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		unix, _, ok := strings.Cut(e.Name(), "-")
		n, err := strconv.ParseInt(unix, 10, 64)
		if !ok || err != nil || time.Unix(n, 0).Before(cutoff) {
			if err := os.Remove(filepath.Join(s.dir, voteDir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// writeFileAtomic writes b to path, mode 0600, crash-safely.
func writeFileAtomic(path string, b []byte) error { return fsutil.WriteFileAtomic(path, b, 0o600) }

// removeFile deletes one stored file; errors are ignored (a file that
// cannot be removed is refused again on the next load).
func (s *store) removeFile(sub, name string) { os.Remove(filepath.Join(s.dir, sub, name)) }

// readFileIfExists returns nil, nil for a missing file.
func readFileIfExists(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
