package onionproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/chive-net/chive/internal/fsutil"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

// GuardStateFile is the guard state's file name in the data directory.
const GuardStateFile = "guards.json"

// guardStateVersion is the version of the guard state file's format.
const guardStateVersion = 1

// maxGuardState bounds the guard state file we read.
const maxGuardState = 1 << 20

// guard is one sampled entry guard. The sample order is the slice order.
type guard struct {
	ID        layercrypt.RelayID `json:"id"`
	Nickname  string             `json:"nickname,omitempty"`
	Sampled   time.Time          `json:"sampled"`
	Confirmed time.Time          `json:"confirmed,omitzero"`      // first circuit built through it
	Unlisted  time.Time          `json:"unlisted_since,omitzero"` // missing from the consensus since

	// Reachability is kept in memory only: after a restart every guard is
	// tried again, as in Tor.
	failures int       // consecutive failures
	retryAt  time.Time // not tried before this, unless nothing else works
	lastOK   time.Time
}

type guardFile struct {
	Version int      `json:"version"`
	Guards  []*guard `json:"guards"`
}

// guardSet is the client's entry guards: a persistent sample of
// Guard-flagged relays drawn by bandwidth, of which the first few (confirmed
// ones first) are primary and tried in order. A guard that fails is left
// alone for a while (exponential backoff) but stays in the sample: it is not
// replaced at the first hiccup.
type guardSet struct {
	cfg  GuardsConfig
	path string // "" for no persistence
	now  func() time.Time
	log  *zap.Logger
	sel  *selector

	mu     sync.Mutex // guards the following fields
	guards []*guard
	dirty  bool // needs saving
}

func newGuardSet(cfg GuardsConfig, dataDir string, now func() time.Time, sel *selector, log *zap.Logger) *guardSet {
	g := &guardSet{cfg: cfg, now: now, log: log, sel: sel}
	if dataDir != "" {
		g.path = filepath.Join(dataDir, GuardStateFile)
	}
	return g
}

// load reads the guard state. A missing file is a fresh start; a corrupt
// one is set aside (renamed) so that a bad file never stops the client.
func (g *guardSet) load() error {
	if g.path == "" {
		return nil
	}
	b, err := readFileMax(g.path, maxGuardState)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("guard state: %w", err)
	}
	var f guardFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != guardStateVersion {
		bad := g.path + ".corrupt"
		os.Rename(g.path, bad)
		if err == nil {
			err = fmt.Errorf("version %d, want %d", f.Version, guardStateVersion)
		}
		g.log.Warn("guard state unreadable; starting with new guards", zap.String("moved_to", bad), zap.Error(err))
		return nil
	}
	seen := map[layercrypt.RelayID]bool{}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.guards = g.guards[:0]
	for _, r := range f.Guards {
		if r == nil || r.ID.IsZero() || seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		g.guards = append(g.guards, r)
	}
	return nil
}

func readFileMax(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: more than %d bytes", path, max)
	}
	return b, nil
}

// save writes the guard state atomically (0600) if it changed.
func (g *guardSet) save() error {
	if g.path == "" {
		return nil
	}
	g.mu.Lock()
	if !g.dirty {
		g.mu.Unlock()
		return nil
	}
	b, err := json.MarshalIndent(guardFile{Version: guardStateVersion, Guards: g.guards}, "", "  ")
	g.dirty = false
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("guard state: %w", err)
	}
	if err := writeFileAtomic(g.path, append(b, '\n'), 0o600); err != nil {
		g.mu.Lock()
		g.dirty = true
		g.mu.Unlock()
		return fmt.Errorf("guard state: %w", err)
	}
	return nil
}

// writeFileAtomic writes b to path crash-safely.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	return fsutil.WriteFileAtomic(path, b, perm)
}

// eligibleGuard reports whether a consensus entry may be sampled as a guard.
func eligibleGuard(e *netdoc.ConsensusEntry) bool {
	return usable(e) && e.Flags.Has(netdoc.FlagGuard)
}

// update brings the sample up to date with a new consensus: marks guards
// listed or unlisted, drops expired ones and samples more while fewer than
// SampleSize are listed.
func (g *guardSet) update(cons *netdoc.Consensus) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	kept := g.guards[:0]
	for _, r := range g.guards {
		e, ok := cons.Relay(r.ID)
		listed := ok && eligibleGuard(e)
		switch {
		case listed && !r.Unlisted.IsZero():
			r.Unlisted = time.Time{}
			g.dirty = true
		case !listed && r.Unlisted.IsZero():
			r.Unlisted = now
			g.dirty = true
		}
		if ok && r.Nickname != e.Nickname {
			r.Nickname = e.Nickname
			g.dirty = true
		}
		if now.Sub(r.Sampled) > g.cfg.Lifetime || (!r.Unlisted.IsZero() && now.Sub(r.Unlisted) > g.cfg.RemoveUnlistedAfter) {
			g.log.Info("guard dropped from the sample", zap.String("guard", r.ID.Short()), zap.Bool("unlisted", !r.Unlisted.IsZero()))
			g.dirty = true
			continue
		}
		kept = append(kept, r)
	}
	clear(g.guards[len(kept):])
	g.guards = kept

	listed := 0
	in := map[layercrypt.RelayID]bool{}
	for _, r := range g.guards {
		in[r.ID] = true
		if r.Unlisted.IsZero() {
			listed++
		}
	}
	var cands []*netdoc.ConsensusEntry
	for i := range cons.Relays {
		e := &cons.Relays[i]
		if eligibleGuard(e) && !in[e.ID] {
			cands = append(cands, e)
		}
	}
	for listed < g.cfg.SampleSize && len(cands) > 0 {
		e := g.sel.pickWeighted(cands)
		cands = slices.DeleteFunc(cands, func(x *netdoc.ConsensusEntry) bool { return x == e })
		g.guards = append(g.guards, &guard{ID: e.ID, Nickname: e.Nickname, Sampled: now})
		listed++
		g.dirty = true
	}
}

