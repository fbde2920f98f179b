package mix

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// initialRing is the capacity of a queue's stamp ring when its first item
// comes (a queue that never held one has none); it doubles up to the
// queue's limit, so an idle circuit costs little memory.
const initialRing = 8

// chunkLen is how many items one chunk of a queue's item storage holds (a
// power of two). Items live in a list of chunks rather than in one ring, so
// a queue holds memory in proportion to the items it holds (16 KiB steps
// for cells), never a doubled ring, and a long queue never reallocates and
// copies its items.
const chunkLen = 32

// chunk is one piece of a queue's item storage.
type chunk[T any] [chunkLen]T

// chunkPool returns the scheduler's pool of emptied chunks of item type T,
// shared by all its queues of that type, so that cells flowing through the
// relay reuse the same few chunks instead of allocating new ones.
func chunkPool[T any](s *Scheduler) *sync.Pool {
	t := reflect.TypeFor[T]()
	if p, ok := s.chunkPools.Load(t); ok {
		return p.(*sync.Pool)
	}
	p, _ := s.chunkPools.LoadOrStore(t, &sync.Pool{New: func() any { return new(chunk[T]) }})
	return p.(*sync.Pool)
}

// Queue is one circuit-direction's FIFO of items waiting for their departure
// time. One goroutine (the circuit's reader) pushes; one (its writer) waits on
// Ready and calls PopReady. Several pushers are allowed; items of one queue
// always leave in push order.
type Queue[T any] struct {
	c core
	// The held items, oldest first, from chunks[0][ihead]: item i of the
	// held ones (whose stamp is c.stamps[(c.head+i)&mask]) is at position
	// ihead+i of the chunk list. Guarded by c.mu.
	chunks []*chunk[T]
	ihead  int
	pool   *sync.Pool // of *chunk[T], shared with the scheduler's other queues of T
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
	stamps    []stamp    // ring of len a power of two, parallel to the queue's items
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
	q := &Queue[T]{
		c: core{
			s:     s,
			spec:  spec,
			limit: limit,
			ready: make(chan struct{}, 1),
			space: make(chan struct{}, 1),
			done:  make(chan struct{}),
			hidx:  -1,
		},
		pool: chunkPool[T](s),
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
// drops) until PopReady or Consume makes room (and, past the scheduler's
// Budget, while the queue holds its share or more), the queue is closed
// (ErrClosed) or ctx is done (ctx's error, wrapped).
func (q *Queue[T]) Push(ctx context.Context, item T) error {
	c := &q.c
	c.mu.Lock()
	if err := q.waitSpaceLocked(ctx); err != nil {
		c.mu.Unlock()
		return err
	}
	now := c.s.now()
	var d [1]int64
	c.s.sampleN(c, d[:])
	q.insertLocked(now, d[:], func(i int) *T { return &item })
	c.mu.Unlock()
	return nil
}

// PushBatch queues items in order, as that many Push calls at one instant
// would: each gets its own delay drawn for the queue's class, and they
// leave in order. It copies the items into the queue's storage, so items may
// be reused when it returns. While the queue is full it blocks as Push
// does; on an error, the items before the failing one are queued.
func (q *Queue[T]) PushBatch(ctx context.Context, items []T) error {
	c := &q.c
	var d [pushChunk]int64
	for len(items) > 0 {
		c.mu.Lock()
		if err := q.waitSpaceLocked(ctx); err != nil {
			c.mu.Unlock()
			return err
		}
		k := min(len(items), c.limit-c.n, pushChunk)
		if c.s.budget > 0 && c.s.held.Load() >= c.s.budget {
			k = min(k, max(c.s.share-c.n, 1)) // over budget: up to the share
		}
		now := c.s.now()
		c.s.sampleN(c, d[:k])
		q.insertLocked(now, d[:k], func(i int) *T { return &items[i] })
		c.mu.Unlock()
		items = items[k:]
	}
	return nil
}

// pushChunk is how many items PushBatch stamps under one lock.
const pushChunk = 64

// waitSpaceLocked waits, releasing c.mu meanwhile, until the queue has room
// for one item. It returns ErrClosed, or ctx's error wrapped, instead when
// the queue is closed or ctx ends first. The caller holds c.mu, and still
// does on return.
func (q *Queue[T]) waitSpaceLocked(ctx context.Context) error {
	c := &q.c
	blocked := false
	for {
		if c.closed {
			return ErrClosed
		}
		if c.n < c.limit && (c.s.budget == 0 || c.n < c.s.share || c.s.held.Load() < c.s.budget) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("mix: push to full queue: %w", err)
		}
		c.waiters++
		c.mu.Unlock()
		if !blocked && c.s.metrics != nil {
			c.s.metrics.blocked.Inc()
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
}

// insertLocked appends len(delays) items, item(i) being the i-th, arrived
// at now and delayed by delays[i] (or less to keep order), and schedules
// or releases the queue as needed. The caller holds c.mu and has checked
// that they fit.
func (q *Queue[T]) insertLocked(now int64, delays []int64, item func(i int) *T) {
	c := &q.c
	s := c.s
	waiting := c.n - c.released // before these cells
	for i, d := range delays {
		dep := now + d
		if dep < c.lastDep {
			dep = c.lastDep
		}
		c.lastDep = dep
		if c.n == len(c.stamps) {
			q.growLocked()
		}
		j := (c.head + c.n) & (len(c.stamps) - 1)
		*q.slotLocked(c.n) = *item(i)
		c.stamps[j] = stamp{arrival: now, departure: dep}
		c.n++
	}
	k := len(delays)
	s.held.Add(int64(k))
	if c.spec.Mean > 0 {
		// Undelayed cells are not mixed: they stay out of the anonymity
		// bookkeeping (see Metrics).
		s.noteWaiting(waiting, waiting+k)
	}
	if waiting == 0 {
		// These are the queue's first waiting cells: release what is due
		// already, and give the scheduler the first one still waiting.
		c.releaseDueLocked(now, true)
		if c.n > c.released && !c.scheduled {
			c.scheduled = true
			s.schedule(c, c.stamps[(c.head+c.released)&(len(c.stamps)-1)].departure, true)
		}
	}
	if c.waiters > 0 && c.n < c.limit {
		signal(c.space)
	}
}

// growLocked doubles the stamp ring, keeping the held stamps in order.
func (q *Queue[T]) growLocked() {
	c := &q.c
	old := len(c.stamps)
	stamps := make([]stamp, max(2*old, initialRing))
	for i := 0; i < c.n; i++ {
		stamps[i] = c.stamps[(c.head+i)&(old-1)]
	}
	c.stamps, c.head = stamps, 0
}

// slotLocked returns the storage of held item i (0 is the oldest), adding
// a chunk when i is the first position past the last one.
func (q *Queue[T]) slotLocked(i int) *T {
	p := q.ihead + i
	ci := p / chunkLen
	if ci == len(q.chunks) {
		q.chunks = append(q.chunks, q.pool.Get().(*chunk[T]))
	}
	return &q.chunks[ci][p%chunkLen]
}

// dropFrontLocked removes the k oldest held items from the item storage
// (the caller adjusts the counts), clearing them first if clearItems is set,
// and recycles the chunks it empties.
func (q *Queue[T]) dropFrontLocked(k int, clearItems bool) {
	if clearItems {
		for i := 0; i < k; i++ {
			var zero T
			*q.slotLocked(i) = zero
		}
	}
	q.ihead += k
	for q.ihead >= chunkLen {
		q.pool.Put(q.chunks[0])
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		q.ihead -= chunkLen
	}
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
	for i := 0; i < k; i++ {
		dst = append(dst, *q.slotLocked(i))
	}
	q.dropFrontLocked(k, true)
	c.head = (c.head + k) & (len(c.stamps) - 1)
	c.n -= k
	c.released = 0
	c.s.held.Add(-int64(k))
	q.removedLocked()
	return dst
}

// PeekReady returns the oldest items whose departure time has come, in push
// order, as at most two slices of the queue's own storage, without copying
// them: all of them, or as many as two chunks of storage hold (a is empty
// only if none is ready). The items stay in the queue, counted against its
// limit, until Consume; Push never overwrites them meanwhile, and Close
// drops the storage rather than reusing it. A consumer calls PeekReady and
// Consume until PeekReady returns nothing. This is the
// zero-copy alternative to PopReady, for value items: the caller must not
// modify the slices, must stop using them once it calls Consume, and must
// not mix PeekReady and PopReady. Only the queue's one consumer may call it.
func (q *Queue[T]) PeekReady() (a, b []T) {
	c := &q.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil
	}
	if c.n > c.released {
		c.releaseDueLocked(c.s.now(), false)
	}
	c.signalled = false // releases from now on must signal again
	k := c.released
	if k == 0 {
		return nil, nil
	}
	a = q.chunks[0][q.ihead:min(chunkLen, q.ihead+k)]
	if rest := k - len(a); rest > 0 {
		b = q.chunks[1][:min(chunkLen, rest)]
	}
	return a, b
}

// Consume removes the first k released items, which the caller got from
// PeekReady and is done with, making room for Push. Consumed slots are not
// cleared: pointers in them stay reachable until their chunk is reused or
// dropped.
func (q *Queue[T]) Consume(k int) {
	c := &q.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || k <= 0 {
		return
	}
	if k > c.released {
		panic(fmt.Sprintf("mix: Consume(%d) with %d items released", k, c.released))
	}
	q.dropFrontLocked(k, false)
	c.head = (c.head + k) & (len(c.stamps) - 1)
	c.n -= k
	c.released -= k
	c.s.held.Add(-int64(k))
	q.removedLocked()
}

// removedLocked follows the removal of items: once the queue has drained
// it gives its storage back (all of it but a small stamp ring), so an idle
// circuit costs little, and it wakes a blocked Push.
func (q *Queue[T]) removedLocked() {
	c := &q.c
	if c.n == 0 {
		q.releaseChunksLocked()
		if len(c.stamps) > shrinkAbove {
			c.stamps, c.head = nil, 0
		}
	}
	if c.waiters > 0 {
		signal(c.space)
	}
}

// releaseChunksLocked returns every chunk to the pool. Only the consumer's
// own calls (PopReady, Consume) may: a consumer holding slices from
// PeekReady is done with them once it calls Consume.
func (q *Queue[T]) releaseChunksLocked() {
	for i, ch := range q.chunks {
		q.pool.Put(ch)
		q.chunks[i] = nil
	}
	q.chunks, q.ihead = nil, 0
}

// shrinkAbove is the stamp ring size above which a drained queue gives its
// ring back.
const shrinkAbove = 64

// Close releases the queue: its held items are discarded (and counted in
// the metrics), it leaves the scheduler, blocked and later Push calls return
// ErrClosed. It returns the discarded items, in push order, so the caller
// can recycle their buffers. Closing again returns nil.
func (q *Queue[T]) Close() []T { return q.close(true) }

// Discard closes the queue as Close does, without returning its items (for
// value items, which need no recycling).
func (q *Queue[T]) Discard() { q.close(false) }

func (q *Queue[T]) close(collect bool) []T {
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
		if collect {
			out = make([]T, 0, c.n)
			for i := 0; i < c.n; i++ {
				out = append(out, *q.slotLocked(i))
			}
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
	// The chunks are dropped, not pooled: the consumer may still be writing
	// from slices PeekReady gave it, and a chunk reused by another queue
	// meanwhile would put that queue's cells on this queue's link.
	c.stamps, q.chunks, q.ihead = nil, nil, 0
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
