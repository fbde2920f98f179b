package onionproxy

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// goroutines returns the current number of goroutines once it stops
// falling (closed connections take a moment to unwind).
func goroutines() int {
	n := runtime.NumGoroutine()
	for i := 0; i < 50; i++ {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestHostileSOCKS: truncated greetings, oversized fields and a flood of
// half-open connections cost bounded goroutines and memory for a bounded
// time, and the proxy keeps serving others meanwhile.
func TestHostileSOCKS(t *testing.T) {
	n, rp := startNetAndProxy(t, func(c *Config) {
		c.Limits.HandshakeTimeout = time.Second
		c.Limits.MaxConnections = 400
	})
	socks := rp.Addrs().SOCKS[0]
	port, _ := strconv.Atoi(n.port())
	good := socksReq{host: webName, port: uint16(port)}
	// The circuit for good's stream exists before the baseline is taken.
	if _, err := fetchVia(socks, good, "/page"); err != nil {
		t.Fatal(err)
	}
	settle(t, rp)
	base := goroutines()
	heap0 := heapInUse()

	// Truncated and malformed greetings: each closed within the handshake
	// timeout, never answered with success.
	partial := [][]byte{
		{},                       // nothing at all
		{5},                      // version only
		{5, 3, 0},                // fewer methods than announced
		{5, 1, 2, 1, 200, 'a'},   // username shorter than announced
		{5, 1, 0, 5, 1, 0, 3, 9}, // CONNECT with a name shorter than announced
		{5, 1, 0, 5, 1, 0, 1, 127, 0},
	}
	for _, p := range partial {
		c, err := net.Dial("tcp", socks)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(p)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		out, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Errorf("% x: not closed by the proxy within 5s: %v", p, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("% x: closed after %v, want about the 1s handshake timeout", p, d)
		}
		if len(out) >= 2 && out[0] == 5 && bytes.Contains(out[2:], []byte{5, 0}) {
			t.Errorf("% x: got a success reply % x", p, out)
		}
	}

	// A flood of half-open connections.
	const flood = 300
	var conns []net.Conn
	for i := 0; i < flood; i++ {
		c, err := net.Dial("tcp", socks)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{5}) // and then nothing
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Others are still served meanwhile.
	body, err := fetchVia(socks, good, "/page")
	if err != nil || !bytes.Equal(body, n.page) {
		t.Fatalf("during the flood: %v", err)
	}
	during := goroutines()
	if per := float64(during-base) / flood; per > 2.5 {
		t.Errorf("%d goroutines for %d half-open connections (%.1f each)", during-base, flood, per)
	}
	if grow := int64(heapInUse()) - int64(heap0); grow > 40<<20 {
		t.Errorf("heap grew by %d MiB during the flood", grow>>20)
	}
	// They are all closed by the handshake timeout.
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("half-open connection: %v, want EOF from the proxy", err)
		}
	}
	waitGoroutines(t, "the flood's goroutines to end", base)

	// Beyond max_connections new connections are closed at once.
	var held []net.Conn
	for i := 0; i < 400; i++ {
		c, err := net.Dial("tcp", socks)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitFor(t, "400 open connections", 5*time.Second, func() bool { return rp.socks[0].ll.open() == 400 })
	extra, err := net.Dial("tcp", socks)
	if err != nil {
		t.Fatal(err)
	}
	extra.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("connection beyond the limit: %v, want closed at once", err)
	}
	extra.Close()
	if got := counterValue(t, rp.m.rejected.WithLabelValues("socks", "max_connections")); got < 1 {
		t.Errorf("rejected{max_connections} = %v", got)
	}
	for _, c := range held {
		c.Close()
	}
	waitFor(t, "the held connections to be freed", 5*time.Second, func() bool { return rp.socks[0].ll.open() == 0 })
	if body, err := fetchVia(socks, good, "/page"); err != nil || !bytes.Equal(body, n.page) {
		t.Fatalf("after the floods: %v", err)
	}
}

