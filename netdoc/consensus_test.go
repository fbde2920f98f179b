package netdoc

import (
	"bytes"
	"crypto/sha256"
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

// statusEntry is a vote entry for relay name with descriptor version ver.
func statusEntry(t testing.TB, name string, ver int, flags Flags, advertised uint64) VoteEntry {
	k := identityKey(t, name)
	sum, err := exitpolicy.ParseSummary("accept 80,443")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte{byte(ver)})
	return VoteEntry{
		RelayStatus: RelayStatus{
			Nickname:     name,
			ID:           k.ID(),
			OnionKey:     onionKey(t, name+string(rune('0'+ver))),
			Addr:         netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(len(name))}), 9001),
			Flags:        flags,
			ExitPolicy:   sum,
			DelayClasses: []uint8{0, 1},
			Protocols:    Protocols{{"Circuit", Versions(1)}, {"Link", Versions(1)}, {"Relay", Versions(1)}},
		},
		Advertised: advertised,
		Descriptor: Digest(sha256.Sum256(append([]byte(name), h[:]...))),
		Published:  testTime.Add(-time.Duration(3-ver) * time.Hour),
	}
}

func sortEntries(es []VoteEntry) []VoteEntry {
	slices.SortFunc(es, func(a, b VoteEntry) int { return compareIDs(a.ID, b.ID) })
	return es
}

const (
	rv  = FlagRunning | FlagValid
	rvf = FlagRunning | FlagValid | FlagFast
)

// consensusVotes builds the three votes of the consensus tests:
//
//	one:   in all votes; Guard in 2 of 3, Exit in 1; weights 100, 50 (measured), 200
//	two:   only in vote 1: not listed
//	three: in votes 1 and 2; Stable in 1 of 2 (tie: unset); weights 100, 300
//	four:  in all votes but Running in 1 only: not listed
//	five:  descriptor v1 in votes 1 and 2, newer v2 in vote 3: v1 (most votes)
//	six:   v2 in vote 1, v1 in vote 2: v2 (tie, newest)
//	seven: votes 1 and 3; Stable in vote 1, vote 3 does not know Stable: Stable
//
// Vote 3 is for a period one hour later; the medians keep the first.
func consensusVotes(t testing.TB) ([]*Vote, []*layercrypt.IdentityKey, []layercrypt.RelayID) {
	keys, ids := authorities(t, 3)
	v1 := newVote(keys[0], sortEntries([]VoteEntry{
		statusEntry(t, "one", 1, rvf|FlagGuard, 100),
		statusEntry(t, "two", 1, rvf, 100),
		statusEntry(t, "three", 1, rvf|FlagStable, 100),
		statusEntry(t, "four", 1, rvf, 100),
		statusEntry(t, "five", 1, rvf, 100),
		statusEntry(t, "six", 2, rvf, 100),
		statusEntry(t, "seven", 1, rvf|FlagStable, 100),
	}))
	one2 := statusEntry(t, "one", 1, rvf|FlagGuard, 300)
	one2.Measured = 50
	v2 := newVote(keys[1], sortEntries([]VoteEntry{
		one2,
		statusEntry(t, "three", 1, rvf, 300),
		statusEntry(t, "four", 1, FlagValid, 100),
		statusEntry(t, "five", 1, rvf, 100),
		statusEntry(t, "six", 1, rvf, 100),
	}))
	v3 := newVote(keys[2], sortEntries([]VoteEntry{
		statusEntry(t, "one", 1, rvf|FlagExit, 200),
		statusEntry(t, "four", 1, FlagValid, 100),
		statusEntry(t, "five", 2, rvf, 100),
		statusEntry(t, "seven", 1, rvf, 100),
	}))
	v3.KnownFlags = AllFlags &^ FlagStable
	v3.ValidAfter = v3.ValidAfter.Add(time.Hour)
	v3.FreshUntil, v3.ValidUntil = PeriodTimes(v3.ValidAfter, testPeriod)
	return []*Vote{v1, v2, v3}, keys, ids
}

