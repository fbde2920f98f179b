package onionproxy

import (
	"testing"
	"time"
)

// TestCleanRefillWaitsForSpare: a stream claiming a clean circuit while
// another of its class is ready starts the replacement only after
// refillDelay (its first round trips keep the CPU); claiming the last one
// starts it at once; and the pool is full again afterwards.
func TestCleanRefillWaitsForSpare(t *testing.T) {
	_, rp := startNetAndProxy(t, func(c *Config) { c.Circuits.Preemptive = 2 })
	settle(t, rp)
	m := rp.circs
	waitFor(t, "no refill pending", 50*refillDelay, func() bool { return !m.refillArmed.Load() })

	m.mu.Lock()
	now := m.now()
	var clean []*circ
	for _, c := range m.circs {
		if c.key == "" && c.class == 0 && m.usableLocked(c, now) {
			clean = append(clean, c)
		}
	}
	if len(clean) != 2 {
		m.mu.Unlock()
		t.Fatalf("%d clean circuits after settling, want 2", len(clean))
	}
	before := m.kicks.Load()
	clean[0].key = "first"
	m.claimedCleanLocked(0, now)
	deferred := m.kicks.Load() == before && m.refillArmed.Load()
	clean[1].key = "second"
	m.claimedCleanLocked(0, now)
	immediate := m.kicks.Load() == before+1
	m.mu.Unlock()
	if !deferred {
		t.Fatal("claiming a clean circuit with a spare left kicked the builder at once")
	}
	if !immediate {
		t.Fatal("claiming the last clean circuit did not kick the builder at once")
	}
	start := time.Now()
	waitFor(t, "the delayed kick", 50*refillDelay, func() bool { return !m.refillArmed.Load() })
	if d := time.Since(start); d < refillDelay/2 {
		t.Fatalf("the delayed kick came after %v, want about %v", d, refillDelay)
	}
	settle(t, rp) // two clean circuits again
}
