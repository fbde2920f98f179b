package mix

import (
	"context"
	"sync"
	"time"
)

// FakeClock is a Clock for tests whose time moves only when Advance or
// AdvanceTo is called. Its timers fire, in deadline order, during the call
// that moves time past their deadlines. It is safe for concurrent use.
type FakeClock struct {
	mu     sync.Mutex    // guards the following fields
	now    time.Time     // the current fake time
	armed  []*fakeTimer  // timers waiting to fire
	change chan struct{} // closed and replaced whenever a timer is armed
}

// NewFakeClock returns a fake clock reading start.
func NewFakeClock(start time.Time) *FakeClock {
	return &FakeClock{now: start, change: make(chan struct{})}
}

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires once the fake time reaches at.
func (c *FakeClock) NewTimer(at time.Time) Timer {
	t := &fakeTimer{clock: c, ch: make(chan time.Time, 1), index: -1}
	t.Reset(at)
	return t
}

// Advance moves the fake time forward by d and fires the timers that fall due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceToLocked(c.now.Add(d))
}

// AdvanceTo moves the fake time forward to t (never backward) and fires the
// timers that fall due.
func (c *FakeClock) AdvanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceToLocked(t)
}

func (c *FakeClock) advanceToLocked(t time.Time) {
	for {
		next := c.earliestLocked()
		if next < 0 || c.armed[next].deadline.After(t) {
			break
		}
		tm := c.armed[next]
		if tm.deadline.After(c.now) {
			c.now = tm.deadline
		}
		c.removeLocked(next)
		tm.ch <- c.now // never blocks: Reset and Stop drain the channel
	}
	if t.After(c.now) {
		c.now = t
	}
}

// NextDeadline returns the earliest deadline of an armed timer.
func (c *FakeClock) NextDeadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := c.earliestLocked(); i >= 0 {
		return c.armed[i].deadline, true
	}
	return time.Time{}, false
}

// WaitForTimer blocks until at least one timer is armed and returns the
// earliest deadline, or returns ctx's error.
func (c *FakeClock) WaitForTimer(ctx context.Context) (time.Time, error) {
	for {
		c.mu.Lock()
		if i := c.earliestLocked(); i >= 0 {
			d := c.armed[i].deadline
			c.mu.Unlock()
			return d, nil
		}
		ch := c.change
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

func (c *FakeClock) earliestLocked() int {
	best := -1
	for i, t := range c.armed {
		if best < 0 || t.deadline.Before(c.armed[best].deadline) {
			best = i
		}
	}
	return best
}

func (c *FakeClock) removeLocked(i int) {
	c.armed[i].index = -1
	last := len(c.armed) - 1
	if i != last {
		c.armed[i] = c.armed[last]
		c.armed[i].index = i
	}
	c.armed[last] = nil
	c.armed = c.armed[:last]
}

type fakeTimer struct {
	clock    *FakeClock
	ch       chan time.Time // capacity 1
	deadline time.Time      // guarded by clock.mu
	index    int            // position in clock.armed, -1 when not armed; guarded by clock.mu
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Reset(at time.Time) {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	t.disarmLocked()
	if !at.After(c.now) {
		t.ch <- c.now
		return
	}
	t.deadline = at
	t.index = len(c.armed)
	c.armed = append(c.armed, t)
	close(c.change)
	c.change = make(chan struct{})
}

func (t *fakeTimer) Stop() {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.disarmLocked()
}

func (t *fakeTimer) disarmLocked() {
	if t.index >= 0 && t.index < len(t.clock.armed) && t.clock.armed[t.index] == t {
		t.clock.removeLocked(t.index)
	}
	t.index = -1
	select {
	case <-t.ch:
	default:
	}
}
