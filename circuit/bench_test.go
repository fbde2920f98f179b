package circuit

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/chive-net/chive/mix"
)

// sourceServer streams zeros to every connection until it closes; with a
// 1-byte request first it instead echoes (for latency).
type sourceServer struct {
	ln   net.Listener
	port uint16
	wg   sync.WaitGroup
}

func startSource(tb testing.TB) *sourceServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &sourceServer{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				var mode [1]byte
				if _, err := io.ReadFull(c, mode[:]); err != nil {
					return
				}
				if mode[0] == 'e' { // echo
					io.Copy(c, c)
					return
				}
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func readBulk(b *testing.B, conn net.Conn) {
	b.Helper()
	if _, err := conn.Write([]byte{'s'}); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	const chunk = 1 << 20
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for got := 0; got < chunk; {
			n, err := conn.Read(buf[:min(len(buf), chunk-got)])
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	b.StopTimer()
}

// BenchmarkBulk compares one stream through 3 relays on loopback (class 0,
// every relay, the client and the server sharing this machine's cores)
// with one plain TCP connection, in the same run. MB/s is the figure;
// the ratio is chive's share of plain loopback.
func BenchmarkBulk(b *testing.B) {
	src := startSource(b)
	b.Run("tcp", func(b *testing.B) {
		conn, err := net.Dial("tcp", src.ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		readBulk(b, conn)
	})
	b.Run("3hops", func(b *testing.B) {
		n := newTestNet(b, relayOpts{})
		c := n.build(b, 0)
		conn, err := c.Dial(context.Background(), "127.0.0.1", src.port)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		readBulk(b, conn)
	})
	// The balanced class: every hop delays every cell by Exp(5 ms) (capped
	// at 50 ms), keeping each circuit's order.
	b.Run("3hops-class1", func(b *testing.B) {
		n := newTestNet(b, relayOpts{classes: mix.DefaultClasses()})
		c := n.build(b, 1)
		conn, err := c.Dial(context.Background(), "127.0.0.1", src.port)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		readBulk(b, conn)
	})
}

// BenchmarkEchoLatency is the round trip of one byte: direct, and through 3
// hops at class 0. The difference divided by 3 is the added latency per hop.
func BenchmarkEchoLatency(b *testing.B) {
	src := startSource(b)
	echo := func(b *testing.B, conn net.Conn) {
		if _, err := conn.Write([]byte{'e'}); err != nil {
			b.Fatal(err)
		}
		var one [1]byte
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			conn.Write(one[:])
			if _, err := io.ReadFull(conn, one[:]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("tcp", func(b *testing.B) {
		conn, err := net.Dial("tcp", src.ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		echo(b, conn)
	})
	b.Run("3hops", func(b *testing.B) {
		n := newTestNet(b, relayOpts{})
		c := n.build(b, 0)
		conn, err := c.Dial(context.Background(), "127.0.0.1", src.port)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		echo(b, conn)
	})
}

// BenchmarkBuild times building a fresh 3-hop circuit over links that are
// already open (the common case for a client with a guard).
func BenchmarkBuild(b *testing.B) {
	n := newTestNet(b, relayOpts{})
	n.build(b, 0) // opens the links
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := Build(context.Background(), n.client, n.path(), BuildOptions{})
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkIdleCircuits holds many idle circuits and reports the heap and
// goroutine stack each costs. Client and relays share this process, so it
// builds them once through one hop and once through three: the difference,
// halved, is what one more relay hop costs a relay (the client's extra CGO
// layers, a few hundred bytes each, are included, so it errs high).
func BenchmarkIdleCircuits(b *testing.B) {
	for _, count := range []int{1000, 10000} {
		var heap, stack [4]float64
		for _, hops := range []int{1, 3} {
			b.Run(fmt.Sprintf("circuits=%d/hops=%d", count, hops), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					heap[hops], stack[hops] = idleCircuits(b, count, hops)
				}
				b.ReportMetric(heap[hops], "heap-B/circuit")
				b.ReportMetric(stack[hops], "stack-B/circuit")
				if hops == 3 {
					b.ReportMetric((heap[3]-heap[1])/2, "heap-B/relay-hop")
					b.ReportMetric((stack[3]-stack[1])/2, "stack-B/relay-hop")
				}
			})
		}
	}
}

func idleCircuits(b *testing.B, count, hops int) (heapPer, stackPer float64) {
	n := newTestNet(b, relayOpts{})
	path := n.path()[3-hops:]
	if _, err := Build(context.Background(), n.client, path, BuildOptions{}); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	circs := make([]*Circuit, 0, count)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := 0; i < count; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := Build(ctx, n.client, path, BuildOptions{})
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			circs = append(circs, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Idle means idle: let two buffer sweeps pass, as they would on a relay.
	time.Sleep(2*sweepInterval + time.Second)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	for _, r := range n.relays[3-hops:] {
		if got := r.relay.NumCircuits(); got < count {
			b.Fatalf("relay holds %d circuits, want %d", got, count)
		}
	}
	for _, c := range circs {
		c.Close()
	}
	return (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(count),
		(float64(after.StackInuse) - float64(before.StackInuse)) / float64(count)
}
