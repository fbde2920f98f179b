package mix

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// FuzzQueueModel runs random sequences of Push, clock advances, ticks,
// PopReady and Close on a few queues, and checks each result against a
// model that replays the scheduler's random draws: PopReady returns exactly
// the cells whose departure time max(previous, arrival + delay) has come, in
// order; Close returns the rest; the heap and the counters stay consistent.
func FuzzQueueModel(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 1, 2, 0, 3, 0})
	f.Add([]byte{0, 1, 0, 1, 0, 1, 5, 200, 3, 1, 3, 0, 4, 2, 0, 2})
	f.Add([]byte{0, 2, 0, 2, 0, 2, 0, 2, 0, 2, 1, 50, 2, 0, 3, 2, 4, 2, 7})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const nq = 3
		specs := []ClassSpec{
			{Class: ClassInteractive},
			DefaultClasses()[ClassBalanced],
			{Class: ClassHighLatency, Mean: time.Millisecond, Cap: time.Millisecond}, // heavy clamping
		}
		m := NewMetrics(nil, "fuzz")
		s, fc := newFakeScheduler(t, 1, m)
		replay := seededRand(1)
		canceled, cancel := context.WithCancel(context.Background())
		cancel() // Push on a full queue must fail at once

		type cell struct {
			id  int
			dep time.Time
		}
		type modelQueue struct {
			q       *Queue[int]
			spec    ClassSpec
			limit   int
			cells   []cell
			lastDep time.Time
		}
		var qs [nq]*modelQueue
		open := func(i int, b byte) {
			spec := specs[int(b/nq)%len(specs)]
			limit := 1 + int(b/(nq*3))%5
			qs[i] = &modelQueue{q: NewQueue[int](s, spec, limit), spec: spec, limit: limit}
		}
		for i := range qs {
			open(i, byte(i))
		}
		next := 0
		arg := func(i int) byte {
			if i < len(ops) {
				return ops[i]
			}
			return 0
		}
		for i := 0; i < len(ops); i += 2 {
			mq := qs[int(arg(i+1))%nq]
			switch ops[i] % 6 {
			case 0: // push
				err := mq.q.Push(canceled, next)
				if len(mq.cells) == mq.limit {
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("push to full queue: got %v, want context.Canceled", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("push: %v", err)
				}
				d, _ := sampleDelay(replay, mq.spec)
				dep := fc.Now().Add(d)
				if dep.Before(mq.lastDep) {
					dep = mq.lastDep
				}
				mq.lastDep = dep
				mq.cells = append(mq.cells, cell{next, dep})
				next++
			case 1: // advance
				fc.Advance(time.Duration(arg(i+1)) * 100 * time.Microsecond)
			case 2: // tick, as Run would
				s.tick(s.now())
			case 3: // pop
				got := mq.q.PopReady(nil)
				var want []int
				for len(mq.cells) > 0 && !mq.cells[0].dep.After(fc.Now()) {
					want = append(want, mq.cells[0].id)
					mq.cells = mq.cells[1:]
				}
				if !slices.Equal(got, want) {
					t.Fatalf("PopReady = %v, want %v", got, want)
				}
			case 4: // close and reopen
				got := mq.q.Close()
				var want []int
				for _, c := range mq.cells {
					want = append(want, c.id)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("Close = %v, want %v", got, want)
				}
				open(int(arg(i+1))%nq, arg(i+1)) // the same slot, maybe another class
			case 5: // check counters
				held := 0
				for _, mq := range qs {
					held += len(mq.cells)
				}
				if s.Pooled() != held {
					t.Fatalf("Pooled() = %d, model holds %d", s.Pooled(), held)
				}
			}
			s.checkHeap(t)
			if n := s.heapLen(); n > nq {
				t.Fatalf("heap has %d entries for %d queues", n, nq)
			}
		}
		for _, mq := range qs {
			if got := mq.q.Close(); len(got) != len(mq.cells) {
				t.Fatalf("final Close returned %d cells, model has %d", len(got), len(mq.cells))
			}
		}
		if s.Pooled() != 0 || s.heapLen() != 0 || s.pool.Load() != 0 || s.active.Load() != 0 || s.plogp.Load() != 0 {
			t.Fatalf("after closing all: pooled %d heap %d pool %d active %d plogp %d, want all 0",
				s.Pooled(), s.heapLen(), s.pool.Load(), s.active.Load(), s.plogp.Load())
		}
	})
}
