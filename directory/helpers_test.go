package directory

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/dirclient"
	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/netdoc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testPeriod is the voting period of the in-process networks: long enough
// that the eighth-of-a-period phases (375 ms) hold on a loaded 2-core
// machine under -race, short enough for quick tests.
const testPeriod = 3 * time.Second

// fixedKey returns a deterministic identity key for name.
func fixedKey(tb testing.TB, name string) *layercrypt.IdentityKey {
	tb.Helper()
	seed := sha256.Sum256([]byte("chive directory test identity " + name))
	k, err := layercrypt.IdentityKeyFromSeed(seed[:])
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// testAuth is one authority of a testNet.
type testAuth struct {
	cfg  Config // template; copied for every start
	addr string
	dir  string
	reg  *prometheus.Registry
	logs *observer.ObservedLogs

	mu     sync.Mutex // guards a, cancel, done
	a      *Authority
	cancel context.CancelFunc
	done   chan error
}

// testNet is n configured authorities on loopback, started on demand.
type testNet struct {
	t     testing.TB
	auths []*testAuth
	dir   []dirclient.Authority // as clients and relays configure them
	hc    *http.Client
}

func newTestNet(t testing.TB, n int) *testNet {
	t.Helper()
	tn := &testNet{t: t, hc: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}}
	var list []AuthorityConfig
	var lns []net.Listener
	for i := range n {
		dir := t.TempDir()
		key, _, err := LoadOrCreateKey(dir)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		name := fmt.Sprintf("auth%d", i)
		list = append(list, AuthorityConfig{Nickname: name, ID: key.ID().String(), Address: ln.Addr().String()})
		tn.dir = append(tn.dir, dirclient.Authority{ID: key.ID(), Addr: ln.Addr().String()})
		tn.auths = append(tn.auths, &testAuth{addr: ln.Addr().String(), dir: dir})
	}
	for i, ta := range tn.auths {
		ta.cfg = Config{
			Nickname:       list[i].Nickname,
			DataDir:        ta.dir,
			Authorities:    list,
			VotingPeriod:   testPeriod,
			Testnet:        true,
			RequestTimeout: 5 * time.Second,
			Reachability:   ReachabilityConfig{Timeout: 5 * time.Second, Concurrency: 4},
		}
		// Listeners are closed here and reopened on start: a stopped
		// authority must refuse connections like a dead process.
		lns[i].Close()
	}
	t.Cleanup(func() {
		for i := range tn.auths {
			tn.stop(i)
		}
	})
	return tn
}

// start runs authority i (New + Run) on its address, with fresh metrics.
func (tn *testNet) start(i int) *Authority {
	tn.t.Helper()
	ta := tn.auths[i]
	ln, err := net.Listen("tcp", ta.addr)
	if err != nil {
		tn.t.Fatal(err)
	}
	cfg := ta.cfg
	cfg.Listener = ln
	ta.reg = prometheus.NewRegistry()
	cfg.Registry = ta.reg
	core, logs := observer.New(zapcore.DebugLevel)
	ta.logs = logs
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(tn.t, zaptest.Level(zapcore.InfoLevel)).Core())).Named(cfg.Nickname)
	a, err := New(&cfg, log)
	if err != nil {
		ln.Close()
		tn.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	ta.mu.Lock()
	ta.a, ta.cancel, ta.done = a, cancel, done
	ta.mu.Unlock()
	return a
}

// stop stops authority i if it runs.
func (tn *testNet) stop(i int) {
	ta := tn.auths[i]
	ta.mu.Lock()
	cancel, done := ta.cancel, ta.done
	ta.a, ta.cancel, ta.done = nil, nil, nil
	ta.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			tn.t.Errorf("authority %d: Run: %v", i, err)
		}
	case <-time.After(10 * time.Second):
		tn.t.Errorf("authority %d did not stop", i)
	}
}

func (tn *testNet) authority(i int) *Authority {
	ta := tn.auths[i]
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.a
}

