package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/chive-net/chive/cell"
	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/link"
)

// Test names resolved by the in-test DNS server, which the exits use as
// their upstream.
const (
	webName     = "web.chive.test"
	missingName = "missing.chive.test"
)

// testConfig is a testnet relay on 127.0.0.1 with an ephemeral port and no
// metrics server.
func testConfig(t testing.TB, nick string) *Config {
	t.Helper()
	off := ""
	return &Config{
		Nickname:         nick,
		DataDir:          dataDir(t),
		Listen:           "127.0.0.1:0",
		Testnet:          true,
		PublishInterval:  time.Hour,
		OnionKeyRotation: time.Hour,
		ShutdownTimeout:  5 * time.Second,
		Metrics:          MetricsConfig{Listen: &off},
	}
}

func exitConfig(t testing.TB, nick, resolver string, allowPrivate bool, policy ...string) *Config {
	c := testConfig(t, nick)
	c.Exit = ExitConfig{Enabled: true, AllowPrivateDestinations: allowPrivate, Resolvers: []string{resolver},
		Policy: policy, ConnectTimeout: 5 * time.Second}
	return c
}

// runRelay validates cfg, starts the relay and stops it at cleanup,
// failing the test if Run returns an error.
func runRelay(t testing.TB, cfg *Config, log *zap.Logger, opts ...Option) *Relay {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	if log == nil {
		log = zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel))
	}
	r, err := New(cfg, log, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("relay %s did not stop", cfg.Nickname)
		}
	})
	select {
	case <-r.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("relay not ready")
	}
	return r
}

// dnsServer answers A queries for webName with 127.0.0.1 and NXDOMAIN for
// everything else, over UDP on 127.0.0.1.
type dnsServer struct {
	srv     *dns.Server
	addr    string
	mu      sync.Mutex
	queries []string
}

func startDNS(t testing.TB) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{addr: pc.LocalAddr().String()}
	started := make(chan struct{})
	d.srv = &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			var m dns.Msg
			m.SetReply(req)
			q := req.Question[0]
			d.mu.Lock()
			d.queries = append(d.queries, q.Name)
			d.mu.Unlock()
			switch {
			case q.Name == webName+".":
				if q.Qtype == dns.TypeA {
					m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
						A: net.IPv4(127, 0, 0, 1)})
				}
			default:
				m.Rcode = dns.RcodeNameError
			}
			w.WriteMsg(&m)
		})}
	go d.srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { d.srv.Shutdown() })
	return d
}

func (d *dnsServer) asked(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range d.queries {
		if q == name+"." {
			return true
		}
	}
	return false
}

// webServer serves body at /big.
func startWeb(t testing.TB, body []byte) (*httptest.Server, uint16) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	ap := netip.MustParseAddrPort(srv.Listener.Addr().String())
	return srv, ap.Port()
}

// client is an anonymous client's link manager.
func newClient(t testing.TB) *link.Manager {
	c := link.NewManager(&link.Config{})
	t.Cleanup(c.Close)
	return c
}

func build(t testing.TB, links *link.Manager, path []circuit.Hop, class uint8) *circuit.Circuit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := circuit.Build(ctx, links, path, circuit.BuildOptions{DelayClass: class})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// httpGet fetches url through the circuit (names resolved by the exit).
func httpGet(t testing.TB, c *circuit.Circuit, url string) []byte {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, err
		}
		return c.Dial(ctx, host, uint16(p))
	}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}

func streamStatus(err error) (cell.StreamStatus, bool) {
	var se *cell.StreamError
	if errors.As(err, &se) {
		return se.Status, true
	}
	return 0, false
}