func TestComputeConsensus(t *testing.T) {
	votes, keys, ids := consensusVotes(t)
	c, err := ComputeConsensus(votes, ids)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("computed consensus does not validate: %v", err)
	}
	fu, vu := PeriodTimes(testTime, testPeriod)
	if c.Method != 1 || !c.ValidAfter.Equal(testTime) || !c.FreshUntil.Equal(fu) || !c.ValidUntil.Equal(vu) || c.VotingPeriod != testPeriod {
		t.Errorf("header: method %d, %s %s %s %s", c.Method, c.ValidAfter, c.FreshUntil, c.ValidUntil, c.VotingPeriod)
	}
	if c.KnownFlags != AllFlags {
		t.Errorf("known flags %s (Stable is known by 2 of 3 votes)", c.KnownFlags)
	}
	wantVoters := slices.Clone(ids)
	slices.SortFunc(wantVoters, compareIDs)
	if !slices.Equal(c.Voters, wantVoters) {
		t.Error("voters wrong")
	}
	want := map[string]struct {
		flags Flags
		bw    uint64
		ver   int
	}{
		"one":   {rvf | FlagGuard, 100, 1},
		"three": {rvf, 100, 1},
		"five":  {rvf, 100, 1},
		"six":   {rvf, 100, 2},
		"seven": {rvf | FlagStable, 100, 1},
	}
	if len(c.Relays) != len(want) {
		var names []string
		for _, e := range c.Relays {
			names = append(names, e.Nickname)
		}
		t.Fatalf("listed %v, want %d relays", names, len(want))
	}
	for _, e := range c.Relays {
		w, ok := want[e.Nickname]
		if !ok {
			t.Errorf("%s listed", e.Nickname)
			continue
		}
		if e.Flags != w.flags || e.Bandwidth != w.bw {
			t.Errorf("%s: flags %q bandwidth %d; want %q %d", e.Nickname, e.Flags, e.Bandwidth, w.flags, w.bw)
		}
		if e.OnionKey != onionKey(t, e.Nickname+string(rune('0'+w.ver))) {
			t.Errorf("%s: onion key from the wrong descriptor version", e.Nickname)
		}
	}

	// Determinism: every order of the votes gives the same bytes.
	body := c.Body()
	for _, perm := range [][]int{{0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
		vs := []*Vote{votes[perm[0]], votes[perm[1]], votes[perm[2]]}
		c2, err := ComputeConsensus(vs, []layercrypt.RelayID{ids[perm[2]], ids[perm[0]], ids[perm[1]]})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c2.Body(), body) {
			t.Fatalf("order %v gives a different body:\n%s", perm, lineDiff(body, c2.Body()))
		}
	}

	// Each authority signs; the golden file is the fully signed consensus.
	for _, k := range keys {
		s := SignConsensus(body, k)
		if !s.Verify(body) {
			t.Fatal("own signature does not verify")
		}
		if err := c.AddSignature(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddSignature(SignConsensus(body, keys[0])); !errors.Is(err, ErrDuplicateEntry) {
		t.Errorf("second signature from one authority: %v", err)
	}
	doc := c.Encode()
	golden(t, "consensus.golden", doc)
	got, err := ParseConsensus(doc, ids, testTime)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("ParseConsensus(Encode(c)) != c:\n got %+v\nwant %+v", got, c)
	}
	if !bytes.Equal(got.Encode(), doc) {
		t.Error("Encode(Parse(b)) != b")
	}
	if got.Digest() != ConsensusDigest(body) {
		t.Error("Digest != ConsensusDigest(Body)")
	}
}

func TestComputeConsensusVoteCounts(t *testing.T) {
	votes, _, ids := consensusVotes(t)
	// One authority down: the other two still make a consensus.
	c, err := ComputeConsensus(votes[:2], ids)
	if err != nil {
		t.Fatalf("2 of 3 votes: %v", err)
	}
	var names []string
	for _, e := range c.Relays {
		names = append(names, e.Nickname)
	}
	slices.Sort(names)
	if want := []string{"five", "one", "six", "three"}; !slices.Equal(names, want) {
		t.Errorf("2 of 3 votes listed %v, want %v", names, want)
	}
	_, err = ComputeConsensus(votes[:1], ids)
	wantErr(t, "1 of 3 votes", err, ErrNotEnoughVotes, 0)
	_, err = ComputeConsensus([]*Vote{votes[0], votes[1], votes[0]}, ids)
	wantErr(t, "duplicate vote", err, ErrDuplicateVote, 0)
	_, err = ComputeConsensus(votes, ids[:2])
	wantErr(t, "vote from an unconfigured authority", err, ErrUnknownAuthority, 0)
	_, err = ComputeConsensus(votes, nil)
	wantErr(t, "no authorities", err, ErrNoAuthorities, 0)
	// Four authorities configured, two votes: not a majority of all.
	_, err = ComputeConsensus(votes[:2], append(slices.Clone(ids), identityKey(t, "authority4").ID()))
	wantErr(t, "2 of 4 votes", err, ErrNotEnoughVotes, 0)
	// Votes that list no common method.
	for _, v := range votes {
		v.ConsensusMethods = []int{7}
	}
	_, err = ComputeConsensus(votes, ids)
	wantErr(t, "no common method", err, ErrNoConsensusMethod, 0)
}

