package onionproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/link"
)

// The speed figures, each with the same figure for a direct
// loopback connection in the same run:
//
//	go test -run '^$' -bench . -benchtime 2s ./onionproxy
//
// ns/op is the figure itself (time to first byte, query latency, build
// time); streams/s is reported as a metric.

// firstByte sends a GET for path on c and waits for the first byte of the
// response.
func firstByte(c net.Conn, host, path string) error {
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host); err != nil {
		return err
	}
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	return err
}

func benchNet(b *testing.B, tweak func(*Config)) (*testNet, *runningProxy, uint16) {
	b.Helper()
	n, rp := startNetAndProxy(b, tweak)
	port, _ := strconv.Atoi(n.port())
	return n, rp, uint16(port)
}

// BenchmarkTTFBReadyCircuit: SOCKS5 connect + GET of a small page on a
// circuit that is already built (same credentials every time), class 0.
func BenchmarkTTFBReadyCircuit(b *testing.B) {
	_, rp, port := benchNet(b, nil)
	socks := rp.Addrs().SOCKS[0]
	r := socksReq{user: "bench", host: webName, port: port}
	// Warm up: build the circuit.
	if _, err := fetchVia(socks, r, "/page"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, code, err := socksDial(socks, r)
		if err != nil || code != 0 {
			b.Fatal(code, err)
		}
		if err := firstByte(c, webName, "/page"); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkTTFBDirect is the same request straight to the web server.
func BenchmarkTTFBDirect(b *testing.B) {
	n, _, _ := benchNet(b, nil)
	addr := n.web.Listener.Addr().String()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if err := firstByte(c, webName, "/page"); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkTTFBFreshCircuit: every request has new credentials and no
// clean circuit is kept, so each builds a 3-hop circuit first.
func BenchmarkTTFBFreshCircuit(b *testing.B) {
	_, rp, port := benchNet(b, func(c *Config) {
		c.Circuits.Preemptive = -1
		c.Circuits.MaxCircuits = 1 << 20
	})
	socks := rp.Addrs().SOCKS[0]
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, code, err := socksDial(socks, socksReq{user: "fresh" + strconv.Itoa(i), host: webName, port: port})
		if err != nil || code != 0 {
			b.Fatal(code, err)
		}
		if err := firstByte(c, webName, "/page"); err != nil {
			b.Fatal(err)
		}
		c.Close()
		if i%50 == 49 {
			b.StopTimer()
			rp.NewIdentity() // let the used circuits close
			b.StartTimer()
		}
	}
}

// BenchmarkCircuitBuild: one 3-hop circuit (CREATE2 + 2 EXTEND2), over a
// link to the guard that is already open, built and closed.
func BenchmarkCircuitBuild(b *testing.B) {
	n, rp, _ := benchNet(b, nil)
	cons := rp.consensus()
	sel := newSelector()
	links := link.NewManager(&link.Config{})
	defer links.Close()
	path, err := sel.choosePath(cons, rp.guards.candidates(), pathSpec{port: 80}, pathOptions{})
	if err != nil {
		b.Fatal(err)
	}
	_ = n
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := circuit.Build(ctx, links, hops(path), circuit.BuildOptions{})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkDNSOverCircuit: one A query through the DNS front-end, cache
// off, so every query crosses a circuit to the exit's resolver.
func BenchmarkDNSOverCircuit(b *testing.B) {
	_, rp, _ := benchNet(b, func(c *Config) { c.DNSListener.CacheEntries = -1 })
	benchDNS(b, rp.Addrs().DNS)
}

// BenchmarkDNSDirect: the same query straight to the exits' upstream.
func BenchmarkDNSDirect(b *testing.B) {
	n, _, _ := benchNet(b, nil)
	benchDNS(b, n.dnsAddr)
}

func benchDNS(b *testing.B, addr string) {
	cl := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion(webName+".", dns.TypeA)
	if _, _, err := cl.Exchange(q, addr); err != nil { // warm up
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, _, err := cl.Exchange(q, addr)
		if err != nil || len(r.Answer) != 1 {
			b.Fatal(r, err)
		}
	}
}

// BenchmarkStreamsPerSecond: parallel clients, each stream a SOCKS connect
// and a whole small page, on ready circuits (one per client goroutine's
// credentials).
func BenchmarkStreamsPerSecond(b *testing.B) {
	n, rp, port := benchNet(b, nil)
	socks := rp.Addrs().SOCKS[0]
	var id atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		r := socksReq{user: "p" + strconv.FormatInt(id.Add(1)%4, 10), host: webName, port: port}
		for pb.Next() {
			body, err := fetchVia(socks, r, "/page")
			if err != nil || len(body) != len(n.page) {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "streams/s")
}

// BenchmarkStreamsPerSecondDirect: the same load straight to the server.
func BenchmarkStreamsPerSecondDirect(b *testing.B) {
	n, _, _ := benchNet(b, nil)
	addr := n.web.Listener.Addr().String()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			fmt.Fprintf(c, "GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			io.Copy(io.Discard, bufio.NewReader(c))
			c.Close()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "streams/s")
}