// TestThreeRelayNetwork: guard, middle and exit from New(...).Run carry a
// 10 MiB download byte for byte, the exit resolving the name with the
// in-test DNS server; the exit policy refuses what it should; and the logs
// (captured at debug level) hold no client address, destination or name.
func TestThreeRelayNetwork(t *testing.T) {
	dnsSrv := startDNS(t)
	body := make([]byte, 10<<20)
	rand.Read(body)
	_, webPort := startWeb(t, body)
	small := body[:256<<10]
	_, smallPort := startWeb(t, small)
	_, blockedPort := startWeb(t, []byte("must not be reached"))

	core, logs := observer.New(zapcore.DebugLevel)
	obsLog := zap.New(core)
	// The relays' own addresses and the exits' configured resolver (operator
	// configuration, not client data) may be logged; nothing else on
	// 127.0.0.1. Checked after the relays have shut down (cleanups run last
	// registered first).
	allowed := map[string]bool{dnsSrv.addr: true}
	t.Cleanup(func() { checkLogsPrivate(t, logs, allowed, webName, missingName, "chive.test") })
	guard := runRelay(t, testConfig(t, "guard"), obsLog.Named("guard"))
	middle := runRelay(t, testConfig(t, "middle"), obsLog.Named("middle"))
	exit := runRelay(t, exitConfig(t, "exit", dnsSrv.addr, true,
		fmt.Sprintf("reject *:%d", blockedPort), "accept *:*"), obsLog.Named("exit"))
	// An exit with the default rules in front: private destinations refused.
	strict := runRelay(t, exitConfig(t, "strict", dnsSrv.addr, false, "accept *:*"), obsLog.Named("strict"))

	for _, r := range []*Relay{guard, middle, exit, strict} {
		allowed[r.Addr().String()] = true
		allowed[r.ListenAddr().String()] = true
	}

	client := newClient(t)
	path := []circuit.Hop{guard.Hop(), middle.Hop(), exit.Hop()}
	c := build(t, client, path, 0)

	t.Run("10MiB download", func(t *testing.T) {
		start := time.Now()
		got := httpGet(t, c, fmt.Sprintf("http://%s:%d/big", webName, webPort))
		if len(got) != len(body) || sha256.Sum256(got) != sha256.Sum256(body) {
			t.Fatalf("downloaded %d bytes (sha256 match %v), want %d byte-exact", len(got), bytes.Equal(got, body), len(body))
		}
		t.Logf("10 MiB through 3 relays in %v (%.1f MB/s)", time.Since(start), float64(len(body))/time.Since(start).Seconds()/1e6)
		if !dnsSrv.asked(webName) {
			t.Error("the exit did not ask the configured DNS server")
		}
	})
	t.Run("delay class 1", func(t *testing.T) {
		c1 := build(t, client, path, 1)
		got := httpGet(t, c1, fmt.Sprintf("http://%s:%d/small", webName, smallPort))
		if !bytes.Equal(got, small) {
			t.Fatalf("class-1 download: %d bytes, not byte-exact", len(got))
		}
	})
	t.Run("name not found", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Dial(ctx, missingName, webPort)
		if st, ok := streamStatus(err); !ok || st != cell.StatusResolveFailed {
			t.Fatalf("dial %s: %v, want StatusResolveFailed", missingName, err)
		}
	})
	t.Run("policy rejects port", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Dial(ctx, "127.0.0.1", blockedPort)
		if st, ok := streamStatus(err); !ok || st != cell.StatusNotAllowed {
			t.Fatalf("dial a rejected port: %v, want StatusNotAllowed", err)
		}
	})
	t.Run("default policy refuses loopback", func(t *testing.T) {
		cs := build(t, client, []circuit.Hop{guard.Hop(), middle.Hop(), strict.Hop()}, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, host := range []string{"127.0.0.1", webName} { // a name is checked after resolving
			_, err := cs.Dial(ctx, host, webPort)
			if st, ok := streamStatus(err); !ok || st != cell.StatusNotAllowed {
				t.Fatalf("dial %s at the default-policy exit: %v, want StatusNotAllowed", host, err)
			}
		}
	})
	c.Close()

}

var loopbackRE = regexp.MustCompile(`127\.0\.0\.1(:\d+)?`)

// checkLogsPrivate fails if any captured log line names 127.0.0.1 other
// than as an allowed address:port, or contains one of the secrets.
func checkLogsPrivate(t *testing.T, logs *observer.ObservedLogs, allowed map[string]bool, secrets ...string) {
	t.Helper()
	entries := logs.All()
	if len(entries) == 0 {
		t.Error("no log lines captured")
	}
	for _, e := range entries {
		line := fmt.Sprintf("%s %s %v", e.LoggerName, e.Message, e.ContextMap())
		for _, m := range loopbackRE.FindAllString(line, -1) {
			if !allowed[m] {
				t.Errorf("log line names %s, not an address of the relay itself: %s", m, line)
			}
		}
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("log line contains %q: %s", s, line)
			}
		}
	}
	t.Logf("checked %d log lines", len(entries))
}

// TestExitResolverAdapter: dnsproxy's ErrNotFound becomes
// circuit.ErrNameNotFound.
func TestExitResolverAdapter(t *testing.T) {
	d := startDNS(t)
	cfg := exitConfig(t, "x", d.addr, true, "accept *:*")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &Relay{cfg: cfg, log: zap.NewNop()}
	ec, err := r.exitConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := ec.Resolver.LookupHost(ctx, webName)
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("LookupHost(%s) = %v, %v", webName, addrs, err)
	}
	if _, err := ec.Resolver.LookupHost(ctx, missingName); !errors.Is(err, circuit.ErrNameNotFound) {
		t.Fatalf("LookupHost(%s): %v, want circuit.ErrNameNotFound", missingName, err)
	}
}

// TestLogsPrivateOnBadPeers: peers that fail the link handshake (garbage,
// a reset, a TLS client with no ALPN) leave no address in the logs.
func TestLogsPrivateOnBadPeers(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	allowed := map[string]bool{}
	t.Cleanup(func() { checkLogsPrivate(t, logs, allowed) })
	r := runRelay(t, testConfig(t, "bad"), zap.New(core))
	allowed[r.ListenAddr().String()] = true
	for i := 0; i < 3; i++ {
		conn, err := net.Dial("tcp", r.ListenAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case 0:
			conn.Write(bytes.Repeat([]byte("GET / HTTP/1.0\r\n"), 10))
		case 1:
			conn.(*net.TCPConn).SetLinger(0) // RST
		}
		conn.Close()
	}
	waitFor(t, "failed handshakes to be logged", 5*time.Second, func() bool {
		return logs.FilterMessageSnippet("handshake failed").Len() >= 2
	})
}