func signedConsensus(t testing.TB) (*Consensus, []*layercrypt.IdentityKey, []layercrypt.RelayID) {
	votes, keys, ids := consensusVotes(t)
	c, err := ComputeConsensus(votes, ids)
	if err != nil {
		t.Fatal(err)
	}
	return c, keys, ids
}

func TestParseConsensusSignatures(t *testing.T) {
	c, keys, ids := signedConsensus(t)
	body := c.Body()
	forger := identityKey(t, "forger")
	otherBody := bytes.Replace(body, []byte("w 100\n"), []byte("w 101\n"), 1)
	for _, tc := range []struct {
		name    string
		sigs    []Signature
		wantErr bool
		msg     string
	}{
		{"3 of 3", []Signature{SignConsensus(body, keys[0]), SignConsensus(body, keys[1]), SignConsensus(body, keys[2])}, false, ""},
		{"2 of 3", []Signature{SignConsensus(body, keys[0]), SignConsensus(body, keys[2])}, false, ""},
		{"1 of 3", []Signature{SignConsensus(body, keys[1])}, true, "consensus signed by 1 of 3 configured authorities; need 2"},
		{"none", nil, true, "consensus signed by 0 of 3 configured authorities; need 2"},
		{"1 of 3 and an unknown key", []Signature{SignConsensus(body, keys[1]), SignConsensus(body, forger)}, true,
			"consensus signed by 1 of 3 configured authorities; need 2 (1 signature from an unknown key ignored)"},
		{"2 of 3 and an unknown key", []Signature{SignConsensus(body, keys[1]), SignConsensus(body, forger), SignConsensus(body, keys[0])}, false, ""},
		{"signature over other bytes", []Signature{SignConsensus(body, keys[0]), SignConsensus(otherBody, keys[1])}, true,
			"consensus signed by 1 of 3 configured authorities; need 2 (bad signature from " + keys[1].ID().String() + ")"},
		{"forged by one key claiming three", []Signature{
			{Authority: ids[0], Sig: SignConsensus(body, forger).Sig},
			{Authority: ids[1], Sig: SignConsensus(body, forger).Sig},
			{Authority: ids[2], Sig: SignConsensus(body, forger).Sig}}, true,
			"consensus signed by 0 of 3 configured authorities; need 2"},
	} {
		cc := *c
		cc.Signatures = nil
		for _, s := range tc.sigs {
			if err := cc.AddSignature(s); err != nil {
				t.Fatal(err)
			}
		}
		_, err := ParseConsensus(cc.Encode(), ids, testTime.Add(time.Minute))
		if !tc.wantErr {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		wantErr(t, tc.name, err, ErrNotEnoughSignatures, 0)
		if err != nil && !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: message %q does not contain %q", tc.name, err, tc.msg)
		}
		var se *SignatureError
		if !errors.As(err, &se) || se.Report.OK() {
			t.Errorf("%s: no SignatureError report", tc.name)
		}
	}
	if _, err := ParseConsensus(c.Encode(), nil, testTime); !errors.Is(err, ErrNoAuthorities) {
		t.Errorf("no authorities: %v", err)
	}
	// CheckSignatures on a built consensus reports each signer.
	cc := *c
	cc.Signatures = nil
	for _, s := range []Signature{SignConsensus(body, keys[0]), SignConsensus(body, forger), SignConsensus(otherBody, keys[2])} {
		if err := cc.AddSignature(s); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := cc.CheckSignatures(ids)
	if !errors.Is(err, ErrNotEnoughSignatures) || len(rep.Valid) != 1 || len(rep.Bad) != 1 || len(rep.Unknown) != 1 || rep.Needed != 2 || rep.Configured != 3 {
		t.Errorf("CheckSignatures = %+v, %v", rep, err)
	}
}

func TestParseConsensusTime(t *testing.T) {
	c, keys, ids := signedConsensus(t)
	body := c.Body()
	for _, k := range keys {
		if err := c.AddSignature(SignConsensus(body, k)); err != nil {
			t.Fatal(err)
		}
	}
	doc := c.Encode()
	for _, tc := range []struct {
		now  time.Time
		want error
		msg  string
	}{
		{c.ValidAfter, nil, ""},
		{c.ValidUntil, nil, ""},
		{c.ValidUntil.Add(time.Second), ErrExpired, "consensus expired at 2026-05-01T15:00:00Z (now 2026-05-01T15:00:01Z)"},
		{c.ValidAfter.Add(-time.Second), ErrNotYetValid, "consensus is not valid until 2026-05-01T12:00:00Z (now 2026-05-01T11:59:59Z)"},
	} {
		_, err := ParseConsensus(doc, ids, tc.now)
		if tc.want == nil {
			if err != nil {
				t.Errorf("now %s: %v", tc.now, err)
			}
			continue
		}
		wantErr(t, tc.msg, err, tc.want, 0)
		if err != nil && !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("message %q does not contain %q", err, tc.msg)
		}
	}
	if _, err := ParseConsensusUnverified(doc); err != nil {
		t.Errorf("ParseConsensusUnverified: %v", err)
	}
}

