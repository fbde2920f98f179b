package dnsproxy

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

// replyWithin reads one datagram or stream chunk from c within d; nil if
// none came.
func replyWithin(t *testing.T, c net.Conn, d time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatalf("read: %v", err)
	}
	return buf[:n]
}

func dialUDP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustPack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHostileUDP(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	n := newTestNet(t, nil)
	addr := n.server.Addr()

	// A response sent to us: ignored, no reply.
	resp := question("www.chive.test.", dns.TypeA)
	resp.Response = true
	c := dialUDP(t, addr)
	c.Write(mustPack(t, resp))
	if r := replyWithin(t, c, 300*time.Millisecond); r != nil {
		t.Errorf("a response got a reply: %x", r)
	}

	// An oversized query (padded past MaxQuerySize): dropped, no reply.
	big := question("www.chive.test.", dns.TypeA)
	big.SetEdns0(1232, false)
	big.IsEdns0().Option = append(big.IsEdns0().Option, &dns.EDNS0_PADDING{Padding: make([]byte, 1500)})
	c = dialUDP(t, addr)
	c.Write(mustPack(t, big))
	if r := replyWithin(t, c, 300*time.Millisecond); r != nil {
		t.Errorf("an oversized query got a reply: %x", r)
	}

	// A header with QDCOUNT 0: FORMERR.
	hdrOnly := []byte{0xab, 0xcd, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0}
	c = dialUDP(t, addr)
	c.Write(hdrOnly)
	r := replyWithin(t, c, 2*time.Second)
	var m dns.Msg
	if err := m.Unpack(r); err != nil || m.Rcode != dns.RcodeFormatError || m.Id != 0xabcd {
		t.Errorf("QDCOUNT 0: got %v (%v), want FORMERR with id abcd", &m, err)
	}

	// QDCOUNT 1 but no question: FORMERR too.
	noQ := []byte{0xab, 0xce, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	c = dialUDP(t, addr)
	c.Write(noQ)
	r = replyWithin(t, c, 2*time.Second)
	m = dns.Msg{}
	if err := m.Unpack(r); err != nil || m.Rcode != dns.RcodeFormatError {
		t.Errorf("QDCOUNT 1 without a question: got %v (%v), want FORMERR", &m, err)
	}

	// Garbage of every size, and short packets.
	rng := rand.New(rand.NewPCG(1, 2))
	c = dialUDP(t, addr)
	for i := range 500 {
		b := make([]byte, rng.IntN(700))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if i%5 == 0 && len(b) >= 4 {
			b[2] &^= 0x80 // a query, so that the parser gets further
		}
		c.Write(b)
	}
	c.Write([]byte{1, 2, 3})

	// The server is still up and answers a real stub. The kernel may have
	// dropped datagrams while the socket buffer was full of garbage, so dig
	// may retry, as stubs do.
	got := dig(t, addr, "+tries=3", "www.chive.test", "A")
	if got.status != "NOERROR" || len(got.answer) != 1 {
		t.Errorf("after garbage: %s %q", got.status, got.answer)
	}
	if v := rejectedCount(t, n.metrics, reasonResponse); v < 1 {
		t.Errorf("rejected{response}: %v", v)
	}
	if v := rejectedCount(t, n.metrics, reasonOversized); v != 1 {
		t.Errorf("rejected{oversized}: got %v, want 1", v)
	}
	// Two from the FORMERR cases above; the garbage adds what the kernel did
	// not drop on the way.
	if v := rejectedCount(t, n.metrics, reasonMalformed); v < 2 {
		t.Errorf("rejected{malformed}: got %v, want at least 2", v)
	} else {
		t.Logf("rejected{malformed}: %v", v)
	}
}

func TestHostileTCPFraming(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	const idle = time.Second
	n := newTestNet(t, func(c *ServerConfig) { c.TCPIdleTimeout = idle })
	addr := n.server.Addr()

	dialTCP := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedWithin reports when the server closed c, or fails after d.
	closedWithin := func(name string, c net.Conn, d time.Duration) time.Duration {
		start := time.Now()
		c.SetReadDeadline(start.Add(d))
		_, err := io.Copy(io.Discard, c)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("%s: connection still open after %v", name, d)
			}
		}
		return time.Since(start)
	}

	type stall struct {
		name  string
		bytes []byte
	}
	lengthThen := func(length int, body int) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(length))
		return append(b, make([]byte, body)...)
	}
	// Stalled framing: the server waits at most the idle timeout.
	for _, s := range []stall{
		{"nothing sent", nil},
		{"one byte of the length prefix", []byte{0}},
		{"length 100, 10 bytes", lengthThen(100, 10)},
	} {
		c := dialTCP()
		c.Write(s.bytes)
		if d := closedWithin(s.name, c, idle+3*time.Second); d < idle/2 {
			t.Errorf("%s: closed after %v, before the idle timeout", s.name, d)
		}
	}
	// Lengths we never accept: closed at once.
	for _, s := range []stall{
		{"length above MaxQuerySize", lengthThen(60000, 0)},
		{"length below a header", lengthThen(5, 5)},
	} {
		c := dialTCP()
		c.Write(s.bytes)
		if d := closedWithin(s.name, c, idle+3*time.Second); d > idle/2 {
			t.Errorf("%s: closed after %v, want at once", s.name, d)
		}
	}
	// A framed non-query (a response) is ignored; the connection stays
	// usable for a real query after it.
	c := dialTCP()
	resp := question("www.chive.test.", dns.TypeA)
	resp.Response = true
	co := &dns.Conn{Conn: c}
	if err := co.WriteMsg(resp); err != nil {
		t.Fatal(err)
	}
	if err := co.WriteMsg(question("www.chive.test.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if r, err := co.ReadMsg(); err != nil || len(r.Answer) != 1 {
		t.Errorf("query after an ignored response: %v %v", r, err)
	}

	got := dig(t, addr, "+tcp", "www.chive.test", "A")
	if got.status != "NOERROR" || len(got.answer) != 1 {
		t.Errorf("after hostile framing: %s %q", got.status, got.answer)
	}
}

