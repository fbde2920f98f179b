package directory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/chive-net/chive/netdoc"
)

// BenchmarkVotingRound is one whole voting round between three authorities
// in one process over loopback HTTP, without the schedule's waits and
// without reachability tests (every relay counts as reached): each builds,
// signs, stores and pushes its vote; each fetches missing votes, computes
// the consensus, signs it, pushes and fetches signatures; each publishes.
func BenchmarkVotingRound(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("relays=%d", n), func(b *testing.B) { benchRound(b, n) })
	}
}

func benchRound(b *testing.B, relays int) {
	names := []string{"b1", "b2", "b3"}
	var lns []net.Listener
	var list []AuthorityConfig
	for _, n := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		lns = append(lns, ln)
		list = append(list, AuthorityConfig{Nickname: n, ID: fixedKey(b, n).ID().String(), Address: ln.Addr().String()})
	}
	period := time.Hour
	base := netdoc.PeriodStart(time.Now(), period)
	var clock atomic.Int64 // the authorities' shared virtual time
	clock.Store(base.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }

	// Relays: descriptors held by all three, all reached.
	descs := make([]heldDesc, relays)
	onion := mustOnion(b)
	for i := range descs {
		k := fixedKey(b, fmt.Sprintf("bench relay %d", i))
		raw := signedDescriptor(b, k, fmt.Sprintf("r%d", i), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 9001), onion, i%3 == 0, base.Add(-time.Hour))
		d, err := netdoc.ParseDescriptorUnverified(raw)
		if err != nil {
			b.Fatal(err)
		}
		descs[i] = heldDesc{d: d, raw: raw}
	}

	var auths []*Authority
	var servers []*http.Server
	var wg sync.WaitGroup
	for i, n := range names {
		dir := b.TempDir()
		seed := fixedKey(b, n).Seed()
		if err := writeFileAtomic(dir+"/"+KeyFile, seed); err != nil {
			b.Fatal(err)
		}
		a, err := New(&Config{Nickname: n, DataDir: dir, Authorities: list, Testnet: true, VotingPeriod: period,
			Flags: FlagConfig{MaxDescriptorAge: 100000 * time.Hour}, Listener: lns[i]}, zap.NewNop())
		if err != nil {
			b.Fatal(err)
		}
		a.now = now
		for _, h := range descs {
			a.descs[h.d.ID] = h
			a.reach[h.d.ID] = reachResult{addr: h.d.Addr, lastOK: base}
		}
		srv := &http.Server{Handler: a.Handler()}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(lns[i]); !errors.Is(err, http.ErrServerClosed) {
				b.Error(err)
			}
		}()
		auths = append(auths, a)
		servers = append(servers, srv)
	}
	b.Cleanup(func() {
		for _, s := range servers {
			s.Close()
		}
		wg.Wait()
	})

	ctx := context.Background()
	each := func(f func(a *Authority, r *round)) {
		var wg sync.WaitGroup
		for _, a := range auths {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.mu.Lock()
				r := a.roundLocked(netdoc.PeriodStart(now(), period).Add(period))
				a.mu.Unlock()
				f(a, r)
			}()
		}
		wg.Wait()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s := base.Add(time.Duration(i) * period)
		va := s.Add(period)
		setPhase := func(eighths int) { clock.Store(s.Add(period * time.Duration(eighths) / 8).UnixNano()) }
		for _, a := range auths { // the period's reachability tests
			a.mu.Lock()
			for id, r := range a.reach {
				r.lastOK = s
				a.reach[id] = r
			}
			a.mu.Unlock()
		}
		setPhase(phaseVote)
		each(func(a *Authority, r *round) { a.vote(ctx, r) })
		setPhase(phaseCloseVoting)
		each(func(a *Authority, r *round) { a.fetchVotes(ctx, r, true, time.Now().Add(10*time.Second)) })
		setPhase(phaseCompute)
		each(func(a *Authority, r *round) { a.compute(ctx, r) })
		setPhase(phaseFetchSigs1)
		each(func(a *Authority, r *round) { a.fetchSignatures(ctx, r) })
		clock.Store(va.UnixNano())
		var bodies [][]byte
		for _, a := range auths {
			a.mu.Lock()
			r := a.rounds[va.Unix()]
			a.tryPublishLocked(r)
			if a.current == nil || !a.current.ValidAfter.Equal(va) || len(a.current.Signatures) != 3 || len(a.current.Relays) != relays {
				b.Fatalf("round %d: not published by all with 3 signatures and %d relays: sigs %d relays %d", i, relays, len(a.current.Signatures), len(a.current.Relays))
			}
			bodies = append(bodies, r.body)
			delete(a.rounds, s.Unix())
			a.mu.Unlock()
			a.store.pruneVotes(va)
		}
		if !bytes.Equal(bodies[0], bodies[1]) || !bytes.Equal(bodies[0], bodies[2]) {
			b.Fatal("the authorities computed different bodies")
		}
	}
}
