package directory

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/chive-net/chive/dirclient"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

// fullFlags are the flags a reachable relay gets in testnet mode.
const fullFlags = netdoc.FlagFast | netdoc.FlagGuard | netdoc.FlagRunning | netdoc.FlagStable | netdoc.FlagValid

// startRelays starts five real relays (two exits), publishes their
// descriptors to the running authorities and returns them by nickname.
func startRelays(t *testing.T, tn *testNet, running ...int) map[string]*testRelay {
	t.Helper()
	relays := make(map[string]*testRelay)
	for i := range 5 {
		name := fmt.Sprintf("relay%d", i)
		relays[name] = startRelay(t, i < 2)
		tn.publish(t, relays[name].descriptor(t, name), running...)
	}
	return relays
}

// checkRelays checks that c lists exactly the relays, with their
// addresses, onion keys and flags.
func checkRelays(c *netdoc.Consensus, relays map[string]*testRelay) error {
	if len(c.Relays) != len(relays) {
		return fmt.Errorf("consensus valid after %s lists %d relays, want %d", c.ValidAfter, len(c.Relays), len(relays))
	}
	for name, r := range relays {
		e, ok := c.Relay(r.key.ID())
		if !ok {
			return fmt.Errorf("%s is not in the consensus", name)
		}
		want := fullFlags
		if r.exit {
			want |= netdoc.FlagExit
		}
		if e.Flags != want {
			return fmt.Errorf("%s: flags %q, want %q", name, e.Flags, want)
		}
		if e.Nickname != name || e.Addr != r.addr || e.OnionKey != r.onion.Public() || e.Bandwidth != 1<<20 {
			return fmt.Errorf("%s: entry %s %s bw %d, want %s %s bw %d", name, e.Nickname, e.Addr, e.Bandwidth, name, r.addr, 1<<20)
		}
	}
	return nil
}

func sameBodies(t *testing.T, docs [][]byte) *netdoc.Consensus {
	t.Helper()
	var first *netdoc.Consensus
	for i, b := range docs {
		c, err := netdoc.ParseConsensusUnverified(b)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = c
			continue
		}
		if !bytes.Equal(c.Body(), first.Body()) {
			t.Fatalf("authority %d's consensus body differs from authority 0's:\n%s\n---\n%s", i, c.Body(), first.Body())
		}
	}
	return first
}

