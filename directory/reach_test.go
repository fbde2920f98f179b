package directory

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/chive-net/chive/netdoc"
)

// TestReachability: a test counts for 1.5 periods; failing to connect does
// not erase a recent success, another identity at the address does.
func TestReachability(t *testing.T) {
	a := fixedAuthority(t, 0, "a1")
	relay := startRelay(t, false)
	hold := func(raw []byte) heldDesc {
		t.Helper()
		if st, msg := a.acceptDescriptor(raw); st != 200 {
			t.Fatalf("upload: %d %s", st, msg)
		}
		d, err := netdoc.ParseDescriptorUnverified(raw)
		if err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.descs[d.ID]
	}
	reachable := func(h heldDesc, at time.Time) bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.reachableLocked(h, at)
	}
	test := func(h heldDesc) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.testOne(ctx, h.d)
	}
	now := time.Now()
	good := hold(relay.descriptor(t, "good"))
	if reachable(good, now) {
		t.Fatal("Running before any test")
	}
	test(good)
	if !reachable(good, now) || !reachable(good, now.Add(a.period)) {
		t.Error("a reached relay is not Running within a period")
	}
	if reachable(good, now.Add(2*a.period)) {
		t.Error("a test two periods old still counts")
	}

	// Gone: the failed test keeps the recent success, which then ages out.
	relay.stop()
	test(good)
	if !reachable(good, time.Now()) {
		t.Error("one failed test dropped a relay reached moments ago")
	}
	if got := value(t, a.m.reachability.WithLabelValues("unreachable")); got != 1 {
		t.Errorf("unreachable tests = %v, want 1", got)
	}

	// Another identity at the address: the success is forgotten at once.
	other := startRelay(t, false)
	moved := hold(signedDescriptor(t, relay.key, "good", other.addr, relay.onion.Public(), false, time.Now().Add(time.Second)))
	a.mu.Lock()
	a.reach[moved.d.ID] = reachResult{addr: moved.d.Addr, lastOK: time.Now()}
	a.mu.Unlock()
	test(moved)
	if reachable(moved, time.Now()) {
		t.Error("a relay presenting another identity is still Running")
	}
	if got := value(t, a.m.reachability.WithLabelValues("wrong_identity")); got != 1 {
		t.Errorf("wrong_identity tests = %v, want 1", got)
	}
	// A result for an address the descriptor no longer names is ignored.
	if reachable(heldDesc{d: &netdoc.Descriptor{ID: moved.d.ID, Addr: netip.MustParseAddrPort("127.0.0.1:1")}}, time.Now()) {
		t.Error("a result for another address counts")
	}
}
