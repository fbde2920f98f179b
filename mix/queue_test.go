package mix

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// pushAsync runs q.Push in a goroutine and returns its result channel.
func pushAsync[T any](ctx context.Context, q *Queue[T], item T) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- q.Push(ctx, item) }()
	return ch
}

// expectBlocked checks that a Push has not returned after a short while.
func expectBlocked(t *testing.T, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("Push returned %v, want it blocked", err)
	case <-time.After(50 * time.Millisecond):
	}
}

func expectReturn(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Push still blocked")
		return nil
	}
}

func TestPushBlocksAtLimitAndResumesAfterPop(t *testing.T) {
	for _, spec := range []ClassSpec{DefaultClasses()[ClassInteractive], DefaultClasses()[ClassBalanced]} {
		t.Run(spec.Class.String(), func(t *testing.T) {
			m := NewMetrics(nil, "test")
			s, fc := newFakeScheduler(t, 1, m)
			ctx := testCtx(t)
			q := NewQueue[int](s, spec, 2)
			defer q.Close()
			for i := range 2 {
				if err := q.Push(ctx, i); err != nil {
					t.Fatal(err)
				}
			}
			third := pushAsync(ctx, q, 2)
			expectBlocked(t, third)
			if got := q.Len(); got != 2 {
				t.Errorf("Len() = %d while blocked, want 2", got)
			}
			if got := counterValue(t, m.blocked); got != 1 {
				t.Errorf("push_blocked_total = %v, want 1", got)
			}
			// Nothing is due yet for the delayed class: PopReady frees no
			// room and the pusher stays blocked.
			if spec.Mean > 0 {
				if got := q.PopReady(nil); len(got) != 0 {
					t.Fatalf("PopReady before departure returned %v", got)
				}
				expectBlocked(t, third)
				fc.Advance(spec.Cap) // every cell is due by its cap
			}
			if got := q.PopReady(nil); !slices.Equal(got, []int{0, 1}) {
				t.Fatalf("PopReady = %v, want [0 1]", got)
			}
			if err := expectReturn(t, third); err != nil {
				t.Fatalf("resumed Push: %v", err)
			}
			if got := q.Len(); got != 1 {
				t.Errorf("Len() = %d after resume, want 1", got)
			}
			fc.Advance(spec.Cap)
			if got := q.PopReady(nil); !slices.Equal(got, []int{2}) {
				t.Errorf("PopReady = %v, want [2]", got)
			}
		})
	}
}