// TestNetworkConsensus: three authorities and five real relays reach one
// consensus, byte-identical at every authority and signed by all three;
// a relay presenting another identity and one that is unreachable are
// voted on but not Running, so they are not listed.
func TestNetworkConsensus(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	for i := range 3 {
		tn.start(i)
	}
	relays := startRelays(t, tn, 0, 1, 2)

	// An impostor: a valid descriptor for a fresh key, but pointing at
	// relay0's address, where a link presents relay0's identity.
	impostor, err := layercrypt.GenerateIdentityKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tn.publish(t, signedDescriptor(t, impostor, "impostor", relays["relay0"].addr, relays["relay0"].onion.Public(), false, time.Now()), 0, 1, 2)
	// A relay that is not there: a closed port.
	ghost, err := layercrypt.GenerateIdentityKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tn.publish(t, signedDescriptor(t, ghost, "ghost", closedPort(t), relays["relay1"].onion.Public(), false, time.Now()), 0, 1, 2)

	// Timers on a loaded machine can be late enough to cost an authority
	// a vote now and then, so the test waits for a period in which all
	// three voted every relay Running; the hard checks (identical bodies,
	// no impostor or ghost Running) apply to every period seen.
	var c *netdoc.Consensus
	eventually(t, 10*testPeriod, func() error {
		docs, err := tn.consensusAt([]int{0, 1, 2}, time.Time{})
		if err != nil {
			return err
		}
		c = sameBodies(t, docs)
		for i := range 3 {
			if err := checkVote(t, tn, i, c.ValidAfter, relays, map[string]layercrypt.RelayID{"impostor": impostor.ID(), "ghost": ghost.ID()}); err != nil {
				return err
			}
		}
		if len(c.Relays) != 5 || len(c.Signatures) != 3 || len(c.Voters) != 3 {
			return fmt.Errorf("consensus valid after %s: %d relays, %d signatures, %d voters", c.ValidAfter, len(c.Relays), len(c.Signatures), len(c.Voters))
		}
		if !bytes.Equal(docs[0], docs[1]) || !bytes.Equal(docs[0], docs[2]) {
			return errors.New("the authorities serve different signature sets")
		}
		return nil
	})
	if err := checkRelays(c, relays); err != nil {
		t.Fatal(err)
	}

	// Metrics.
	ta := tn.auths[0]
	if got := value(t, tn.authority(0).m.descriptorsHeld); got != 7 {
		t.Errorf("descriptors_held = %v, want 7", got)
	}
	if got := value(t, tn.authority(0).m.consensusPublished); got < 1 {
		t.Errorf("consensus_published_total = %v", got)
	}
	if got := value(t, tn.authority(0).m.reachability.WithLabelValues("wrong_identity")); got < 1 {
		t.Errorf("reachability wrong_identity = %v", got)
	}
	if got := value(t, tn.authority(0).m.reachability.WithLabelValues("unreachable")); got < 1 {
		t.Errorf("reachability unreachable = %v", got)
	}
	if mfs, err := ta.reg.Gather(); err != nil || len(mfs) != 11 {
		t.Errorf("gathered %d metric families (%v), want 11", len(mfs), err)
	}
	// No relay address at info level.
	for _, e := range ta.logs.FilterLevelExact(zapcore.InfoLevel).All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		for _, r := range relays {
			if strings.Contains(line, r.addr.String()) {
				t.Errorf("info log names a relay address: %s", line)
			}
		}
	}

	// A client accepts it.
	cl, err := dirclient.New(dirclient.Config{Authorities: tn.dir, CacheDir: t.TempDir(), HTTP: tn.hc})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.ValidAfter.Before(c.ValidAfter) {
		t.Errorf("the client fetched a consensus valid after %s, older than %s", got.ValidAfter, c.ValidAfter)
	}
}

