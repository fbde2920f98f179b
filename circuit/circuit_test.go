package circuit

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
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/chive-net/chive/cell"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/mix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http's idle connections close asynchronously after a test.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// webServer serves /size/N (N random-looking bytes, fixed per N) and /echo.
type webServer struct {
	ln   net.Listener
	srv  *http.Server
	port uint16
}

func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8 + i>>16)
	}
	return b
}

func startWeb(t testing.TB) *webServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/size/", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Path[len("/size/"):])
		if err != nil || n < 0 || n > 200<<20 {
			http.Error(w, "bad size", 400)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(body(n))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &webServer{ln: ln, srv: srv, port: uint16(ln.Addr().(*net.TCPAddr).Port)}
}

func httpClient(c *Circuit) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			p, _ := strconv.Atoi(port)
			return c.Dial(ctx, host, uint16(p))
		},
		DisableKeepAlives: true,
	}, Timeout: 60 * time.Second}
}

func fetch(t testing.TB, c *Circuit, host string, port uint16, n int) {
	t.Helper()
	resp, err := httpClient(c).Get(fmt.Sprintf("http://%s:%d/size/%d", host, port, n))
	if err != nil {
		t.Fatalf("GET through circuit: %v", err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	got, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	if got != int64(n) || !bytes.Equal(h.Sum(nil), sha256Of(body(n))) {
		t.Fatalf("body: got %d bytes (hash mismatch=%v), want %d exact", got, !bytes.Equal(h.Sum(nil), sha256Of(body(n))), n)
	}
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestThreeHopFetch10MiB(t *testing.T) {
	web := startWeb(t)
	n := newTestNet(t, relayOpts{})
	c := n.build(t, 0)
	// By name: the exit resolves it with its resolver.
	fetch(t, c, "web.chive.test", web.port, 10<<20)
	// By IPv4 literal.
	fetch(t, c, "127.0.0.1", web.port, 1000)
	for i, r := range n.relays {
		if got := r.relay.NumCircuits(); got != 1 {
			t.Errorf("relay %d holds %d circuits, want 1", i, got)
		}
	}
	c.Close()
	for i, r := range n.relays {
		waitFor(t, fmt.Sprintf("relay %d to free the circuit", i), 5*time.Second, func() bool { return r.relay.NumCircuits() == 0 })
	}
	if !errors.Is(c.Err(), c.Err()) || c.Err() == nil {
		t.Fatal("closed circuit reports no error")
	}
	if _, err := c.Dial(context.Background(), "web.chive.test", web.port); err == nil {
		t.Fatal("Dial on a closed circuit succeeded")
	}
}

func TestManyStreamsOneCircuit(t *testing.T) {
	web := startWeb(t)
	n := newTestNet(t, relayOpts{})
	c := n.build(t, 0)
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fetch(t, c, "web.chive.test", web.port, 50_000+i*1000)
		}()
	}
	wg.Wait()
	if got := c.Streams(); got != 40 {
		t.Fatalf("Streams() = %d, want 40", got)
	}
}

func TestManyCircuits(t *testing.T) {
	web := startWeb(t)
	n := newTestNet(t, relayOpts{})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := n.build(t, 0)
			fetch(t, c, "web.chive.test", web.port, 200_000)
		}()
	}
	wg.Wait()
	if got := n.relays[1].relay.NumCircuits(); got != 20 {
		t.Fatalf("middle holds %d circuits, want 20", got)
	}
	// All those circuits share one link per hop pair.
	if got := n.client.Len(); got != 1 {
		t.Fatalf("client holds %d links to the guard, want 1", got)
	}
}

func TestResolveAndDNS(t *testing.T) {
	n := newTestNet(t, relayOpts{})
	c := n.build(t, 0)
	ctx := context.Background()
	addrs, err := c.Resolve(ctx, "only.exit.knows")
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].Addr != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("Resolve = %v, want 127.0.0.1", addrs)
	}
	if _, err := c.Resolve(ctx, "nowhere.invalid"); !errors.Is(err, &cell.StreamError{Status: cell.StatusResolveFailed}) {
		t.Fatalf("Resolve(unknown) err = %v, want resolve failed", err)
	}
	var q dns.Msg
	q.SetQuestion("only.exit.knows.", dns.TypeA)
	raw, _ := q.Pack()
	ans, err := c.ExchangeDNS(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	var a dns.Msg
	if err := a.Unpack(ans); err != nil {
		t.Fatal(err)
	}
	if a.Id != q.Id || len(a.Answer) != 1 || a.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
		t.Fatalf("DNS answer %v", a.String())
	}
	q.SetQuestion("nowhere.invalid.", dns.TypeA)
	raw, _ = q.Pack()
	ans, err = c.ExchangeDNS(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	a.Unpack(ans)
	if a.Rcode != dns.RcodeNameError {
		t.Fatalf("rcode = %v, want NXDOMAIN passed through", dns.RcodeToString[a.Rcode])
	}
}

