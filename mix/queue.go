package mix

import (
	"context"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// initialRing is the starting capacity of a queue's ring; it doubles up to
// the queue's limit, so an idle circuit costs little memory.
const initialRing = 8

// Queue is one circuit-direction's FIFO of items waiting for their departure
// time. One goroutine (the circuit's reader) pushes; one (its writer) waits on
// Ready and calls PopReady. Several pushers are allowed; items of one queue
// always leave in push order.
type Queue[T any] struct {
	c     core
	items []T // ring parallel to c.stamps; guarded by c.mu
}

// core is the part of a queue the scheduler works with; it does not depend
// on the item type.
type core struct {
	s         *Scheduler
	spec      ClassSpec
	limit     int
	ready     chan struct{} // capacity 1; signalled when cells are released
	space     chan struct{} // capacity 1; signalled when a blocked Push may proceed
	done      chan struct{} // closed by Close
	delayObs  prometheus.Observer
	cappedCtr prometheus.Counter

	mu        sync.Mutex // guards the following fields
	stamps    []stamp    // ring of len a power of two
	head      int        // ring index of the oldest held cell
	n         int        // held cells: [head, head+n)
	released  int        // the first released cells of the held ones have reached their departure time
	lastDep   int64      // departure time of the last pushed cell
	scheduled bool       // in the heap, or popped by tick and not yet put back or dropped
	signalled bool       // Ready was signalled since the last PopReady: no need to again
	closed    bool
	waiters   int // Push calls blocked on space

	hidx int   // position in Scheduler.heap, -1 if absent; guarded by Scheduler.mu
	key  int64 // heap key: a departure time no later than the first waiting cell's; guarded by Scheduler.mu
}

// stamp is one held cell's times, in nanoseconds since the scheduler's epoch.
type stamp struct {
	arrival   int64
	departure int64
}

// NewQueue returns an empty queue on s whose cells are delayed according to
// spec and which holds at most limit cells. It panics if limit < 1 or spec
// fails Validate (the relay validates its classes when loading its config).
func NewQueue[T any](s *Scheduler, spec ClassSpec, limit int) *Queue[T] {
	if limit < 1 {
		panic(fmt.Sprintf("mix: queue limit %d, want at least 1", limit))
	}
	if err := spec.Validate(); err != nil {
		panic(err)
	}
	spec = spec.WithDefaults()
	ring := 1
	for ring < limit && ring < initialRing {
		ring *= 2
	}
	q := &Queue[T]{
		c: core{
			s:      s,
			spec:   spec,
			limit:  limit,
			ready:  make(chan struct{}, 1),
			space:  make(chan struct{}, 1),
			done:   make(chan struct{}),
			stamps: make([]stamp, ring),
			hidx:   -1,
		},
		items: make([]T, ring),
	}
	if m := s.metrics; m != nil {
		q.c.delayObs = m.delay.WithLabelValues(spec.Class.String())
		q.c.cappedCtr = m.capped.WithLabelValues(spec.Class.String())
	}
	return q
}

// Push stamps item with its departure time, max(the previous cell's
// departure, now + a delay drawn for the queue's class), and queues it. While
// the queue already holds limit items it blocks (backpressure; it never
// drops) until PopReady makes room, the queue is closed (ErrClosed) or ctx is
// done (ctx's error, wrapped).
func (q *Queue[T]) Push(ctx context.Context, item T) error {
	c := &q.c
	s := c.s
	blocked := false
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return ErrClosed
		}
		if c.n < c.limit {
			break
		}
		if err := ctx.Err(); err != nil {
			c.mu.Unlock()
			return fmt.Errorf("mix: push to full queue: %w", err)
		}
		c.waiters++
		c.mu.Unlock()
		if !blocked && s.metrics != nil {
			s.metrics.blocked.Inc()
		}
		blocked = true
		select {
		case <-c.space:
		case <-c.done:
		case <-ctx.Done():
		}
		c.mu.Lock()
		c.waiters--
	}

	now := s.now()
	dep := now
	if c.spec.Mean > 0 {
		d, capped := s.sample(c.spec)
		if capped && c.cappedCtr != nil {
			c.cappedCtr.Inc()
		}
		dep += int64(d)
	}
	if dep < c.lastDep {
		dep = c.lastDep
	}
	c.lastDep = dep

	if c.n == len(c.stamps) {
		q.growLocked()
	}
	i := (c.head + c.n) & (len(c.stamps) - 1)
	q.items[i] = item
	c.stamps[i] = stamp{arrival: now, departure: dep}
	c.n++
	s.held.Add(1)
	waiting := c.n - 1 - c.released // before this cell
	if c.spec.Mean > 0 {
		// Undelayed cells are not mixed: they stay out of the anonymity
		// bookkeeping (see Metrics).
		s.noteWaiting(waiting, waiting+1)
	}
	if waiting == 0 {
		switch {
		case dep <= now:
			c.releaseDueLocked(now, true)
		case !c.scheduled:
			c.scheduled = true
			s.schedule(c, dep, true)
		}
	}
	if c.waiters > 0 && c.n < c.limit {
		signal(c.space)
	}
	c.mu.Unlock()
	return nil
}