// checkVote checks authority i's vote for the period starting at va: the
// bad relays are listed and never Running (a hard failure), the good
// relays are Running (an error to retry), and authority i holds the votes
// of all three authorities.
func checkVote(t *testing.T, tn *testNet, i int, va time.Time, good map[string]*testRelay, bad map[string]layercrypt.RelayID) error {
	t.Helper()
	status, b := tn.get(i, "/chive/v1/vote/"+strconv.FormatInt(va.Unix(), 10))
	if status != http.StatusOK {
		return fmt.Errorf("authority %d: vote for %s: HTTP %d %s", i, va, status, b)
	}
	v, err := netdoc.ParseVote(b, tn.ids(), va.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if v.Authority != tn.dir[i].ID {
		t.Fatalf("authority %d served a vote by %s", i, v.Authority)
	}
	flags := make(map[layercrypt.RelayID]netdoc.Flags)
	for _, e := range v.Relays {
		flags[e.ID] = e.Flags
	}
	for name, id := range bad {
		if f, ok := flags[id]; !ok {
			return fmt.Errorf("authority %d did not vote on the %s", i, name)
		} else if f.Has(netdoc.FlagRunning) {
			t.Fatalf("authority %d voted the %s Running: %q", i, name, f)
		}
	}
	for name, r := range good {
		if !flags[r.key.ID()].Has(netdoc.FlagRunning) {
			return fmt.Errorf("authority %d did not vote %s Running for %s", i, name, va)
		}
	}
	for j := range tn.auths {
		q := "?authority=" + strings.ReplaceAll(tn.dir[j].ID.String(), "+", "%2B")
		if status, b := tn.get(i, "/chive/v1/vote/"+strconv.FormatInt(va.Unix(), 10)+q); status != http.StatusOK {
			return fmt.Errorf("authority %d lacks the vote of %d: %d %s", i, j, status, b)
		}
	}
	return nil
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return ap
}

// TestAuthoritiesDown: with one of three authorities down the other two
// publish a consensus that clients accept; with two down, a client keeps
// the still-valid one it has and says that no fresh consensus is
// available.
func TestAuthoritiesDown(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	tn.start(0)
	tn.start(1)
	relays := make(map[string]*testRelay)
	for i := range 5 {
		name := fmt.Sprintf("relay%d", i)
		relays[name] = startRelay(t, i < 2)
		res := tn.publish(t, relays[name].descriptor(t, name), 0, 1)
		if err := res[tn.dir[2].ID]; err == nil || errors.Is(err, dirclient.ErrRefused) {
			t.Fatalf("publish to the stopped authority: %v, want a connection error", err)
		}
	}
	eventually(t, 10*testPeriod, func() error {
		docs, err := tn.consensusAt([]int{0, 1}, time.Time{})
		if err != nil {
			return err
		}
		c := sameBodies(t, docs)
		if len(c.Voters) != 2 || len(c.Signatures) != 2 {
			return fmt.Errorf("%d voters, %d signatures; want 2 and 2", len(c.Voters), len(c.Signatures))
		}
		return checkRelays(c, relays)
	})

	core, logs := observer.New(zapcore.DebugLevel)
	cacheDir := t.TempDir()
	cl, err := dirclient.New(dirclient.Config{Authorities: tn.dir, CacheDir: cacheDir, HTTP: tn.hc,
		Log: zap.New(core), RequestTimeout: time.Second, RetryMin: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.Fetch(context.Background())
	if err != nil {
		t.Fatalf("client refused the consensus of two authorities: %v", err)
	}
	if st, err := os.Stat(filepath.Join(cacheDir, dirclient.CacheFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v %v", st, err)
	}

	// Two down.
	tn.stop(0)
	tn.stop(1)
	_, err = cl.Fetch(context.Background())
	if !errors.Is(err, dirclient.ErrNoConsensus) {
		t.Fatalf("Fetch with every authority down: %v, want ErrNoConsensus", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "dirclient: no fresh consensus available: ") || strings.Count(msg, "connection refused") != 3 {
		t.Errorf("error %q: want the ErrNoConsensus text and one 'connection refused' per authority", msg)
	}
	if cur := cl.Current(); cur == nil || !cur.ValidAfter.Equal(got.ValidAfter) {
		t.Fatalf("Current() = %v after a failed fetch, want the held consensus", cur)
	}

	// Run: the cached consensus first, then the warning.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl2, err := dirclient.New(dirclient.Config{Authorities: tn.dir, CacheDir: cacheDir, HTTP: tn.hc,
		Log: zap.New(core), RequestTimeout: time.Second, RetryMin: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		// Past fresh-until, so Run fetches at once.
		Now: func() time.Time { return time.Now().Add(testPeriod) }})
	if err != nil {
		t.Fatal(err)
	}
	updates := make(chan *netdoc.Consensus, 4)
	done := make(chan error)
	go func() { done <- cl2.Run(ctx, func(c *netdoc.Consensus) { updates <- c }) }()
	select {
	case u := <-updates:
		if !u.ValidAfter.Equal(got.ValidAfter) {
			t.Errorf("Run started with the consensus valid after %s, want the cached %s", u.ValidAfter, got.ValidAfter)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not load the cached consensus")
	}
	deadline := time.Now().Add(2*testPeriod + 2*time.Second)
	for logs.FilterMessage("no fresh consensus available; keeping the cached one").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Run logged no warning; logs: %v", logs.All())
		}
		time.Sleep(20 * time.Millisecond)
	}
	e := logs.FilterMessage("no fresh consensus available; keeping the cached one").All()[0]
	if e.Level != zapcore.WarnLevel || !e.ContextMap()["valid_until"].(time.Time).Equal(got.ValidUntil) ||
		!strings.Contains(fmt.Sprint(e.ContextMap()["error"]), "no fresh consensus available: ") {
		t.Errorf("warning %v %v", e.Level, e.ContextMap())
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
}

// TestRestartKeepsState: an authority restarted in the middle of a period
// serves its last consensus and its descriptors at once, then takes part in
// the next consensus, still byte-identical with the others'.
func TestRestartKeepsState(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	for i := range 3 {
		tn.start(i)
	}
	relays := startRelays(t, tn, 0, 1, 2)
	var first *netdoc.Consensus
	eventually(t, 10*testPeriod, func() error {
		docs, err := tn.consensusAt([]int{0, 1, 2}, time.Time{})
		if err != nil {
			return err
		}
		first = sameBodies(t, docs)
		return checkRelays(first, relays)
	})

	// Restart authority 2 in the middle of a period, after it voted.
	now := time.Now()
	at := netdoc.PeriodStart(now, testPeriod).Add(testPeriod * 3 / 8)
	if now.After(at) {
		at = at.Add(testPeriod)
	}
	time.Sleep(time.Until(at))
	tn.stop(2)
	ta := tn.auths[2]
	cfg := ta.cfg
	cfg.Listener = mustListen(t, ta.addr)
	a, err := New(&cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	// Before Run: state already loaded.
	if c := a.Consensus(); c == nil || c.ValidAfter.Before(first.ValidAfter) {
		t.Fatalf("restarted authority serves %v, want the consensus valid after %s or newer", c, first.ValidAfter)
	}
	if got := value(t, a.m.descriptorsHeld); got != 5 {
		t.Errorf("restarted authority holds %v descriptors, want 5", got)
	}
	a.Close()
	tn.start(2)
	status, b := tn.get(2, "/chive/v1/consensus")
	if status != http.StatusOK {
		t.Fatalf("restarted authority: HTTP %d %s", status, b)
	}
	if c, err := netdoc.ParseConsensus(b, tn.ids(), time.Now()); err != nil || c.ValidAfter.Before(first.ValidAfter) {
		t.Fatalf("restarted authority serves %v, %v", c, err)
	}
	// The next consensuses are made by all three again.
	eventually(t, 10*testPeriod, func() error {
		docs, err := tn.consensusAt([]int{0, 1, 2}, first.ValidAfter.Add(testPeriod))
		if err != nil {
			return err
		}
		c := sameBodies(t, docs)
		if len(c.Signatures) != 3 {
			return fmt.Errorf("consensus valid after %s has %d signatures, want 3", c.ValidAfter, len(c.Signatures))
		}
		return checkRelays(c, relays)
	})
}

func mustListen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestInitialSchedule: three authorities with an initial voting period of
// 1s make a consensus every second while they hold no usable one, each
// carrying the times of the normal voting period, and vote on the normal
// schedule once one lists the relays.
func TestInitialSchedule(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	for i := range 3 {
		tn.auths[i].cfg.InitialVotingPeriod = time.Second
		tn.start(i)
	}
	// Before any relay: consensuses listing none, made every second.
	eventually(t, 10*testPeriod, func() error {
		docs, err := tn.consensusAt([]int{0, 1, 2}, time.Time{})
		if err != nil {
			return err
		}
		c := sameBodies(t, docs)
		fu, vu := netdoc.PeriodTimes(c.ValidAfter, testPeriod)
		if c.VotingPeriod != testPeriod || !c.FreshUntil.Equal(fu) || !c.ValidUntil.Equal(vu) {
			t.Fatalf("consensus valid after %s: voting period %s, fresh until %s, valid until %s; want %s, %s, %s",
				c.ValidAfter, c.VotingPeriod, c.FreshUntil, c.ValidUntil, testPeriod, fu, vu)
		}
		if c.ValidAfter.Equal(netdoc.PeriodStart(c.ValidAfter, testPeriod)) {
			return fmt.Errorf("consensus valid after %s: on a voting period boundary; waiting for one of an initial round between", c.ValidAfter)
		}
		return nil
	})
	relays := startRelays(t, tn, 0, 1, 2)
	var usable *netdoc.Consensus
	eventually(t, 10*testPeriod, func() error {
		docs, err := tn.consensusAt([]int{0, 1, 2}, time.Time{})
		if err != nil {
			return err
		}
		usable = sameBodies(t, docs)
		return checkRelays(usable, relays)
	})
	if err := usable.Usable(time.Now()); err != nil {
		t.Fatal(err)
	}
	// Then the normal schedule: consensuses at multiples of the period.
	eventually(t, 10*testPeriod, func() error {
		docs, err := tn.consensusAt([]int{0, 1, 2}, usable.ValidAfter)
		if err != nil {
			return err
		}
		c := sameBodies(t, docs)
		if !c.ValidAfter.Equal(netdoc.PeriodStart(c.ValidAfter, testPeriod)) {
			return fmt.Errorf("consensus valid after %s: not yet on the normal schedule", c.ValidAfter)
		}
		if len(c.Signatures) != 3 {
			return fmt.Errorf("consensus valid after %s has %d signatures, want 3", c.ValidAfter, len(c.Signatures))
		}
		return checkRelays(c, relays)
	})
	for i, ta := range tn.auths {
		if ta.logs.FilterMessage("holding a usable consensus: voting on the normal schedule").Len() == 0 {
			t.Errorf("authority %d did not log its switch to the normal schedule", i)
		}
	}
}

// TestInitialRecovery: an authority that starts with an empty data
// directory, on its initial schedule, while the other two vote on the
// normal one, fails its initial round (the others refuse its vote or have
// none to give), fetches their consensus, verifies and serves it, and then
// signs the next normal consensus with them.
func TestInitialRecovery(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	for i := range 3 {
		tn.auths[i].cfg.InitialVotingPeriod = time.Second
	}
	tn.start(0)
	tn.start(1)
	relays := startRelays(t, tn, 0, 1)
	// Wait until the two vote on the normal schedule.
	var normal *netdoc.Consensus
	eventually(t, 10*testPeriod, func() error {
		docs, err := tn.consensusAt([]int{0, 1}, time.Time{})
		if err != nil {
			return err
		}
		normal = sameBodies(t, docs)
		if err := checkRelays(normal, relays); err != nil {
			return err
		}
		if !normal.ValidAfter.Equal(netdoc.PeriodStart(normal.ValidAfter, testPeriod)) {
			return fmt.Errorf("consensus valid after %s: not yet on the normal schedule", normal.ValidAfter)
		}
		return nil
	})

	tn.start(2)
	const adopted = "this authority's round failed; serving the consensus of the other authorities"
	eventually(t, 5*testPeriod, func() error {
		if tn.auths[2].logs.FilterMessage(adopted).Len() == 0 {
			return errors.New("the third authority has not adopted the others' consensus")
		}
		return nil
	})
	e := tn.auths[2].logs.FilterMessage(adopted).All()[0]
	if u, _ := e.ContextMap()["usable"].(bool); !u {
		t.Errorf("adopted a consensus that is not usable: %v", e.ContextMap())
	}
	got := tn.authority(2).Consensus()
	if got == nil || got.ValidAfter.Before(normal.ValidAfter) {
		t.Fatalf("the third authority serves %v, want the consensus valid after %s or newer", got, normal.ValidAfter)
	}
	if _, err := got.CheckSignatures(tn.ids()); err != nil {
		t.Fatalf("adopted consensus: %v", err)
	}
	// It now votes on the normal schedule and signs with the others.
	eventually(t, 10*testPeriod, func() error {
		docs, err := tn.consensusAt([]int{0, 1, 2}, got.ValidAfter)
		if err != nil {
			return err
		}
		c := sameBodies(t, docs)
		if !slices.Contains(c.Voters, tn.dir[2].ID) || !slices.ContainsFunc(c.Signatures, func(s netdoc.Signature) bool { return s.Authority == tn.dir[2].ID }) {
			return fmt.Errorf("consensus valid after %s: the third authority did not vote or sign (%d voters, %d signatures)", c.ValidAfter, len(c.Voters), len(c.Signatures))
		}
		if !c.ValidAfter.Equal(netdoc.PeriodStart(c.ValidAfter, testPeriod)) {
			t.Fatalf("consensus valid after %s is off the normal schedule", c.ValidAfter)
		}
		return checkRelays(c, relays)
	})
}
