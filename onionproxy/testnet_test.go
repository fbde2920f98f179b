package onionproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/dnsproxy"
	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/mix"
	"github.com/chive-net/chive/netdoc"
)

// The test network: relays on distinct loopback /16s (127.N.0.1), two
// exits whose resolver asks an in-test DNS server, an HTTP and an HTTPS
// server, three test authorities that sign the consensus, and an in-test
// authority HTTP handler serving GET /chive/v1/consensus.

// Names only the exits' resolver knows. The .test TLD is reserved: the
// host's resolver cannot answer for it.
const (
	webName     = "www.chive.test"
	unreachName = "unreach.chive.test" // 127.0.0.3: the exits' dialer says "network unreachable"
	slowName    = "slow.chive.test"    // 127.0.0.4: the exits' dialer hangs (connect timeout)
	deniedName  = "denied.chive.test"  // 127.0.0.2: refused by the exits' full policy
	bigName     = "big.chive.test"     // TXT records larger than a UDP answer
)

// bigTXT is 12 TXT records of 200 bytes each: about 2.6 KB, more than any
// UDP answer the front-end sends, so stubs must retry over TCP.
func bigTXT() []dns.RR {
	var out []dns.RR
	for i := 0; i < 12; i++ {
		out = append(out, &dns.TXT{Hdr: dns.RR_Header{Name: bigName + ".", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
			Txt: []string{fmt.Sprintf("%02d", i) + strings.Repeat("x", 198)}})
	}
	return out
}

var (
	unreachAddr = netip.MustParseAddr("127.0.0.3")
	slowAddr    = netip.MustParseAddr("127.0.0.4")
	deniedAddr  = netip.MustParseAddr("127.0.0.2")
)

// zone is what the in-test DNS server knows.
func zone() map[uint16]map[string][]dns.RR {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		return r
	}
	return map[uint16]map[string][]dns.RR{
		dns.TypeA: {
			webName + ".":     {rr(webName + ". 300 IN A 127.0.0.1")},
			unreachName + ".": {rr(unreachName + ". 300 IN A 127.0.0.3")},
			slowName + ".":    {rr(slowName + ". 300 IN A 127.0.0.4")},
			deniedName + ".":  {rr(deniedName + ". 300 IN A 127.0.0.2")},
		},
		dns.TypeAAAA: {webName + ".": {rr(webName + ". 300 IN AAAA 2001:db8::c0de")}},
		dns.TypeMX:   {webName + ".": {rr(webName + ". 300 IN MX 10 mail.chive.test.")}},
		dns.TypeTXT: {
			webName + ".": {rr(webName + `. 300 IN TXT "only the exit knows this"`)},
			bigName + ".": bigTXT(),
		},
		dns.TypeSRV: {"_http._tcp." + webName + ".": {rr("_http._tcp." + webName + ". 300 IN SRV 0 5 80 " + webName + ".")}},
	}
}

// startDNS runs the in-test DNS server on UDP and TCP; it returns its
// address.
func startDNS(t testing.TB) string {
	t.Helper()
	z := zone()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		name := strings.ToLower(q.Question[0].Name)
		known := false
		for _, byName := range z {
			if _, ok := byName[name]; ok {
				known = true
			}
		}
		if !known {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "chive.test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
				Ns: "ns.chive.test.", Mbox: "hostmaster.chive.test.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 60}}
		} else {
			m.Answer = z[q.Question[0].Qtype][name]
		}
		// Over UDP, answer within the asker's size, truncated (TC) if
		// need be, as a real server does.
		if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
			size := dns.MinMsgSize
			if o := q.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	// UDP and TCP on one port: retry while the TCP port is taken.
	var pc net.PacketConn
	var tl net.Listener
	var addr string
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = pc.LocalAddr().String()
		tl, err = net.Listen("tcp", addr)
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatal(err)
		}
	}
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: tl, Handler: h}
	var wg sync.WaitGroup
	for _, s := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.ActivateAndServe()
		}()
		<-started
	}
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
		wg.Wait()
	})
	return addr
}

// testRelay is one relay of the test network.
type testRelay struct {
	t      testing.TB
	name   string
	key    *layercrypt.IdentityKey
	onion  *layercrypt.OnionPrivateKey
	ln     *link.Listener
	links  *link.Manager
	relay  *circuit.Relay
	exit   bool
	desc   *netdoc.Descriptor
	policy exitpolicy.Policy

	mu       sync.Mutex
	accepted []*link.Link
	once     sync.Once
	stop     func()
}

