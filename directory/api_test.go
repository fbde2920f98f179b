package directory

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/chive-net/chive/dirclient"
	"github.com/chive-net/chive/internal/config"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

// fixedAuthority makes an authority (not running) whose key is
// fixedKey(names[self]) and whose list is all of names, at dead addresses.
func fixedAuthority(t testing.TB, self int, names ...string) *Authority {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, KeyFile), fixedKey(t, names[self]).Seed(), 0o600); err != nil {
		t.Fatal(err)
	}
	var list []AuthorityConfig
	for i, n := range names {
		// Port 1 on loopback: nothing listens, pushes fail at once.
		list = append(list, AuthorityConfig{Nickname: n, ID: fixedKey(t, n).ID().String(), Address: fmt.Sprintf("127.0.0.%d:1", i+1)})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(&Config{Nickname: names[self], DataDir: dir, Authorities: list, Testnet: true, Listener: ln}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestDescriptorUpload: what a relay operator sees for each kind of
// descriptor, through dirclient.Publish and the HTTP API.
func TestDescriptorUpload(t *testing.T) {
	a := fixedAuthority(t, 0, "a1")
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	auths := []dirclient.Authority{{ID: a.ID(), Addr: strings.TrimPrefix(srv.URL, "http://")}}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	publish := func(b []byte) error { return dirclient.Publish(context.Background(), hc, auths, b)[a.ID()] }

	rk := fixedKey(t, "relay")
	other := fixedKey(t, "other")
	addr := netip.MustParseAddrPort("127.0.0.1:9001")
	onion := mustOnion(t)
	now := time.Now()
	good := signedDescriptor(t, rk, "relay", addr, onion, false, now)
	if err := publish(good); err != nil {
		t.Fatalf("a good descriptor: %v", err)
	}
	if err := publish(good); err != nil {
		t.Fatalf("the same descriptor again: %v", err)
	}

	// A byte of the signed part changed: the signature no longer verifies.
	badSig := []byte(strings.Replace(string(good), "bandwidth 1048576", "bandwidth 1048577", 1))
	// Identity swapped: the document names "other" but relay's key signed it.
	swapped := []byte(strings.Replace(string(good), rk.ID().String(), other.ID().String(), 1))
	older := signedDescriptor(t, rk, "relay", addr, onion, false, now.Add(-time.Hour))
	cases := []struct {
		name string
		body []byte
		want string
	}{
		{"bad signature", badSig, "refused: netdoc: descriptor: bad signature: signature does not verify with the descriptor's identity key " + rk.ID().String()},
		{"identity does not match the signer", swapped, "refused: netdoc: descriptor: bad signature: signature does not verify with the descriptor's identity key " + other.ID().String()},
		{"stale", signedDescriptor(t, other, "other", addr, onion, false, now.Add(-25*time.Hour)), "refused: netdoc: descriptor expired at "},
		{"from the future", signedDescriptor(t, other, "other", addr, onion, false, now.Add(time.Hour)), "refused: netdoc: descriptor published " + now.Add(time.Hour).UTC().Format(time.RFC3339) + ", more than 5m0s after now"},
		{"malformed", []byte("hello\n"), "refused: netdoc: descriptor line 1"},
		{"empty", nil, "refused: netdoc: "},
		{"too large", make([]byte, netdoc.MaxDescriptorSize+1), "refused: descriptor larger than 65536 bytes"},
		{"older than the one held", older, "refused: this descriptor was published at " + older1(now) + ", but the authority holds a newer one from " + older0(now) + "; publish a fresh descriptor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var re *dirclient.RefusedError
			err := publish(tc.body)
			if tc.name == "too large" {
				// dirclient refuses to send it; post it by hand.
				resp, perr := hc.Post(srv.URL+"/chive/v1/descriptor", "text/plain", strings.NewReader(string(tc.body)))
				if perr != nil {
					t.Fatal(perr)
				}
				defer resp.Body.Close()
				b := make([]byte, 200)
				n, _ := resp.Body.Read(b)
				err = &dirclient.RefusedError{Authority: a.ID(), Status: resp.StatusCode, Reason: strings.TrimSuffix(string(b[:n]), "\n")}
			}
			if !errors.As(err, &re) || re.Status != http.StatusBadRequest || !strings.HasPrefix(re.Reason, tc.want) {
				t.Fatalf("got %v\nwant HTTP 400 with a reason starting %q", err, tc.want)
			}
			if strings.Contains(re.Reason, "\n") {
				t.Errorf("reason spans lines: %q", re.Reason)
			}
		})
	}
	if got := value(t, a.m.descriptorsHeld); got != 1 {
		t.Errorf("descriptors_held = %v, want 1", got)
	}
	if got := value(t, a.m.descriptorUploads.WithLabelValues("refused")); got != float64(len(cases)) {
		t.Errorf("refused uploads = %v, want %d", got, len(cases))
	}
}

// older0 and older1 format the published times of the "older" case as the
// authority writes them.
func older0(now time.Time) string { return now.UTC().Truncate(time.Second).Format(time.RFC3339) }
func older1(now time.Time) string {
	return now.Add(-time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
}

func mustOnion(t testing.TB) layercrypt.OnionPublicKey {
	t.Helper()
	secret := sha256.Sum256([]byte("chive directory test onion key"))
	k, err := layercrypt.OnionKeyFromBytes(secret[:])
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// TestMaxDescriptors: past max_descriptors, new relays are refused with 503.
func TestMaxDescriptors(t *testing.T) {
	a := fixedAuthority(t, 0, "a1")
	a.maxDescs = 1
	onion := mustOnion(t)
	addr := netip.MustParseAddrPort("127.0.0.1:9001")
	if st, msg := a.acceptDescriptor(signedDescriptor(t, fixedKey(t, "r1"), "r1", addr, onion, false, time.Now())); st != http.StatusOK {
		t.Fatalf("first: %d %s", st, msg)
	}
	st, msg := a.acceptDescriptor(signedDescriptor(t, fixedKey(t, "r2"), "r2", addr, onion, false, time.Now()))
	if st != http.StatusServiceUnavailable || msg != "refused: this authority already tracks its maximum of 1 relays; retry later" {
		t.Fatalf("second: %d %s", st, msg)
	}
}

// vote makes authority k's vote for the period starting at va.
func testVote(t testing.TB, k *layercrypt.IdentityKey, va time.Time, period time.Duration, bw uint64) (*netdoc.Vote, []byte) {
	t.Helper()
	d := testDescriptor(fixedKey(t, "relay"), "relay", netip.MustParseAddrPort("127.0.0.1:9001"), mustOnion(t), false, va.Add(-period))
	d.Bandwidth = bw
	if _, err := d.Sign(fixedKey(t, "relay")); err != nil {
		t.Fatal(err)
	}
	entries, err := netdoc.AssignFlags([]*netdoc.Descriptor{d}, map[layercrypt.RelayID]bool{d.ID: true}, va.Add(-period/2), netdoc.TestnetFlagParams())
	if err != nil {
		t.Fatal(err)
	}
	fu, vu := netdoc.PeriodTimes(va, period)
	v := &netdoc.Vote{Authority: k.ID(), ConsensusMethods: netdoc.SupportedConsensusMethods, ValidAfter: va,
		FreshUntil: fu, ValidUntil: vu, VotingPeriod: period, KnownFlags: netdoc.AllFlags, Relays: entries}
	b, err := v.Sign(k)
	if err != nil {
		t.Fatal(err)
	}
	return v, b
}

// TestVoteUpload: votes are taken only from configured authorities, with
// valid signatures, for the round being voted on, before voting closes,
// and one per authority.
func TestVoteUpload(t *testing.T) {
	a := fixedAuthority(t, 0, "a1", "a2", "a3")
	period := a.period
	va := netdoc.PeriodStart(time.Now(), period).Add(period)
	a.now = func() time.Time { return va.Add(-period).Add(period / 4) } // voting is open
	_, v2 := testVote(t, fixedKey(t, "a2"), va, period, 1000)
	_, v2b := testVote(t, fixedKey(t, "a2"), va, period, 2000)
	_, stranger := testVote(t, fixedKey(t, "stranger"), va, period, 1000)
	_, late := testVote(t, fixedKey(t, "a3"), va.Add(period), period, 1000)
	forged := []byte(strings.Replace(string(v2), "advertised=1000", "advertised=1001", 1))
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		want   string
	}{
		{"good", v2, 200, "accepted"},
		{"again", v2, 200, "accepted (already held)"},
		{"a second, different vote", v2b, 409, "this authority already holds a different vote from " + fixedKey(t, "a2").ID().String()},
		{"unknown authority", stranger, 400, "refused: netdoc: vote: not a configured authority"},
		{"forged", forged, 400, "refused: netdoc: vote: bad signature"},
		{"wrong period", late, 409, "refused: a vote for the period starting " + va.Add(period).Format(time.RFC3339) + ", but this authority, on its normal schedule (voting_period 1h0m0s), takes votes for the period starting " + va.Format(time.RFC3339)},
		{"garbage", []byte("chive-vote 2\n"), 400, "refused: netdoc: vote line 1"},
	} {
		st, msg := a.acceptVote(tc.body)
		if st != tc.status || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, st, msg, tc.status, tc.want)
		}
	}
	// After voting closed.
	a.now = func() time.Time { return va.Add(-period / 2) }
	_, v3 := testVote(t, fixedKey(t, "a3"), va, period, 1000)
	if st, msg := a.acceptVote(v3); st != http.StatusConflict || !strings.Contains(msg, "takes votes for the period starting "+va.Add(period).Format(time.RFC3339)) {
		t.Errorf("after the deadline: %d %q", st, msg)
	}
}