// get fetches path from authority i.
func (tn *testNet) get(i int, path string) (int, []byte) {
	tn.t.Helper()
	resp, err := tn.hc.Get("http://" + tn.auths[i].addr + path)
	if err != nil {
		tn.t.Fatalf("GET %s from authority %d: %v", path, i, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tn.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// consensusAt returns the consensus documents authorities idx serve if
// they all serve one valid after `after`, for the same period.
func (tn *testNet) consensusAt(idx []int, after time.Time) ([][]byte, error) {
	var docs [][]byte
	var va time.Time
	for _, i := range idx {
		status, b := tn.get(i, "/chive/v1/consensus")
		if status != http.StatusOK {
			return nil, fmt.Errorf("authority %d: HTTP %d %s", i, status, b)
		}
		c, err := netdoc.ParseConsensus(b, tn.ids(), time.Now())
		if err != nil {
			return nil, fmt.Errorf("authority %d: %w", i, err)
		}
		if !c.ValidAfter.After(after) {
			return nil, fmt.Errorf("authority %d: consensus valid after %s, want one after %s", i, c.ValidAfter, after)
		}
		if len(docs) > 0 && !c.ValidAfter.Equal(va) {
			return nil, fmt.Errorf("authorities serve consensuses of different periods (%s, %s)", va, c.ValidAfter)
		}
		va = c.ValidAfter
		docs = append(docs, b)
	}
	return docs, nil
}

// eventually retries f every 100 ms until it returns nil, failing the test
// with f's last error after timeout.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (tn *testNet) ids() []layercrypt.RelayID {
	ids := make([]layercrypt.RelayID, len(tn.dir))
	for i, a := range tn.dir {
		ids[i] = a.ID
	}
	return ids
}

// nopResolver resolves nothing: the test exits are never asked to connect.
type nopResolver struct{}

func (nopResolver) LookupHost(context.Context, string) ([]netip.Addr, error) {
	return nil, circuit.ErrNameNotFound
}
func (nopResolver) Exchange(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("no DNS in directory tests")
}

// testRelay is a real relay: a circuit.Relay serving links accepted by a
// link.Listener on loopback.
type testRelay struct {
	key   *layercrypt.IdentityKey
	onion *layercrypt.OnionPrivateKey
	addr  netip.AddrPort
	exit  bool
	stop  func()
}

func startRelay(t testing.TB, exit bool) *testRelay {
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
	ln, err := link.Listen(tcp, &link.Config{Identity: key, PaddingMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	links := link.NewManager(&link.Config{Identity: key, PaddingMax: -1})
	cfg := circuit.RelayConfig{
		Identity:  key,
		OnionKeys: func() []*layercrypt.OnionPrivateKey { return []*layercrypt.OnionPrivateKey{onion} },
		Links:     links,
	}
	if exit {
		cfg.Exit = &circuit.ExitConfig{Policy: exitpolicy.AcceptAll, Resolver: nopResolver{}}
	}
	relay, err := circuit.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var accepted []*link.Link
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			l, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, l)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				relay.ServeLink(l)
			}()
		}
	}()
	var once sync.Once
	tr := &testRelay{key: key, onion: onion, addr: netip.MustParseAddrPort(ln.Addr().String()), exit: exit}
	tr.stop = func() {
		once.Do(func() {
			cancel()
			ln.Close()
			mu.Lock()
			for _, l := range accepted {
				l.Close()
			}
			mu.Unlock()
			links.Close()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			relay.Shutdown(sctx)
			wg.Wait()
		})
	}
	t.Cleanup(tr.stop)
	return tr
}

// descriptor returns the relay's signed descriptor, published now.
func (tr *testRelay) descriptor(t testing.TB, nickname string) []byte {
	t.Helper()
	return signedDescriptor(t, tr.key, nickname, tr.addr, tr.onion.Public(), tr.exit, time.Now())
}

func signedDescriptor(t testing.TB, key *layercrypt.IdentityKey, nickname string, addr netip.AddrPort,
	onion layercrypt.OnionPublicKey, exit bool, published time.Time) []byte {
	t.Helper()
	d := testDescriptor(key, nickname, addr, onion, exit, published)
	b, err := d.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testDescriptor(key *layercrypt.IdentityKey, nickname string, addr netip.AddrPort,
	onion layercrypt.OnionPublicKey, exit bool, published time.Time) *netdoc.Descriptor {
	pol := exitpolicy.RejectAll
	if exit {
		pol = exitpolicy.AcceptAll
	}
	return &netdoc.Descriptor{
		Nickname:     nickname,
		ID:           key.ID(),
		Published:    published.UTC().Truncate(time.Second),
		Platform:     "chive directory test",
		Protocols:    netdoc.Protocols{{Name: "Circuit", Versions: netdoc.Versions(1)}, {Name: "Link", Versions: netdoc.Versions(1)}, {Name: "Relay", Versions: netdoc.Versions(1)}},
		Addr:         addr,
		OnionKey:     onion,
		Bandwidth:    1 << 20,
		Uptime:       time.Hour,
		DelayClasses: []uint8{0},
		Policy:       pol,
	}
}

// publish uploads desc to every running authority of tn and fails on any
// refusal by a running one.
func (tn *testNet) publish(t testing.TB, desc []byte, running ...int) map[layercrypt.RelayID]error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := dirclient.Publish(ctx, tn.hc, tn.dir, desc)
	for _, i := range running {
		if err := res[tn.dir[i].ID]; err != nil {
			t.Fatalf("publish to authority %d: %v", i, err)
		}
	}
	return res
}

// value returns the value of a gauge or counter.
func value(tb testing.TB, m prometheus.Metric) float64 {
	tb.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		tb.Fatal(err)
	}
	switch {
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	case d.Counter != nil:
		return d.Counter.GetValue()
	}
	tb.Fatalf("not a gauge or counter: %v", m.Desc())
	return 0
}