type relayOpts struct {
	exit     bool
	ip       string // listen address (a loopback address)
	resolver circuit.Resolver
	classes  map[mix.Class]mix.ClassSpec
	// connectTimeout of the exit (default 2s: the slow destination times
	// out at the exit, which reports it).
	connectTimeout time.Duration
}

// exitDial is the exits' dialer: real TCP, except for the addresses that
// play an unreachable network and a destination that never answers.
func exitDial(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("test exit dials IP literals only, got %q", addr)
	}
	switch ap.Addr() {
	case unreachAddr:
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ENETUNREACH}
	case slowAddr:
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func startRelay(t testing.TB, name string, o relayOpts) *testRelay {
	t.Helper()
	key, err := layercrypt.GenerateIdentityKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	onion, err := layercrypt.GenerateOnionKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", net.JoinHostPort(o.ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := link.Listen(tcp, &link.Config{Identity: key})
	if err != nil {
		t.Fatal(err)
	}
	links := link.NewManager(&link.Config{Identity: key})
	ctx, cancel := context.WithCancel(context.Background())
	var sched *mix.Scheduler
	schedDone := make(chan struct{})
	if len(o.classes) > 0 {
		sched = mix.NewScheduler(mix.Config{})
		go func() { defer close(schedDone); sched.Run(ctx) }()
	} else {
		close(schedDone)
	}
	cfg := circuit.RelayConfig{
		Identity:           key,
		OnionKeys:          func() []*layercrypt.OnionPrivateKey { return []*layercrypt.OnionPrivateKey{onion} },
		Links:              links,
		Mix:                sched,
		Classes:            o.classes,
		AllowPrivateExtend: true,
		CreateRate:         1e6,
		CreateBurst:        1e6,
		Log:                zap.NewNop(),
	}
	tr := &testRelay{t: t, name: name, key: key, onion: onion, ln: ln, links: links, exit: o.exit, policy: exitpolicy.RejectAll}
	if o.exit {
		pol, err := exitpolicy.Parse("reject 127.0.0.2:*, accept *:*")
		if err != nil {
			t.Fatal(err)
		}
		tr.policy = pol
		ct := o.connectTimeout
		if ct == 0 {
			ct = 2 * time.Second
		}
		cfg.Exit = &circuit.ExitConfig{Policy: pol, Resolver: o.resolver, Dial: exitDial, ConnectTimeout: ct}
	}
	relay, err := circuit.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr.relay = relay
	links.OnDial(relay.ServeLink)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			l, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			tr.mu.Lock()
			tr.accepted = append(tr.accepted, l)
			tr.mu.Unlock()
			links.Add(l)
			wg.Add(1)
			go func() {
				defer wg.Done()
				relay.ServeLink(l)
			}()
		}
	}()
	tr.stop = func() {
		cancel()
		ln.Close()
		tr.mu.Lock()
		acc := tr.accepted
		tr.accepted = nil
		tr.mu.Unlock()
		for _, l := range acc {
			l.Close()
		}
		links.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		relay.Shutdown(sctx)
		wg.Wait()
		<-schedDone
	}
	t.Cleanup(tr.kill)
	return tr
}

// kill stops the relay abruptly: its links drop, as if the process died.
func (tr *testRelay) kill() { tr.once.Do(tr.stop) }

// descriptor returns the relay's descriptor, signed.
func (tr *testRelay) descriptor(t testing.TB, now time.Time) *netdoc.Descriptor {
	d, _ := tr.signedDescriptor(t, now)
	return d
}

// signedDescriptor returns the relay's descriptor and its signed bytes.
func (tr *testRelay) signedDescriptor(t testing.TB, now time.Time) (*netdoc.Descriptor, []byte) {
	t.Helper()
	classes := []uint8{0, 1}
	d := &netdoc.Descriptor{
		Nickname:     tr.name,
		ID:           tr.key.ID(),
		Published:    now.Add(-time.Minute).Truncate(time.Second).UTC(),
		Protocols:    netdoc.Protocols{{Name: "Circuit", Versions: netdoc.Versions(1)}, {Name: "Link", Versions: netdoc.Versions(1)}, {Name: "Relay", Versions: netdoc.Versions(1)}},
		Addr:         netip.MustParseAddrPort(tr.ln.Addr().String()),
		OnionKey:     tr.onion.Public(),
		Bandwidth:    1 << 20,
		Uptime:       24 * time.Hour,
		DelayClasses: classes,
		Policy:       tr.policy,
	}
	b, err := d.Sign(tr.key)
	if err != nil {
		t.Fatal(err)
	}
	return d, b
}

