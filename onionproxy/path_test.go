package onionproxy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

// fakeRelay describes one consensus entry for path tests.
type fakeRelay struct {
	name    string
	ip      string
	bw      uint64
	flags   netdoc.Flags
	exit    string // exit summary, e.g. "accept 80,443"; "" for none
	classes []uint8
	family  []string
}

func relayID(name string) layercrypt.RelayID {
	var id layercrypt.RelayID
	copy(id[:], fmt.Sprintf("%-32s", name))
	return id
}

// fakeConsensus builds an unsigned consensus (path selection reads only
// the entries).
func fakeConsensus(t testing.TB, rs []fakeRelay) *netdoc.Consensus {
	t.Helper()
	c := &netdoc.Consensus{}
	for _, r := range rs {
		e := netdoc.ConsensusEntry{Bandwidth: r.bw}
		e.Nickname = r.name
		e.ID = relayID(r.name)
		e.Addr = netip.AddrPortFrom(netip.MustParseAddr(r.ip), 9001)
		e.Flags = r.flags | netdoc.FlagRunning | netdoc.FlagValid
		if r.exit != "" {
			s, err := exitpolicy.ParseSummary(r.exit)
			if err != nil {
				t.Fatal(err)
			}
			e.ExitPolicy = s
		}
		e.DelayClasses = r.classes
		if e.DelayClasses == nil {
			e.DelayClasses = []uint8{0}
		}
		for _, f := range r.family {
			e.Family = append(e.Family, relayID(f))
		}
		c.Relays = append(c.Relays, e)
	}
	slices.SortFunc(c.Relays, func(a, b netdoc.ConsensusEntry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return c
}

func ids(names ...string) []layercrypt.RelayID {
	var out []layercrypt.RelayID
	for _, n := range names {
		out = append(out, relayID(n))
	}
	return out
}

func names(p []*netdoc.ConsensusEntry) []string {
	var out []string
	for _, e := range p {
		out = append(out, e.Nickname)
	}
	return out
}

const (
	guardFlags = netdoc.FlagGuard | netdoc.FlagFast | netdoc.FlagStable
)

func TestChoosePathRules(t *testing.T) {
	base := []fakeRelay{
		{name: "g1", ip: "10.1.0.1", bw: 100, flags: guardFlags},
		{name: "g2", ip: "10.2.0.1", bw: 100, flags: guardFlags},
		{name: "m1", ip: "10.3.0.1", bw: 100},
		{name: "m2", ip: "10.4.0.1", bw: 100},
		{name: "x80", ip: "10.5.0.1", bw: 100, exit: "accept 80,443", classes: []uint8{0, 1}},
		{name: "x22", ip: "10.6.0.1", bw: 100, exit: "accept 22"},
	}
	sel := newSelector()
	o := pathOptions{distinctSubnets: true}
	cons := fakeConsensus(t, base)
	for i := 0; i < 200; i++ {
		p, err := sel.choosePath(cons, ids("g1", "g2"), pathSpec{port: 80}, o)
		if err != nil {
			t.Fatal(err)
		}
		n := names(p)
		if len(n) != 3 || n[0] != "g1" || n[2] != "x80" || n[1] == "g1" || n[1] == "x80" {
			t.Fatalf("path %v: want g1, a middle, x80", n)
		}
		p, err = sel.choosePath(cons, ids("g1", "g2"), pathSpec{port: 22}, o)
		if err != nil || names(p)[2] != "x22" {
			t.Fatalf("port 22: %v %v", names(p), err)
		}
		// Delay class 1: only x80 serves it, and every hop must: no path.
		if _, err := sel.choosePath(cons, ids("g1", "g2"), pathSpec{port: 80, class: 1}, o); !errors.Is(err, ErrNoPath) {
			t.Fatalf("class 1 with only the exit serving it: %v, want ErrNoPath", err)
		}
	}
	if _, err := sel.choosePath(cons, ids("g1"), pathSpec{port: 25}, o); !errors.Is(err, ErrNoExit) {
		t.Errorf("port 25: %v, want ErrNoExit", err)
	}
	if _, err := sel.choosePath(cons, nil, pathSpec{port: 80}, o); !errors.Is(err, ErrNoGuard) {
		t.Errorf("no guards: %v, want ErrNoGuard", err)
	}
	// port 0 (DNS) takes any exit.
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		p, err := sel.choosePath(cons, ids("g1"), pathSpec{}, o)
		if err != nil {
			t.Fatal(err)
		}
		seen[names(p)[2]] = true
	}
	if !seen["x80"] || !seen["x22"] {
		t.Errorf("any-exit paths used %v, want both exits", seen)
	}
}

func TestChoosePathFamilyAndSubnet(t *testing.T) {
	rs := []fakeRelay{
		{name: "g1", ip: "10.1.0.1", bw: 100, flags: guardFlags, family: []string{"x1"}},
		{name: "g2", ip: "10.2.0.1", bw: 100, flags: guardFlags},
		{name: "m1", ip: "10.1.9.9", bw: 100}, // same /16 as g1
		{name: "m2", ip: "10.4.0.1", bw: 100},
		{name: "x1", ip: "10.5.0.1", bw: 100, exit: "accept 80", family: []string{"g1"}},
		{name: "x2", ip: "10.4.7.7", bw: 100, exit: "accept 80"}, // same /16 as m2
	}
	cons := fakeConsensus(t, rs)
	sel := newSelector()
	for i := 0; i < 300; i++ {
		p, err := sel.choosePath(cons, ids("g1", "g2"), pathSpec{port: 80}, pathOptions{distinctSubnets: true})
		if err != nil {
			t.Fatal(err)
		}
		n := names(p)
		// g1's family is x1 and m1 shares g1's /16, so g1's only exit is
		// x2, whose /16 rules out m2: the middle must be g2.
		if n[0] == "g1" && (n[2] != "x2" || n[1] != "g2") {
			t.Fatalf("path %v: want g1, g2, x2", n)
		}
		for a := 0; a < 3; a++ {
			for b := a + 1; b < 3; b++ {
				if cons.SameFamily(p[a].ID, p[b].ID) || sameSubnet(p[a], p[b]) {
					t.Fatalf("path %v has %s and %s in one family or /16", n, n[a], n[b])
				}
			}
		}
	}
	// Without the subnet rule g1 has a path (m1 or m2 with x2... x2 and
	// m2 may now share a /16).
	got := map[string]bool{}
	for i := 0; i < 300; i++ {
		p, err := sel.choosePath(cons, ids("g1", "g2"), pathSpec{port: 80}, pathOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if names(p)[0] != "g1" {
			t.Fatalf("without subnets, g1 should be used: %v", names(p))
		}
		if names(p)[2] == "x1" {
			t.Fatalf("x1 is in g1's family: %v", names(p))
		}
		got[names(p)[1]] = true
	}
	if !got["m1"] || !got["m2"] {
		t.Errorf("middles used %v, want m1 and m2", got)
	}
}

func TestChoosePathBandwidthWeights(t *testing.T) {
	rs := []fakeRelay{
		{name: "g1", ip: "10.1.0.1", bw: 100, flags: guardFlags},
		{name: "m1", ip: "10.3.0.1", bw: 100},
		{name: "xa", ip: "10.5.0.1", bw: 900, exit: "accept 80"},
		{name: "xb", ip: "10.6.0.1", bw: 100, exit: "accept 80"},
	}
	cons := fakeConsensus(t, rs)
	sel := newSelector()
	const N = 4000
	a := 0
	for i := 0; i < N; i++ {
		p, err := sel.choosePath(cons, ids("g1"), pathSpec{port: 80}, pathOptions{distinctSubnets: true})
		if err != nil {
			t.Fatal(err)
		}
		if names(p)[2] == "xa" {
			a++
		}
	}
	// Expected 0.9 N when xa is the exit; the middle is then xb or m1 and
	// when the middle is drawn first... exit is drawn first here, so the
	// share is 0.9. Allow 5 standard deviations (sd = sqrt(N*0.09) = 19).
	if a < N*9/10-95 || a > N*9/10+95 {
		t.Errorf("exit xa (90%% of exit bandwidth) chosen %d of %d times", a, N)
	}
}

func TestChoosePathAvoidsFailedRelays(t *testing.T) {
	rs := []fakeRelay{
		{name: "g1", ip: "10.1.0.1", bw: 100, flags: guardFlags},
		{name: "m1", ip: "10.3.0.1", bw: 100},
		{name: "xa", ip: "10.5.0.1", bw: 100, exit: "accept 80"},
		{name: "xb", ip: "10.6.0.1", bw: 100, exit: "accept 80"},
	}
	cons := fakeConsensus(t, rs)
	sel := newSelector()
	avoid := func(id layercrypt.RelayID) bool { return id == relayID("xa") }
	for i := 0; i < 100; i++ {
		p, err := sel.choosePath(cons, ids("g1"), pathSpec{port: 80}, pathOptions{avoid: avoid})
		if err != nil {
			t.Fatal(err)
		}
		if n := names(p); n[2] != "xb" || n[1] != "m1" {
			t.Fatalf("path %v: want xa avoided", n)
		}
	}
	// When avoiding leaves nothing, the avoided relay is used.
	avoidAll := func(id layercrypt.RelayID) bool { return id != relayID("g1") }
	if _, err := sel.choosePath(cons, ids("g1"), pathSpec{port: 80}, pathOptions{avoid: avoidAll}); err != nil {
		t.Errorf("with every relay avoided: %v, want a path anyway", err)
	}
}

func TestSameSubnet(t *testing.T) {
	e := func(ip string) *netdoc.ConsensusEntry {
		var x netdoc.ConsensusEntry
		x.Addr = netip.AddrPortFrom(netip.MustParseAddr(ip), 1)
		return &x
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"10.1.2.3", "10.1.200.1", true},
		{"10.1.2.3", "10.2.2.3", false},
		{"127.10.0.1", "127.11.0.1", false},
		{"192.0.2.1", "192.0.3.1", true},
	} {
		if got := sameSubnet(e(tc.a), e(tc.b)); got != tc.want {
			t.Errorf("sameSubnet(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
