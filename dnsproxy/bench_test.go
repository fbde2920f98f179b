package dnsproxy

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// benchClient is a stub with one UDP socket to the server.
type benchClient struct {
	co  *dns.Conn
	buf []byte
}

func newBenchClient(b *testing.B, addr string) *benchClient {
	b.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return &benchClient{co: &dns.Conn{Conn: c, UDPSize: dns.MaxMsgSize}}
}

// ask sends a packed query and waits for the reply with the same ID.
func (c *benchClient) ask(b *testing.B, q []byte, id uint16) {
	c.co.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.co.Write(q); err != nil {
		b.Fatal(err)
	}
	for {
		if c.buf == nil {
			c.buf = make([]byte, dns.MaxMsgSize)
		}
		n, err := c.co.Read(c.buf)
		if err != nil {
			b.Fatal(err)
		}
		if n >= 12 && uint16(c.buf[0])<<8|uint16(c.buf[1]) == id {
			if rcode := c.buf[3] & 0xF; rcode != dns.RcodeSuccess {
				b.Fatalf("rcode %d", rcode)
			}
			return
		}
	}
}

func benchNet(b *testing.B) *testNet {
	return newTestNet(b, func(c *ServerConfig) {
		c.Log = zap.NewNop()
		c.CacheEntries = 1 << 20
	})
}

// BenchmarkServerCacheMiss: stub -> Server -> Exchanger -> Resolver ->
// authority and back, over loopback UDP, a new name every time.
func BenchmarkServerCacheMiss(b *testing.B) {
	n := benchNet(b)
	c := newBenchClient(b, n.server.Addr())
	qs := make([][]byte, b.N)
	for i := range qs {
		m := question("n"+strconv.Itoa(i)+benchSuffix, dns.TypeA)
		m.Id = uint16(i)
		qs[i], _ = m.Pack()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.ask(b, qs[i], uint16(i))
	}
	b.StopTimer()
	if got := n.exch.calls.Load(); got != int64(b.N) {
		b.Fatalf("exchanges: %d, want %d", got, b.N)
	}
}

// BenchmarkServerCacheHit: stub -> Server (cache) and back, over loopback
// UDP.
func BenchmarkServerCacheHit(b *testing.B) {
	n := benchNet(b)
	c := newBenchClient(b, n.server.Addr())
	m := question("www.chive.test.", dns.TypeA)
	q, _ := m.Pack()
	c.ask(b, q, m.Id) // fill the cache
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.ask(b, q, m.Id)
	}
	b.StopTimer()
	if got := n.exch.calls.Load(); got != 1 {
		b.Fatalf("exchanges: %d, want 1", got)
	}
}

// BenchmarkResolverExchange: the exit's side alone: Resolver -> authority
// over loopback UDP.
func BenchmarkResolverExchange(b *testing.B) {
	auth := newAuthority(b)
	r, err := NewResolver(ResolverConfig{Upstreams: []string{auth.addr}, Log: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	q, _ := forwardQuery(queryKey{name: "www.chive.test.", qtype: dns.TypeA, qclass: dns.ClassINET}, 0).Pack()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := r.Exchange(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMakeReply: building and packing a cache hit's reply (no I/O).
func BenchmarkMakeReply(b *testing.B) {
	req := question("www.chive.test.", dns.TypeA)
	req.SetEdns0(1232, false)
	a := new(dns.Msg)
	a.SetReply(forwardQuery(keyOf(req), 0))
	a.Answer = []dns.RR{
		&dns.CNAME{Hdr: hdr("www.chive.test.", dns.TypeCNAME, 300), Target: "cdn.chive.test."},
		&dns.A{Hdr: hdr("cdn.chive.test.", dns.TypeA, 300), A: net.IPv4(192, 0, 2, 10)},
		&dns.A{Hdr: hdr("cdn.chive.test.", dns.TypeA, 300), A: net.IPv4(192, 0, 2, 11)},
	}
	b.ReportAllocs()
	for range b.N {
		r := makeReply(req, a, 10)
		r.Truncate(udpReplySize(req))
		if _, err := r.Pack(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheGet: one cache lookup among 1024 entries.
func BenchmarkCacheGet(b *testing.B) {
	c := newAnswerCache(DefaultCacheEntries, maxCacheKeys, maxCacheBytes)
	now := time.Unix(1000, 0)
	msg := new(dns.Msg)
	for i := range DefaultCacheEntries {
		c.put("dns|127.0.0.1:9053|127.0.0.1", key(i), msg, 100, time.Hour, now)
	}
	k := key(500)
	b.ReportAllocs()
	for range b.N {
		if _, _, ok := c.get("dns|127.0.0.1:9053|127.0.0.1", k, now); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkCheckAndKey: validating a parsed query and deriving its key
// and normalised bytes.
func BenchmarkCheckAndKey(b *testing.B) {
	req := question("WWW.Chive.Test.", dns.TypeAAAA)
	req.SetEdns0(1232, true)
	b.ReportAllocs()
	for range b.N {
		if rc, _ := checkQuery(req); rc != dns.RcodeSuccess {
			b.Fatal(rc)
		}
		if _, err := forwardQuery(keyOf(req), 0).Pack(); err != nil {
			b.Fatal(err)
		}
	}
}
