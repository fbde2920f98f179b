package onionproxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/chive-net/chive/netdoc"
)

// The parsers this package owns: the SOCKS5 greeting and RFC 1929
// sub-negotiation (read before the library sees the connection), the
// SOCKS username's delay-class prefix, the CONNECT target and the
// Proxy-Authorization header. Seeds are in testdata/fuzz/FuzzXxx.

func FuzzSOCKSGreeting(f *testing.F) {
	f.Add([]byte{5, 1, 0})
	f.Add([]byte{5, 2, 0, 2})
	f.Add([]byte{5, 0})
	f.Add([]byte{4, 1, 0, 80})
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte{5, 255, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		methods, err := readGreeting(r)
		if err != nil {
			if methods != nil {
				t.Fatal("methods with an error")
			}
			return
		}
		if len(b) < 2 || b[0] != socksVersion || int(b[1]) != len(methods) || len(methods) == 0 {
			t.Fatalf("accepted % x as %v", b, methods)
		}
		// Exactly the greeting was consumed: what follows is the library's.
		if consumed := len(b) - r.Len(); consumed != 2+len(methods) || !bytes.Equal(methods, b[2:consumed]) {
			t.Fatalf("consumed %d bytes of % x", consumed, b)
		}
		m := chooseMethod(methods)
		if m != socksMethodNone && !bytes.Contains(methods, []byte{m}) {
			t.Fatalf("chose %d, not offered in %v", m, methods)
		}
		if bytes.Contains(methods, []byte{socksMethodUser}) && m != socksMethodUser {
			t.Fatalf("username/password offered but %d chosen", m)
		}
	})
}

func FuzzSOCKSUserPass(f *testing.F) {
	f.Add([]byte{1, 5, 'a', 'l', 'i', 'c', 'e', 3, 'p', 'w', 'd'})
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{1, 7, 'c', 'l', 'a', 's', 's', '=', '2', 0})
	f.Add([]byte{2, 1, 'a', 1, 'b'})
	f.Add([]byte{1, 255, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		user, pass, err := readUserPass(r)
		if err != nil {
			return
		}
		enc := append([]byte{userPassVersion, byte(len(user))}, user...)
		enc = append(append(enc, byte(len(pass))), pass...)
		if !bytes.HasPrefix(b, enc) || len(b)-r.Len() != len(enc) {
			t.Fatalf("% x parsed as %q/%q, which encodes as % x", b, user, pass, enc)
		}
	})
}

func FuzzClassUsername(f *testing.F) {
	for _, s := range []string{"class=0", "class=2:alice", "class=255", "class=256", "class=", "class=x", "class=007:y", "alice", "Class=1", "class=1:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		class, ok, err := parseClassUsername(user)
		if !strings.HasPrefix(user, ClassPrefix) {
			if ok || err != nil {
				t.Fatalf("%q: no prefix, but ok=%v err=%v", user, ok, err)
			}
			return
		}
		if !ok {
			t.Fatalf("%q: prefix not recognised", user)
		}
		num, _, _ := strings.Cut(strings.TrimPrefix(user, ClassPrefix), ":")
		n, perr := strconv.ParseUint(num, 10, 8)
		if (err == nil) != (perr == nil && strconv.FormatUint(n, 10) == num) {
			t.Fatalf("%q: err %v, but ParseUint(%q) gives %v", user, err, num, perr)
		}
		if err == nil && uint64(class) != n {
			t.Fatalf("%q: class %d, want %d", user, class, n)
		}
		if err != nil && !errors.Is(err, ErrBadClassPrefix) {
			t.Fatalf("%q: %v", user, err)
		}
	})
}

func FuzzConnectTarget(f *testing.F) {
	for _, s := range []string{"www.chive.test:443", "[::1]:80", "127.0.0.1:8080", "host", "host:0", "host:65536",
		"[fe80::1%eth0]:80", "[::ffff:1.2.3.4]:443", ":80", "a:b:c", "host:+80", "host:0080"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, err := parseConnectTarget(s)
		if err != nil {
			return
		}
		if port == 0 || host == "" || strings.ContainsAny(host, "[]%") {
			t.Fatalf("%q -> %q %d", s, host, port)
		}
		// Round trip: what we send to the exit names the same target.
		h2, p2, err := parseConnectTarget(net.JoinHostPort(host, strconv.Itoa(int(port))))
		if err != nil || h2 != host || p2 != port {
			t.Fatalf("%q -> %q %d -> %q %d %v", s, host, port, h2, p2, err)
		}
	})
}

