package circuit

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap/zaptest"

	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/mix"
)

// staticResolver is the exit resolver's in-memory twin: names it knows
// resolve, others are NXDOMAIN.
type staticResolver map[string][]netip.Addr

func (r staticResolver) LookupHost(_ context.Context, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return a, nil
	}
	return nil, ErrNameNotFound
}

func (r staticResolver) Exchange(_ context.Context, query []byte) ([]byte, error) {
	var q dns.Msg
	if err := q.Unpack(query); err != nil || len(q.Question) != 1 {
		return nil, errors.New("bad query")
	}
	var m dns.Msg
	m.SetReply(&q)
	name := q.Question[0].Name
	addrs, ok := r[name[:len(name)-1]]
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	for _, a := range addrs {
		if a.Is4() && q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: a.AsSlice()})
		}
	}
	return m.Pack()
}

type relayOpts struct {
	exit          bool
	policy        string // exit policy text; default accept *:*
	classes       map[mix.Class]mix.ClassSpec
	maxCircuits   int
	privateExtend *bool
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	exitTune      func(*ExitConfig)
	maxMixCells   int
}

type testRelay struct {
	t       testing.TB
	key     *layercrypt.IdentityKey
	onion   *layercrypt.OnionPrivateKey
	ln      *link.Listener
	links   *link.Manager
	relay   *Relay
	sched   *mix.Scheduler
	hop     Hop
	metrics *Metrics

	mu       sync.Mutex
	accepted []*link.Link
	stopOnce sync.Once
	stop     func()
}

var testResolver = staticResolver{
	"web.chive.test":  {netip.MustParseAddr("127.0.0.1")},
	"only.exit.knows": {netip.MustParseAddr("127.0.0.1")},
}

func startRelay(t testing.TB, o relayOpts) *testRelay {
	t.Helper()
	key, err := layercrypt.GenerateIdentityKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	onion, err := layercrypt.GenerateOnionKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
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
	var schedDone chan struct{}
	if len(o.classes) > 0 {
		sched = mix.NewScheduler(mix.Config{})
		schedDone = make(chan struct{})
		go func() { defer close(schedDone); sched.Run(ctx) }()
	}
	cfg := RelayConfig{
		Identity:           key,
		OnionKeys:          func() []*layercrypt.OnionPrivateKey { return []*layercrypt.OnionPrivateKey{onion} },
		Links:              links,
		Mix:                sched,
		Classes:            o.classes,
		AllowPrivateExtend: true,
		MaxCircuits:        o.maxCircuits,
		MaxMixCells:        o.maxMixCells,
		CreateRate:         1e6,
		CreateBurst:        1e6,
		Log:                zaptest.NewLogger(t).Named("relay"),
		Metrics:            NewMetrics(nil, "test"),
	}
	if o.privateExtend != nil {
		cfg.AllowPrivateExtend = *o.privateExtend
	}
	if o.exit {
		text := o.policy
		if text == "" {
			text = "accept *:*"
		}
		pol, err := exitpolicy.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Exit = &ExitConfig{Policy: pol, Resolver: testResolver, Dial: o.dial, ConnectTimeout: 5 * time.Second}
		if o.exitTune != nil {
			o.exitTune(cfg.Exit)
		}
	}
	relay, err := NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	links.OnDial(relay.ServeLink)
	tr := &testRelay{t: t, key: key, onion: onion, ln: ln, links: links, relay: relay, sched: sched, metrics: cfg.Metrics,
		hop: Hop{ID: key.ID(), Addr: netip.MustParseAddrPort(ln.Addr().String()), OnionKey: onion.Public()}}
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
		tr.closeLinks()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := relay.Shutdown(sctx); err != nil {
			t.Errorf("relay shutdown: %v", err)
		}
		wg.Wait()
		if schedDone != nil {
			<-schedDone
		}
	}
	t.Cleanup(tr.kill)
	return tr
}

func (tr *testRelay) closeLinks() {
	tr.mu.Lock()
	acc := tr.accepted
	tr.accepted = nil
	tr.mu.Unlock()
	for _, l := range acc {
		l.Close()
	}
	tr.links.Close()
}

// kill stops the relay abruptly: its links drop, as if the process died.
func (tr *testRelay) kill() { tr.stopOnce.Do(tr.stop) }

// testNet is a guard, a middle and an exit, plus a client link manager.
type testNet struct {
	relays []*testRelay
	client *link.Manager
}

func newTestNet(t testing.TB, exitOpts relayOpts) *testNet {
	t.Helper()
	exitOpts.exit = true
	mid := relayOpts{classes: exitOpts.classes, maxMixCells: exitOpts.maxMixCells}
	n := &testNet{
		relays: []*testRelay{startRelay(t, mid), startRelay(t, mid), startRelay(t, exitOpts)},
		client: link.NewManager(&link.Config{}),
	}
	t.Cleanup(n.client.Close)
	return n
}

func (n *testNet) path() []Hop {
	p := make([]Hop, len(n.relays))
	for i, r := range n.relays {
		p[i] = r.hop
	}
	return p
}

func (n *testNet) build(t testing.TB, class uint8) *Circuit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Build(ctx, n.client, n.path(), BuildOptions{DelayClass: class})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
