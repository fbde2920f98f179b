package socks5

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	armon "github.com/armon/go-socks5"
)

func TestAppendConnect(t *testing.T) {
	for _, tc := range []struct {
		host string
		port uint16
		want []byte
	}{
		{"www.chive.test", 80, append(append([]byte{5, 1, 0, 3, 14}, "www.chive.test"...), 0, 80)},
		{"127.0.0.1", 9050, []byte{5, 1, 0, 1, 127, 0, 0, 1, 0x23, 0x5a}},
		{"::1", 443, []byte{5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xbb}},
	} {
		got, err := appendConnect(nil, tc.host, tc.port)
		if err != nil {
			t.Fatalf("%s: %v", tc.host, err)
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s:%d: got % x, want % x", tc.host, tc.port, got, tc.want)
		}
	}
	if _, err := appendConnect(nil, strings.Repeat("a", 256), 1); err == nil {
		t.Error("256-byte host name: no error")
	}
}

func TestAppendUserPass(t *testing.T) {
	got, err := appendUserPass(nil, &Auth{User: "class=1:a", Pass: "p"})
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{1, 9}, "class=1:a"...), 1, 'p')
	if !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
	for _, a := range []Auth{{User: ""}, {User: strings.Repeat("u", 256)}, {User: "u", Pass: strings.Repeat("p", 256)}} {
		if _, err := appendUserPass(nil, &a); err == nil {
			t.Errorf("user %d bytes, password %d bytes: no error", len(a.User), len(a.Pass))
		}
	}
}

// fixedResolver resolves every name to 127.0.0.1 and records the names.
type fixedResolver struct {
	mu    sync.Mutex
	names []string
}

func (r *fixedResolver) Resolve(ctx context.Context, name string) (context.Context, net.IP, error) {
	r.mu.Lock()
	r.names = append(r.names, name)
	r.mu.Unlock()
	return ctx, net.IPv4(127, 0, 0, 1), nil
}

// startProxy runs armon/go-socks5 (an independent implementation) on
// loopback.
func startProxy(t *testing.T, conf *armon.Config) string {
	t.Helper()
	conf.Logger = log.New(io.Discard, "", 0)
	srv, err := armon.New(conf)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go srv.Serve(l)
	return l.Addr().String()
}

// startEcho runs a TCP echo server on loopback.
func startEcho(t *testing.T) (port string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	_, port, _ = net.SplitHostPort(l.Addr().String())
	return port
}

func echoRoundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	msg := []byte("through the proxy")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Errorf("echo: got %q, want %q", got, msg)
	}
}

func TestDialUserPass(t *testing.T) {
	res := &fixedResolver{}
	proxy := startProxy(t, &armon.Config{
		Credentials: armon.StaticCredentials{"class=1:iso": "pw"},
		Resolver:    res,
	})
	port := startEcho(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var phases []Phase
	d := &Dialer{Proxy: proxy, Auth: &Auth{User: "class=1:iso", Pass: "pw"},
		Phase: func(p Phase) { phases = append(phases, p) }}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("www.chive.test", port))
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c)
	c.Close()
	if want := []Phase{PhaseConnected, PhaseAuthenticated, PhaseReplied}; !slices.Equal(phases, want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
	if len(res.names) != 1 || res.names[0] != "www.chive.test" {
		t.Errorf("proxy resolved %q, want [www.chive.test] (the name must reach the proxy unresolved)", res.names)
	}

	d.Auth.Pass = "wrong"
	phases = nil
	if _, err := d.DialContext(ctx, "tcp", net.JoinHostPort("www.chive.test", port)); !errors.Is(err, ErrAuthRejected) {
		t.Errorf("wrong password: got %v, want ErrAuthRejected", err)
	}
	if want := []Phase{PhaseConnected}; !slices.Equal(phases, want) {
		t.Errorf("phases of a rejected login %v, want %v", phases, want)
	}
	d.Auth = nil
	if _, err := d.DialContext(ctx, "tcp", net.JoinHostPort("www.chive.test", port)); !errors.Is(err, ErrNoMethod) {
		t.Errorf("no credentials to a proxy that requires them: got %v, want ErrNoMethod", err)
	}
}

func TestDialNoAuthAndRefusals(t *testing.T) {
	proxy := startProxy(t, &armon.Config{Resolver: &fixedResolver{}})
	port := startEcho(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	d := &Dialer{Proxy: proxy}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c)
	c.Close()

	// A port nothing listens on: the proxy's connect fails and it says so.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	_, err = d.DialContext(ctx, "tcp", closed)
	var re *ReplyError
	if !errors.As(err, &re) || re.Reply != ConnectionRefused {
		t.Errorf("closed port: got %v, want ReplyError connection refused", err)
	}

	deny := startProxy(t, &armon.Config{Resolver: &fixedResolver{}, Rules: &armon.PermitCommand{}})
	d.Proxy = deny
	_, err = d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
	if !errors.As(err, &re) || re.Reply != NotAllowed {
		t.Errorf("ruleset denies: got %v, want ReplyError not allowed", err)
	}
}

func TestDialContextCancel(t *testing.T) {
	// A "proxy" that accepts and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = (&Dialer{Proxy: l.Addr().String()}).DialContext(ctx, "tcp", "x.test:80")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent proxy: got %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("cancel took %v", el)
	}
}

func TestBadReply(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply []byte
		want  error
	}{
		{"wrong version", []byte{4, 0, 0, 1, 0, 0, 0, 0, 0, 0}, ErrProtocol},
		{"bad address type", []byte{5, 0, 0, 9}, ErrProtocol},
		{"short", []byte{5, 0, 0, 1, 127}, io.ErrUnexpectedEOF},
		{"domain", append(append([]byte{5, 0, 0, 3, 3}, "a.b"...), 0, 1), nil},
	} {
		err := readReply(bytes.NewReader(tc.reply))
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzReadReply: a reply either fails or was a complete success reply: a
// version 5, code 0 header and a bound address of its type's length.
func FuzzReadReply(f *testing.F) {
	f.Add([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0x23, 0x5a})
	f.Add(append(append([]byte{5, 0, 0, 3, 3}, "a.b"...), 0, 1))
	f.Add([]byte{5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xbb})
	f.Add([]byte{5, 5, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		err := readReply(r)
		var re *ReplyError
		if errors.As(err, &re) {
			if len(b) < 4 || b[0] != 5 || Reply(b[1]) != re.Reply || re.Reply == Succeeded {
				t.Errorf("ReplyError %v from % x", re.Reply, b)
			}
			return
		}
		if err != nil {
			return
		}
		consumed := len(b) - r.Len()
		want := map[byte]int{1: 4 + 4 + 2, 4: 4 + 16 + 2}[b[3]]
		if b[3] == 3 {
			want = 4 + 1 + int(b[4]) + 2
		}
		if b[0] != 5 || b[1] != 0 || consumed != want {
			t.Errorf("accepted % x, consuming %d bytes (want %d)", b, consumed, want)
		}
	})
}
