package mix

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestRealClockSanity runs the scheduler on the real clock with small means
// and real producer and writer goroutines. It asserts only what cannot
// flake: order within each circuit, every cell delivered, and departure not
// before arrival. The observed delays are logged.
func TestRealClockSanity(t *testing.T) {
	if testing.Short() {
		t.Skip("real-clock test")
	}
	s := NewScheduler(Config{})
	startRun(t, s)
	ctx := testCtx(t)

	type item struct {
		seq     int
		arrival time.Time
	}
	specs := []ClassSpec{
		{Class: ClassInteractive},
		{Class: ClassBalanced, Mean: 200 * time.Microsecond},
		{Class: ClassBalanced, Mean: time.Millisecond},
		{Class: ClassHighLatency, Mean: 3 * time.Millisecond},
	}
	const cells = 300
	var wg sync.WaitGroup
	delays := make([][]time.Duration, len(specs))
	for qi, spec := range specs {
		q := NewQueue[item](s, spec, 32)
		wg.Add(2)
		go func() { // producer: the circuit's reader
			defer wg.Done()
			for i := range cells {
				if err := q.Push(ctx, item{i, time.Now()}); err != nil {
					t.Errorf("queue %d push %d: %v", qi, i, err)
					return
				}
				if i%16 == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
		}()
		go func() { // writer
			defer wg.Done()
			defer q.Close()
			next := 0
			var buf []item
			for next < cells {
				select {
				case <-q.Ready():
				case <-ctx.Done():
					t.Errorf("queue %d: only %d of %d cells departed", qi, next, cells)
					return
				}
				buf = q.PopReady(buf[:0])
				now := time.Now()
				for _, it := range buf {
					if it.seq != next {
						t.Errorf("queue %d: cell %d departed when %d was due", qi, it.seq, next)
						return
					}
					next++
					if now.Before(it.arrival) {
						t.Errorf("queue %d: cell %d departed before it arrived", qi, it.seq)
					}
					delays[qi] = append(delays[qi], now.Sub(it.arrival))
				}
			}
		}()
	}
	wg.Wait()
	for qi, d := range delays {
		if len(d) == 0 {
			continue
		}
		slices.Sort(d)
		t.Logf("mean %v: delay p50 %v p90 %v max %v", specs[qi].Mean, d[len(d)/2], d[len(d)*9/10], d[len(d)-1])
	}
	if p := s.Pooled(); p != 0 {
		t.Errorf("Pooled() = %d after all queues closed", p)
	}
}
