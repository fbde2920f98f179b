package mix

import (
	"context"
	crand "crypto/rand"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors.
var (
	// ErrClosed is returned by Push on a closed queue.
	ErrClosed = errors.New("mix: queue closed")
	// ErrRunning is returned by Run when the scheduler is already running.
	ErrRunning = errors.New("mix: scheduler already running")
)

// Config configures a Scheduler.
type Config struct {
	// Clock is the source of time and of the scheduler's one timer.
	// nil means SystemClock().
	Clock Clock
	// Rand draws the delays. The scheduler takes it over (it must not be
	// used elsewhere) and serialises access to it. Delays must be
	// unpredictable to an observer, so in a relay leave it nil: the scheduler
	// then uses a ChaCha8 generator seeded from crypto/rand. Tests pass a
	// seeded generator to be reproducible.
	Rand *rand.Rand
	// Metrics, when set, receives the pool, delay and anonymity measurements.
	// One Metrics serves one Scheduler.
	Metrics *Metrics
	// Resolution is the shortest time Run sleeps between two releases. 0
	// releases every cell at its departure time exactly (as exactly as the
	// clock's timers allow). A positive value lets Run wake at most once per
	// Resolution, so a cell may leave up to Resolution after its departure
	// time, in one batch with every other cell that came due meanwhile:
	// fewer wake-ups when departures are dense, at the price of that much
	// extra delay. DefaultResolution suits relays.
	Resolution time.Duration
	// Budget, when positive, is how many cells the scheduler's queues hold
	// together before they share it: past it, a queue already holding
	// Budget/FairShareDivisor cells or more takes no more until its own
	// cells leave (backpressure, never a drop), while lighter queues still
	// may. A flow needs about rate x time in the mix (~13,000 cells at
	// 170 MB/s through a 5 ms-mean class), so the budget bounds the cells
	// that end-to-end windows larger than that park in the relay, without
	// slowing a flow that is alone. 0 means no budget (only each queue's own
	// limit).
	Budget int
}

// FairShareDivisor sets the share of Config.Budget a queue keeps once the
// budget is exceeded: Budget / FairShareDivisor cells.
const FairShareDivisor = 8

// DefaultResolution is the Resolution a relay should use: small against the
// balanced class's mean (2% of 5 ms), large against the spacing of
// departures at 100k cells/s (10 us).
const DefaultResolution = 100 * time.Microsecond

// Scheduler holds every delayed cell of a relay and releases each when its
// departure time comes. It has one min-heap with at most one entry per queue
// (the departure time of that queue's first waiting cell), one timer and one
// goroutine (Run), whatever the number of cells and circuits.
type Scheduler struct {
	clock      Clock
	epoch      time.Time // times are kept as int64 nanoseconds since epoch
	resolution time.Duration
	system     bool // clock is SystemClock()
	metrics    *Metrics
	wake       chan struct{} // capacity 1; tells Run that the heap's minimum moved earlier
	budget     int64         // Config.Budget; 0: none
	share      int           // a queue's share once the budget is exceeded
	chunkPools sync.Map      // reflect.Type of items -> *sync.Pool of their queues' storage chunks
	running    atomic.Bool

	rngMu sync.Mutex // guards rng
	rng   *rand.Rand

	mu   sync.Mutex // guards the following fields
	heap []*core    // min-heap on core.key; core.hidx is each entry's position

	due []*core // Run's scratch list of queues popped from the heap; used by Run only

	held atomic.Int64 // cells pushed and not yet popped or discarded

	// Anonymity bookkeeping, kept only when metrics is set. A cell is
	// "waiting" from Push until its departure time is reached.
	pool   atomic.Int64 // waiting cells over all queues
	active atomic.Int64 // queues with at least one waiting cell
	plogp  atomic.Int64 // sum over queues of w*log2(w) in 1/2^entropyShift units, w = waiting cells
}

// NewScheduler returns a scheduler. Run must be running for delayed cells to
// be released.
func NewScheduler(cfg Config) *Scheduler {
	s := &Scheduler{
		clock:      cfg.Clock,
		rng:        cfg.Rand,
		metrics:    cfg.Metrics,
		resolution: max(cfg.Resolution, 0),
		budget:     int64(max(cfg.Budget, 0)),
		share:      max(cfg.Budget/FairShareDivisor, 1),
		wake:       make(chan struct{}, 1),
	}
	if s.clock == nil {
		s.clock = SystemClock()
	}
	if s.rng == nil {
		var seed [32]byte
		crand.Read(seed[:]) // never fails (crypto/rand crashes the program instead)
		s.rng = rand.New(rand.NewChaCha8(seed))
	}
	_, s.system = s.clock.(systemClock)
	s.epoch = s.clock.Now()
	if s.metrics != nil {
		s.metrics.sched.Store(s)
	}
	return s
}

// Pooled returns the number of cells currently held by the scheduler across
// all queues: pushed and not yet popped or discarded, whether or not their
// departure time has come.
func (s *Scheduler) Pooled() int { return int(s.held.Load()) }

// now returns the clock's time in nanoseconds since s.epoch.
func (s *Scheduler) now() int64 {
	if s.system {
		// time.Since reads only the monotonic clock: cheaper than Now,
		// which reads the wall clock too.
		return int64(time.Since(s.epoch))
	}
	return int64(s.clock.Now().Sub(s.epoch))
}

// Run is the scheduler's one goroutine: it sleeps on one timer until the
// earliest departure time, releases every cell that has reached its time and
// signals those queues' Ready channels. It returns nil when ctx is done, or
// ErrRunning if another Run is active. Cells pushed while no Run is active
// are released only by PopReady calls (Push releases undelayed cells itself).
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)
	var timer Timer // created when first needed, so that an idle Run arms nothing
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if ctx.Err() != nil {
			return nil
		}
		now := s.now()
		var fire <-chan time.Time
		if next, ok := s.tick(now); ok {
			next = max(next, now+int64(s.resolution))
			if next <= s.now() {
				continue // due already: no need to sleep
			}
			if at := s.epoch.Add(time.Duration(next)); timer == nil {
				timer = s.clock.NewTimer(at)
			} else {
				timer.Reset(at)
			}
			fire = timer.C()
		} else if timer != nil {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-fire:
		case <-s.wake:
		}
	}
}