// testAuthorities sign test consensuses.
type testAuthorities struct {
	keys []*layercrypt.IdentityKey
	ids  []layercrypt.RelayID
}

func newTestAuthorities(t testing.TB, n int) *testAuthorities {
	a := &testAuthorities{}
	for i := 0; i < n; i++ {
		k, err := layercrypt.GenerateIdentityKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		a.keys = append(a.keys, k)
		a.ids = append(a.ids, k.ID())
	}
	return a
}

// consensus computes the consensus the authorities agree on for relays,
// from one signed vote each, and has signers of them sign it.
func (a *testAuthorities) consensus(t testing.TB, relays []*testRelay, now time.Time, signers int) []byte {
	t.Helper()
	var descs []*netdoc.Descriptor
	reach := map[layercrypt.RelayID]bool{}
	for _, r := range relays {
		descs = append(descs, r.descriptor(t, now))
		reach[r.key.ID()] = true
	}
	entries, err := netdoc.AssignFlags(descs, reach, now, netdoc.TestnetFlagParams())
	if err != nil {
		t.Fatal(err)
	}
	period := time.Hour
	va := netdoc.PeriodStart(now, period)
	fresh, valid := netdoc.PeriodTimes(va, period)
	var votes []*netdoc.Vote
	for _, k := range a.keys {
		v := &netdoc.Vote{Authority: k.ID(), ConsensusMethods: netdoc.SupportedConsensusMethods, ValidAfter: va, FreshUntil: fresh,
			ValidUntil: valid, VotingPeriod: period, KnownFlags: netdoc.AllFlags, Relays: entries}
		b, err := v.Sign(k)
		if err != nil {
			t.Fatal(err)
		}
		pv, err := netdoc.ParseVote(b, a.ids, now)
		if err != nil {
			t.Fatal(err)
		}
		votes = append(votes, pv)
	}
	c, err := netdoc.ComputeConsensus(votes, a.ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range a.keys[:signers] {
		if err := c.AddSignature(netdoc.SignConsensus(c.Body(), k)); err != nil {
			t.Fatal(err)
		}
	}
	return c.Encode()
}

// dirServer is the in-test authority: GET /chive/v1/consensus serves the
// document set last, or 404 with a reason when there is none.
type dirServer struct {
	srv *httptest.Server
	mu  sync.Mutex
	doc []byte
}

func newDirServer(t testing.TB) *dirServer {
	d := &dirServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /chive/v1/consensus", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		doc := d.doc
		d.mu.Unlock()
		if doc == nil {
			http.Error(w, "no consensus yet", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write(doc)
	})
	d.srv = httptest.NewServer(mux)
	t.Cleanup(d.srv.Close)
	return d
}

func (d *dirServer) set(doc []byte) {
	d.mu.Lock()
	d.doc = doc
	d.mu.Unlock()
}

// testSource is the directory client's twin for these tests: it fetches
// GET /chive/v1/consensus over HTTP and verifies the document with netdoc
// against the configured authorities.
type testSource struct {
	url  string
	ids  []layercrypt.RelayID
	http *http.Client
	mu   sync.Mutex
	last *netdoc.Consensus
}

func (s *testSource) Cached() (*netdoc.Consensus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return nil, errors.New("no cached consensus")
	}
	return s.last, nil
}

func (s *testSource) Fetch(ctx context.Context) (*netdoc.Consensus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/chive/v1/consensus", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, netdoc.MaxConsensusSize))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("authority answered %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	c, err := netdoc.ParseConsensus(body, s.ids, time.Now())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.last = c
	s.mu.Unlock()
	return c, nil
}

// testNet is the whole network but the client.
type testNet struct {
	relays  []*testRelay
	auth    *testAuthorities
	dir     *dirServer
	dnsAddr string
	web     *httptest.Server
	webTLS  *httptest.Server
	page    []byte // GET /page
	big     []byte // GET /big
}

type netOpts struct {
	relays int // default 5: three non-exits and two exits
	exits  int
}

