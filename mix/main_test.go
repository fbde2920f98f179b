package mix

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testEpoch is the fake clocks' starting time.
var testEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// seededRand returns a deterministic ChaCha8 generator, the same kind the
// scheduler uses in production.
func seededRand(seed byte) *rand.Rand {
	var s [32]byte
	s[0] = seed
	return rand.New(rand.NewChaCha8(s))
}

// newFakeScheduler returns a scheduler on a fake clock with a seeded
// generator (which the caller may replicate with seededRand(seed)).
func newFakeScheduler(t *testing.T, seed byte, m *Metrics) (*Scheduler, *FakeClock) {
	t.Helper()
	fc := NewFakeClock(testEpoch)
	return NewScheduler(Config{Clock: fc, Rand: seededRand(seed), Metrics: m}), fc
}

// startRun runs s.Run until the test ends and checks that it returns nil.
func startRun(t *testing.T, s *Scheduler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	})
}

// testCtx returns a context that ends with the test or after 10 s, so that a
// broken wait fails the test instead of hanging it.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitReady waits for q's Ready signal or fails the test.
func waitReady[T any](t *testing.T, ctx context.Context, q *Queue[T]) {
	t.Helper()
	select {
	case <-q.Ready():
	case <-ctx.Done():
		t.Fatalf("waiting for Ready: %v", ctx.Err())
	}
}

// heapLen returns the number of heap entries.
func (s *Scheduler) heapLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.heap)
}

// checkHeap verifies the heap property and the index bookkeeping.
func (s *Scheduler) checkHeap(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.heap {
		if c.hidx != i {
			t.Fatalf("heap[%d].hidx = %d", i, c.hidx)
		}
		if i > 0 && s.heap[(i-1)/2].key > c.key {
			t.Fatalf("heap property broken at %d", i)
		}
	}
}