func TestHostileHalfOpenFlood(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	const (
		maxConns = 8
		flood    = 200
		idle     = time.Second
	)
	n := newTestNet(t, func(c *ServerConfig) {
		c.MaxTCPConns = maxConns
		c.TCPIdleTimeout = idle
	})
	addr := n.server.Addr()
	runtime.GC()
	base := runtime.NumGoroutine()

	conns := make([]net.Conn, 0, flood)
	resetAtDial := 0
	for range flood {
		c, err := net.Dial("tcp", addr)
		if errors.Is(err, syscall.ECONNRESET) {
			resetAtDial++ // rejected before connect even returned
			continue
		}
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	t.Logf("flood: %d connections, %d reset during connect", len(conns), resetAtDial)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	// The server accepts maxConns of them and resets the rest at once.
	deadline := time.Now().Add(3 * time.Second)
	for rejectedCount(t, n.metrics, reasonTCPConns) < flood-maxConns && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if v := rejectedCount(t, n.metrics, reasonTCPConns); v != flood-maxConns {
		t.Errorf("rejected{tcp_conns}: got %v, want %d", v, flood-maxConns)
	}
	if open := n.server.tcpLn.open(); open > maxConns {
		t.Errorf("open TCP connections: %d, bound %d", open, maxConns)
	}
	if g := runtime.NumGoroutine(); g > base+maxConns+4 {
		t.Errorf("goroutines during the flood: %d, base %d, bound %d", g, base, maxConns)
	}
	// UDP stubs are served all along.
	got := dig(t, addr, "+tries=3", "www.chive.test", "A")
	if got.status != "NOERROR" || len(got.answer) != 1 {
		t.Errorf("UDP during the flood: %s %q", got.status, got.answer)
	}
	// Every flood connection is closed by the server: the excess at once,
	// the accepted ones after the idle timeout.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(idle + 3*time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("flood connection %d still open after the idle timeout", i)
			}
		}
	}
	if open := n.server.tcpLn.open(); open != 0 {
		t.Errorf("open TCP connections after the idle timeout: %d", open)
	}
	// And TCP stubs are served again.
	got = dig(t, addr, "+tcp", "www.chive.test", "A")
	if got.status != "NOERROR" || len(got.answer) != 1 {
		t.Errorf("TCP after the flood: %s %q", got.status, got.answer)
	}
}

// TestHostileUDPFlood sends many valid queries for distinct names at once
// while the network is slow: at most MaxInflight of them reach the network
// at a time, the rest get REFUSED, and the server keeps serving.
func TestHostileUDPFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test")
	}
	t.Cleanup(func() { goleak.VerifyNone(t) })
	const maxInflight = 16
	n := newTestNet(t, func(c *ServerConfig) { c.MaxInflight = maxInflight })
	n.auth.delay.Store(int64(20 * time.Millisecond))
	c := dialUDP(t, n.server.Addr())
	c.(*net.UDPConn).SetReadBuffer(4 << 20)

	const count = 400
	rcodes := make(chan int, count)
	go func() {
		defer close(rcodes)
		buf := make([]byte, 2048)
		for {
			c.SetReadDeadline(time.Now().Add(time.Second))
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			var m dns.Msg
			if err := m.Unpack(buf[:k]); err != nil {
				rcodes <- -1
				continue
			}
			rcodes <- m.Rcode
		}
	}()
	for i := range count {
		m := question("n"+strconv.Itoa(i)+benchSuffix, dns.TypeA)
		c.Write(mustPack(t, m))
	}
	got := map[int]int{}
	for rc := range rcodes {
		got[rc]++
	}
	t.Logf("flood of %d: %d NOERROR, %d REFUSED; max concurrent exchanges %d; rejected{inflight} %v",
		count, got[dns.RcodeSuccess], got[dns.RcodeRefused], n.exch.maxConcurrent.Load(), rejectedCount(t, n.metrics, reasonInflight))
	if m := n.exch.maxConcurrent.Load(); m > maxInflight {
		t.Errorf("concurrent exchanges: %d, bound %d", m, maxInflight)
	}
	if got[dns.RcodeSuccess] == 0 || got[dns.RcodeRefused] == 0 {
		t.Errorf("want both NOERROR and REFUSED replies, got %v", got)
	}
	if len(got) != 2 {
		t.Errorf("unexpected rcodes: %v", got)
	}
	if v := rejectedCount(t, n.metrics, reasonInflight); int(v) < got[dns.RcodeRefused] {
		t.Errorf("rejected{inflight} %v < REFUSED replies %d", v, got[dns.RcodeRefused])
	}
	if d := dig(t, n.server.Addr(), "+tries=3", "www.chive.test", "A"); d.status != "NOERROR" || len(d.answer) != 1 {
		t.Errorf("after the flood: %s %q", d.status, d.answer)
	}
}