func newTestNet(t testing.TB, o netOpts) *testNet {
	t.Helper()
	if o.relays == 0 {
		o.relays, o.exits = 5, 2
	}
	n := &testNet{dnsAddr: startDNS(t), auth: newTestAuthorities(t, 3)}
	res, err := dnsproxy.NewResolver(dnsproxy.ResolverConfig{Upstreams: []string{n.dnsAddr}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	classes := map[mix.Class]mix.ClassSpec{1: {Class: 1, Mean: 200 * time.Microsecond}}
	for i := 0; i < o.relays; i++ {
		exit := i >= o.relays-o.exits
		name := fmt.Sprintf("relay%d", i)
		if exit {
			name = fmt.Sprintf("exit%d", i)
		}
		n.relays = append(n.relays, startRelay(t, name, relayOpts{
			exit: exit, ip: fmt.Sprintf("127.%d.0.1", 10+i), resolver: res, classes: classes,
		}))
	}
	n.page = []byte("<html><body>chive test page</body></html>\n")
	n.big = make([]byte, 1<<20)
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := range n.big {
		n.big[i] = byte(rng.Uint32())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) { w.Write(n.page) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(n.big) })
	n.web = httptest.NewServer(mux)
	t.Cleanup(n.web.Close)
	n.webTLS = httptest.NewTLSServer(mux)
	t.Cleanup(n.webTLS.Close)
	n.dir = newDirServer(t)
	n.publish(t)
	return n
}

// publish serves a fresh consensus of the relays still running.
func (n *testNet) publish(t testing.TB) {
	n.dir.set(n.auth.consensus(t, n.relays, time.Now(), len(n.auth.keys)))
}

func (n *testNet) source() *testSource {
	return &testSource{url: n.dir.srv.URL, ids: n.auth.ids, http: n.dir.srv.Client()}
}

func (n *testNet) port() string    { return portOf(n.web.Listener.Addr()) }
func (n *testNet) tlsPort() string { return portOf(n.webTLS.Listener.Addr()) }

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

func (n *testNet) relayByShortID(short string) *testRelay {
	for _, r := range n.relays {
		if r.key.ID().Short() == short {
			return r
		}
	}
	return nil
}

// testConfig is a proxy config with every listener on a free loopback port.
func testConfig(t testing.TB) *Config {
	return &Config{
		DataDir:              t.TempDir(),
		SOCKSListeners:       []ListenerConfig{{Address: "127.0.0.1:0"}},
		HTTPConnectListeners: []ListenerConfig{{Address: "127.0.0.1:0"}},
		DNSListener:          DNSListenerConfig{Address: "127.0.0.1:0"},
		ControlListener:      "127.0.0.1:0",
		Circuits:             CircuitsConfig{BuildTimeout: 5 * time.Second, StreamTimeout: 3 * time.Second},
		Limits:               LimitsConfig{HandshakeTimeout: 2 * time.Second},
	}
}

// runningProxy is a proxy serving in the background, with its log lines
// observed.
type runningProxy struct {
	*Proxy
	logs   *observer.ObservedLogs
	cancel context.CancelFunc
	done   chan error
}

func startProxy(t testing.TB, cfg *Config, opts ...Option) *runningProxy {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)).Core(), core))
	p, err := New(cfg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &runningProxy{Proxy: p, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { rp.done <- p.Run(ctx) }()
	t.Cleanup(rp.stop)
	return rp
}

func (rp *runningProxy) stop() {
	rp.cancel()
	<-rp.done
	rp.done <- nil // later stops return at once
}

func (rp *runningProxy) waitBootstrapped(t testing.TB) {
	t.Helper()
	select {
	case <-rp.Bootstrapped():
	case <-time.After(20 * time.Second):
		t.Fatalf("not bootstrapped after 20s: %+v", rp.Status().Bootstrap)
	}
}

// startNetAndProxy starts a test network and a bootstrapped proxy on it.
func startNetAndProxy(t testing.TB, tweak func(*Config)) (*testNet, *runningProxy) {
	t.Helper()
	n := newTestNet(t, netOpts{})
	cfg := testConfig(t)
	if tweak != nil {
		tweak(cfg)
	}
	rp := startProxy(t, cfg, WithConsensusSource(n.source()))
	rp.waitBootstrapped(t)
	return n, rp
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