// growLocked doubles the ring, keeping the held items in order.
func (q *Queue[T]) growLocked() {
	c := &q.c
	old := len(c.stamps)
	stamps := make([]stamp, 2*old)
	items := make([]T, 2*old)
	for i := 0; i < c.n; i++ {
		j := (c.head + i) & (old - 1)
		stamps[i] = c.stamps[j]
		items[i] = q.items[j]
	}
	c.stamps, q.items, c.head = stamps, items, 0
}

// Ready is signalled when at least one item has reached its departure time.
// A signal may be spurious (PopReady then returns nothing): a writer waits on
// Ready, calls PopReady, and writes whatever it got.
func (q *Queue[T]) Ready() <-chan struct{} { return q.c.ready }

// Done is closed when the queue is closed.
func (q *Queue[T]) Done() <-chan struct{} { return q.c.done }

// Len returns the number of items the queue holds, waiting or released.
func (q *Queue[T]) Len() int {
	q.c.mu.Lock()
	defer q.c.mu.Unlock()
	return q.c.n
}

// PopReady appends every item whose departure time has come, in push
// order, to dst and returns the slice. It never blocks.
func (q *Queue[T]) PopReady(dst []T) []T {
	c := &q.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return dst
	}
	if c.n > c.released {
		// Take what has come due since Run last looked, without a signal:
		// the caller is already here.
		c.releaseDueLocked(c.s.now(), false)
	}
	c.signalled = false // releases from now on must signal again
	k := c.released
	if k == 0 {
		return dst
	}
	mask := len(c.stamps) - 1
	var zero T
	for i := 0; i < k; i++ {
		j := (c.head + i) & mask
		dst = append(dst, q.items[j])
		q.items[j] = zero
	}
	c.head = (c.head + k) & mask
	c.n -= k
	c.released = 0
	c.s.held.Add(-int64(k))
	if c.waiters > 0 {
		signal(c.space)
	}
	return dst
}

// Close releases the queue: its held items are discarded (and counted in
// the metrics), it leaves the scheduler, blocked and later Push calls return
// ErrClosed. It returns the discarded items, in push order, so the caller
// can recycle their buffers. Closing again returns nil.
func (q *Queue[T]) Close() []T {
	c := &q.c
	s := c.s
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.done)
	s.unschedule(c)
	var out []T
	if c.n > 0 {
		out = make([]T, 0, c.n)
		mask := len(c.stamps) - 1
		for i := 0; i < c.n; i++ {
			out = append(out, q.items[(c.head+i)&mask])
		}
		s.held.Add(-int64(c.n))
		if c.spec.Mean > 0 {
			s.noteWaiting(c.n-c.released, 0)
		}
		if s.metrics != nil {
			s.metrics.discarded.Add(float64(c.n))
		}
	}
	c.n, c.released, c.head = 0, 0, 0
	c.stamps, q.items = nil, nil
	return out
}

// releaseDueLocked marks as released the waiting cells whose departure time
// is at or before now, records their measurements and, if signal is set,
// signals Ready.
func (c *core) releaseDueLocked(now int64, signalReady bool) {
	mask := len(c.stamps) - 1
	waiting := c.n - c.released
	k := 0
	for k < waiting && c.stamps[(c.head+c.released+k)&mask].departure <= now {
		k++
	}
	if k == 0 {
		return
	}
	if m := c.s.metrics; m != nil && c.spec.Mean > 0 {
		// The departing cells were in the pool until now: measure the pool
		// as it was, then take them out.
		others, entropy := c.s.anonymity()
		m.others.observeN(others, k)
		m.entropy.observeN(entropy, k)
		for i := 0; i < k; i++ {
			st := c.stamps[(c.head+c.released+i)&mask]
			c.delayObs.Observe(float64(now-st.arrival) / 1e9)
		}
		c.s.noteWaiting(waiting, waiting-k)
	}
	c.released += k
	if signalReady && !c.signalled {
		c.signalled = true
		signal(c.ready)
	}
}

// signal does a non-blocking send on a capacity-1 channel.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
