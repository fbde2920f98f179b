package mix

import (
	crand "crypto/rand"
	"math/rand/v2"
	"time"
)

// Link padding defaults: like Tor's netflow padding, an idle link sends a
// PADDING cell after a timeout drawn uniformly from [1.5 s, 9.5 s].
const (
	DefaultPaddingLow  = 1500 * time.Millisecond
	DefaultPaddingHigh = 9500 * time.Millisecond
)

// NextPaddingDelay draws a padding timeout uniformly from [lo, hi]. It
// returns lo when hi <= lo.
func NextPaddingDelay(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}

// IdleTimer tells a link writer when its link has been idle long enough to
// send a PADDING cell. Each idle period gets a fresh timeout from
// NextPaddingDelay(lo, hi), counted from the last cell sent. Marking a sent
// cell costs one clock read and no timer operation: the timer is re-armed
// lazily when it fires.
//
// It belongs to the writer goroutine and is not safe for concurrent use:
//
//	t := mix.NewIdleTimer(clock, nil, mix.DefaultPaddingLow, mix.DefaultPaddingHigh)
//	defer t.Stop()
//	for {
//		select {
//		case batch := <-cells:
//			write(batch)
//			t.Sent()
//		case <-t.C():
//			if t.Fired() {
//				writePadding()
//			}
//		}
//	}
type IdleTimer struct {
	clock   Clock
	rng     *rand.Rand
	lo, hi  time.Duration
	timer   Timer
	last    time.Time // when the last cell was sent
	armedAt time.Time // the idle period the timer measures began here
	timeout time.Duration
}

// NewIdleTimer returns a started IdleTimer that treats the link as having
// just sent a cell. clock nil means SystemClock(); r nil means a ChaCha8
// generator seeded from crypto/rand (the timeouts must be unpredictable).
func NewIdleTimer(clock Clock, r *rand.Rand, lo, hi time.Duration) *IdleTimer {
	if clock == nil {
		clock = SystemClock()
	}
	if r == nil {
		var seed [32]byte
		crand.Read(seed[:])
		r = rand.New(rand.NewChaCha8(seed))
	}
	t := &IdleTimer{clock: clock, rng: r, lo: lo, hi: hi}
	t.last = clock.Now()
	t.armedAt = t.last
	t.timeout = NextPaddingDelay(r, lo, hi)
	t.timer = clock.NewTimer(t.armedAt.Add(t.timeout))
	return t
}

// C delivers when the timer fires; the writer must then call Fired.
func (t *IdleTimer) C() <-chan time.Time { return t.timer.C() }

// Sent records that the link just carried a cell (a PADDING cell the writer
// sent because Fired said so need not be recorded).
func (t *IdleTimer) Sent() { t.last = t.clock.Now() }

// Fired is called after C delivered. It reports whether the link has been
// idle for the whole timeout, in which case the writer sends PADDING now. In
// both cases it re-arms the timer for the next idle period.
func (t *IdleTimer) Fired() bool {
	now := t.clock.Now()
	if t.last.After(t.armedAt) {
		// Cells went out since the timer was armed: the idle period began
		// at the last of them. Give it a fresh timeout.
		t.armedAt = t.last
		t.timeout = NextPaddingDelay(t.rng, t.lo, t.hi)
		if at := t.armedAt.Add(t.timeout); at.After(now) {
			t.timer.Reset(at)
			return false
		}
	}
	// Idle for the full timeout: pad, and start a new idle period now.
	t.last = now
	t.armedAt = now
	t.timeout = NextPaddingDelay(t.rng, t.lo, t.hi)
	t.timer.Reset(now.Add(t.timeout))
	return true
}

// Stop stops the timer.
func (t *IdleTimer) Stop() { t.timer.Stop() }
