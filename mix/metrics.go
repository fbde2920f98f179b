package mix

import (
	"math"
	"sort"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a scheduler's Prometheus collectors. With namespace "chive"
// they are (all under chive_mix_):
//
//	pool_cells                   gauge: cells waiting for their departure time
//	held_cells                   gauge: cells held (waiting, or released and not yet popped by a writer); Pooled()
//	active_queues                gauge: circuit-directions with at least one waiting cell
//	delay_seconds{class}         histogram: added delay of each cell, arrival to release
//	delay_capped_total{class}    counter: delays clamped to the class's cap
//	departure_other_circuits     histogram, per departing cell: how many other circuit-directions had a cell waiting
//	departure_entropy_bits       histogram, per departing cell: entropy of which circuit-direction it came from
//	discarded_cells_total        counter: cells dropped because their queue was closed
//	push_blocked_total           counter: Push calls that had to wait because their queue was full
//
// Reading the anonymity estimate. A cell "departs" when the scheduler
// releases it to its circuit's writer. Picture an observer who sees every
// cell enter and leave the relay but cannot link them by content (each hop
// re-encrypts). When a cell leaves, the candidates for where it came from
// are the circuit-directions that had a cell waiting:
//
//   - departure_other_circuits is the number of those candidates besides the
//     true one. 0 means the cell was alone in the pool: mixing hid nothing.
//     Its mean (sum/count) is the average anonymity set size minus one.
//   - departure_entropy_bits is the Shannon entropy H of the candidate
//     distribution, taking each waiting cell to be equally likely to be the
//     next to leave, so that circuit-direction i with w_i of the N waiting
//     cells has probability w_i/N: H = log2 N - (1/N) sum w_i log2 w_i.
//     2^H is the effective number of equally likely circuits; H = 0 means
//     the observer knows the origin. For cells of one class this is exact
//     as far as exponential delays are memoryless (any waiting cell is as
//     likely as any other to leave next), except that per-circuit FIFO
//     order makes a circuit's later cells wait for its earlier ones. When
//     classes with different means share the pool, slow-class cells are
//     less likely to leave next than the formula assumes, so H then
//     overstates what an observer who can tell the classes apart faces.
//
// Both describe one relay's pool; a circuit's anonymity comes from all its
// hops together. Class-0 (interactive) cells bypass the scheduler, so they
// are neither measured nor counted in the pool.
type Metrics struct {
	delay     *prometheus.HistogramVec
	capped    *prometheus.CounterVec
	others    *batchHistogram
	entropy   *batchHistogram
	discarded prometheus.Counter
	blocked   prometheus.Counter

	sched atomic.Pointer[Scheduler] // the scheduler the gauges read
}

// Histogram buckets.
var (
	// delayBuckets span 0.1 ms to 2 s, roughly 1-2.5-5 per decade.
	delayBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2}
	// othersBuckets count circuits, up to tens of thousands.
	othersBuckets = []float64{0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000}
	// entropyBuckets are bits; 16 bits is 65536 equally likely circuits.
	entropyBuckets = []float64{0, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16}
)

