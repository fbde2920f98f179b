package relay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/chive-net/chive/cell"
	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/directory"
	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/mix"
	"github.com/chive-net/chive/netdoc"
)

// fakeAuthority is the authority's upload endpoint as COMMON.md fixes it:
// it parses each upload with netdoc.ParseDescriptor (signature and time
// checked) and answers 200 "accepted" or 400 with the reason. It can be told
// to refuse the first uploads.
type fakeAuthority struct {
	srv   *httptest.Server
	id    layercrypt.RelayID
	now   func() time.Time
	mu    sync.Mutex
	descs []*netdoc.Descriptor
	fails int // uploads still to refuse with 503
	got   chan *netdoc.Descriptor
}

func startAuthority(t testing.TB, now func() time.Time) *fakeAuthority {
	t.Helper()
	k, err := layercrypt.GenerateIdentityKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAuthority{id: k.ID(), now: now, got: make(chan *netdoc.Descriptor, 100)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+DescriptorPath, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
		if err != nil || len(b) > 64<<10 {
			http.Error(w, "descriptor too large", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		fail := a.fails > 0
		if fail {
			a.fails--
		}
		a.mu.Unlock()
		if fail {
			http.Error(w, "authority busy, try later", http.StatusServiceUnavailable)
			return
		}
		d, err := netdoc.ParseDescriptor(b, a.now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.descs = append(a.descs, d)
		a.mu.Unlock()
		a.got <- d
		io.WriteString(w, "accepted\n")
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAuthority) config(nick string) AuthorityConfig {
	return AuthorityConfig{ID: a.id.String(), Address: a.srv.Listener.Addr().String(), Nickname: nick}
}

func (a *fakeAuthority) next(t testing.TB, within time.Duration) *netdoc.Descriptor {
	t.Helper()
	select {
	case d := <-a.got:
		return d
	case <-time.After(within):
		t.Fatal("no descriptor arrived")
		return nil
	}
}

// TestPublishDescriptor: the descriptor reaches every authority, signed and
// with the relay's fields; an authority that refuses at first is retried;
// the failure is logged naming the authority.
func TestPublishDescriptor(t *testing.T) {
	a1 := startAuthority(t, time.Now)
	a2 := startAuthority(t, time.Now)
	a2.fails = 2
	fam, _ := layercrypt.GenerateIdentityKey(rand.Reader)
	cfg := exitConfig(t, "pubexit", "127.0.0.1:53", false, "accept *:443", "reject *:*")
	cfg.Family = []string{fam.ID().String()}
	cfg.Bandwidth = BandwidthConfig{Advertised: 3 << 20, Rate: 4 << 20}
	cfg.Authorities = []AuthorityConfig{a1.config("alpha"), a2.config("beta")}
	core, logs := observer.New(zapcore.InfoLevel)
	r := runRelay(t, cfg, zap.New(core))

	d := a1.next(t, 5*time.Second)
	cur, prev := r.OnionKeys()
	checks := []struct {
		name      string
		got, want any
	}{
		{"nickname", d.Nickname, "pubexit"},
		{"id", d.ID, r.ID()},
		{"address", d.Addr, r.Addr()},
		{"onion key", d.OnionKey, cur},
		{"previous onion key", d.PrevOnionKey, prev},
		{"bandwidth", d.Bandwidth, uint64(3 << 20)},
		{"delay classes", fmt.Sprint(d.DelayClasses), "[0 1 2]"},
		{"family", fmt.Sprint(d.Family), fmt.Sprint([]layercrypt.RelayID{fam.ID()})},
		{"platform", d.Platform, Platform()},
		{"protocols", d.Protocols.String(), "Link=1 Relay=1 Stream=1"},
		{"policy allows 443", d.Policy.Allows(netip.MustParseAddr("198.51.100.1"), 443), true},
		{"policy refuses 80", d.Policy.Allows(netip.MustParseAddr("198.51.100.1"), 80), false},
		{"policy refuses private", d.Policy.Allows(netip.MustParseAddr("10.0.0.1"), 443), false},
		{"policy refuses own address", d.Policy.Allows(r.Addr().Addr(), 443), false},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if age := time.Since(d.Published); age < 0 || age > time.Minute {
		t.Errorf("published %v, %v ago", d.Published, age)
	}
	if own, err := netdoc.ParseDescriptor(r.Descriptor(), time.Now()); err != nil || own.Digest() != d.Digest() {
		t.Errorf("Descriptor() is not the signed descriptor the authority got: %v", err)
	}

	// beta refused twice (503): retried with backoff until accepted.
	d2 := a2.next(t, 10*time.Second)
	if d2.ID != r.ID() {
		t.Errorf("beta got a descriptor for %v", d2.ID)
	}
	var warned int
	for _, e := range logs.FilterMessageSnippet("publishing the descriptor failed").All() {
		if fmt.Sprint(e.ContextMap()["authority"]) == "beta/"+a2.id.Short() &&
			strings.Contains(fmt.Sprint(e.ContextMap()["error"]), "try later") {
			warned++
		}
	}
	if warned != 2 {
		t.Errorf("%d warnings naming beta and its reason, want 2", warned)
	}
}

// TestPublishNonExit: a non-exit's descriptor rejects everything.
func TestPublishNonExit(t *testing.T) {
	a := startAuthority(t, time.Now)
	cfg := testConfig(t, "middle1")
	cfg.Mixing.Classes = []ClassConfig{}
	cfg.Authorities = []AuthorityConfig{a.config("")}
	runRelay(t, cfg, nil)
	d := a.next(t, 5*time.Second)
	if !d.Policy.Equal(exitpolicy.RejectAll) {
		t.Errorf("non-exit policy %v, want reject *:*", d.Policy)
	}
	if fmt.Sprint(d.DelayClasses) != "[0]" {
		t.Errorf("delay classes %v, want [0]", d.DelayClasses)
	}
}

// TestOnionRotationRun: a running relay with a fake clock rotates its onion
// key each period and re-publishes. After one rotation a circuit built with
// the old key still works; after two it does not, the key's file is gone
// and its secret is wiped in memory.
func TestOnionRotationRun(t *testing.T) {
	old := wipeGrace
	wipeGrace = 50 * time.Millisecond
	defer func() { wipeGrace = old }()
	const period = time.Hour
	start := time.Now().Truncate(time.Second)
	fc := mix.NewFakeClock(start)
	a := startAuthority(t, fc.Now)
	cfg := testConfig(t, "rot")
	cfg.OnionKeyRotation = period
	cfg.PublishInterval = 10 * time.Hour // only rotations publish in this test
	cfg.Authorities = []AuthorityConfig{a.config("auth")}
	r := runRelay(t, cfg, nil, WithClock(fc))
	first := a.next(t, 5*time.Second)

	r.keys.mu.Lock()
	keyA := r.keys.onion[0]
	r.keys.mu.Unlock()
	if first.OnionKey != keyA.key.Public() || !first.PrevOnionKey.IsZero() {
		t.Fatal("first descriptor does not carry the one onion key")
	}
	client := newClient(t)
	hopWith := func(k layercrypt.OnionPublicKey) []circuit.Hop {
		h := r.Hop()
		h.OnionKey = k
		return []circuit.Hop{h}
	}
	tryBuild := func(k layercrypt.OnionPublicKey) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := circuit.Build(ctx, client, hopWith(k), circuit.BuildOptions{})
		if err == nil {
			c.Close()
		}
		return err
	}
	rotateTo := func(at time.Time) *netdoc.Descriptor {
		t.Helper()
		// The maintenance goroutine must have armed its timer for this time.
		waitFor(t, "the rotation timer", 5*time.Second, func() bool {
			d, ok := fc.NextDeadline()
			return ok && !d.After(at)
		})
		fc.AdvanceTo(at)
		return a.next(t, 5*time.Second)
	}
	if err := tryBuild(keyA.key.Public()); err != nil {
		t.Fatalf("build with the current key: %v", err)
	}

	// One rotation.
	d := rotateTo(start.Add(period))
	cur, prev := r.OnionKeys()
	if cur == keyA.key.Public() || prev != keyA.key.Public() {
		t.Fatal("after one rotation: want a new current key and the old one as previous")
	}
	if d.OnionKey != cur || d.PrevOnionKey != prev || !d.Published.Equal(start.Add(period)) {
		t.Errorf("re-published descriptor: onion %v prev %v published %v; want %v %v %v",
			d.OnionKey, d.PrevOnionKey, d.Published, cur, prev, start.Add(period))
	}
	if err := tryBuild(keyA.key.Public()); err != nil {
		t.Fatalf("after one rotation, build with the previous key: %v", err)
	}
	if err := tryBuild(cur); err != nil {
		t.Fatalf("build with the new key: %v", err)
	}

	// Two rotations: keyA is gone.
	d = rotateTo(start.Add(2 * period))
	cur2, prev2 := r.OnionKeys()
	if prev2 != cur || d.OnionKey != cur2 || d.PrevOnionKey != cur {
		t.Fatal("after two rotations: want the second key as previous, in the descriptor too")
	}
	if _, err := os.Stat(keyA.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the expired key's file %s: %v, want it gone", keyA.path, err)
	}
	waitFor(t, "the expired key to be wiped in memory", 5*time.Second, func() bool { return isWiped(r.keys, keyA.key) })
	err := tryBuild(keyA.key.Public())
	var de *circuit.DestroyedError
	if !errors.As(err, &de) || de.Reason != cell.DestroyProtocol {
		t.Fatalf("after two rotations, build with the erased key: %v, want DESTROY(PROTOCOL): the handshake fails", err)
	}
	if err := tryBuild(cur); err != nil {
		t.Fatalf("build with the previous key after two rotations: %v", err)
	}
}

// TestRealAuthority: three relays publish to a real directory authority
// (package directory), which tests their reachability and lists them in its
// consensus with the onion keys and addresses they published; a client
// builds a circuit from the consensus entries alone.
func TestRealAuthority(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a voting period")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adir := filepath.Join(t.TempDir(), "auth")
	key, _, err := directory.LoadOrCreateKey(adir)
	if err != nil {
		t.Fatal(err)
	}
	acfg := &directory.Config{
		Nickname:     "realauth",
		DataDir:      adir,
		Authorities:  []directory.AuthorityConfig{{Nickname: "realauth", ID: key.ID().String(), Address: ln.Addr().String()}},
		VotingPeriod: 2 * time.Second,
		Testnet:      true,
		Listener:     ln,
	}
	auth, err := directory.New(acfg, zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)).Named("authority"))
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() { adone <- auth.Run(actx) }()
	// Registered before the relays': runs after they stopped.
	t.Cleanup(func() {
		acancel()
		if err := <-adone; err != nil {
			t.Errorf("authority Run: %v", err)
		}
	})

	d := startDNS(t)
	body := []byte("listed by a real authority\n")
	_, port := startWeb(t, body)
	authCfg := AuthorityConfig{ID: key.ID().String(), Address: ln.Addr().String(), Nickname: "realauth"}
	var relays []*Relay
	for i, nick := range []string{"rguard", "rmiddle", "rexit"} {
		cfg := testConfig(t, nick)
		if i == 2 {
			cfg = exitConfig(t, nick, d.addr, true, "accept *:*")
		}
		cfg.Authorities = []AuthorityConfig{authCfg}
		relays = append(relays, runRelay(t, cfg, nil))
	}
	var cons *netdoc.Consensus
	waitFor(t, "a consensus listing the three relays", 30*time.Second, func() bool {
		cons = auth.Consensus()
		if cons == nil {
			return false
		}
		for _, r := range relays {
			if _, ok := cons.Relay(r.ID()); !ok {
				return false
			}
		}
		return true
	})
	var path []circuit.Hop
	for _, r := range relays {
		e, _ := cons.Relay(r.ID())
		cur, _ := r.OnionKeys()
		if e.OnionKey != cur || e.Addr != r.Addr() || !e.Flags.Has(netdoc.FlagRunning|netdoc.FlagValid) {
			t.Errorf("consensus entry for %s: key match %v, addr %v (want %v), flags %v",
				e.Nickname, e.OnionKey == cur, e.Addr, r.Addr(), e.Flags)
		}
		path = append(path, circuit.Hop{ID: e.ID, Addr: e.Addr, OnionKey: e.OnionKey})
	}
	if e, _ := cons.Relay(relays[2].ID()); !e.Flags.Has(netdoc.FlagExit) {
		t.Errorf("the exit has flags %v, want Exit", e.Flags)
	}
	c := build(t, newClient(t), path, 0)
	if got := httpGet(t, c, fmt.Sprintf("http://%s:%d/", webName, port)); string(got) != string(body) {
		t.Errorf("got %q through the consensus path", got)
	}
}