func TestParseConsensusErrors(t *testing.T) {
	c, keys, ids := signedConsensus(t)
	sign := func(cc *Consensus) string {
		cc.Signatures = nil
		body := cc.Body()
		for _, k := range keys {
			if err := cc.AddSignature(SignConsensus(body, k)); err != nil {
				t.Fatal(err)
			}
		}
		return string(cc.Encode())
	}
	good := sign(c)
	sigLines := good[strings.Index(good, "authority-signature "):]
	body := good[:strings.Index(good, "authority-signature ")]
	nBody := strings.Count(body, "\n")
	unsorted := *c
	unsorted.Relays = slices.Clone(c.Relays)
	unsorted.Relays[0], unsorted.Relays[1] = unsorted.Relays[1], unsorted.Relays[0]
	dup := *c
	dup.Relays = slices.Clone(c.Relays)
	dup.Relays[1] = dup.Relays[0]
	sl := strings.SplitAfter(sigLines, "\n")
	for _, tc := range []struct {
		name string
		doc  string
		want error
		line int
	}{
		{"unsorted entries", sign(&unsorted), ErrUnsorted, 0},
		{"duplicate entries", sign(&dup), ErrDuplicateEntry, 0},
		{"unsorted signatures", body + sl[1] + sl[0] + sl[2], ErrUnsorted, nBody + 2},
		{"duplicate signature", body + sl[0] + sl[0] + sl[1], ErrDuplicateEntry, nBody + 2},
		{"line after signatures", good + "r x y z\n", ErrKeywordOrder, nBody + 4},
		{"unknown line after signatures", good + "footer\n", ErrUnknownKeyword, nBody + 4},
		{"voter in entries", strings.Replace(good, "\nd 0 1\n", "\nd 0 1\nvoter "+ids[0].String()+"\n", 1), ErrKeywordOrder, 0},
		{"no voters", strings.Replace(strings.Replace(strings.Replace(good, "voter "+ids[0].String()+"\n", "", 1),
			"voter "+ids[1].String()+"\n", "", 1), "voter "+ids[2].String()+"\n", "", 1), ErrMissingKeyword, 0},
		{"vote document", strings.Replace(good, "chive-consensus 1\n", "chive-vote 1\n", 1), ErrWrongType, 1},
		{"version 2", strings.Replace(good, "chive-consensus 1\n", "chive-consensus 2\n", 1), ErrUnknownVersion, 1},
		{"bad weight", strings.Replace(good, "\nw 100\n", "\nw x\n", 1), ErrBadValue, 0},
		{"tampered body", strings.Replace(good, "\nw 100\n", "\nw 101\n", 1), ErrNotEnoughSignatures, 0},
		{"empty line", strings.Replace(good, "\na 198.51.100.3:9001\n", "\n\n", 1), ErrSyntax, 0},
		{"entry without a", strings.Replace(good, "\na 198.51.100.3:9001\n", "\n", 1), ErrMissingKeyword, 0},
	} {
		_, err := ParseConsensus([]byte(tc.doc), ids, testTime)
		wantErr(t, tc.name, err, tc.want, tc.line)
	}
}