// usableConsensus is a consensus valid from va for three voting periods
// that lists three Running relays, one an exit.
func usableConsensus(t testing.TB, va time.Time, period time.Duration) *netdoc.Consensus {
	fu, vu := netdoc.PeriodTimes(va, period)
	c := &netdoc.Consensus{ValidAfter: va, FreshUntil: fu, ValidUntil: vu, VotingPeriod: period}
	for i, name := range []string{"r1", "r2", "r3"} {
		f := netdoc.FlagRunning | netdoc.FlagValid
		if i == 0 {
			f |= netdoc.FlagExit
		}
		c.Relays = append(c.Relays, netdoc.ConsensusEntry{RelayStatus: netdoc.RelayStatus{Nickname: name, ID: fixedKey(t, name).ID(), Flags: f}})
	}
	if err := c.Usable(va); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestVoteSchedule: an authority without a usable consensus takes votes
// for the rounds of its initial schedule and refuses those of the normal
// one; once it holds a usable consensus, the other way round.
func TestVoteSchedule(t *testing.T) {
	a := fixedAuthority(t, 0, "a1", "a2", "a3")
	period, initial := 10*time.Second, 2*time.Second
	a.period, a.initial = period, initial
	// 1s into the initial round for iva, 7s into the normal round for nva.
	nva := netdoc.PeriodStart(time.Now(), period).Add(period)
	iva := nva.Add(-2 * initial)
	now := iva.Add(-initial).Add(initial / 4)
	a.now = func() time.Time { return now }
	_, initialVote := testVote(t, fixedKey(t, "a2"), iva, period, 1000)
	_, normalVote := testVote(t, fixedKey(t, "a2"), nva, period, 1000)
	if st, msg := a.acceptVote(normalVote); st != http.StatusConflict ||
		!strings.Contains(msg, "on its initial schedule (initial_voting_period 2s, until it holds a usable consensus), takes votes for the period starting "+iva.Format(time.RFC3339)) {
		t.Errorf("normal vote on the initial schedule: %d %q", st, msg)
	}
	if st, msg := a.acceptVote(initialVote); st != http.StatusOK {
		t.Errorf("initial vote on the initial schedule: %d %q", st, msg)
	}
	// A consensus that is not usable (too few relays) keeps the initial
	// schedule.
	unusable := usableConsensus(t, iva.Add(-initial), period)
	unusable.Relays = unusable.Relays[:2]
	a.mu.Lock()
	a.current = unusable
	a.mu.Unlock()
	if p := a.schedule(now); p != initial {
		t.Errorf("schedule with an unusable consensus: %s, want %s", p, initial)
	}
	a.mu.Lock()
	a.current = usableConsensus(t, iva.Add(-initial), period)
	a.mu.Unlock()
	if p := a.schedule(now); p != period {
		t.Errorf("schedule with a usable consensus: %s, want %s", p, period)
	}
	_, initialVote3 := testVote(t, fixedKey(t, "a3"), iva, period, 1000)
	if st, msg := a.acceptVote(initialVote3); st != http.StatusConflict ||
		!strings.Contains(msg, "on its normal schedule (voting_period 10s), takes votes for the period starting "+nva.Format(time.RFC3339)+
			" from "+nva.Add(-period).Format(time.RFC3339)+" to "+nva.Add(-period/2).Format(time.RFC3339)) {
		t.Errorf("initial vote on the normal schedule: %d %q", st, msg)
	}
	if st, msg := a.acceptVote(normalVote); st != http.StatusOK {
		t.Errorf("normal vote on the normal schedule: %d %q", st, msg)
	}
	// Signatures for a round of the other schedule find no round.
	st, msg := a.acceptSignature(iva.Add(initial), netdoc.Signature{Authority: fixedKey(t, "a2").ID()})
	if st != http.StatusConflict || !strings.Contains(msg, "on its normal schedule (voting_period 10s), has no voting round for the period starting") {
		t.Errorf("signature for an initial round on the normal schedule: %d %q", st, msg)
	}
}

// TestSignatures: signatures over this authority's consensus body are
// added (also when they arrive before it is computed); others are refused
// with the reason, and a majority publishes the consensus at valid-after.
func TestSignatures(t *testing.T) {
	names := []string{"a1", "a2", "a3"}
	a := fixedAuthority(t, 0, names...)
	period := a.period
	va := netdoc.PeriodStart(time.Now(), period).Add(period)
	now := va.Add(-period / 4)
	a.now = func() time.Time { return now }
	a.mu.Lock()
	r := a.roundLocked(va)
	a.mu.Unlock()
	var votes []*netdoc.Vote
	for i, n := range names {
		v, b := testVote(t, fixedKey(t, n), va, period, uint64(1000*(i+1)))
		votes = append(votes, v)
		a.addVote(r, heldVote{v: v, raw: b}, "test")
	}
	c, err := netdoc.ComputeConsensus(votes, a.auths)
	if err != nil {
		t.Fatal(err)
	}
	body := c.Body()
	// a2 signs before a1 has computed: held.
	if st, msg := a.acceptSignature(va, netdoc.SignConsensus(body, fixedKey(t, "a2"))); st != http.StatusAccepted {
		t.Fatalf("early signature: %d %s", st, msg)
	}
	a.compute(context.Background(), r)
	if r.cons == nil || string(r.body) != string(body) {
		t.Fatalf("computed another body")
	}
	if len(r.cons.Signatures) != 2 {
		t.Fatalf("%d signatures after compute, want 2 (own and the early one)", len(r.cons.Signatures))
	}
	// Before valid-after nothing is served, even with a majority.
	if a.Consensus() != nil {
		t.Fatal("published before valid-after")
	}
	other := append([]byte(nil), body...)
	other[len(other)-2] ^= 1 // another body
	for _, tc := range []struct {
		name   string
		sig    netdoc.Signature
		status int
		want   string
	}{
		{"other bytes", netdoc.SignConsensus(other, fixedKey(t, "a3")), 400, "does not verify over this authority's consensus for " + va.Format(time.RFC3339)},
		{"unknown key", netdoc.SignConsensus(body, fixedKey(t, "stranger")), 400, "which is not a configured authority"},
		{"a2 again", netdoc.SignConsensus(body, fixedKey(t, "a2")), 200, "accepted (already held)"},
	} {
		st, msg := a.acceptSignature(va, tc.sig)
		if st != tc.status || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, st, msg, tc.status, tc.want)
		}
	}
	if got := value(t, a.m.signaturesReceived.WithLabelValues("mismatch")); got != 1 {
		t.Errorf("mismatch signatures = %v, want 1", got)
	}
	now = va
	if st, msg := a.acceptSignature(va, netdoc.SignConsensus(body, fixedKey(t, "a3"))); st != http.StatusOK {
		t.Fatalf("a3: %d %s", st, msg)
	}
	pub := a.Consensus()
	if pub == nil || len(pub.Signatures) != 3 {
		t.Fatalf("not published at valid-after with 3 signatures: %v", pub)
	}
	b, err := os.ReadFile(filepath.Join(a.store.dir, ConsensusFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := netdoc.ParseConsensus(b, a.auths, va); err != nil {
		t.Fatalf("stored consensus: %v", err)
	}
}

func TestSampleConfigs(t *testing.T) {
	var lists [][]AuthorityConfig
	for n := 1; n <= 3; n++ {
		path := filepath.Join("..", "configs", fmt.Sprintf("directory-auth%d.yaml", n))
		c, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Nickname != fmt.Sprintf("auth%d", n) || c.VotingPeriod != time.Hour || c.InitialVotingPeriod != time.Hour || c.Listen != ":7000" ||
			c.Testnet || c.MetricsListen != "127.0.0.1:9037" || len(c.Authorities) != 3 {
			t.Errorf("%s: %+v", path, c)
		}
		if p := c.FlagParams(); p != netdoc.DefaultFlagParams() {
			t.Errorf("%s: flag params %+v, want the defaults %+v", path, p, netdoc.DefaultFlagParams())
		}
		lists = append(lists, c.Authorities)
	}
	for i := 1; i < 3; i++ {
		if fmt.Sprint(lists[i]) != fmt.Sprint(lists[0]) {
			t.Errorf("directory-auth%d.yaml lists other authorities than directory-auth1.yaml", i+1)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	id := fixedKey(t, "a1").ID().String()
	base := fmt.Sprintf("nickname: a1\ndata_dir: /tmp/x\nauthorities:\n  - id: %s\n    address: 127.0.0.1:7000\n", id)
	cases := []struct{ yaml, want string }{
		{base + "votingperiod: 10s\n", `unknown key "votingperiod"`},
		{base + "voting_period: 1500ms\n", `config key "voting_period": 1.5s: use whole seconds`},
		{base + "voting_period: 0.5s\n", `config key "voting_period"`},
		{base + "voting_period: 10s\ninitial_voting_period: 3s\n", `config key "initial_voting_period": 3s: use whole seconds, at least 1s, that divide voting_period (10s)`},
		{base + "voting_period: 10s\ninitial_voting_period: 20s\n", `config key "initial_voting_period": 20s`},
		{base + "voting_period: 10s\ninitial_voting_period: 1500ms\n", `config key "initial_voting_period": 1.5s`},
		{base + "voting_period: 10s\ninitial_voting_period: 0.5s\n", `config key "initial_voting_period": 500ms`},
		{base + "initial_voting_period: -1s\n", `config key "initial_voting_period": -1s`},
		{strings.Replace(base, "nickname: a1", "nickname: my-auth", 1), `config key "nickname": "my-auth"`},
		{strings.Replace(base, "data_dir: /tmp/x\n", "", 1), `config key "data_dir": required`},
		{strings.Replace(base, id, "not-an-id", 1), `config key "authorities[0].id": "not-an-id" is not an authority ID`},
		{strings.Replace(base, "127.0.0.1:7000", "localhost", 1), `config key "authorities[0].address"`},
		{base + fmt.Sprintf("  - id: %s\n    address: 127.0.0.1:7001\n", id), `config key "authorities[1].id": the same ID as authorities[0]`},
		{"nickname: a1\ndata_dir: /tmp/x\n", `config key "authorities": required`},
		{base + "reachability:\n  concurrency: 5000\n", `config key "reachability.concurrency"`},
		{base + "listen: 7000\n", `config key "listen"`},
	}
	for _, tc := range cases {
		var c Config
		err := config.Decode(strings.NewReader(tc.yaml), "t.yaml", &c)
		if err == nil {
			err = c.Complete()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config\n%s: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
	var c Config
	if err := config.Decode(strings.NewReader(base+"testnet: true\nflags:\n  stable_min_uptime: 1h\n"), "t.yaml", &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	want := netdoc.TestnetFlagParams()
	want.StableMinUptime = time.Hour
	if c.FlagParams() != want || c.VotingPeriod != time.Hour || c.InitialVotingPeriod != time.Hour || c.Listen != ":7000" {
		t.Errorf("defaults: %+v, flags %+v", c, c.FlagParams())
	}
	c = Config{}
	if err := config.Decode(strings.NewReader(base+"voting_period: 10s\ninitial_voting_period: 2s\n"), "t.yaml", &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(); err != nil || c.InitialVotingPeriod != 2*time.Second || c.VotingPeriod != 10*time.Second {
		t.Errorf("initial_voting_period 2s: %v, %+v", err, c)
	}
}

func TestKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	k, created, err := LoadOrCreateKey(dir)
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	path := filepath.Join(dir, KeyFile)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", st.Mode(), err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", st.Mode().Perm())
	}
	k2, created, err := LoadOrCreateKey(dir)
	if err != nil || created || !k.Equal(k2) {
		t.Fatalf("second load: %v %v, same key %v", created, err, k.Equal(k2))
	}
	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), "has mode 0644: others can read it; run chmod 600") {
		t.Errorf("world-readable key: %v", err)
	}
	os.WriteFile(path, []byte("short"), 0o600)
	os.Chmod(path, 0o600)
	if _, _, err := LoadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), "5 bytes, want a 32-byte seed") {
		t.Errorf("short key: %v", err)
	}

	// An authority whose key is not in its list refuses to start.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := &Config{Nickname: "x", DataDir: t.TempDir(), Listener: ln,
		Authorities: []AuthorityConfig{{ID: fixedKey(t, "a1").ID().String(), Address: "127.0.0.1:7000"}}}
	if _, err := New(cfg, nil); !errors.Is(err, ErrNotListed) || !strings.Contains(err.Error(), "add it (with this authority's address) to the authorities") {
		t.Errorf("unlisted key: %v", err)
	}
}
