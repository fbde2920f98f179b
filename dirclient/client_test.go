package dirclient

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
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

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// key returns a fixed identity key: seed = SHA-256("chive dirclient test " + name).
func key(tb testing.TB, name string) *layercrypt.IdentityKey {
	tb.Helper()
	seed := sha256.Sum256([]byte("chive dirclient test " + name))
	k, err := layercrypt.IdentityKeyFromSeed(seed[:])
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// fixture is three configured authority keys and two that are not.
type fixture struct {
	auths   []*layercrypt.IdentityKey
	unknown []*layercrypt.IdentityKey
	ids     []layercrypt.RelayID
}

func newFixture(tb testing.TB) *fixture {
	f := &fixture{}
	for _, n := range []string{"auth1", "auth2", "auth3"} {
		f.auths = append(f.auths, key(tb, n))
		f.ids = append(f.ids, f.auths[len(f.auths)-1].ID())
	}
	f.unknown = []*layercrypt.IdentityKey{key(tb, "stranger1"), key(tb, "stranger2")}
	return f
}

// consensus computes the consensus for the period starting at va from the
// three configured authorities' votes (one relay), signed by signers.
// consensus is a usable consensus (three Running relays, one an exit)
// valid from va, signed by signers.
func (f *fixture) consensus(tb testing.TB, va time.Time, period time.Duration, signers ...*layercrypt.IdentityKey) *netdoc.Consensus {
	return f.consensusOf(tb, va, period, []string{"relay", "relay2", "exit"}, signers...)
}

// consensusOf is a consensus listing the named relays as Running (those
// whose name starts with "exit" as exits).
func (f *fixture) consensusOf(tb testing.TB, va time.Time, period time.Duration, names []string, signers ...*layercrypt.IdentityKey) *netdoc.Consensus {
	tb.Helper()
	onion := sha256.Sum256([]byte("chive dirclient test onion"))
	ok, err := layercrypt.OnionKeyFromBytes(onion[:])
	if err != nil {
		tb.Fatal(err)
	}
	var descs []*netdoc.Descriptor
	reachable := make(map[layercrypt.RelayID]bool)
	for i, name := range names {
		rk := key(tb, name)
		pol := exitpolicy.RejectAll
		if strings.HasPrefix(name, "exit") {
			pol = exitpolicy.AcceptAll
		}
		d := &netdoc.Descriptor{
			Nickname:     name,
			ID:           rk.ID(),
			Published:    va.Add(-period),
			Protocols:    netdoc.Protocols{{Name: "Circuit", Versions: netdoc.Versions(1)}, {Name: "Link", Versions: netdoc.Versions(1)}, {Name: "Relay", Versions: netdoc.Versions(1)}},
			Addr:         netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(9001+i)),
			OnionKey:     ok.Public(),
			Bandwidth:    1000,
			DelayClasses: []uint8{0},
			Policy:       pol,
		}
		if _, err := d.Sign(rk); err != nil {
			tb.Fatal(err)
		}
		descs = append(descs, d)
		reachable[rk.ID()] = true
	}
	entries, err := netdoc.AssignFlags(descs, reachable, va, netdoc.TestnetFlagParams())
	if err != nil {
		tb.Fatal(err)
	}
	fu, vu := netdoc.PeriodTimes(va, period)
	var votes []*netdoc.Vote
	for _, k := range f.auths {
		v := &netdoc.Vote{Authority: k.ID(), ConsensusMethods: netdoc.SupportedConsensusMethods, ValidAfter: va, FreshUntil: fu,
			ValidUntil: vu, VotingPeriod: period, KnownFlags: netdoc.AllFlags, Relays: entries}
		if _, err := v.Sign(k); err != nil {
			tb.Fatal(err)
		}
		votes = append(votes, v)
	}
	c, err := netdoc.ComputeConsensus(votes, f.ids)
	if err != nil {
		tb.Fatal(err)
	}
	body := c.Body()
	for _, k := range signers {
		if err := c.AddSignature(netdoc.SignConsensus(body, k)); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

// fakeAuthority is an in-memory twin of an authority's HTTP API: it serves
// whatever consensus answer it is given and records descriptor uploads.
type fakeAuthority struct {
	srv *httptest.Server

	mu       sync.Mutex // guards the following
	status   int
	body     []byte
	uploads  [][]byte
	refusal  string // if set, descriptor uploads get 400 with this reason
	requests int
}

func newFake(t *testing.T) *fakeAuthority {
	fa := &fakeAuthority{status: http.StatusNotFound, body: []byte("no consensus yet\n")}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ConsensusPath, func(w http.ResponseWriter, _ *http.Request) {
		fa.mu.Lock()
		defer fa.mu.Unlock()
		fa.requests++
		w.WriteHeader(fa.status)
		w.Write(fa.body)
	})
	mux.HandleFunc("POST "+DescriptorPath, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fa.mu.Lock()
		defer fa.mu.Unlock()
		if fa.refusal != "" {
			http.Error(w, fa.refusal, http.StatusBadRequest)
			return
		}
		fa.uploads = append(fa.uploads, b)
		io.WriteString(w, "accepted\n")
	})
	fa.srv = httptest.NewServer(mux)
	t.Cleanup(fa.srv.Close)
	return fa
}