// TestHostileHTTPConnect: wrong methods, bad targets, oversized headers,
// slow headers and floods.
func TestHostileHTTPConnect(t *testing.T) {
	n, rp := startNetAndProxy(t, func(c *Config) {
		c.Limits.HandshakeTimeout = time.Second
		c.Limits.MaxHeaderBytes = 4096
	})
	addr := rp.Addrs().HTTPConnect[0]
	cases := []struct {
		name, req, want string
	}{
		{"GET", "GET http://" + webName + "/ HTTP/1.1\r\nHost: " + webName + "\r\n\r\n", "HTTP/1.1 405"},
		{"POST", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405"},
		{"no port", "CONNECT " + webName + " HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"port 0", "CONNECT " + webName + ":0 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"bad auth", "CONNECT " + webName + ":80 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic !!!\r\n\r\n", "HTTP/1.1 400"},
		{"refused", "CONNECT 127.0.0.1:" + strconv.Itoa(int(closedPort(t))) + " HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 502"},
		{"timeout", "CONNECT " + slowName + ":80 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 504"},
		{"huge header", "CONNECT " + webName + ":80 HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20000) + "\r\n\r\n", "HTTP/1.1 431"},
		{"garbage", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 hello\r\n\r\n", "HTTP/1.1 400"},
	}
	for _, tc := range cases {
		got := connectRaw(t, addr, tc.req)
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: got %q, want %s", tc.name, firstLine(got), tc.want)
		}
		if tc.want == "HTTP/1.1 405" && !strings.Contains(got, "only the CONNECT method is supported") {
			t.Errorf("%s: the 405 does not say why: %q", tc.name, got)
		}
		if tc.want == "HTTP/1.1 502" || tc.want == "HTTP/1.1 504" {
			body := got[strings.Index(got, "\r\n\r\n")+4:]
			if strings.Count(body, "\n") != 1 || !strings.HasPrefix(body, "chive: ") {
				t.Errorf("%s: the reason is not one line: %q", tc.name, body)
			}
		}
	}
	// A slow header is cut off after the handshake timeout.
	port, _ := strconv.Atoi(n.port())
	fetchVia(rp.Addrs().SOCKS[0], socksReq{host: webName, port: uint16(port)}, "/page")
	connectRaw(t, addr, "CONNECT "+webName+":"+n.port()+" HTTP/1.1\r\nHost: x\r\n\r\n")
	settle(t, rp)
	base := goroutines()
	var conns []net.Conn
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("CONNECT www.chive.test:80 HTTP/1.1\r\nX-Slow: "))
		conns = append(conns, c)
	}
	// Others are served meanwhile (through SOCKS and CONNECT).
	if body, err := fetchVia(rp.Addrs().SOCKS[0], socksReq{host: webName, port: uint16(port)}, "/page"); err != nil || !bytes.Equal(body, n.page) {
		t.Fatalf("during the flood: %v", err)
	}
	if got := connectRaw(t, addr, "CONNECT "+webName+":"+n.port()+" HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("CONNECT during the flood: %q", got)
	}
	if per := float64(goroutines()-base) / 200; per > 4 {
		t.Errorf("%.1f goroutines per slow connection", per)
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.ReadAll(c)
		c.Close()
	}
	waitGoroutines(t, "the slow connections' goroutines to end", base)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// TestHostileDNS: garbage datagrams and half-open TCP connections do not
// stop the DNS front-end answering others.
func TestHostileDNS(t *testing.T) {
	_, rp := startNetAndProxy(t, nil)
	addr := rp.Addrs().DNS
	u, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for _, junk := range [][]byte{{}, {0}, bytes.Repeat([]byte{0xff}, 12), bytes.Repeat([]byte{0x41}, 4000)} {
		u.Write(junk)
	}
	var held []net.Conn
	for i := 0; i < 100; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			continue // refused beyond the front-end's TCP limit
		}
		c.Write([]byte{0, 200}) // a length, and then nothing
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for _, network := range []string{"udp", "tcp"} {
		cl := &dns.Client{Net: network, Timeout: 5 * time.Second}
		q := new(dns.Msg)
		q.SetQuestion(webName+".", dns.TypeA)
		r, _, err := cl.Exchange(q, addr)
		if err != nil && network == "tcp" {
			// TCP slots may all be held by the half-open connections:
			// then the front-end refuses new TCP connections (bounded),
			// and UDP still works (checked above).
			t.Logf("DNS over TCP during the flood: %v", err)
			continue
		}
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("%s during the flood: %v %v", network, r, err)
		}
	}
}

// waitGoroutines waits until the goroutine count is back near base, and
// shows the stacks if it is not.
func waitGoroutines(t *testing.T, what string, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for goroutines() > base+10 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("timed out waiting for %s: %d goroutines, base %d\n%s", what, runtime.NumGoroutine(), base, buf)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settle waits until the circuit manager has its clean circuits and no
// build under way, so that goroutine counts are comparable.
func settle(t *testing.T, rp *runningProxy) {
	t.Helper()
	waitFor(t, "the circuit manager to settle", 10*time.Second, func() bool {
		m := rp.circs
		m.mu.Lock()
		defer m.mu.Unlock()
		clean := 0
		for _, c := range m.circs {
			if c.key == "" {
				clean++
			}
		}
		return len(m.pending) == 0 && clean >= m.cfg.Preemptive
	})
}
