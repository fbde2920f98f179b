package netdoc

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
)

const testPeriod = time.Hour

// authorities returns the fixed keys of n test authorities.
func authorities(t testing.TB, n int) ([]*layercrypt.IdentityKey, []layercrypt.RelayID) {
	keys := make([]*layercrypt.IdentityKey, n)
	ids := make([]layercrypt.RelayID, n)
	for i := range keys {
		keys[i] = identityKey(t, "authority"+string(rune('1'+i)))
		ids[i] = keys[i].ID()
	}
	return keys, ids
}

// newVote returns a vote for the period starting at testTime.
func newVote(k *layercrypt.IdentityKey, entries []VoteEntry) *Vote {
	fu, vu := PeriodTimes(testTime, testPeriod)
	return &Vote{
		Authority:        k.ID(),
		ConsensusMethods: SupportedConsensusMethods,
		ValidAfter:       testTime,
		FreshUntil:       fu,
		ValidUntil:       vu,
		VotingPeriod:     testPeriod,
		KnownFlags:       AllFlags,
		Relays:           entries,
	}
}

// voteFixture: descriptors of four relays (two exits, one on a private
// address, one unreachable) turned into an authority's vote.
func voteFixture(t testing.TB) (*Vote, *layercrypt.IdentityKey, []*Descriptor) {
	var descs []*Descriptor
	for i, name := range []string{"A", "B", "C", "D"} {
		d, k := testDescriptor(t, name)
		d.Bandwidth = uint64(i+1) << 20
		switch name {
		case "B":
			d.Policy = exitpolicy.RejectAll
			d.Family = nil
		case "C":
			d.Addr = netip.MustParseAddrPort("10.1.2.3:9001")
			d.Addr6 = netip.AddrPort{}
			d.PrevOnionKey = layercrypt.OnionPublicKey{}
		case "D":
			d.Policy = exitpolicy.AcceptAll.WithRejectPrivate(d.Addr.Addr())
			d.Uptime = 10 * 24 * time.Hour
		}
		if _, err := d.Sign(k); err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
	}
	reach := map[layercrypt.RelayID]bool{descs[0].ID: true, descs[1].ID: true, descs[3].ID: true}
	entries, err := AssignFlags(descs, reach, testTime, DefaultFlagParams())
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := authorities(t, 1)
	v := newVote(keys[0], entries)
	for i := range v.Relays {
		if v.Relays[i].Nickname == "RelayA" {
			v.Relays[i].Measured = 3 << 20
		}
	}
	return v, keys[0], descs
}

func TestVoteGolden(t *testing.T) {
	v, k, _ := voteFixture(t)
	b, err := v.Sign(k)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "vote.golden", b)
	_, ids := authorities(t, 3)
	got, err := ParseVote(b, ids, testTime.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Errorf("ParseVote(Sign(v)) != v:\n got %+v\nwant %+v", got, v)
	}
	// Accepted from two periods before valid-after until valid-until.
	for _, now := range []time.Time{testTime.Add(-2 * testPeriod), v.ValidUntil} {
		if _, err := ParseVote(b, ids, now); err != nil {
			t.Errorf("ParseVote at %s: %v", now, err)
		}
	}
	if again, err := got.Sign(k); err != nil || string(again) != string(b) {
		t.Errorf("Sign(ParseVote(b)) != b (%v)", err)
	}
}

