package mix

import "time"

// Clock is the scheduler's source of time and timers: SystemClock in a relay,
// a FakeClock in tests.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a started timer that fires once at time at.
	NewTimer(at time.Time) Timer
}

// Timer is a one-shot timer with Go 1.23 semantics: after Reset or Stop
// returns, no value from before the call is received from C.
//
// Deadlines are absolute so that a timer armed from a time read a moment
// earlier is not late by that moment: with a fake clock the moment can be a
// jump of any size, and a relative duration would then lose the wake-up.
type Timer interface {
	// C delivers the time when the timer fires.
	C() <-chan time.Time
	// Reset re-arms the timer to fire at time at (at once if at has passed).
	Reset(at time.Time)
	// Stop disarms the timer.
	Stop()
}

// SystemClock returns the real clock (time.Now and time.NewTimer).
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(at time.Time) Timer { return systemTimer{time.NewTimer(time.Until(at))} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time { return t.t.C }
func (t systemTimer) Reset(at time.Time)  { t.t.Reset(time.Until(at)) }
func (t systemTimer) Stop()               { t.t.Stop() }