func TestManyBlockedPushersAllResume(t *testing.T) {
	s, _ := newFakeScheduler(t, 1, nil)
	ctx := testCtx(t)
	q := NewQueue[int](s, DefaultClasses()[ClassInteractive], 1)
	defer q.Close()
	const pushers, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, pushers)
	for p := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := q.Push(ctx, p*each+i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	got := 0
	last := make(map[int]int) // per pusher, its last item: each pusher's items stay in order
	var buf []int
	for got < pushers*each {
		select {
		case <-q.Ready():
		case <-ctx.Done():
			t.Fatalf("stalled after %d items", got)
		}
		buf = q.PopReady(buf[:0])
		for _, v := range buf {
			p := v / each
			if prev, ok := last[p]; ok && v <= prev {
				t.Fatalf("pusher %d: %d after %d", p, v, prev)
			}
			last[p] = v
		}
		got += len(buf)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPushContextCancelWhileBlocked(t *testing.T) {
	s, _ := newFakeScheduler(t, 1, nil)
	q := NewQueue[int](s, DefaultClasses()[ClassBalanced], 1)
	defer q.Close()
	if err := q.Push(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := pushAsync(ctx, q, 1)
	expectBlocked(t, ch)
	cancel()
	if err := expectReturn(t, ch); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	// An already-done context on a full queue fails at once.
	if err := q.Push(ctx, 2); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if got := q.Len(); got != 1 {
		t.Errorf("Len() = %d, want 1 (failed pushes must not queue)", got)
	}
}

func TestCloseDiscardsAndWakesPushers(t *testing.T) {
	m := NewMetrics(nil, "test")
	s, fc := newFakeScheduler(t, 1, m)
	ctx := testCtx(t)
	spec := DefaultClasses()[ClassBalanced]
	q := NewQueue[int](s, spec, 3)
	for i := range 3 {
		if err := q.Push(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	// Let every cell come due and be released, but not popped: Close
	// discards released cells as well as waiting ones.
	fc.Advance(spec.Cap)
	s.tick(s.now())
	blocked := []<-chan error{pushAsync(ctx, q, 3), pushAsync(ctx, q, 4)}
	for _, ch := range blocked {
		expectBlocked(t, ch)
	}
	if got := q.Close(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("Close() = %v, want [0 1 2]", got)
	}
	for _, ch := range blocked {
		if err := expectReturn(t, ch); !errors.Is(err, ErrClosed) {
			t.Errorf("blocked Push: got %v, want ErrClosed", err)
		}
	}
	select {
	case <-q.Done():
	default:
		t.Error("Done not closed")
	}
	if err := q.Push(ctx, 5); !errors.Is(err, ErrClosed) {
		t.Errorf("Push after Close: got %v, want ErrClosed", err)
	}
	if got := q.PopReady([]int{9}); !slices.Equal(got, []int{9}) {
		t.Errorf("PopReady after Close = %v, want dst unchanged", got)
	}
	if got := q.Close(); got != nil {
		t.Errorf("second Close = %v, want nil", got)
	}
	if got := counterValue(t, m.discarded); got != 3 {
		t.Errorf("discarded_cells_total = %v, want 3", got)
	}
	if s.Pooled() != 0 || s.heapLen() != 0 || s.pool.Load() != 0 || s.active.Load() != 0 || s.plogp.Load() != 0 {
		t.Errorf("after Close: pooled %d heap %d pool %d active %d plogp %d, want all 0",
			s.Pooled(), s.heapLen(), s.pool.Load(), s.active.Load(), s.plogp.Load())
	}
}

func TestCloseWhileRunning(t *testing.T) {
	// Queues closed while Run holds their heap entries must not come back.
	s, fc := newFakeScheduler(t, 7, nil)
	startRun(t, s)
	ctx := testCtx(t)
	spec := DefaultClasses()[ClassBalanced]
	for round := range 50 {
		q := NewQueue[int](s, spec, 8)
		for i := range 8 {
			if err := q.Push(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		fc.Advance(time.Duration(round%10) * time.Millisecond)
		q.Close()
	}
	// Run may still be finishing a tick; the heap must end empty.
	deadline := time.Now().Add(5 * time.Second)
	for s.heapLen() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("heap has %d entries after all queues closed", s.heapLen())
		}
		time.Sleep(time.Millisecond)
	}
	if s.Pooled() != 0 {
		t.Errorf("Pooled() = %d", s.Pooled())
	}
}

func TestInteractiveReleasesAtOnceWithoutHeap(t *testing.T) {
	s, _ := newFakeScheduler(t, 1, nil) // no Run: class 0 needs none
	ctx := testCtx(t)
	q := NewQueue[string](s, DefaultClasses()[ClassInteractive], 4)
	defer q.Close()
	for _, v := range []string{"a", "b"} {
		if err := q.Push(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, ctx, q)
	if got := q.PopReady(nil); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("PopReady = %v", got)
	}
	if n := s.heapLen(); n != 0 {
		t.Errorf("class 0 used %d heap entries", n)
	}
}

func TestPopReadyTakesDueCellsWithoutRun(t *testing.T) {
	s, fc := newFakeScheduler(t, 1, nil)
	ctx := testCtx(t)
	spec := DefaultClasses()[ClassHighLatency]
	q := NewQueue[int](s, spec, 100)
	defer q.Close()
	for i := range 10 {
		if err := q.Push(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if got := q.PopReady(nil); len(got) != 0 {
		t.Fatalf("PopReady at arrival = %v", got)
	}
	fc.Advance(spec.Cap)
	if got := q.PopReady(nil); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("PopReady after cap = %v", got)
	}
	// The heap entry went stale; a tick drops it.
	s.tick(s.now())
	if n := s.heapLen(); n != 0 {
		t.Errorf("heap has %d entries", n)
	}
	// The queue works after that: a stale-free schedule for new cells.
	if err := q.Push(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if n := s.heapLen(); n != 1 {
		t.Errorf("heap has %d entries after a new push, want 1", n)
	}
}

func TestRingGrowsKeepingOrder(t *testing.T) {
	s, fc := newFakeScheduler(t, 1, nil)
	ctx := testCtx(t)
	q := NewQueue[int](s, DefaultClasses()[ClassBalanced], 1000)
	defer q.Close()
	var want []int
	// Interleave pushes and pops so the ring wraps before it grows.
	next := 0
	var got []int
	for round := range 6 {
		for range 5 + round*40 {
			if err := q.Push(ctx, next); err != nil {
				t.Fatal(err)
			}
			want = append(want, next)
			next++
		}
		fc.Advance(time.Second)
		got = q.PopReady(got)
	}
	if !slices.Equal(got, want) {
		t.Errorf("order lost across ring growth: got %d items, want %d", len(got), len(want))
	}
}

func TestNewQueueRejectsBadArguments(t *testing.T) {
	s, _ := newFakeScheduler(t, 1, nil)
	for name, f := range map[string]func(){
		"limit 0":       func() { NewQueue[int](s, ClassSpec{}, 0) },
		"negative mean": func() { NewQueue[int](s, ClassSpec{Mean: -1}, 1) },
		"cap below":     func() { NewQueue[int](s, ClassSpec{Mean: time.Second, Cap: time.Millisecond}, 1) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}