func TestAssignFlags(t *testing.T) {
	v, _, descs := voteFixture(t)
	byNick := map[string]VoteEntry{}
	for _, e := range v.Relays {
		byNick[e.Nickname] = e
	}
	// A: public, reachable, exit to 80 and 443, 1 MiB/s, 37h uptime.
	// B: public, reachable, no exit, 2 MiB/s.
	// C: private address, not reachable.
	// D: public, reachable, accepts everything, 4 MiB/s, 10 days up.
	for _, tc := range []struct {
		nick string
		want Flags
	}{
		{"RelayA", FlagRunning | FlagValid | FlagFast | FlagExit},
		{"RelayB", FlagRunning | FlagValid | FlagFast},
		{"RelayC", 0},
		{"RelayD", FlagRunning | FlagValid | FlagFast | FlagStable | FlagGuard | FlagExit},
	} {
		if got := byNick[tc.nick].Flags; got != tc.want {
			t.Errorf("%s flags = %q, want %q", tc.nick, got, tc.want)
		}
	}
	if !slices.IsSortedFunc(v.Relays, func(a, b VoteEntry) int { return compareIDs(a.ID, b.ID) }) {
		t.Error("entries not sorted")
	}
	if e := byNick["RelayD"]; e.Advertised != 4<<20 || e.Descriptor != descs[3].Digest() || e.ExitPolicy.String() != "accept 1-65535" {
		t.Errorf("RelayD entry: %+v", e)
	}

	// Testnet: private addresses are Valid, no uptime needed, any open port is an Exit.
	descs[2].Policy = exitpolicy.Policy{Rules: []exitpolicy.Rule{mustRule(t, "accept *:8080")}}
	k := identityKey(t, "C")
	if _, err := descs[2].Sign(k); err != nil {
		t.Fatal(err)
	}
	reach := map[layercrypt.RelayID]bool{}
	for _, d := range descs {
		reach[d.ID] = true
	}
	entries, err := AssignFlags(descs, reach, testTime, TestnetFlagParams())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		want := FlagRunning | FlagValid | FlagFast | FlagStable | FlagGuard
		if e.Nickname != "RelayB" {
			want |= FlagExit
		}
		if e.Flags != want {
			t.Errorf("testnet %s flags = %q, want %q", e.Nickname, e.Flags, want)
		}
	}

	// The newest descriptor of a relay wins; stale ones are left out.
	old := *descs[0]
	old.Published = descs[0].Published.Add(-time.Hour)
	old.Nickname = "OldA"
	ka := identityKey(t, "A")
	if _, err := old.Sign(ka); err != nil {
		t.Fatal(err)
	}
	stale := *descs[1]
	stale.Published = testTime.Add(-25 * time.Hour)
	if _, err := stale.Sign(identityKey(t, "B")); err != nil {
		t.Fatal(err)
	}
	entries, err = AssignFlags([]*Descriptor{&old, descs[0], &stale}, reach, testTime, DefaultFlagParams())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Nickname != "RelayA" {
		t.Errorf("dedupe/stale: got %d entries, first %q", len(entries), entries[0].Nickname)
	}
	// Unsigned descriptors are refused.
	if _, err := AssignFlags([]*Descriptor{{ID: ka.ID()}}, reach, testTime, DefaultFlagParams()); !errors.Is(err, ErrBadValue) {
		t.Errorf("unsigned descriptor: err = %v", err)
	}
}

// TestFastGuardThresholds checks the bandwidth quantiles on a larger set.
func TestFastGuardThresholds(t *testing.T) {
	var descs []*Descriptor
	reach := map[layercrypt.RelayID]bool{}
	for i := range 16 {
		d, k := minimalDescriptor(t, "R"+string(rune('a'+i)))
		d.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), 9001)
		d.Bandwidth = uint64(i+1) * 10 << 10 // 10..160 KiB/s
		d.Uptime = 30 * 24 * time.Hour
		if _, err := d.Sign(k); err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
		reach[d.ID] = true
	}
	p := DefaultFlagParams()
	p.FastGuarantee = 1 << 40 // only the quantile rule
	p.GuardBandwidthGuarantee = 1 << 40
	entries, err := AssignFlags(descs, reach, testTime, p)
	if err != nil {
		t.Fatal(err)
	}
	fast, guard := 0, 0
	for _, e := range entries {
		if e.Flags.Has(FlagFast) {
			fast++
			if e.Advertised < 30<<10 {
				t.Errorf("%s (%d B/s) is Fast", e.Nickname, e.Advertised)
			}
		}
		if e.Flags.Has(FlagGuard) {
			guard++
			// Fast relays: 30..160 KiB/s (14); low median = 90 KiB/s.
			if e.Advertised < 90<<10 {
				t.Errorf("%s (%d B/s) is Guard", e.Nickname, e.Advertised)
			}
		}
	}
	// bws[16/8] = bws[2] = 30 KiB/s: 14 of 16 are Fast; Guards >= 90 KiB/s: 8.
	if fast != 14 || guard != 8 {
		t.Errorf("fast = %d, guard = %d; want 14, 8", fast, guard)
	}
}

