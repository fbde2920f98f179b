package onionproxy

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSOCKSReplyCodes checks every SOCKS5 reply code the proxy sends, with
// a hand-written client so that each byte is seen.
func TestSOCKSReplyCodes(t *testing.T) {
	n, rp := startNetAndProxy(t, nil)
	socks := rp.Addrs().SOCKS[0]
	port, _ := strconv.Atoi(n.port())
	closed := closedPort(t)
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) // 255 bytes
	cases := []struct {
		name string
		req  socksReq
		want byte
	}{
		{"succeeded (name)", socksReq{host: webName, port: uint16(port)}, socksSucceeded},
		{"succeeded (IPv4)", socksReq{ip: netip.MustParseAddr("127.0.0.1"), port: uint16(port)}, socksSucceeded},
		{"not allowed by the exit's policy", socksReq{host: deniedName, port: 80}, socksNotAllowed},
		{"not allowed: no exit for the delay class", socksReq{user: "class=7", host: webName, port: uint16(port)}, socksNotAllowed},
		{"not allowed: bad class prefix", socksReq{user: "class=x", host: webName, port: uint16(port)}, socksNotAllowed},
		{"network unreachable", socksReq{host: unreachName, port: 80}, socksNetworkUnreachable},
		{"host unreachable (NXDOMAIN at the exit)", socksReq{host: "nosuch.chive.test", port: 80}, socksHostUnreachable},
		{"host unreachable (invalid name)", socksReq{host: "bad name!", port: 80}, socksHostUnreachable},
		{"host unreachable (255-byte name)", socksReq{host: long, port: 80}, socksHostUnreachable},
		// (By IP: the name also has an AAAA record the exit cannot reach.)
		{"connection refused", socksReq{ip: netip.MustParseAddr("127.0.0.1"), port: closed}, socksConnectionRefused},
		{"connection refused (IPv6 literal)", socksReq{ip: netip.MustParseAddr("::1"), port: closed}, socksConnectionRefused},
		{"TTL expired (the destination never answers)", socksReq{host: slowName, port: 80}, socksTTLExpired},
		{"command not supported (BIND)", socksReq{cmd: 2, host: webName, port: 80}, socksCommandNotSupported},
		{"command not supported (UDP ASSOCIATE)", socksReq{cmd: 3, host: webName, port: 80}, socksCommandNotSupported},
		{"command not supported (unknown)", socksReq{cmd: 9, host: webName, port: 80}, socksCommandNotSupported},
		{"address type not supported", socksReq{atyp: 5, port: 80}, socksAddressNotSupported},
		{"host unreachable: port 0 refused locally", socksReq{host: webName, port: 0}, socksHostUnreachable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, code, err := socksDial(socks, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if c != nil {
				c.Close()
			}
			if code != tc.want {
				t.Errorf("reply %d, want %d", code, tc.want)
			}
		})
	}
	// The exit's answers travelled inside circuits: data flows on success.
	body, err := fetchVia(socks, socksReq{host: webName, port: uint16(port)}, "/page")
	if err != nil || !bytes.Equal(body, n.page) {
		t.Fatalf("fetch: %q %v", body, err)
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t testing.TB) uint16 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return uint16(p)
}

// TestSOCKSGreeting checks the handshake cases the library never sees.
func TestSOCKSGreeting(t *testing.T) {
	_, rp := startNetAndProxy(t, nil)
	socks := rp.Addrs().SOCKS[0]
	exchange := func(in []byte) []byte {
		c, err := net.Dial("tcp", socks)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(in)
		out, _ := io.ReadAll(c)
		return out
	}
	// Only GSSAPI offered: "no acceptable methods".
	if got := exchange([]byte{5, 1, 1}); !bytes.Equal(got, []byte{5, 0xFF}) {
		t.Errorf("GSSAPI only: got % x, want 05 ff", got)
	}
	// No methods at all.
	if got := exchange([]byte{5, 0}); !bytes.Equal(got, []byte{5, 0xFF}) {
		t.Errorf("zero methods: got % x, want 05 ff", got)
	}
	// SOCKS4: closed without a reply.
	if got := exchange([]byte{4, 1, 0, 80, 127, 0, 0, 1, 0}); len(got) != 0 {
		t.Errorf("SOCKS4: got % x, want nothing", got)
	}
	// An HTTP client on the SOCKS port is told where it is.
	if got := exchange([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); !bytes.HasPrefix(got, []byte("HTTP/1.0 501")) || !bytes.Contains(got, []byte("SOCKS5")) {
		t.Errorf("HTTP on SOCKS: got %q", got)
	}
	// Username/password with a wrong sub-negotiation version.
	if got := exchange([]byte{5, 1, 2, 9, 1, 'u', 1, 'p'}); !bytes.Equal(got, []byte{5, 2, 1, 1}) {
		t.Errorf("bad auth version: got % x, want 05 02 01 01", got)
	}
	// Username/password with an empty password is fine.
	c, code, err := socksDial(socks, socksReq{user: "u", auth: true, ip: netip.MustParseAddr("127.0.0.1"), port: closedPort(t)})
	if err != nil || code != socksConnectionRefused {
		t.Errorf("empty password: %v %d", err, code)
	}
	if c != nil {
		c.Close()
	}
}