func TestSignatureLine(t *testing.T) {
	c, keys, _ := signedConsensus(t)
	s := SignConsensus(c.Body(), keys[0])
	line := s.Line()
	if !bytes.HasPrefix(line, []byte("authority-signature "+keys[0].ID().String()+" ")) || line[len(line)-1] != '\n' {
		t.Fatalf("Line() = %q", line)
	}
	got, err := ParseSignatureLine(line)
	if err != nil || got != s {
		t.Fatalf("ParseSignatureLine = %v, %v", got, err)
	}
	for _, bad := range []string{"", "authority-signature x y\n", string(line) + string(line), strings.TrimSuffix(string(line), "\n"), "signature x\n"} {
		if _, err := ParseSignatureLine([]byte(bad)); err == nil {
			t.Errorf("ParseSignatureLine(%.30q) succeeded", bad)
		}
	}
}

func TestRelayLookupAndFamily(t *testing.T) {
	c, _, _ := signedConsensus(t)
	for i := range c.Relays {
		e, ok := c.Relay(c.Relays[i].ID)
		if !ok || e != &c.Relays[i] {
			t.Fatalf("Relay(%s) not found", c.Relays[i].ID)
		}
	}
	if _, ok := c.Relay(identityKey(t, "two").ID()); ok {
		t.Error("Relay(two) found")
	}
	a, b := &c.Relays[0], &c.Relays[1]
	a.Family = []layercrypt.RelayID{b.ID}
	if c.SameFamily(a.ID, b.ID) {
		t.Error("one-sided family counted")
	}
	b.Family = []layercrypt.RelayID{a.ID}
	if !c.SameFamily(a.ID, b.ID) || !c.SameFamily(b.ID, a.ID) {
		t.Error("mutual family not seen")
	}
	if c.SameFamily(a.ID, identityKey(t, "two").ID()) {
		t.Error("family with an unlisted relay")
	}
}

func TestConsensusUsable(t *testing.T) {
	entry := func(name string, f Flags) ConsensusEntry {
		return ConsensusEntry{RelayStatus: RelayStatus{Nickname: name, ID: identityKey(t, name).ID(), Flags: f}}
	}
	const run = FlagRunning | FlagValid
	va := testTime
	fu, vu := PeriodTimes(va, time.Hour)
	for _, tc := range []struct {
		name   string
		relays []ConsensusEntry
		now    time.Time
		want   error
		msg    string
	}{
		{"three with an exit", []ConsensusEntry{entry("a", run), entry("b", run), entry("c", run|FlagExit)}, va, nil, ""},
		{"at valid-until", []ConsensusEntry{entry("a", run), entry("b", run), entry("c", run|FlagExit)}, vu, nil, ""},
		{"two", []ConsensusEntry{entry("a", run), entry("c", run|FlagExit)}, va, ErrUnusable,
			"it lists 2 Running relays (1 of them exits); a circuit needs 3, one an exit"},
		{"no exit", []ConsensusEntry{entry("a", run), entry("b", run), entry("c", run)}, va, ErrUnusable,
			"it lists 3 Running relays (0 of them exits)"},
		{"exit not running", []ConsensusEntry{entry("a", run), entry("b", run), entry("c", run), entry("d", FlagValid|FlagExit)}, va, ErrUnusable,
			"it lists 3 Running relays (0 of them exits)"},
		{"expired", []ConsensusEntry{entry("a", run), entry("b", run), entry("c", run|FlagExit)}, vu.Add(time.Second), ErrExpired, "consensus expired"},
		{"not yet valid", []ConsensusEntry{entry("a", run), entry("b", run), entry("c", run|FlagExit)}, va.Add(-time.Second), ErrNotYetValid, "not valid until"},
	} {
		c := &Consensus{ValidAfter: va, FreshUntil: fu, ValidUntil: vu, VotingPeriod: time.Hour, Relays: tc.relays}
		err := c.Usable(tc.now)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: Usable = %v, want nil", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) || err != nil && !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Usable = %v, want %v containing %q", tc.name, err, tc.want, tc.msg)
		}
	}
}
