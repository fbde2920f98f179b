package mix

import (
	"testing"
	"time"
)

func TestNextPaddingDelay(t *testing.T) {
	r := seededRand(1)
	lo, hi := DefaultPaddingLow, DefaultPaddingHigh
	const n = 5000
	samples := make([]float64, n)
	for i := range samples {
		d := NextPaddingDelay(r, lo, hi)
		if d < lo || d > hi {
			t.Fatalf("delay %v outside [%v, %v]", d, lo, hi)
		}
		samples[i] = float64(d)
	}
	uniform := func(x float64) float64 { return min(max((x-float64(lo))/float64(hi-lo), 0), 1) }
	if d, crit := ksStatistic(samples, uniform, nil), ksCritical01(n); d > crit {
		t.Errorf("KS against uniform [%v, %v]: D = %.4f > %.4f", lo, hi, d, crit)
	}
	// A shifted range must fail the same test, or it proves nothing.
	shifted := func(x float64) float64 {
		return min(max((x-float64(lo+time.Second))/float64(hi-lo), 0), 1)
	}
	if d, crit := ksStatistic(samples, shifted, nil), ksCritical01(n); d <= crit {
		t.Errorf("KS against a shifted range passed: D = %.4f", d)
	}
	if got := NextPaddingDelay(r, time.Second, time.Second); got != time.Second {
		t.Errorf("lo == hi: got %v", got)
	}
	if got := NextPaddingDelay(r, 2*time.Second, time.Second); got != 2*time.Second {
		t.Errorf("hi < lo: got %v, want lo", got)
	}
}

// nextFire advances the fake clock to the idle timer's deadline and checks
// that it fired.
func nextFire(t *testing.T, fc *FakeClock, it *IdleTimer) time.Time {
	t.Helper()
	d, ok := fc.NextDeadline()
	if !ok {
		t.Fatal("idle timer not armed")
	}
	fc.AdvanceTo(d)
	select {
	case <-it.C():
	default:
		t.Fatal("idle timer did not fire at its deadline")
	}
	return d
}

func TestIdleTimer(t *testing.T) {
	lo, hi := DefaultPaddingLow, DefaultPaddingHigh
	fc := NewFakeClock(testEpoch)
	it := NewIdleTimer(fc, seededRand(2), lo, hi)
	defer it.Stop()

	// An idle link pads after a timeout in [lo, hi].
	start := fc.Now()
	at := nextFire(t, fc, it)
	if d := at.Sub(start); d < lo || d > hi {
		t.Errorf("first timeout %v outside [%v, %v]", d, lo, hi)
	}
	if !it.Fired() {
		t.Error("Fired() = false on an idle link")
	}

	// Traffic before the deadline postpones the padding: the idle period
	// restarts at the last cell, with a fresh timeout.
	d, _ := fc.NextDeadline()
	fc.AdvanceTo(d.Add(-time.Second / 2))
	it.Sent()
	lastSent := fc.Now()
	nextFire(t, fc, it)
	if it.Fired() {
		t.Error("Fired() = true though a cell went out during the timeout")
	}
	at = nextFire(t, fc, it)
	if d := at.Sub(lastSent); d < lo || d > hi {
		t.Errorf("timeout after traffic %v outside [%v, %v]", d, lo, hi)
	}
	if !it.Fired() {
		t.Error("Fired() = false after a full idle timeout")
	}

	// The timeouts vary from one idle period to the next.
	seen := map[time.Duration]bool{}
	for range 20 {
		before := fc.Now()
		at := nextFire(t, fc, it)
		if !it.Fired() {
			t.Fatal("Fired() = false on an idle link")
		}
		seen[at.Sub(before)] = true
	}
	if len(seen) < 15 {
		t.Errorf("only %d distinct timeouts in 20 idle periods", len(seen))
	}
}

func TestFakeClockTimers(t *testing.T) {
	fc := NewFakeClock(testEpoch)
	a := fc.NewTimer(testEpoch.Add(2 * time.Second))
	b := fc.NewTimer(testEpoch.Add(time.Second))
	if d, ok := fc.NextDeadline(); !ok || !d.Equal(testEpoch.Add(time.Second)) {
		t.Errorf("NextDeadline = %v, %v", d, ok)
	}
	fc.Advance(1500 * time.Millisecond)
	select {
	case got := <-b.C():
		if !got.Equal(testEpoch.Add(time.Second)) {
			t.Errorf("b fired with %v, want its deadline", got)
		}
	default:
		t.Error("b did not fire")
	}
	select {
	case <-a.C():
		t.Error("a fired early")
	default:
	}
	// Reset discards a pending value and re-arms from now.
	fc.Advance(time.Second)
	a.Reset(fc.Now().Add(time.Second))
	select {
	case <-a.C():
		t.Error("stale value after Reset")
	default:
	}
	a.Stop()
	fc.Advance(time.Hour)
	select {
	case <-a.C():
		t.Error("stopped timer fired")
	default:
	}
	if _, ok := fc.NextDeadline(); ok {
		t.Error("a timer is still armed")
	}
	if got, want := fc.Now(), testEpoch.Add(time.Hour+2500*time.Millisecond); !got.Equal(want) {
		t.Errorf("Now() = %v, want %v", got, want)
	}
	// A deadline not after now fires at once.
	c := fc.NewTimer(fc.Now())
	select {
	case <-c.C():
	default:
		t.Error("NewTimer(now) did not fire")
	}
}