func TestVoteErrors(t *testing.T) {
	v, k, _ := voteFixture(t)
	good, err := v.Sign(k)
	if err != nil {
		t.Fatal(err)
	}
	g := string(good)
	_, ids := authorities(t, 3)
	now := testTime
	// Re-sign a modified vote so that only the intended check fails.
	resign := func(mod func(*Vote)) string {
		w, _, _ := voteFixture(t)
		mod(w)
		body := w.appendBody(nil)
		return string(appendSignatureLine(body, signBytes(k, body)))
	}
	// lineWith returns the number of the first line containing s (a
	// leading "\n" in s anchors it at the start of a line).
	lineWith := func(s string) int {
		for i, l := range strings.SplitAfter(g, "\n") {
			if strings.Contains("\n"+l, s) {
				return i + 1
			}
		}
		t.Fatalf("no line contains %q", s)
		return 0
	}
	for _, tc := range []struct {
		name string
		doc  string
		auth []layercrypt.RelayID
		now  time.Time
		want error
		line int
	}{
		{"unknown authority", g, ids[1:], now, ErrUnknownAuthority, 0},
		{"bad signature", strings.Replace(g, "advertised=2097152", "advertised=2097153", 1), ids, now, ErrBadSignature, 0},
		{"expired", g, ids, now.Add(3*testPeriod + time.Second), ErrExpired, 0},
		{"too early", g, ids, now.Add(-2*testPeriod - time.Second), ErrNotYetValid, 0},
		{"consensus doc", strings.Replace(g, "chive-vote 1", "chive-consensus 1", 1), ids, now, ErrWrongType, 1},
		{"unsorted entries", resign(func(w *Vote) { w.Relays[0], w.Relays[1] = w.Relays[1], w.Relays[0] }), ids, now, ErrUnsorted, 0},
		{"duplicate entry", resign(func(w *Vote) { w.Relays[1] = w.Relays[0] }), ids, now, ErrDuplicateEntry, 0},
		{"flag not known", resign(func(w *Vote) { w.KnownFlags = FlagRunning | FlagValid }), ids, now, ErrBadValue, 0},
		{"measured=0", strings.Replace(g, "advertised=1048576 measured=3145728", "advertised=1048576 measured=0", 1), ids, now, ErrNonCanonical, lineWith("measured=")},
		{"w without advertised", strings.Replace(g, "advertised=1048576 measured=3145728", "1048576", 1), ids, now, ErrBadValue, lineWith("measured=")},
		{"header keyword in entry", strings.Replace(g, "\ns Exit", "\nknown-flags Exit\ns Exit", 1), ids, now, ErrKeywordOrder, lineWith("\ns Exit")},
		{"missing m", resignDropLine(t, k, g, "m "), ids, now, ErrMissingKeyword, 0},
		{"flags out of order", strings.Replace(g, "\ns Exit Fast", "\ns Fast Exit", 1), ids, now, ErrNonCanonical, lineWith("\ns Exit Fast")},
		{"unknown flag", strings.Replace(g, "\ns Exit Fast", "\ns Exit Fast BadExit", 1), ids, now, ErrBadValue, lineWith("\ns Exit Fast")},
		{"times out of order", resign(func(w *Vote) { w.FreshUntil = w.ValidUntil.Add(time.Second) }), ids, now, ErrBadValue, 7},
		{"unknown keyword", strings.Replace(g, "known-flags", "params x=1\nknown-flags", 1), ids, now, ErrUnknownKeyword, 8},
	} {
		_, err := ParseVote([]byte(tc.doc), tc.auth, tc.now)
		wantErr(t, tc.name, err, tc.want, tc.line)
	}
	if _, err := v.Sign(identityKey(t, "other")); !errors.Is(err, ErrWrongKey) {
		t.Errorf("Sign with another key: %v", err)
	}
	v.Relays[0], v.Relays[1] = v.Relays[1], v.Relays[0]
	if _, err := v.Sign(k); !errors.Is(err, ErrUnsorted) {
		t.Errorf("Sign of unsorted vote: %v", err)
	}
}

// resignDropLine removes the first line starting with prefix and signs the
// rest again.
func resignDropLine(t *testing.T, k *layercrypt.IdentityKey, doc, prefix string) string {
	t.Helper()
	var out []string
	dropped := false
	for _, l := range strings.SplitAfter(doc, "\n") {
		if strings.HasPrefix(l, "signature ") || l == "" {
			continue
		}
		if !dropped && strings.HasPrefix(l, prefix) {
			dropped = true
			continue
		}
		out = append(out, l)
	}
	body := []byte(strings.Join(out, ""))
	return string(appendSignatureLine(body, signBytes(k, body)))
}

func TestPeriodTimes(t *testing.T) {
	start := PeriodStart(time.Date(2026, 5, 1, 12, 34, 56, 7, time.UTC), time.Hour)
	if !start.Equal(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("PeriodStart = %s", start)
	}
	if s := PeriodStart(time.Date(2026, 5, 1, 12, 0, 7, 0, time.UTC), 10*time.Second); !s.Equal(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("PeriodStart(10s) = %s", s)
	}
	fu, vu := PeriodTimes(start, time.Hour)
	if !fu.Equal(start.Add(time.Hour)) || !vu.Equal(start.Add(3*time.Hour)) {
		t.Errorf("PeriodTimes = %s, %s", fu, vu)
	}
}
