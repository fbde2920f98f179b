package mix

import (
	"slices"
	"testing"
	"time"
)

// TestPushBatchStampsLikePush checks that PushBatch gives each item the
// delay a Push at the same instant would: the scheduler's draws in push
// order, each departure at least the previous one's, and that Run-free
// PeekReady/Consume hand out exactly the due items in order, across chunk
// boundaries and around the stamp ring.
func TestPushBatchStampsLikePush(t *testing.T) {
	const seed = 7
	spec := DefaultClasses()[ClassBalanced]
	s, fc := newFakeScheduler(t, seed, NewMetrics(nil, "test"))
	ctx := testCtx(t)
	q := NewQueue[[4]byte](s, spec, 1000)
	defer q.Discard()
	replay := seededRand(seed)

	var want []time.Time // expected departure of every item, in order
	var prev time.Time
	var items [][4]byte
	push := func(n int) {
		now := fc.Now()
		batch := make([][4]byte, n)
		for i := range batch {
			v := len(items)
			batch[i] = [4]byte{byte(v), byte(v >> 8)}
			items = append(items, batch[i])
			d, _ := sampleDelay(replay, spec)
			dep := now.Add(d)
			if dep.Before(prev) {
				dep = prev
			}
			prev = dep
			want = append(want, dep)
		}
		if err := q.PushBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		clear(batch) // the queue must hold copies
	}

	got := 0
	check := func() {
		t.Helper()
		var ready [][4]byte
		for {
			a, b := q.PeekReady()
			if len(a) == 0 {
				if len(b) != 0 {
					t.Fatalf("PeekReady returned an empty first slice and %d items in the second", len(b))
				}
				break
			}
			if len(a)+len(b) > 2*chunkLen {
				t.Fatalf("PeekReady returned %d items, more than two chunks", len(a)+len(b))
			}
			ready = append(append(ready, a...), b...)
			q.Consume(len(a) + len(b))
		}
		due := 0
		for got+due < len(want) && !want[got+due].After(fc.Now()) {
			due++
		}
		if len(ready) != due {
			t.Fatalf("at %v: %d items ready, want %d", fc.Now().Sub(testEpoch), len(ready), due)
		}
		for i, it := range ready {
			if it != items[got+i] {
				t.Fatalf("item %d is %v, want %v", got+i, it, items[got+i])
			}
		}
		got += len(ready)
	}

	for round := range 60 {
		push(1 + round%23)
		check()
		fc.Advance(time.Duration(round%7) * time.Millisecond)
		check()
	}
	fc.Advance(spec.Cap)
	check()
	if got != len(items) {
		t.Fatalf("consumed %d of %d items", got, len(items))
	}
	if q.Len() != 0 || s.Pooled() != 0 {
		t.Fatalf("after consuming all: Len %d, Pooled %d", q.Len(), s.Pooled())
	}
	if len(q.c.stamps) != 0 || q.chunks != nil {
		t.Errorf("drained queue keeps a ring of %d stamps and %d chunks, want them given back",
			len(q.c.stamps), len(q.chunks))
	}
}

// TestPushBatchBlocksAndConsumeResumes checks backpressure through the
// batch API: a batch larger than the room left queues what fits, blocks,
// and finishes once Consume makes room.
func TestPushBatchBlocksAndConsumeResumes(t *testing.T) {
	s, _ := newFakeScheduler(t, 1, nil)
	ctx := testCtx(t)
	q := NewQueue[int](s, DefaultClasses()[ClassInteractive], 4)
	defer q.Discard()
	done := make(chan error, 1)
	go func() { done <- q.PushBatch(ctx, []int{1, 2, 3, 4, 5, 6}) }()
	expectBlocked(t, done)
	a, b := q.PeekReady()
	if got := append(slices.Clone(a), b...); !slices.Equal(got, []int{1, 2, 3, 4}) {
		t.Fatalf("ready %v, want [1 2 3 4]", got)
	}
	q.Consume(3)
	if err := expectReturn(t, done); err != nil {
		t.Fatal(err)
	}
	a, b = q.PeekReady()
	if got := append(slices.Clone(a), b...); !slices.Equal(got, []int{4, 5, 6}) {
		t.Fatalf("ready %v, want [4 5 6] (wrapped around the ring)", got)
	}
	q.Consume(3)
	if q.Len() != 0 {
		t.Fatalf("Len %d, want 0", q.Len())
	}
}

// TestDiscardDuringPeek checks that a queue discarded while its consumer
// holds peeked items leaves those items intact and makes Consume a no-op.
func TestDiscardDuringPeek(t *testing.T) {
	s, _ := newFakeScheduler(t, 1, nil)
	ctx := testCtx(t)
	q := NewQueue[int](s, DefaultClasses()[ClassInteractive], 8)
	if err := q.PushBatch(ctx, []int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	a, _ := q.PeekReady()
	q.Discard()
	if !slices.Equal(a, []int{1, 2, 3}) {
		t.Fatalf("peeked items changed to %v", a)
	}
	q.Consume(len(a))
	if s.Pooled() != 0 {
		t.Fatalf("Pooled %d after Discard, want 0", s.Pooled())
	}
	if err := q.PushBatch(ctx, []int{4}); err != ErrClosed {
		t.Fatalf("PushBatch after Discard: %v, want ErrClosed", err)
	}
}

func TestConsumeMoreThanReleasedPanics(t *testing.T) {
	s, _ := newFakeScheduler(t, 1, nil)
	q := NewQueue[int](s, DefaultClasses()[ClassBalanced], 8)
	defer q.Discard()
	if err := q.Push(testCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Consume(1) with nothing released did not panic")
		}
	}()
	q.Consume(1)
}

// TestBudgetSharesTheMix checks Config.Budget: a queue alone may use the
// whole budget; past it, a queue holding its share or more waits for its
// own cells to leave while a lighter queue may still add up to its share.
func TestBudgetSharesTheMix(t *testing.T) {
	const budget = 16 // share 2
	fc := NewFakeClock(testEpoch)
	s := NewScheduler(Config{Clock: fc, Rand: seededRand(1), Budget: budget})
	ctx := testCtx(t)
	spec := DefaultClasses()[ClassInteractive]
	a := NewQueue[int](s, spec, 100)
	b := NewQueue[int](s, spec, 100)
	defer a.Discard()
	defer b.Discard()

	many := make([]int, budget)
	if err := a.PushBatch(ctx, many); err != nil { // alone: the whole budget
		t.Fatal(err)
	}
	aMore := pushAsync(ctx, a, 1)
	expectBlocked(t, aMore)
	for i := range budget / FairShareDivisor {
		if err := b.Push(ctx, i); err != nil { // under its share: allowed past the budget
			t.Fatalf("push %d to the light queue: %v", i, err)
		}
	}
	bMore := pushAsync(ctx, b, 9)
	expectBlocked(t, bMore)
	if got := len(a.PopReady(nil)); got != budget {
		t.Fatalf("popped %d from the heavy queue, want %d", got, budget)
	}
	if err := expectReturn(t, aMore); err != nil {
		t.Fatalf("heavy queue after its cells left: %v", err)
	}
	b.PopReady(nil) // its own cells leave: it may push again
	if err := expectReturn(t, bMore); err != nil {
		t.Fatalf("light queue after its cells left: %v", err)
	}
	if s.Pooled() != 2 {
		t.Fatalf("Pooled %d, want 2", s.Pooled())
	}
}
