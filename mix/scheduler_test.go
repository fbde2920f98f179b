package mix

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

// ksStatistic returns the Kolmogorov-Smirnov statistic sup|F_n(x) - F(x)|
// of samples against a distribution with CDF cdf, whose left limits F(x-)
// are cdfLeft (nil when cdf is continuous). Tied samples are handled as one
// step of the empirical CDF.
func ksStatistic(samples []float64, cdf, cdfLeft func(float64) float64) float64 {
	if cdfLeft == nil {
		cdfLeft = cdf
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	n := float64(len(s))
	d := 0.0
	for i := 0; i < len(s); {
		j := i + 1
		for j < len(s) && s[j] == s[i] {
			j++
		}
		// Just below s[i] the empirical CDF is i/n; at s[i] it is j/n.
		d = max(d, math.Abs(cdfLeft(s[i])-float64(i)/n), math.Abs(cdf(s[i])-float64(j)/n))
		i = j
	}
	return d
}

// ksCritical01 is the critical value of the one-sample KS statistic at
// alpha = 0.01 for n samples: sqrt(-ln(alpha/2)/2)/sqrt(n) = 1.628/sqrt(n),
// the asymptotic form (accurate for n above about 35).
func ksCritical01(n int) float64 {
	return math.Sqrt(-math.Log(0.01/2)/2) / math.Sqrt(float64(n))
}

// clampedExpCDF returns the CDF of min(Exp(mean), cap), in nanoseconds, and
// its left limits (the clamp puts a point mass e^(-cap/mean) at cap).
func clampedExpCDF(mean, cap time.Duration) (cdf, left func(float64) float64) {
	left = func(x float64) float64 {
		if x <= 0 {
			return 0
		}
		return 1 - math.Exp(-min(x, float64(cap))/float64(mean))
	}
	cdf = func(x float64) float64 {
		if x >= float64(cap) {
			return 1
		}
		return left(x)
	}
	return cdf, left
}

// ksClampedExp is the KS statistic of samples (ns) against min(Exp(mean), cap).
func ksClampedExp(samples []float64, mean, cap time.Duration) float64 {
	cdf, left := clampedExpCDF(mean, cap)
	return ksStatistic(samples, cdf, left)
}

func TestKSStatisticKnownValues(t *testing.T) {
	// Against the uniform CDF on [0,1]: samples at the quartile midpoints
	// give D = 1/8; all samples at 0 give D = 1.
	uniform := func(x float64) float64 { return min(max(x, 0), 1) }
	if got, want := ksStatistic([]float64{0.125, 0.375, 0.625, 0.875}, uniform, nil), 0.125; math.Abs(got-want) > 1e-12 {
		t.Errorf("ks(midpoints) = %v, want %v", got, want)
	}
	if got, want := ksStatistic([]float64{0, 0, 0}, uniform, nil), 1.0; got != want {
		t.Errorf("ks(zeros) = %v, want %v", got, want)
	}
	if got, want := ksCritical01(2000), 0.03639; math.Abs(got-want) > 1e-4 {
		t.Errorf("critical(2000) = %v, want %v", got, want)
	}
}

// TestDelayDistributionKS pushes one cell at a time through a running
// scheduler on a fake clock and measures each cell's added delay: the
// delays must pass a KS test against the class's clamped exponential and
// fail it against a wrong mean.
func TestDelayDistributionKS(t *testing.T) {
	const n = 2000
	for _, spec := range []ClassSpec{DefaultClasses()[ClassBalanced], DefaultClasses()[ClassHighLatency]} {
		t.Run(spec.Class.String(), func(t *testing.T) {
			s, fc := newFakeScheduler(t, 10+byte(spec.Class), nil)
			startRun(t, s)
			ctx := testCtx(t)
			q := NewQueue[int](s, spec, 16)
			defer q.Close()

			delays := make([]float64, 0, n)
			var buf []int
			for i := range n {
				arrival := fc.Now()
				if err := q.Push(ctx, i); err != nil {
					t.Fatal(err)
				}
				deadline, err := fc.WaitForTimer(ctx)
				if err != nil {
					t.Fatalf("cell %d: no timer armed: %v", i, err)
				}
				fc.AdvanceTo(deadline)
				waitReady(t, ctx, q)
				buf = q.PopReady(buf[:0])
				if len(buf) != 1 || buf[0] != i {
					t.Fatalf("cell %d: popped %v", i, buf)
				}
				delays = append(delays, float64(fc.Now().Sub(arrival)))
			}

			crit := ksCritical01(n)
			d := ksClampedExp(delays, spec.Mean, spec.Cap)
			t.Logf("%s: n=%d D=%.4f critical(0.01)=%.4f sample mean=%v", spec.Class, n, d, crit,
				time.Duration(mean(delays)))
			if d > crit {
				t.Errorf("KS against Exp(%v): D = %.4f > %.4f", spec.Mean, d, crit)
			}
			for _, f := range []float64{0.8, 1.25} {
				wrong := time.Duration(f * float64(spec.Mean))
				dw := ksClampedExp(delays, wrong, spec.Cap)
				t.Logf("against wrong mean %v: D=%.4f", wrong, dw)
				if dw <= crit {
					t.Errorf("KS against wrong mean %v passed (D = %.4f <= %.4f): the test cannot tell", wrong, dw, crit)
				}
			}
		})
	}
}

func mean(xs []float64) float64 {
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// TestSampleDelayCap checks the clamp with a cap equal to the mean, where
// e^-1 (37%) of draws are clamped.
func TestSampleDelayCap(t *testing.T) {
	const n = 20000
	spec := ClassSpec{Class: ClassBalanced, Mean: time.Millisecond, Cap: time.Millisecond}
	r := seededRand(2)
	samples := make([]float64, n)
	capped := 0
	for i := range samples {
		d, c := sampleDelay(r, spec)
		if d > spec.Cap || d < 0 {
			t.Fatalf("delay %v outside [0, %v]", d, spec.Cap)
		}
		if c != (d == spec.Cap) {
			t.Fatalf("delay %v reported capped=%v", d, c)
		}
		if c {
			capped++
		}
		samples[i] = float64(d)
	}
	if frac := float64(capped) / n; math.Abs(frac-math.Exp(-1)) > 0.015 {
		t.Errorf("capped fraction %.4f, want about %.4f", frac, math.Exp(-1))
	}
	if d, crit := ksClampedExp(samples, spec.Mean, spec.Cap), ksCritical01(n); d > crit {
		t.Errorf("KS against clamped Exp: D = %.4f > %.4f", d, crit)
	}
	if d, _ := sampleDelay(r, ClassSpec{}); d != 0 {
		t.Errorf("mean 0 drew %v", d)
	}
}

// cellRec is a test cell: which queue, its sequence number there, and its
// expected departure.
type cellRec struct {
	queue, seq int
	arrival    time.Time
	expected   time.Time
}

type departure struct {
	cell cellRec
	at   time.Time
}

// TestTickFIFOAndInterleave drives the scheduler's tick directly at each
// heap deadline, with random (Poisson) arrivals on several circuits. Every
// cell must depart exactly at max(previous departure, arrival + delay),
// with delays replayed from a generator seeded like the scheduler's; cells
// of one circuit stay in order; cells of different circuits interleave.
func TestTickFIFOAndInterleave(t *testing.T) {
	const (
		queues = 4
		cells  = 5000
		seed   = 3
	)
	spec := DefaultClasses()[ClassBalanced]
	s, fc := newFakeScheduler(t, seed, nil)
	ctx := testCtx(t)
	qs := make([]*Queue[cellRec], queues)
	for i := range qs {
		qs[i] = NewQueue[cellRec](s, spec, cells)
	}
	replay := seededRand(seed) // the scheduler's draws, in push order
	arrivals := seededRand(99) // the test's own randomness
	prevDep := make([]time.Time, queues)
	nextSeq := make([]int, queues)

	var deps []departure
	var buf []cellRec
	popAll := func() {
		for _, q := range qs {
			buf = q.PopReady(buf[:0])
			for _, c := range buf {
				deps = append(deps, departure{c, fc.Now()})
			}
		}
	}
	// drainUntil runs tick at every heap deadline up to limit.
	drainUntil := func(limit time.Time) {
		for {
			s.mu.Lock()
			if len(s.heap) == 0 || s.epoch.Add(time.Duration(s.heap[0].key)).After(limit) {
				s.mu.Unlock()
				return
			}
			at := s.epoch.Add(time.Duration(s.heap[0].key))
			s.mu.Unlock()
			fc.AdvanceTo(at)
			s.tick(s.now())
			s.checkHeap(t)
			popAll()
		}
	}

	clampBinds := 0
	now := testEpoch
	for range cells {
		// Mean inter-arrival 2 ms against a 5 ms mean delay: several
		// circuits' cells are in the pool at once.
		now = now.Add(time.Duration(arrivals.ExpFloat64() * float64(2*time.Millisecond)))
		drainUntil(now)
		fc.AdvanceTo(now)
		qi := arrivals.IntN(queues)
		d, _ := sampleDelay(replay, spec)
		exp := now.Add(d)
		if exp.Before(prevDep[qi]) {
			exp = prevDep[qi]
			clampBinds++
		}
		prevDep[qi] = exp
		c := cellRec{queue: qi, seq: nextSeq[qi], arrival: now, expected: exp}
		nextSeq[qi]++
		if err := qs[qi].Push(ctx, c); err != nil {
			t.Fatal(err)
		}
		popAll() // nothing may come out early
	}
	drainUntil(now.Add(time.Hour))

	if len(deps) != cells {
		t.Fatalf("%d cells departed, want %d", len(deps), cells)
	}
	if clampBinds == 0 {
		t.Fatal("no cell waited for its predecessor: FIFO clamp not exercised")
	}
	seen := make([]int, queues)
	for _, d := range deps {
		c := d.cell
		if c.seq != seen[c.queue] {
			t.Fatalf("queue %d: cell %d departed when %d was due next", c.queue, c.seq, seen[c.queue])
		}
		seen[c.queue]++
		if !d.at.Equal(c.expected) {
			t.Fatalf("queue %d cell %d departed at %v, want %v", c.queue, c.seq, d.at.Sub(testEpoch), c.expected.Sub(testEpoch))
		}
		if d.at.Before(c.arrival) {
			t.Fatalf("cell departed before it arrived")
		}
	}
	// Interleaving: count pairs of cells from different circuits that leave
	// in the opposite order to their arrival.
	crossInversions := 0
	for i := range deps {
		for j := i + 1; j < len(deps) && j < i+50; j++ {
			a, b := deps[i].cell, deps[j].cell
			if a.queue != b.queue && b.arrival.Before(a.arrival) {
				crossInversions++
			}
		}
	}
	t.Logf("%d cells, %d waited for their predecessor, %d cross-circuit reorderings (within 50 departures)",
		cells, clampBinds, crossInversions)
	if crossInversions == 0 {
		t.Error("departure order equals arrival order: circuits did not interleave")
	}
	if p := s.Pooled(); p != 0 {
		t.Errorf("Pooled() = %d after all departed, want 0", p)
	}
	for _, q := range qs {
		if got := q.Close(); got != nil {
			t.Errorf("Close returned %d leftover cells", len(got))
		}
	}
	if n := s.heapLen(); n != 0 {
		t.Errorf("heap has %d entries after every queue closed", n)
	}
}

// TestRunInterleavesCircuits is the end-to-end counterpart: two circuits,
// cells pushed alternately, a running scheduler on a fake clock stepped
// from deadline to deadline.
func TestRunInterleavesCircuits(t *testing.T) {
	const perQueue = 200
	spec := DefaultClasses()[ClassBalanced]
	s, fc := newFakeScheduler(t, 4, nil)
	startRun(t, s)
	ctx := testCtx(t)
	qa := NewQueue[cellRec](s, spec, perQueue)
	qb := NewQueue[cellRec](s, spec, perQueue)
	defer qa.Close()
	defer qb.Close()

	// Push all cells first, 1 ms apart, alternating circuits, before any
	// deadline is reached (the cap is 50 ms, so keep it below: advance the
	// clock only while no cell is due, then step through deadlines).
	var order []cellRec
	for i := range 2 * perQueue {
		q, qi := qa, 0
		if i%2 == 1 {
			q, qi = qb, 1
		}
		c := cellRec{queue: qi, seq: i / 2, arrival: fc.Now()}
		if err := q.Push(ctx, c); err != nil {
			t.Fatal(err)
		}
		order = append(order, c)
		// Pushing leaves every cell's departure in the future: the clock
		// has not moved yet.
	}
	if n := s.heapLen(); n > 2 {
		t.Fatalf("heap has %d entries for 2 queues", n)
	}

	var deps []departure
	var buf []cellRec
	at := fc.Now()
	for len(deps) < 2*perQueue {
		for _, q := range []*Queue[cellRec]{qa, qb} {
			select { // consume the signal for what is popped now
			case <-q.Ready():
			default:
			}
			buf = q.PopReady(buf[:0])
			for _, c := range buf {
				deps = append(deps, departure{c, at})
			}
		}
		if len(deps) == 2*perQueue {
			break
		}
		// Wait until Run has armed its timer for the next deadline (it does
		// so only after finishing the previous tick), then jump to it.
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		d, err := fc.WaitForTimer(wctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// No timer: the last tick emptied the heap; its cells are
			// released, or about to be. Pop again.
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		fc.AdvanceTo(d)
		at = d
		// Wait for the tick to run, signalled by either Ready.
		select {
		case <-qa.Ready():
		case <-qb.Ready():
		case <-ctx.Done():
			t.Fatalf("no Ready after advancing to %v", d.Sub(testEpoch))
		}
	}

	seen := [2]int{}
	for _, d := range deps {
		if d.cell.seq != seen[d.cell.queue] {
			t.Fatalf("circuit %d: cell %d departed when %d was due next", d.cell.queue, d.cell.seq, seen[d.cell.queue])
		}
		seen[d.cell.queue]++
		if d.at.Before(d.cell.arrival) {
			t.Fatal("cell departed before it arrived")
		}
	}
	same := 0
	for i, d := range deps {
		if d.cell.queue == order[i].queue {
			same++
		}
	}
	t.Logf("%d of %d departures have the circuit of the same position in arrival order", same, len(deps))
	if same == len(deps) {
		t.Error("departures follow the arrival order of circuits exactly: no interleaving")
	}
}

func TestRunExitsAndRefusesSecondRun(t *testing.T) {
	s, _ := newFakeScheduler(t, 5, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Wait until the first Run has claimed the scheduler.
	for !s.running.Load() {
		time.Sleep(time.Millisecond)
	}
	if err := s.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run: got %v, want ErrRunning", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// A scheduler can be run again after Run returned.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { done <- s.Run(ctx2) }()
	cancel2()
	if err := <-done; err != nil {
		t.Errorf("second Run returned %v", err)
	}
}

func TestHeapOneEntryPerQueue(t *testing.T) {
	s, fc := newFakeScheduler(t, 6, nil)
	ctx := testCtx(t)
	spec := DefaultClasses()[ClassHighLatency]
	var qs []*Queue[int]
	for range 50 {
		q := NewQueue[int](s, spec, 100)
		qs = append(qs, q)
		for j := range 20 {
			if err := q.Push(ctx, j); err != nil {
				t.Fatal(err)
			}
			fc.Advance(time.Millisecond)
		}
	}
	if got := s.heapLen(); got != len(qs) {
		t.Errorf("heap has %d entries for %d queues of 20 cells", got, len(qs))
	}
	s.checkHeap(t)
	if got, want := s.Pooled(), 50*20; got != want {
		t.Errorf("Pooled() = %d, want %d", got, want)
	}
	// Close every other queue: their entries leave the heap at once.
	for i := 0; i < len(qs); i += 2 {
		if got := qs[i].Close(); len(got) != 20 {
			t.Errorf("Close returned %d cells, want 20", len(got))
		}
	}
	s.checkHeap(t)
	if got := s.heapLen(); got != 25 {
		t.Errorf("heap has %d entries after closing 25 of 50 queues", got)
	}
	for i := 1; i < len(qs); i += 2 {
		qs[i].Close()
	}
	if got := s.heapLen(); got != 0 {
		t.Errorf("heap has %d entries after closing all", got)
	}
	if got := s.Pooled(); got != 0 {
		t.Errorf("Pooled() = %d after closing all", got)
	}
}

// TestRunResolution checks Config.Resolution: Run sleeps at least that long
// between releases, and each cell leaves less than that after its
// departure time.
func TestRunResolution(t *testing.T) {
	const (
		queues = 40
		seed   = 12
		res    = 2 * time.Millisecond
	)
	fc := NewFakeClock(testEpoch)
	s := NewScheduler(Config{Clock: fc, Rand: seededRand(seed), Resolution: res})
	ctx := testCtx(t)
	spec := DefaultClasses()[ClassBalanced]
	replay := seededRand(seed)
	qs := make([]*Queue[int], queues)
	want := make([]time.Time, queues) // each queue's one cell's departure time
	for i := range qs {
		qs[i] = NewQueue[int](s, spec, 1)
		defer qs[i].Close()
		d, _ := sampleDelay(replay, spec)
		want[i] = fc.Now().Add(d)
		if err := qs[i].Push(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	// Start Run once every cell is in, so that its first deadline already
	// accounts for all of them.
	startRun(t, s)
	got := make([]time.Time, queues)
	departed := 0
	var ticks []time.Time
	for departed < queues {
		d, err := fc.WaitForTimer(ctx)
		if err != nil {
			t.Fatalf("%d of %d departed: %v", departed, queues, err)
		}
		fc.AdvanceTo(d)
		ticks = append(ticks, d)
		// Everything due by d leaves at d, whether Run's tick or PopReady
		// releases it.
		for i, q := range qs {
			if got[i].IsZero() && len(q.PopReady(nil)) == 1 {
				got[i] = d
				departed++
			}
		}
		// Wait for Run to finish the tick and re-arm its timer before
		// reading the next deadline.
		for departed < queues {
			if _, ok := fc.NextDeadline(); ok {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	for i := 1; i < len(ticks); i++ {
		if gap := ticks[i].Sub(ticks[i-1]); gap < res {
			t.Errorf("ticks %v apart, want at least %v", gap, res)
		}
	}
	for i := range got {
		if late := got[i].Sub(want[i]); late < 0 || late >= res {
			t.Errorf("cell %d left %v after its departure time, want [0, %v)", i, late, res)
		}
	}
	t.Logf("%d cells left in %d ticks", queues, len(ticks))
	if len(ticks) >= queues {
		t.Error("no batching: one tick per cell")
	}
}
