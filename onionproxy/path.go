package onionproxy

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

// PathLen is the number of hops of every circuit: guard, middle, exit.
const PathLen = 3

// Path-selection errors callers branch on.
var (
	// ErrNoPath: the consensus has no guard, middle and exit that fit
	// together (distinct, different families and subnets, serving the
	// delay class).
	ErrNoPath = errors.New("onionproxy: no usable path in the consensus")
	// ErrNoExit: no relay in the consensus exits to the port asked for
	// with the delay class asked for.
	ErrNoExit = errors.New("onionproxy: no exit in the consensus allows this port")
	// ErrNoGuard: no sampled guard is listed and usable.
	ErrNoGuard = errors.New("onionproxy: no usable entry guard")
)

// pathSpec is what a circuit must offer.
type pathSpec struct {
	class uint8
	// port the exit must allow; 0 means any exit (DNS, preemptive).
	port uint16
	// prefer are ports an exit should allow if some exit allows them all
	// (preemptive circuits: the common web ports).
	prefer []uint16
}

// pathOptions are the rules of the path selector.
type pathOptions struct {
	distinctSubnets bool
	// avoid are relays that failed recently; used only if nothing else fits.
	avoid func(layercrypt.RelayID) bool
}

// servesClass reports whether a relay serves the delay class; class 0
// (no added delay) is served by every relay.
func servesClass(e *netdoc.ConsensusEntry, class uint8) bool {
	return class == 0 || slices.Contains(e.DelayClasses, class)
}

// usable reports whether a relay may be on a path at all.
func usable(e *netdoc.ConsensusEntry) bool {
	return e.Flags.Has(netdoc.FlagRunning|netdoc.FlagValid) && e.Addr.IsValid()
}

// isExit reports whether e exits at all (to some port).
func isExit(e *netdoc.ConsensusEntry) bool { return e.ExitPolicy.AcceptsAny() }

// exitAllows reports whether e serves spec as an exit.
func exitAllows(e *netdoc.ConsensusEntry, port uint16) bool {
	if port == 0 {
		return isExit(e)
	}
	return e.ExitPolicy.AllowsPort(port)
}

// sameSubnet reports whether two relays share an IPv4 /16 (or, both
// having one, an IPv6 /32), as Tor's EnforceDistinctSubnets does.
func sameSubnet(a, b *netdoc.ConsensusEntry) bool {
	if prefixEq(a.Addr.Addr(), b.Addr.Addr(), 16) {
		return true
	}
	if a.Addr6.IsValid() && b.Addr6.IsValid() && prefixEq(a.Addr6.Addr(), b.Addr6.Addr(), 32) {
		return true
	}
	return false
}

func prefixEq(a, b netip.Addr, bits int) bool {
	a, b = a.Unmap(), b.Unmap()
	if a.BitLen() != b.BitLen() {
		return false
	}
	pa, err := a.Prefix(bits)
	if err != nil {
		return false
	}
	pb, _ := b.Prefix(bits)
	return pa == pb
}

// conflict reports whether a and b may not share a circuit.
func conflict(cons *netdoc.Consensus, a, b *netdoc.ConsensusEntry, o pathOptions) bool {
	if a.ID == b.ID {
		return true
	}
	if cons.SameFamily(a.ID, b.ID) {
		return true
	}
	return o.distinctSubnets && sameSubnet(a, b)
}

// selector draws paths with an unpredictable random source.
type selector struct {
	mu  sync.Mutex // guards rnd
	rnd *rand.Rand
}

func newSelector() *selector {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		panic(fmt.Sprintf("onionproxy: crypto/rand: %v", err))
	}
	return &selector{rnd: rand.New(rand.NewChaCha8(seed))}
}

// durationIn draws uniformly from [lo, hi].
func (s *selector) durationIn(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return lo + time.Duration(s.rnd.Int64N(int64(hi-lo)+1))
}