// orderedLocked returns the listed guards in preference order: confirmed
// ones by confirmation time, then the others in sample order.
func (g *guardSet) orderedLocked() []*guard {
	var conf, rest []*guard
	for _, r := range g.guards {
		if !r.Unlisted.IsZero() {
			continue
		}
		if r.Confirmed.IsZero() {
			rest = append(rest, r)
		} else {
			conf = append(conf, r)
		}
	}
	slices.SortStableFunc(conf, func(a, b *guard) int { return a.Confirmed.Compare(b.Confirmed) })
	return append(conf, rest...)
}

// candidates returns guards to try for a new circuit, best first: the
// primary guards that are not waiting out a failure, then the other
// sampled guards that are not, then (as a last resort, since the network
// may have come back) the waiting ones, soonest retry first.
func (g *guardSet) candidates() []layercrypt.RelayID {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	ord := g.orderedLocked()
	var ready, waiting []*guard
	for _, r := range ord {
		if r.retryAt.After(now) {
			waiting = append(waiting, r)
		} else {
			ready = append(ready, r)
		}
	}
	// ready keeps preference order, so primary guards come first.
	slices.SortStableFunc(waiting, func(a, b *guard) int { return a.retryAt.Compare(b.retryAt) })
	ids := make([]layercrypt.RelayID, 0, len(ord))
	for _, r := range ready {
		ids = append(ids, r.ID)
	}
	for _, r := range waiting {
		ids = append(ids, r.ID)
	}
	return ids
}

// succeeded records that a circuit was built through id.
func (g *guardSet) succeeded(id layercrypt.RelayID) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.guards {
		if r.ID == id {
			if r.failures > 0 {
				g.log.Info("guard reachable again", zap.String("guard", r.ID.Short()))
			}
			r.failures = 0
			r.retryAt = time.Time{}
			r.lastOK = now
			if r.Confirmed.IsZero() {
				r.Confirmed = now
				g.dirty = true
			}
			return
		}
	}
}

// failed records that id could not be reached; it is not tried again
// before a backoff that doubles with each consecutive failure.
func (g *guardSet) failed(id layercrypt.RelayID) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.guards {
		if r.ID == id {
			r.failures++
			wait := g.cfg.RetryInitial
			for i := 1; i < r.failures && wait < g.cfg.RetryMax; i++ {
				wait *= 2
			}
			wait = min(wait, g.cfg.RetryMax)
			r.retryAt = now.Add(wait)
			g.log.Warn("guard unreachable; trying the next one", zap.String("guard", r.ID.Short()),
				zap.Int("failures", r.failures), zap.Duration("retry_in", wait))
			return
		}
	}
}

// GuardStatus is one guard as the status endpoint shows it.
type GuardStatus struct {
	ID        string     `json:"id"`
	Nickname  string     `json:"nickname,omitempty"`
	Primary   bool       `json:"primary"`
	Listed    bool       `json:"listed"`
	Confirmed bool       `json:"confirmed"`
	Reachable string     `json:"reachable"` // "yes", "no" (waiting out a failure) or "unknown"
	Failures  int        `json:"failures,omitempty"`
	RetryAt   *time.Time `json:"retry_at,omitempty"`
}

func (g *guardSet) status() []GuardStatus {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	ord := g.orderedLocked()
	primary := map[*guard]bool{}
	for i, r := range ord {
		if i < g.cfg.Primary {
			primary[r] = true
		}
	}
	// Listed guards in preference order, then the unlisted ones.
	all := append([]*guard(nil), ord...)
	for _, r := range g.guards {
		if !r.Unlisted.IsZero() {
			all = append(all, r)
		}
	}
	out := make([]GuardStatus, 0, len(all))
	for _, r := range all {
		s := GuardStatus{
			ID: r.ID.String(), Nickname: r.Nickname, Primary: primary[r], Listed: r.Unlisted.IsZero(),
			Confirmed: !r.Confirmed.IsZero(), Reachable: "unknown", Failures: r.failures,
		}
		switch {
		case r.retryAt.After(now):
			s.Reachable = "no"
			t := r.retryAt
			s.RetryAt = &t
		case !r.lastOK.IsZero():
			s.Reachable = "yes"
		}
		out = append(out, s)
	}
	return out
}

// isPrimary reports whether id is one of the primary guards now.
func (g *guardSet) isPrimary(id layercrypt.RelayID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, r := range g.orderedLocked() {
		if i >= g.cfg.Primary {
			break
		}
		if r.ID == id {
			return true
		}
	}
	return false
}