// NewMetrics creates the mixing collectors and registers them with reg
// (nil: not registered). It panics if registration fails, as for
// prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer, namespace string) *Metrics {
	const sub = "mix"
	m := &Metrics{
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: sub, Name: "delay_seconds",
			Help:    "Added delay of each mixed cell from arrival to release, by delay class.",
			Buckets: delayBuckets,
		}, []string{"class"}),
		capped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "delay_capped_total",
			Help: "Sampled delays clamped to the class's cap (the distribution is truncated there), by delay class.",
		}, []string{"class"}),
		others: newBatchHistogram(prometheus.BuildFQName(namespace, sub, "departure_other_circuits"),
			"For each departing cell, the number of other circuit-directions that had a cell waiting in the pool.",
			othersBuckets),
		entropy: newBatchHistogram(prometheus.BuildFQName(namespace, sub, "departure_entropy_bits"),
			"For each departing cell, the Shannon entropy (bits) of which circuit-direction it came from, given the pool.",
			entropyBuckets),
		discarded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "discarded_cells_total",
			Help: "Cells discarded because their queue was closed (circuit destroyed) before they departed or were written.",
		}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: "push_blocked_total",
			Help: "Push calls that waited because their queue was full (backpressure).",
		}),
	}
	if reg == nil {
		return m
	}
	gauge := func(name, help string, read func(*Scheduler) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: name, Help: help,
		}, func() float64 {
			if s := m.sched.Load(); s != nil {
				return float64(read(s))
			}
			return 0
		})
	}
	reg.MustRegister(
		m.delay, m.capped, m.others, m.entropy, m.discarded, m.blocked,
		gauge("pool_cells", "Cells waiting for their departure time.",
			func(s *Scheduler) int64 { return s.pool.Load() }),
		gauge("held_cells", "Cells held by the scheduler: waiting, or released and not yet taken by their writer.",
			func(s *Scheduler) int64 { return s.held.Load() }),
		gauge("active_queues", "Circuit-directions with at least one cell waiting.",
			func(s *Scheduler) int64 { return s.active.Load() }),
	)
	return m
}

// anonymity returns, for a cell departing now, the number of other queues
// with waiting cells and the entropy estimate in bits (see Metrics).
func (s *Scheduler) anonymity() (others, bits float64) {
	n := float64(s.pool.Load())
	if a := s.active.Load(); a > 1 {
		others = float64(a - 1)
	}
	if n <= 1 {
		return others, 0
	}
	h := math.Log2(n) - float64(s.plogp.Load())/(1<<entropyShift)/n
	// The three counters are read one after another while other queues
	// change them, so clamp to the possible range.
	return others, min(max(h, 0), math.Log2(n))
}

// entropyShift is the fixed-point scale of Scheduler.plogp: fixed-point
// integers can be summed atomically and exactly, so adding and later
// removing a term leaves no rounding residue.
const entropyShift = 20

// wlog2wTable caches wlog2w for small counts, the common case.
var wlog2wTable = func() (t [1024]int64) {
	for w := 2; w < len(t); w++ {
		t[w] = wlog2wSlow(w)
	}
	return t
}()

// wlog2w returns w*log2(w) in 1/2^entropyShift units.
func wlog2w(w int) int64 {
	if w < len(wlog2wTable) {
		return wlog2wTable[w]
	}
	return wlog2wSlow(w)
}

func wlog2wSlow(w int) int64 {
	if w < 2 {
		return 0
	}
	return int64(math.Round(float64(w) * math.Log2(float64(w)) * (1 << entropyShift)))
}

// batchHistogram is a histogram that takes a value together with a count,
// so that the k cells of one departure batch, which share their anonymity
// figures, cost one update rather than k.
type batchHistogram struct {
	desc    *prometheus.Desc
	upper   []float64       // bucket upper bounds, increasing
	counts  []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sumBits atomic.Uint64   // float64 bits of the sum of observations
}

func newBatchHistogram(name, help string, upper []float64) *batchHistogram {
	return &batchHistogram{
		desc:   prometheus.NewDesc(name, help, nil, nil),
		upper:  upper,
		counts: make([]atomic.Uint64, len(upper)+1),
	}
}

// observeN records n observations of v.
func (h *batchHistogram) observeN(v float64, n int) {
	h.counts[sort.SearchFloat64s(h.upper, v)].Add(uint64(n))
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v*float64(n))) {
			return
		}
	}
}

// metric returns the histogram's current value.
func (h *batchHistogram) metric() prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.upper))
	var count uint64
	for i, ub := range h.upper {
		count += h.counts[i].Load()
		buckets[ub] = count
	}
	count += h.counts[len(h.upper)].Load()
	return prometheus.MustNewConstHistogram(h.desc, count, math.Float64frombits(h.sumBits.Load()), buckets)
}

// Describe implements prometheus.Collector.
func (h *batchHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

// Collect implements prometheus.Collector.
func (h *batchHistogram) Collect(ch chan<- prometheus.Metric) { ch <- h.metric() }