// pickWeighted returns one of cands chosen with probability proportional
// to its consensus bandwidth (uniformly if all are zero), or nil.
func (s *selector) pickWeighted(cands []*netdoc.ConsensusEntry) *netdoc.ConsensusEntry {
	if len(cands) == 0 {
		return nil
	}
	var total uint64
	for _, c := range cands {
		total += c.Bandwidth
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if total == 0 {
		return cands[s.rnd.IntN(len(cands))]
	}
	x := s.rnd.Uint64N(total)
	for _, c := range cands {
		if x < c.Bandwidth {
			return c
		}
		x -= c.Bandwidth
	}
	return cands[len(cands)-1]
}

// choosePath picks guard, middle and exit: the guard is the first of
// guards (in the order given) for which an exit and a middle fit; exit and
// middle are drawn by bandwidth among the relays that fit.
func (s *selector) choosePath(cons *netdoc.Consensus, guards []layercrypt.RelayID, spec pathSpec, o pathOptions) ([]*netdoc.ConsensusEntry, error) {
	if len(guards) == 0 {
		return nil, ErrNoGuard
	}
	anyExit := false
	for i := range cons.Relays {
		e := &cons.Relays[i]
		if usable(e) && servesClass(e, spec.class) && exitAllows(e, spec.port) {
			anyExit = true
			break
		}
	}
	if !anyExit {
		if spec.port == 0 {
			return nil, fmt.Errorf("%w (delay class %d)", ErrNoExit, spec.class)
		}
		return nil, fmt.Errorf("%w (port %d, delay class %d)", ErrNoExit, spec.port, spec.class)
	}
	// First keep away from relays that failed recently; if that leaves no
	// path, try them too.
	for _, strict := range []bool{true, false} {
		if !strict && o.avoid == nil {
			break
		}
		for _, gid := range guards {
			g, ok := cons.Relay(gid)
			if !ok || !usable(g) || !servesClass(g, spec.class) {
				continue
			}
			if p := s.completePath(cons, g, spec, o, strict); p != nil {
				return p, nil
			}
		}
	}
	return nil, fmt.Errorf("%w (delay class %d, %d relays listed)", ErrNoPath, spec.class, len(cons.Relays))
}

func (s *selector) completePath(cons *netdoc.Consensus, g *netdoc.ConsensusEntry, spec pathSpec, o pathOptions, strict bool) []*netdoc.ConsensusEntry {
	avoided := func(e *netdoc.ConsensusEntry) bool { return strict && o.avoid != nil && o.avoid(e.ID) }
	var exits, preferred []*netdoc.ConsensusEntry
	for i := range cons.Relays {
		e := &cons.Relays[i]
		if !usable(e) || !servesClass(e, spec.class) || !exitAllows(e, spec.port) || avoided(e) || conflict(cons, g, e, o) {
			continue
		}
		exits = append(exits, e)
		if len(spec.prefer) > 0 && allowsAll(e, spec.prefer) {
			preferred = append(preferred, e)
		}
	}
	if len(preferred) > 0 {
		exits = preferred
	}
	// Try exits in a bandwidth-weighted order until one has a middle.
	for len(exits) > 0 {
		x := s.pickWeighted(exits)
		var mids []*netdoc.ConsensusEntry
		for i := range cons.Relays {
			e := &cons.Relays[i]
			if !usable(e) || !servesClass(e, spec.class) || avoided(e) || conflict(cons, g, e, o) || conflict(cons, x, e, o) {
				continue
			}
			mids = append(mids, e)
		}
		if m := s.pickWeighted(mids); m != nil {
			return []*netdoc.ConsensusEntry{g, m, x}
		}
		exits = slices.DeleteFunc(exits, func(e *netdoc.ConsensusEntry) bool { return e == x })
	}
	return nil
}

func allowsAll(e *netdoc.ConsensusEntry, ports []uint16) bool {
	for _, p := range ports {
		if !e.ExitPolicy.AllowsPort(p) {
			return false
		}
	}
	return true
}

// hops turns consensus entries into what circuit.Build takes.
func hops(path []*netdoc.ConsensusEntry) []circuit.Hop {
	h := make([]circuit.Hop, len(path))
	for i, e := range path {
		h[i] = circuit.Hop{ID: e.ID, Addr: e.Addr, OnionKey: e.OnionKey}
	}
	return h
}