func (fa *fakeAuthority) serve(status int, body []byte) {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	fa.status, fa.body = status, body
}

// network is three fake authorities configured with the fixture's keys.
func network(t *testing.T, f *fixture) ([]*fakeAuthority, []Authority) {
	var fakes []*fakeAuthority
	var auths []Authority
	for i := range 3 {
		fa := newFake(t)
		fakes = append(fakes, fa)
		auths = append(auths, Authority{ID: f.ids[i], Addr: strings.TrimPrefix(fa.srv.URL, "http://")})
	}
	return fakes, auths
}

func newClient(t *testing.T, auths []Authority, dir string, now func() time.Time) *Client {
	t.Helper()
	c, err := New(Config{Authorities: auths, CacheDir: dir, Now: now, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var testVA = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

// TestFetchRefuses: every way a consensus can be unacceptable, as the
// user sees it when every authority serves it.
func TestFetchRefuses(t *testing.T) {
	f := newFixture(t)
	now := testVA.Add(10 * time.Minute)
	good := f.consensus(t, testVA, time.Hour, f.auths[0], f.auths[1])
	tampered := f.consensus(t, testVA, time.Hour, f.auths[0], f.auths[1])
	tampered.Relays[0].Bandwidth++ // signatures now cover other bytes
	cases := []struct {
		name   string
		status int
		doc    []byte
		now    time.Time
		is     error
		want   string
	}{
		{"minority", 200, f.consensus(t, testVA, time.Hour, f.auths[0]).Encode(), now, netdoc.ErrNotEnoughSignatures,
			"netdoc: consensus signed by 1 of 3 configured authorities; need 2"},
		{"unknown keys", 200, f.consensus(t, testVA, time.Hour, f.unknown...).Encode(), now, netdoc.ErrNotEnoughSignatures,
			"signed by 0 of 3 configured authorities; need 2 (2 signatures from unknown keys ignored)"},
		{"different bytes", 200, tampered.Encode(), now, netdoc.ErrNotEnoughSignatures,
			"signed by 0 of 3 configured authorities; need 2 (bad signature from " + f.ids[0].String() + "; bad signature from " + f.ids[1].String() + ")"},
		{"stale", 200, good.Encode(), testVA.Add(3*time.Hour + time.Second), netdoc.ErrExpired,
			"netdoc: consensus expired at 2026-05-01T15:00:00Z (now 2026-05-01T15:00:01Z); fetch a newer one, or check this computer's clock"},
		{"not yet valid", 200, good.Encode(), testVA.Add(-time.Second), netdoc.ErrNotYetValid,
			"netdoc: consensus is not valid until 2026-05-01T12:00:00Z (now 2026-05-01T11:59:59Z); check this computer's clock"},
		{"garbage", 200, []byte("hello\n"), now, netdoc.ErrWrongType, "netdoc: consensus"},
		{"no consensus", 404, []byte("this authority has no consensus yet; ask another authority\nmore"), now, nil,
			"HTTP 404: this authority has no consensus yet; ask another authority"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fakes, auths := network(t, f)
			for _, fa := range fakes {
				fa.serve(tc.status, tc.doc)
			}
			dir := t.TempDir()
			c := newClient(t, auths, dir, at(tc.now))
			got, err := c.Fetch(context.Background())
			if err == nil {
				t.Fatalf("Fetch accepted it: valid after %s", got.ValidAfter)
			}
			if !errors.Is(err, ErrNoConsensus) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Errorf("error %q: want ErrNoConsensus and %v", err, tc.is)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "dirclient: no fresh consensus available: authority ") || strings.Count(msg, tc.want) != 3 {
				t.Errorf("error:\n%s\nwant the prefix and, for each of the 3 authorities, %q", msg, tc.want)
			}
			if c.Current() != nil {
				t.Errorf("Current() is set after a refused fetch")
			}
			if _, err := os.Stat(filepath.Join(dir, CacheFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused consensus was cached: %v", err)
			}
		})
	}
}

// TestFetchAcceptsAndCaches: a consensus signed by two of three is
// accepted from whichever authority has it, cached 0600, and loaded by a
// new client through Cached.
func TestFetchAcceptsAndCaches(t *testing.T) {
	f := newFixture(t)
	now := at(testVA.Add(10 * time.Minute))
	good := f.consensus(t, testVA, time.Hour, f.auths[1], f.auths[2]).Encode()
	fakes, auths := network(t, f)
	fakes[0].serve(200, []byte("chive-consensus 1\ngarbage\n"))
	fakes[1].serve(404, []byte("none\n"))
	fakes[2].serve(200, good)
	dir := t.TempDir()
	c := newClient(t, auths, dir, now)
	if _, err := c.Cached(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Cached() with no cache: %v, want fs.ErrNotExist", err)
	}
	got, err := c.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !got.ValidAfter.Equal(testVA) || len(got.Relays) != 3 || len(got.Signatures) != 2 {
		t.Fatalf("got valid after %s, %d relays, %d signatures", got.ValidAfter, len(got.Relays), len(got.Signatures))
	}
	if c.Current() != got {
		t.Errorf("Current() is not the fetched consensus")
	}
	st, err := os.Stat(filepath.Join(dir, CacheFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v, %v; want mode 0600", st, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, CacheFile)); string(b) != string(good) {
		t.Errorf("the cache file is not the document served")
	}
	c2 := newClient(t, auths, dir, now)
	cached, err := c2.Cached()
	if err != nil || !cached.ValidAfter.Equal(testVA) || c2.Current() != cached {
		t.Fatalf("Cached() = %v, %v", cached, err)
	}
	// Once expired, the cache is refused with the reason.
	c3 := newClient(t, auths, dir, at(testVA.Add(4*time.Hour)))
	if _, err := c3.Cached(); !errors.Is(err, netdoc.ErrExpired) || !strings.Contains(err.Error(), "cached consensus") {
		t.Fatalf("Cached() after valid-until: %v", err)
	}
	if c3.Current() != nil {
		t.Errorf("Current() returned an expired consensus")
	}
}

// TestFetchNoRollback: an authority serving an older consensus than the one
// held is refused; one serving the same keeps the held one current.
func TestFetchNoRollback(t *testing.T) {
	f := newFixture(t)
	newer := f.consensus(t, testVA.Add(time.Hour), time.Hour, f.auths[0], f.auths[1])
	older := f.consensus(t, testVA, time.Hour, f.auths[0], f.auths[1], f.auths[2])
	fakes, auths := network(t, f)
	for _, fa := range fakes {
		fa.serve(200, newer.Encode())
	}
	c := newClient(t, auths, t.TempDir(), at(testVA.Add(time.Hour+time.Minute)))
	if _, err := c.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, fa := range fakes {
		fa.serve(200, older.Encode())
	}
	_, err := c.Fetch(context.Background())
	if !errors.Is(err, ErrOlder) || !errors.Is(err, ErrNoConsensus) ||
		!strings.Contains(err.Error(), "consensus older than the one held: it is valid after 2026-05-01T12:00:00Z, the one held after 2026-05-01T13:00:00Z") {
		t.Fatalf("Fetch of an older consensus: %v", err)
	}
	// The same consensus with one more signature: kept, and the copy with
	// more signatures is the one held.
	more := f.consensus(t, testVA.Add(time.Hour), time.Hour, f.auths[0], f.auths[1], f.auths[2])
	fakes[0].serve(200, more.Encode())
	got, err := c.Fetch(context.Background())
	if err != nil || !got.ValidAfter.Equal(newer.ValidAfter) || len(got.Signatures) != 3 || len(c.Current().Signatures) != 3 {
		t.Fatalf("Fetch with nothing newer: %v, %v", got, err)
	}
}

// TestFetchDeadAuthorities: connection errors are listed per authority and
// a hanging authority costs one request timeout.
func TestFetchDeadAuthorities(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // accepts nothing: requests hang until the timeout
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	auths := []Authority{{ID: f.ids[0], Addr: ln.Addr().String()}, {ID: f.ids[1], Addr: closed.Addr().String()}}
	c, err := New(Config{Authorities: auths, RequestTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Fetch(context.Background())
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Fetch took %s", d)
	}
	if !errors.Is(err, ErrNoConsensus) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Fetch: %v", err)
	}
	var fe *FetchError
	if !errors.As(err, &fe) || len(fe.Failures) != 2 {
		t.Fatalf("error %T %v: want a *FetchError with 2 failures", err, err)
	}
}

// TestRun: Run delivers the cached consensus, fetches its successor after
// fresh-until, and warns while the authorities have nothing newer.
func TestRun(t *testing.T) {
	f := newFixture(t)
	const period = time.Second
	va := netdoc.PeriodStart(time.Now(), period)
	first := f.consensus(t, va, period, f.auths[0], f.auths[1])
	second := f.consensus(t, va.Add(period), period, f.auths[0], f.auths[1])
	fakes, auths := network(t, f)
	dir := t.TempDir()
	if err := writeFileAtomic(filepath.Join(dir, CacheFile), first.Encode()); err != nil {
		t.Fatal(err)
	}
	for _, fa := range fakes {
		fa.serve(200, first.Encode())
	}
	core, logs := observer.New(zapcore.DebugLevel)
	c, err := New(Config{Authorities: auths, CacheDir: dir, Log: zap.New(core), RequestTimeout: time.Second,
		RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan *netdoc.Consensus, 4)
	done := make(chan error)
	go func() { done <- c.Run(ctx, func(c *netdoc.Consensus) { updates <- c }) }()
	wait := func(want time.Time) {
		t.Helper()
		select {
		case u := <-updates:
			if !u.ValidAfter.Equal(want) {
				t.Fatalf("update valid after %s, want %s", u.ValidAfter, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no update valid after %s", want)
		}
	}
	wait(va) // from the cache
	if logs.FilterMessage("using the cached consensus").Len() != 1 {
		t.Errorf("no log of the cached consensus")
	}
	// Past fresh-until the authorities still serve the first one: warnings.
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessage("no fresh consensus available; keeping the cached one").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no warning while the authorities had nothing newer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	w := logs.FilterMessage("no fresh consensus available; keeping the cached one").All()[0]
	if w.Level != zapcore.WarnLevel || w.ContextMap()["error"].(string) != "dirclient: no fresh consensus available: the authorities still serve the consensus valid after "+va.Format(time.RFC3339) ||
		!w.ContextMap()["valid_until"].(time.Time).Equal(first.ValidUntil) {
		t.Errorf("warning: %v %v", w.Level, w.ContextMap())
	}
	for _, fa := range fakes {
		fa.serve(200, second.Encode())
	}
	wait(va.Add(period))
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
}

// TestRunUnusable: while the consensus held lists too few relays to build
// a circuit, Run fetches again after RetryMin rather than at fresh-until
// (an hour away here), and picks up the usable one as soon as it is served.
func TestRunUnusable(t *testing.T) {
	f := newFixture(t)
	const period = time.Hour
	va := netdoc.PeriodStart(time.Now(), time.Second)
	thin := f.consensusOf(t, va.Add(-time.Second), period, []string{"relay", "exit"}, f.auths[0], f.auths[1])
	if err := thin.Usable(time.Now()); !errors.Is(err, netdoc.ErrUnusable) {
		t.Fatalf("thin consensus: Usable = %v, want ErrUnusable", err)
	}
	full := f.consensus(t, va, period, f.auths[0], f.auths[1])
	fakes, auths := network(t, f)
	for _, fa := range fakes {
		fa.serve(200, thin.Encode())
	}
	core, logs := observer.New(zapcore.DebugLevel)
	c, err := New(Config{Authorities: auths, Log: zap.New(core), RequestTimeout: time.Second,
		RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan *netdoc.Consensus, 4)
	done := make(chan error)
	go func() { done <- c.Run(ctx, func(c *netdoc.Consensus) { updates <- c }) }()
	for _, want := range []*netdoc.Consensus{thin, full} {
		select {
		case u := <-updates:
			if !u.ValidAfter.Equal(want.ValidAfter) || len(u.Relays) != len(want.Relays) {
				t.Fatalf("update valid after %s with %d relays, want %s with %d", u.ValidAfter, len(u.Relays), want.ValidAfter, len(want.Relays))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no update valid after %s", want.ValidAfter)
		}
		if want == thin {
			// Asked again while the thin one is all there is: quietly.
			deadline := time.Now().Add(10 * time.Second)
			for logs.FilterMessage("no usable consensus available yet; keeping the one held").Len() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("Run did not fetch again while the consensus held was not usable")
				}
				time.Sleep(10 * time.Millisecond)
			}
			for _, fa := range fakes {
				fa.serve(200, full.Encode())
			}
		}
	}
	if n := logs.FilterMessage("no fresh consensus available; keeping the cached one").Len(); n != 0 {
		t.Errorf("%d warnings while waiting for a usable consensus, want none", n)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		auths []Authority
		want  string
	}{
		{nil, "no authorities configured"},
		{[]Authority{{Addr: "127.0.0.1:1"}}, "authority 1 has no ID"},
		{[]Authority{{ID: f.ids[0]}}, "has no address"},
		{[]Authority{{ID: f.ids[0], Addr: "a:1"}, {ID: f.ids[0], Addr: "b:1"}}, "configured twice"},
	} {
		if _, err := New(Config{Authorities: tc.auths}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%v) = %v, want an error containing %q", tc.auths, err, tc.want)
		}
	}
}

// TestPublish: every authority's answer comes back under its ID.
func TestPublish(t *testing.T) {
	f := newFixture(t)
	fakes, auths := network(t, f)
	fakes[1].mu.Lock()
	fakes[1].refusal = "refused: netdoc: descriptor: bad signature"
	fakes[1].mu.Unlock()
	fakes[2].srv.Close()
	desc := []byte("chive-descriptor 1\n...")
	res := Publish(context.Background(), nil, auths, desc)
	if len(res) != 3 {
		t.Fatalf("%d results", len(res))
	}
	if err := res[f.ids[0]]; err != nil {
		t.Errorf("accepting authority: %v", err)
	}
	var re *RefusedError
	if err := res[f.ids[1]]; !errors.As(err, &re) || !errors.Is(err, ErrRefused) || re.Status != 400 ||
		re.Reason != "refused: netdoc: descriptor: bad signature" ||
		err.Error() != "authority "+f.ids[1].Short()+" refused the descriptor (HTTP 400): refused: netdoc: descriptor: bad signature" {
		t.Errorf("refusing authority: %v", err)
	}
	if err := res[f.ids[2]]; err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "publish to authority "+f.ids[2].Short()) {
		t.Errorf("dead authority: %v", err)
	}
	if got := fakes[0].uploads; len(got) != 1 || string(got[0]) != string(desc) {
		t.Errorf("uploaded %q", got)
	}
	big := make([]byte, netdoc.MaxDescriptorSize+1)
	if err := Publish(context.Background(), nil, auths[:1], big)[f.ids[0]]; err == nil || !strings.Contains(err.Error(), "more than the 65536") {
		t.Errorf("oversized descriptor: %v", err)
	}
}