func TestStreamStatuses(t *testing.T) {
	web := startWeb(t)
	n := newTestNet(t, relayOpts{policy: "reject *:25, accept 127.0.0.1:*, reject *:*"})
	c := n.build(t, 0)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := uint16(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()
	cases := []struct {
		host string
		port uint16
		want cell.StreamStatus
	}{
		{"nowhere.invalid", 80, cell.StatusResolveFailed},
		{"127.0.0.1", 25, cell.StatusNotAllowed},
		{"10.1.2.3", web.port, cell.StatusNotAllowed},
		{"127.0.0.1", closedPort, cell.StatusConnectionRefused},
	}
	for _, tc := range cases {
		_, err := c.Dial(context.Background(), tc.host, tc.port)
		var se *cell.StreamError
		if !errors.As(err, &se) || se.Status != tc.want {
			t.Errorf("Dial(%s:%d) err = %v, want status %v", tc.host, tc.port, err, tc.want)
		}
	}
	// The circuit survives refused streams.
	fetch(t, c, "127.0.0.1", web.port, 1234)
}

func TestPolicyCheckedAfterResolution(t *testing.T) {
	n := newTestNet(t, relayOpts{policy: "reject 127.0.0.0/8:*, accept *:*"})
	c := n.build(t, 0)
	_, err := c.Dial(context.Background(), "web.chive.test", 80) // resolves to 127.0.0.1
	if !errors.Is(err, &cell.StreamError{Status: cell.StatusNotAllowed}) {
		t.Fatalf("name resolving to a rejected address: err = %v, want not allowed", err)
	}
}

func TestNonExitRefusesData(t *testing.T) {
	n := newTestNet(t, relayOpts{})
	n.relays[2].relay.exit = nil // the last hop is not an exit
	c := n.build(t, 0)
	_, err := c.Dial(context.Background(), "web.chive.test", 80)
	if err == nil {
		t.Fatal("stream through a non-exit succeeded")
	}
	waitFor(t, "the circuit to be destroyed", 5*time.Second, func() bool { return c.Err() != nil })
	var de *DestroyedError
	if !errors.As(c.Err(), &de) || de.Reason != cell.DestroyProtocol || !de.Remote {
		t.Fatalf("circuit error %v, want remote DESTROY PROTOCOL", c.Err())
	}
}

func TestExtendFailures(t *testing.T) {
	n := newTestNet(t, relayOpts{})
	other, _ := layercrypt.GenerateIdentityKey(rand.Reader)
	ctx := context.Background()

	// The middle's address with another identity: the guard's link refuses it.
	p := n.path()
	p[1].ID = other.ID()
	_, err := Build(ctx, n.client, p, BuildOptions{})
	var te *TruncatedError
	if !errors.As(err, &te) || te.Hop != 0 || te.Reason != cell.DestroyORIdentity {
		t.Fatalf("extend to a wrong identity: err = %v, want TRUNCATED OR_IDENTITY from hop 1", err)
	}

	// Nothing listens there.
	p = n.path()
	p[2].Addr = netip.MustParseAddrPort("127.0.0.1:1")
	_, err = Build(ctx, n.client, p, BuildOptions{})
	if !errors.As(err, &te) || te.Hop != 1 || te.Reason != cell.DestroyConnectFailed {
		t.Fatalf("extend to a closed port: err = %v, want TRUNCATED CONNECTFAILED from hop 2", err)
	}

	// A relay that may not extend to private addresses.
	no := false
	strict := startRelay(t, relayOpts{privateExtend: &no})
	p = n.path()
	p[0] = strict.hop
	_, err = Build(ctx, n.client, p, BuildOptions{})
	if !errors.As(err, &te) || te.Reason != cell.DestroyConnectFailed {
		t.Fatalf("extend to loopback from a strict relay: err = %v, want CONNECTFAILED", err)
	}

	// Onion key mismatch: the handshake fails at the relay.
	p = n.path()
	p[0].OnionKey = n.relays[1].hop.OnionKey
	_, err = Build(ctx, n.client, p, BuildOptions{})
	var de *DestroyedError
	if !errors.As(err, &de) || de.Reason != cell.DestroyProtocol {
		t.Fatalf("wrong onion key: err = %v, want DESTROY PROTOCOL", err)
	}

	// After all that the relays still build and serve.
	web := startWeb(t)
	fetch(t, n.build(t, 0), "web.chive.test", web.port, 5000)
}

// rawHop opens a hop stream to a relay, as a client would, to send
// arbitrary cells.
func rawHop(t *testing.T, n *testNet, r *testRelay) *yamux.Stream {
	t.Helper()
	lk, err := n.client.Get(context.Background(), r.hop.ID, r.hop.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := lk.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func expectDestroy(t *testing.T, s *yamux.Stream, want cell.DestroyReason) {
	t.Helper()
	var c cell.Cell
	if err := readCell(s, &c, time.Now().Add(5*time.Second)); err != nil {
		t.Fatalf("waiting for DESTROY: %v", err)
	}
	var d cell.Destroy
	if err := d.Decode(&c); err != nil || d.Reason != want {
		t.Fatalf("got %v cell (reason %v), want DESTROY %v", c.Command(), d.Reason, want)
	}
}

func TestMalformedCells(t *testing.T) {
	n := newTestNet(t, relayOpts{})
	guard := n.relays[0]

	t.Run("relay cell before CREATE2", func(t *testing.T) {
		s := rawHop(t, n, guard)
		var c cell.Cell
		c.SetCommand(cell.CommandRelay)
		s.Write(c[:])
		expectDestroy(t, s, cell.DestroyProtocol)
	})
	t.Run("unknown command", func(t *testing.T) {
		s := rawHop(t, n, guard)
		var c cell.Cell
		c.SetCommand(cell.Command(200))
		s.Write(c[:])
		expectDestroy(t, s, cell.DestroyProtocol)
	})
	t.Run("garbage CREATE2", func(t *testing.T) {
		s := rawHop(t, n, guard)
		var c cell.Cell
		rand.Read(c[:])
		c.SetCommand(cell.CommandCreate2)
		s.Write(c[:])
		expectDestroy(t, s, cell.DestroyProtocol)
	})
	t.Run("truncated cell", func(t *testing.T) {
		s := rawHop(t, n, guard)
		s.Write(make([]byte, 100))
		s.Close() // half a cell, then EOF
		var c cell.Cell
		if err := readCell(s, &c, time.Now().Add(5*time.Second)); err == nil {
			t.Fatalf("relay answered a truncated cell with %v", c.Command())
		}
	})
	t.Run("silent stream", func(t *testing.T) {
		// Nothing is sent: the relay gives up after its handshake timeout
		// (10 s by default); the test only checks that others are served
		// meanwhile (below).
		rawHop(t, n, guard)
	})
	t.Run("unrecognized relay cell on a built circuit", func(t *testing.T) {
		c := n.build(t, 0)
		var junk cell.Cell
		rand.Read(junk[:])
		junk.SetCommand(cell.CommandRelay)
		c.w.write(junk[:]) // bypasses the client's crypto: no hop recognizes it
		waitFor(t, "the circuit to be destroyed", 5*time.Second, func() bool { return c.Err() != nil })
		var de *DestroyedError
		if !errors.As(c.Err(), &de) || de.Reason != cell.DestroyProtocol {
			t.Fatalf("circuit error %v, want DESTROY PROTOCOL", c.Err())
		}
	})
	t.Run("flipped bit in a cell", func(t *testing.T) {
		c := n.build(t, 0)
		// Encrypt a DROP for the exit honestly, then flip one bit before it
		// leaves: the exit must not recognize it.
		var cl cell.Cell
		cl.SetCommand(cell.CommandRelay)
		(&cell.Drop{}).Encode(cl.Body())
		c.fwdMu.Lock()
		c.crypt.Encrypt(2, cl.Body())
		cl[200] ^= 0x10
		c.w.write(cl[:])
		c.fwdMu.Unlock()
		waitFor(t, "the circuit to be destroyed", 5*time.Second, func() bool { return c.Err() != nil })
	})
	// The guard kept serving through all of it.
	web := startWeb(t)
	fetch(t, n.build(t, 0), "web.chive.test", web.port, 10000)
}

func TestTruncate(t *testing.T) {
	n := newTestNet(t, relayOpts{})
	c := n.build(t, 0)
	c.expect()
	if err := c.sendMsg(1, &cell.Truncate{}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-c.ctrl:
		tr, ok := m.msg.(*cell.Truncated)
		if !ok || m.hop != 1 || tr.Reason != cell.DestroyRequested {
			t.Fatalf("got %v from hop %d, want TRUNCATED REQUESTED from hop 2", m.cmd, m.hop+1)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no TRUNCATED")
	}
	waitFor(t, "the exit to free the circuit", 5*time.Second, func() bool { return n.relays[2].relay.NumCircuits() == 0 })
	if got := n.relays[1].relay.NumCircuits(); got != 1 {
		t.Fatalf("middle holds %d circuits after TRUNCATE, want 1 (it stays)", got)
	}
	// A DROP to the middle is still accepted: the circuit is alive up to it.
	if err := c.SendDrop(1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the DROP to arrive", 5*time.Second, func() bool { return counterValue(n.relays[1].metrics.dropCells) == 1 })
	if c.Err() != nil {
		t.Fatalf("circuit died after TRUNCATE: %v", c.Err())
	}
}

func TestRelayKilledMidTransfer(t *testing.T) {
	web := startWeb(t)
	n := newTestNet(t, relayOpts{})
	c := n.build(t, 0)
	resp, err := httpClient(c).Get(fmt.Sprintf("http://web.chive.test:%d/size/%d", web.port, 100<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	n.relays[1].kill() // the middle dies
	start := time.Now()
	_, err = io.Copy(io.Discard, resp.Body)
	if err == nil {
		t.Fatal("download completed although the middle relay died")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the stream took %v to fail", d)
	}
	waitFor(t, "the circuit to be destroyed", 5*time.Second, func() bool { return c.Err() != nil })
	var de *DestroyedError
	if !errors.As(c.Err(), &de) || !de.Remote || de.Reason != cell.DestroyChannelClosed {
		t.Fatalf("circuit error %v, want remote CHANNEL_CLOSED", c.Err())
	}
	waitFor(t, "guard and exit to free the circuit", 5*time.Second, func() bool {
		return n.relays[0].relay.NumCircuits() == 0 && n.relays[2].relay.NumCircuits() == 0
	})
	// Guard and exit serve a new circuit through a new middle.
	mid := startRelay(t, relayOpts{})
	p := n.path()
	p[1] = mid.hop
	c2, err := Build(context.Background(), n.client, p, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fetch(t, c2, "web.chive.test", web.port, 100000)
}

func TestShutdownDestroysCircuits(t *testing.T) {
	n := newTestNet(t, relayOpts{})
	c := n.build(t, 0)
	n.relays[2].kill() // graceful Shutdown after the links drop
	waitFor(t, "the circuit to be destroyed", 5*time.Second, func() bool { return c.Err() != nil })
	waitFor(t, "the guard to free the circuit", 5*time.Second, func() bool { return n.relays[0].relay.NumCircuits() == 0 })
}

func TestMaxCircuits(t *testing.T) {
	n := newTestNet(t, relayOpts{})
	limited := startRelay(t, relayOpts{maxCircuits: 2})
	p := n.path()
	p[0] = limited.hop
	for i := 0; i < 2; i++ {
		c, err := Build(context.Background(), n.client, p, BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	_, err := Build(context.Background(), n.client, p, BuildOptions{})
	var de *DestroyedError
	if !errors.As(err, &de) || de.Reason != cell.DestroyResourceLimit {
		t.Fatalf("third circuit: err = %v, want DESTROY RESOURCELIMIT", err)
	}
	if got := counterValue(limited.metrics.circuitsRefused.WithLabelValues("max_circuits")); got != 1 {
		t.Fatalf("refusals counted: %v, want 1", got)
	}
}

func TestDelayClasses(t *testing.T) {
	classes := map[mix.Class]mix.ClassSpec{1: {Mean: 2 * time.Millisecond}}
	web := startWeb(t)
	n := newTestNet(t, relayOpts{classes: classes})
	c := n.build(t, 1)
	if c.DelayClass() != 1 {
		t.Fatalf("DelayClass() = %d", c.DelayClass())
	}
	fetch(t, c, "web.chive.test", web.port, 2<<20) // order kept: byte-exact
	// A class nobody serves is refused in the handshake.
	_, err := Build(context.Background(), n.client, n.path(), BuildOptions{DelayClass: 2})
	if !errors.Is(err, ErrParamsRefused) {
		t.Fatalf("class 2: err = %v, want ErrParamsRefused", err)
	}
}

func TestLinkReuseBetweenRelays(t *testing.T) {
	n := newTestNet(t, relayOpts{})
	for i := 0; i < 5; i++ {
		n.build(t, 0)
	}
	// guard->middle and middle->exit: one link each, reused by all circuits.
	if got := n.relays[0].links.Len(); got != 1 {
		t.Fatalf("guard holds %d links, want 1", got)
	}
	if got := n.relays[1].links.Len(); got != 2 { // the guard's inbound and its own to the exit
		t.Fatalf("middle holds %d links, want 2", got)
	}
}

func TestBuildTimeout(t *testing.T) {
	n := newTestNet(t, relayOpts{})
	// A relay that accepts links but never answers CREATE2.
	key, _ := layercrypt.GenerateIdentityKey(rand.Reader)
	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	ln, err := link.Listen(tcp, &link.Config{Identity: key})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []*link.Link
	var mu sync.Mutex
	go func() {
		for {
			l, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, l)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, l := range held {
			l.Close()
		}
		mu.Unlock()
	}()
	p := n.path()
	p[0] = Hop{ID: key.ID(), Addr: netip.MustParseAddrPort(ln.Addr().String()), OnionKey: p[0].OnionKey}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Build(ctx, n.client, p, BuildOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("build took %v with a 300ms deadline", d)
	}
}

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	c.Write(&m)
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestExitLimitsAndTimeouts(t *testing.T) {
	src := startSource(t)
	n := newTestNet(t, relayOpts{exitTune: func(e *ExitConfig) {
		e.MaxStreamsPerCircuit = 2
		e.IdleTimeout = 300 * time.Millisecond
	}})
	c := n.build(t, 0)
	ctx := context.Background()
	echo := func() net.Conn {
		t.Helper()
		conn, err := c.Dial(ctx, "127.0.0.1", src.port)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte{'e'})
		return conn
	}
	a, b := echo(), echo()
	// A third stream on the circuit is over the exit's limit.
	if _, err := c.Dial(ctx, "127.0.0.1", src.port); !errors.Is(err, &cell.StreamError{Status: cell.StatusExitLimit}) {
		t.Fatalf("third stream: err = %v, want exit limit", err)
	}
	// Traffic keeps a stream alive past the idle timeout...
	for i := 0; i < 5; i++ {
		time.Sleep(150 * time.Millisecond)
		a.Write([]byte{byte(i)})
		var one [1]byte
		a.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(a, one[:]); err != nil || one[0] != byte(i) {
			t.Fatalf("busy stream broke after %d echoes: %v", i, err)
		}
	}
	// ...while the silent one is closed by the exit.
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(b); err != nil {
		t.Fatalf("idle stream: %v, want a clean close (EOF)", err)
	}
	a.Close()
	b.Close()
	// With those two gone, a stream fits again.
	waitFor(t, "the exit to free its streams", 5*time.Second, func() bool {
		conn, err := c.Dial(ctx, "127.0.0.1", src.port)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
}

// TestMixBudget: past the relay's mix cell budget the circuit holding the
// most cells is destroyed with RESOURCELIMIT; a light circuit survives.
func TestMixBudget(t *testing.T) {
	src := startSource(t)
	classes := map[mix.Class]mix.ClassSpec{1: {Mean: 200 * time.Millisecond}}
	n := newTestNet(t, relayOpts{classes: classes, maxMixCells: 300})
	light := n.build(t, 1)
	heavy := n.build(t, 1)
	conn, err := heavy.Dial(context.Background(), "127.0.0.1", src.port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte{'s'}) // the source streams until the circuit dies
	go io.Copy(io.Discard, conn)
	waitFor(t, "the heavy circuit to be destroyed", 20*time.Second, func() bool { return heavy.Err() != nil })
	var de *DestroyedError
	if !errors.As(heavy.Err(), &de) || de.Reason != cell.DestroyResourceLimit {
		t.Fatalf("heavy circuit: %v, want DESTROY RESOURCELIMIT", heavy.Err())
	}
	if light.Err() != nil {
		t.Fatalf("the light circuit died too: %v", light.Err())
	}
	killed := 0.0
	for _, r := range n.relays {
		killed += counterValue(r.metrics.circuitsKilledOOM)
	}
	if killed < 1 {
		t.Fatal("no relay counted a budget kill")
	}
	// The light circuit still carries traffic.
	lc, err := light.Dial(context.Background(), "127.0.0.1", src.port)
	if err != nil {
		t.Fatalf("light circuit after the kill: %v", err)
	}
	lc.Close()
}