func FuzzProxyAuth(f *testing.F) {
	for _, s := range []string{"", "Basic YWxpY2U6cHc=", "basic   YWxpY2U6cHc=  ", "Basic", "Basic !!!", "Bearer abc",
		"Basic " + base64.StdEncoding.EncodeToString([]byte("class=1:x:y"))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		user, pass, ok, err := parseProxyAuth(v)
		if err != nil {
			if ok {
				t.Fatal("ok with an error")
			}
			return
		}
		if ok != (v != "") {
			t.Fatalf("%q: ok=%v", v, ok)
		}
		scheme, _, _ := strings.Cut(strings.TrimSpace(v), " ")
		if ok && strings.EqualFold(scheme, "Basic") {
			enc := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
			u2, p2, ok2, err := parseProxyAuth(enc)
			if !ok2 || err != nil || u2 != user || p2 != pass {
				t.Fatalf("%q -> %q:%q -> %q -> %q:%q %v", v, user, pass, enc, u2, p2, err)
			}
		}
	})
}

func FuzzCheckHost(f *testing.F) {
	for _, s := range []string{"www.chive.test", "127.0.0.1", "::1", "a..b", "-x.com", "x_y.com", strings.Repeat("a", 64) + ".com", "a:b", "é.com", "x.com."} {
		f.Add(s, uint16(80))
	}
	f.Fuzz(func(t *testing.T, host string, port uint16) {
		err := checkHost(host, port)
		if err == nil && (port == 0 || len(host) == 0 || len(host) > 255 || strings.ContainsAny(host, "\x00 /")) {
			t.Fatalf("%q:%d accepted", host, port)
		}
		if err != nil && !errors.Is(err, ErrBadDestination) {
			t.Fatalf("%q: %v", host, err)
		}
	})
}

// failingSource never has a consensus.
type failingSource struct{}

func (failingSource) Cached() (*netdoc.Consensus, error) { return nil, errors.New("no cache") }
func (failingSource) Fetch(ctx context.Context) (*netdoc.Consensus, error) {
	return nil, errors.New("no authority answered")
}

// FuzzSOCKSConn feeds arbitrary bytes to a whole SOCKS connection (our
// parsers, then the library) on a proxy without a consensus: it must never
// reply success, must answer within bounds, and must return.
func FuzzSOCKSConn(f *testing.F) {
	f.Add([]byte{5, 1, 0, 5, 1, 0, 3, 3, 'a', '.', 'b', 0, 80})
	f.Add([]byte{5, 2, 0, 2, 1, 1, 'u', 1, 'p', 5, 1, 0, 1, 127, 0, 0, 1, 0, 80})
	f.Add([]byte{5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80})
	f.Add([]byte{5, 1, 0, 5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80})
	f.Add([]byte{5, 1, 0, 5, 1, 0, 9})
	f.Add([]byte("CONNECT x:1 HTTP/1.1\r\n\r\n"))
	cfg := &Config{DataDir: f.TempDir(), SOCKSListeners: []ListenerConfig{{Address: "127.0.0.1:0"}}, HTTPConnectListeners: []ListenerConfig{},
		DNSListener: DNSListenerConfig{Disabled: true}, ControlListener: "127.0.0.1:0", Limits: LimitsConfig{HandshakeTimeout: time.Second}}
	fuzzProxy, err := New(cfg, zap.NewNop(), WithConsensusSource(failingSource{}))
	if err != nil {
		f.Fatal(err)
	}
	// As after a failed first fetch: streams fail at once.
	fuzzProxy.firstTryOnce.Do(func() { close(fuzzProxy.firstTry) })
	f.Cleanup(func() { fuzzProxy.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &scriptConn{in: bytes.NewReader(in)}
		fuzzProxy.socks[0].handle(fuzzProxy.ctx, c)
		out := c.out.Bytes()
		if len(out) > 600 {
			t.Fatalf("%d bytes of reply", len(out))
		}
		// Find the request reply: after the method selection (05 xx) and
		// any auth status (01 xx).
		rest := out
		if len(rest) >= 2 && rest[0] == 5 {
			rest = rest[2:]
		}
		if len(rest) >= 2 && rest[0] == 1 {
			rest = rest[2:]
		}
		if len(rest) >= 2 && rest[0] == 5 && rest[1] == socksSucceeded {
			t.Fatalf("success reply % x to % x without a consensus", out, in)
		}
	})
}

// scriptConn is a client connection that sends a fixed script, then EOF,
// and records what the proxy writes.
type scriptConn struct {
	in  *bytes.Reader
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error) { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}
func (c *scriptConn) Close() error { return nil }
func (c *scriptConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9050}
}
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptConn) SetDeadline(t time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }
