package mix

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkSchedulerPushPop measures cells per second through a running
// scheduler on the real clock, set up as a relay uses it: one writer
// goroutine per queue waiting on Ready and popping batches, producers
// pushing round-robin over the queues (one producer per CPU, each owning a
// disjoint share of the queues), metrics on, DefaultResolution unless the
// name says otherwise. One op is one cell pushed and popped.
func BenchmarkSchedulerPushPop(b *testing.B) {
	for _, mean := range []time.Duration{0, time.Millisecond} {
		for _, queues := range []int{1, 100, 10000} {
			b.Run(fmt.Sprintf("mean=%v/queues=%d", mean, queues), func(b *testing.B) {
				benchPushPop(b, queues, mean, DefaultResolution, NewMetrics(prometheus.NewRegistry(), "bench"))
			})
		}
	}
	for _, queues := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("mean=1ms/queues=%d/resolution=0", queues), func(b *testing.B) {
			benchPushPop(b, queues, time.Millisecond, 0, NewMetrics(prometheus.NewRegistry(), "bench"))
		})
	}
	b.Run("mean=1ms/queues=100/metrics=off", func(b *testing.B) {
		benchPushPop(b, 100, time.Millisecond, DefaultResolution, nil)
	})
}

func benchPushPop(b *testing.B, queues int, mean, resolution time.Duration, m *Metrics) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewScheduler(Config{Metrics: m, Resolution: resolution})
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		s.Run(ctx)
	}()
	defer func() { <-runDone }()
	defer cancel()

	spec := ClassSpec{Class: ClassBalanced, Mean: mean}
	if mean == 0 {
		spec.Class = ClassInteractive
	}
	const limit = 1024
	qs := make([]*Queue[int], queues)
	for i := range qs {
		qs[i] = NewQueue[int](s, spec, limit)
	}

	var popped atomic.Int64
	var target atomic.Int64
	allPopped := make(chan struct{}, 1)
	var writers sync.WaitGroup
	for _, q := range qs {
		writers.Add(1)
		go func() {
			defer writers.Done()
			buf := make([]int, 0, limit)
			for {
				select {
				case <-q.Ready():
				case <-q.Done():
					return
				}
				buf = q.PopReady(buf[:0])
				if n := popped.Add(int64(len(buf))); len(buf) > 0 && n == target.Load() {
					allPopped <- struct{}{}
				}
			}
		}()
	}
	defer func() {
		for _, q := range qs {
			q.Close()
		}
		writers.Wait()
	}()

	producers := min(queues, runtime.GOMAXPROCS(0))
	push := func(total int) {
		popped.Store(0)
		target.Store(int64(total))
		var wg sync.WaitGroup
		for p := range producers {
			// Producer p pushes to queues p, p+producers, ... and its
			// share of the cells.
			n := total / producers
			if p < total%producers {
				n++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				qi := p
				for i := range n {
					if err := qs[qi].Push(ctx, i); err != nil {
						b.Error(err)
						return
					}
					if qi += producers; qi >= queues {
						qi = p
					}
				}
			}()
		}
		wg.Wait()
		if total > 0 {
			<-allPopped
		}
	}

	// Warm up: grow the rings and start every goroutine, so the measured
	// part is the steady state.
	push(min(20*queues, 200000))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	push(b.N)
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cells/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/cell")
}

// cpuTime returns the process's user plus system CPU time. Per cell it is
// a figure that other load on the machine does not inflate, unlike
// wall-clock throughput: 1e9 / cpu-ns/cell is the rate one fully used core
// sustains.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPushPopSerial is the CPU cost per cell without goroutine
// hand-offs: one goroutine pushes a batch and pops it, on a fake clock
// advanced past the cap so the whole batch is due (PopReady releases it).
func BenchmarkPushPopSerial(b *testing.B) {
	for _, spec := range []ClassSpec{DefaultClasses()[ClassInteractive], DefaultClasses()[ClassBalanced]} {
		b.Run(spec.Class.String(), func(b *testing.B) {
			fc := NewFakeClock(testEpoch)
			s := NewScheduler(Config{Clock: fc, Metrics: NewMetrics(nil, "bench")})
			q := NewQueue[int](s, spec, 64)
			defer q.Close()
			ctx := context.Background()
			buf := make([]int, 0, 64)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; {
				for j := 0; j < 64 && i < b.N; j++ {
					if err := q.Push(ctx, i); err != nil {
						b.Fatal(err)
					}
					i++
				}
				fc.Advance(spec.Cap + time.Millisecond)
				buf = q.PopReady(buf[:0])
				s.tick(s.now()) // drop the stale heap entry, as Run would
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/cell")
		})
	}
}