// tick releases every cell due at now and returns the next departure time
// in the heap.
func (s *Scheduler) tick(now int64) (next int64, ok bool) {
	s.mu.Lock()
	due := s.due[:0]
	for len(s.heap) > 0 && s.heap[0].key <= now {
		due = append(due, s.popLocked())
	}
	s.mu.Unlock()

	for i, c := range due {
		c.mu.Lock()
		if !c.closed {
			c.releaseDueLocked(now, true)
		}
		if !c.closed && c.n > c.released {
			s.schedule(c, c.stamps[(c.head+c.released)&(len(c.stamps)-1)].departure, false)
		} else {
			c.scheduled = false
		}
		c.mu.Unlock()
		due[i] = nil
	}
	s.due = due[:0]

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.heap) == 0 {
		return 0, false
	}
	return s.heap[0].key, true
}

// schedule puts c into the heap with key. When wake is set and c becomes
// the earliest entry, Run is told to re-arm its timer. The caller holds c.mu.
func (s *Scheduler) schedule(c *core, key int64, wake bool) {
	s.mu.Lock()
	c.key = key
	c.hidx = len(s.heap)
	s.heap = append(s.heap, c)
	s.upLocked(c.hidx)
	first := c.hidx == 0
	s.mu.Unlock()
	if first && wake {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// unschedule removes c from the heap if it is there. The caller holds c.mu.
func (s *Scheduler) unschedule(c *core) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.hidx >= 0 {
		s.removeLocked(c.hidx)
	}
}

// The heap: a binary min-heap on core.key, written out rather than through
// container/heap to avoid its interface calls on the hot path.

func (s *Scheduler) popLocked() *core {
	c := s.heap[0]
	s.removeLocked(0)
	return c
}

func (s *Scheduler) removeLocked(i int) {
	h := s.heap
	last := len(h) - 1
	c := h[i]
	if i != last {
		h[i] = h[last]
		h[i].hidx = i
	}
	h[last] = nil
	s.heap = h[:last]
	if i != last {
		s.downLocked(i)
		s.upLocked(i)
	}
	c.hidx = -1
}

func (s *Scheduler) upLocked(i int) {
	h := s.heap
	for i > 0 {
		p := (i - 1) / 2
		if h[p].key <= h[i].key {
			break
		}
		h[p], h[i] = h[i], h[p]
		h[p].hidx, h[i].hidx = p, i
		i = p
	}
}

func (s *Scheduler) downLocked(i int) {
	h := s.heap
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r].key < h[l].key {
			m = r
		}
		if h[i].key <= h[m].key {
			return
		}
		h[i], h[m] = h[m], h[i]
		h[i].hidx, h[m].hidx = i, m
		i = m
	}
}

// sampleN fills out with delays drawn for c's class, in order, and counts
// the capped ones.
func (s *Scheduler) sampleN(c *core, out []int64) {
	if c.spec.Mean <= 0 {
		clear(out)
		return
	}
	capped := 0
	s.rngMu.Lock()
	for i := range out {
		d, cp := sampleDelay(s.rng, c.spec)
		out[i] = int64(d)
		if cp {
			capped++
		}
	}
	s.rngMu.Unlock()
	if capped > 0 && c.cappedCtr != nil {
		c.cappedCtr.Add(float64(capped))
	}
}

// noteWaiting records that a queue's count of waiting cells changed from
// old to new, for the anonymity estimate.
func (s *Scheduler) noteWaiting(old, new int) {
	if s.metrics == nil || old == new {
		return
	}
	s.pool.Add(int64(new - old))
	switch {
	case old == 0:
		s.active.Add(1)
	case new == 0:
		s.active.Add(-1)
	}
	s.plogp.Add(wlog2w(new) - wlog2w(old))
}
