package onionproxy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/chive-net/chive/netdoc"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func guardCfg() GuardsConfig {
	var c Config
	c.setDefaults()
	return c.Guards
}

// guardNet is n Guard relays g0..g(n-1) plus non-guards.
func guardNet(t testing.TB, n int) *netdoc.Consensus {
	var rs []fakeRelay
	for i := 0; i < n; i++ {
		rs = append(rs, fakeRelay{name: fmt.Sprintf("g%d", i), ip: fmt.Sprintf("10.%d.0.1", i), bw: 100, flags: guardFlags})
	}
	rs = append(rs, fakeRelay{name: "plain", ip: "10.200.0.1", bw: 10000})
	return fakeConsensus(t, rs)
}

func TestGuardSampleAndPrimary(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	cfg := guardCfg()
	cfg.SampleSize, cfg.Primary = 5, 2
	g := newGuardSet(cfg, "", clk.Now, newSelector(), zap.NewNop())
	g.update(guardNet(t, 8))
	st := g.status()
	if len(st) != 5 {
		t.Fatalf("sampled %d guards, want 5", len(st))
	}
	primaries := 0
	for _, s := range st {
		if s.ID == relayID("plain").String() {
			t.Fatal("a relay without the Guard flag was sampled")
		}
		if s.Primary {
			primaries++
		}
	}
	if primaries != 2 {
		t.Errorf("%d primary guards, want 2", primaries)
	}
	c := g.candidates()
	if len(c) != 5 || !g.isPrimary(c[0]) || !g.isPrimary(c[1]) {
		t.Fatalf("candidates %v: the primaries should come first", c)
	}

	// The first primary fails: it goes to the back, stays sampled and
	// primary (not replaced at the first hiccup).
	first := c[0]
	g.failed(first)
	c2 := g.candidates()
	if c2[0] != c[1] || c2[len(c2)-1] != first {
		t.Fatalf("after a failure: candidates %v, want %v first and the failed guard last", c2, c[1])
	}
	if !g.isPrimary(first) {
		t.Error("a guard that failed once lost its primary place")
	}
	// After the backoff it is tried first again.
	clk.Add(cfg.RetryInitial + time.Second)
	if c3 := g.candidates(); c3[0] != first {
		t.Errorf("after the retry delay: candidates start with %v, want %v", c3[0], first)
	}
	// Consecutive failures back off exponentially, up to RetryMax.
	g.failed(first)
	g.failed(first)
	st = g.status()
	for _, s := range st {
		if s.ID == first.String() {
			if s.Reachable != "no" || s.RetryAt == nil || s.RetryAt.Sub(clk.Now()) != 4*cfg.RetryInitial {
				t.Errorf("after 3 failures: %+v, want retry in %v", s, 4*cfg.RetryInitial)
			}
		}
	}
	// A success makes it reachable and confirmed.
	g.succeeded(first)
	if c4 := g.candidates(); c4[0] != first {
		t.Errorf("after success: %v first, want %v", c4[0], first)
	}
}

func TestGuardConfirmedComeFirst(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	cfg := guardCfg()
	cfg.SampleSize, cfg.Primary = 4, 2
	g := newGuardSet(cfg, "", clk.Now, newSelector(), zap.NewNop())
	g.update(guardNet(t, 4))
	c := g.candidates()
	// Primaries 0 and 1 are down; the third guard carries a circuit and
	// becomes confirmed: from then on it is the first primary.
	g.failed(c[0])
	g.failed(c[1])
	g.succeeded(c[2])
	if !g.isPrimary(c[2]) {
		t.Fatal("the confirmed guard is not primary")
	}
	clk.Add(time.Hour)
	if got := g.candidates(); got[0] != c[2] {
		t.Errorf("candidates %v, want the confirmed guard %v first", got, c[2])
	}
}

func TestGuardUnlistedAndExpiry(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	cfg := guardCfg()
	cfg.SampleSize = 3
	g := newGuardSet(cfg, "", clk.Now, newSelector(), zap.NewNop())
	full := guardNet(t, 3)
	g.update(full)
	gone := g.candidates()[0]
	// A consensus without it: unlisted, not a candidate, a replacement is
	// not possible (no other guard) but it stays sampled for a while.
	var rs []fakeRelay
	for i := 0; i < 3; i++ {
		if relayID(fmt.Sprintf("g%d", i)) != gone {
			rs = append(rs, fakeRelay{name: fmt.Sprintf("g%d", i), ip: fmt.Sprintf("10.%d.0.1", i), bw: 100, flags: guardFlags})
		}
	}
	less := fakeConsensus(t, rs)
	g.update(less)
	if slices.Contains(g.candidates(), gone) {
		t.Fatal("an unlisted guard is still a candidate")
	}
	if len(g.status()) != 3 {
		t.Fatal("the unlisted guard was dropped at once")
	}
	// Listed again: back.
	g.update(full)
	if !slices.Contains(g.candidates(), gone) {
		t.Fatal("a listed-again guard is not a candidate")
	}
	g.update(less)
	clk.Add(cfg.RemoveUnlistedAfter + time.Hour)
	g.update(less)
	if len(g.status()) != 2 {
		t.Errorf("%d guards: the long-unlisted one should be dropped", len(g.status()))
	}
	clk.Add(cfg.Lifetime)
	g.update(less)
	// Every guard was sampled more than Lifetime ago: each is dropped and
	// the sample drawn again.
	if len(g.status()) != 2 {
		t.Errorf("after the lifetime: %d guards", len(g.status()))
	}
	g.mu.Lock()
	for _, r := range g.guards {
		if !r.Sampled.Equal(clk.Now()) {
			t.Errorf("guard %s sampled %v, want a fresh sample at %v", r.Nickname, r.Sampled, clk.Now())
		}
	}
	g.mu.Unlock()
}

func TestGuardPersistence(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	cfg := guardCfg()
	g := newGuardSet(cfg, dir, clk.Now, newSelector(), zap.NewNop())
	g.update(guardNet(t, 6))
	want := g.candidates()
	g.succeeded(want[0])
	if err := g.save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, GuardStateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	g2 := newGuardSet(cfg, dir, clk.Now, newSelector(), zap.NewNop())
	if err := g2.load(); err != nil {
		t.Fatal(err)
	}
	g2.update(guardNet(t, 6))
	if got := g2.candidates(); !slices.Equal(got, want) {
		t.Errorf("after reload: %v, want %v", got, want)
	}
	// A corrupt file is set aside, not fatal.
	os.WriteFile(filepath.Join(dir, GuardStateFile), []byte("{not json"), 0o600)
	g3 := newGuardSet(cfg, dir, clk.Now, newSelector(), zap.NewNop())
	if err := g3.load(); err != nil {
		t.Fatalf("corrupt state: %v, want a fresh start", err)
	}
	if _, err := os.Stat(filepath.Join(dir, GuardStateFile+".corrupt")); err != nil {
		t.Errorf("corrupt file not set aside: %v", err)
	}
}
