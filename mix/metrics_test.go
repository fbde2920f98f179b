package mix

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func histogramSumCount(t *testing.T, h prometheus.Metric) (float64, uint64) {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleSum(), m.GetHistogram().GetSampleCount()
}

// gathered returns the registry's single-valued metrics by name (gauges and
// counters) and the names of all families.
func gathered(t *testing.T, reg *prometheus.Registry) (map[string]float64, []string) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]float64{}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		for _, m := range mf.GetMetric() {
			switch {
			case m.Gauge != nil:
				vals[mf.GetName()] = m.GetGauge().GetValue()
			case m.Counter != nil && len(m.GetLabel()) == 0:
				vals[mf.GetName()] = m.GetCounter().GetValue()
			}
		}
	}
	return vals, names
}

// entropyOf computes -sum p log2 p for waiting counts, directly.
func entropyOf(counts []int) float64 {
	n := 0
	for _, c := range counts {
		n += c
	}
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(n)
			h -= p * math.Log2(p)
		}
	}
	return h
}

func TestWlog2w(t *testing.T) {
	for _, w := range []int{0, 1, 2, 3, 1023, 1024, 5000} {
		want := 0.0
		if w > 0 {
			want = float64(w) * math.Log2(float64(w))
		}
		if got := float64(wlog2w(w)) / (1 << entropyShift); math.Abs(got-want) > 1e-5 {
			t.Errorf("wlog2w(%d) = %v, want %v", w, got, want)
		}
	}
}

func TestMetricsPoolAndAnonymity(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, "chive")
	s, fc := newFakeScheduler(t, 8, m)
	ctx := testCtx(t)
	spec := DefaultClasses()[ClassBalanced]
	qs := []*Queue[time.Time]{NewQueue[time.Time](s, spec, 10), NewQueue[time.Time](s, spec, 10), NewQueue[time.Time](s, spec, 10)}
	counts := []int{3, 1, 2}
	for i, q := range qs {
		for range counts[i] {
			if err := q.Push(ctx, fc.Now()); err != nil {
				t.Fatal(err)
			}
			fc.Advance(100 * time.Microsecond)
		}
	}

	vals, names := gathered(t, reg)
	wantNames := []string{
		"chive_mix_active_queues", "chive_mix_delay_seconds", "chive_mix_departure_entropy_bits",
		"chive_mix_departure_other_circuits", "chive_mix_discarded_cells_total", "chive_mix_held_cells",
		"chive_mix_pool_cells",
	}
	for _, n := range wantNames {
		if !slices.Contains(names, n) {
			t.Errorf("metric %s not exported (have %v)", n, names)
		}
	}
	for name, want := range map[string]float64{"chive_mix_pool_cells": 6, "chive_mix_held_cells": 6, "chive_mix_active_queues": 3} {
		if got := vals[name]; got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if others, h := s.anonymity(); others != 2 || math.Abs(h-entropyOf(counts)) > 1e-6 {
		t.Errorf("anonymity() = %v, %v; want 2, %v", others, h, entropyOf(counts))
	}

	// Step through every departure; compute what each departing cell should
	// record from the pool as it was just before.
	var wantOthers, wantEntropy, wantDelay float64
	departed := 0
	var buf []time.Time
	for departed < 6 {
		s.mu.Lock()
		at := s.epoch.Add(time.Duration(s.heap[0].key))
		s.mu.Unlock()
		fc.AdvanceTo(at)
		before := slices.Clone(counts)
		active := 0
		for _, c := range before {
			if c > 0 {
				active++
			}
		}
		s.tick(s.now())
		for i, q := range qs {
			buf = q.PopReady(buf[:0])
			for _, arrival := range buf {
				wantOthers += float64(active - 1)
				wantEntropy += entropyOf(before)
				wantDelay += fc.Now().Sub(arrival).Seconds()
			}
			counts[i] -= len(buf)
			departed += len(buf)
		}
	}
	for _, c := range []struct {
		name string
		h    prometheus.Metric
		want float64
	}{
		{"others", m.others.metric(), wantOthers},
		{"entropy", m.entropy.metric(), wantEntropy},
		{"delay", m.delay.WithLabelValues("balanced").(prometheus.Metric), wantDelay},
	} {
		sum, n := histogramSumCount(t, c.h)
		if n != 6 || math.Abs(sum-c.want) > 1e-4 {
			t.Errorf("%s histogram: sum %v count %d, want sum %v count 6", c.name, sum, n, c.want)
		}
	}
	t.Logf("sum of other circuits %v, sum of entropy %.3f bits over 6 departures", wantOthers, wantEntropy)
	if wantOthers == 0 || wantEntropy == 0 {
		t.Error("degenerate scenario: no cell departed with company")
	}
	vals, _ = gathered(t, reg)
	for _, name := range []string{"chive_mix_pool_cells", "chive_mix_held_cells", "chive_mix_active_queues"} {
		if vals[name] != 0 {
			t.Errorf("%s = %v after all departed", name, vals[name])
		}
	}
	if s.plogp.Load() != 0 {
		t.Errorf("plogp = %d after all departed, want exactly 0", s.plogp.Load())
	}
	for _, q := range qs {
		q.Close()
	}
}

func TestMetricsCappedCounter(t *testing.T) {
	m := NewMetrics(nil, "test")
	s, _ := newFakeScheduler(t, 9, m)
	ctx := testCtx(t)
	// Cap = mean: about 37% of draws are clamped.
	spec := ClassSpec{Class: ClassHighLatency, Mean: time.Millisecond, Cap: time.Millisecond}
	q := NewQueue[int](s, spec, 1000)
	defer q.Close()
	for i := range 1000 {
		if err := q.Push(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	got := counterValue(t, m.capped.WithLabelValues("high-latency"))
	if got < 300 || got > 440 {
		t.Errorf("delay_capped_total = %v of 1000, want about 368", got)
	}
}

func TestBatchHistogram(t *testing.T) {
	h := newBatchHistogram("x", "help", []float64{0, 1, 2})
	h.observeN(0, 3)
	h.observeN(1.5, 2)
	h.observeN(2, 1)
	h.observeN(100, 1)
	var m dto.Metric
	if err := h.metric().Write(&m); err != nil {
		t.Fatal(err)
	}
	hg := m.GetHistogram()
	if hg.GetSampleCount() != 7 || hg.GetSampleSum() != 105 {
		t.Errorf("count %d sum %v, want 7 and 105", hg.GetSampleCount(), hg.GetSampleSum())
	}
	want := map[float64]uint64{0: 3, 1: 3, 2: 6}
	for _, b := range hg.GetBucket() {
		if got := b.GetCumulativeCount(); got != want[b.GetUpperBound()] {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), got, want[b.GetUpperBound()])
		}
	}
}
