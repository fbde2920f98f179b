package directory

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/chive-net/chive/internal/obs"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/netdoc"
)

// reachLoop tests every relay at the start of every period of the schedule
// the authority is on (initial or normal; see schedule) and once at
// startup, at most Reachability.Concurrency at a time, each under the
// reachability timeout. Tests still running when the next period starts
// are abandoned. Votes use the latest result of each relay
// (reachableLocked), so the tests need not finish before the vote.
func (a *Authority) reachLoop(ctx context.Context) {
	for {
		p := a.schedule(a.now())
		pctx, cancel := context.WithDeadline(ctx, netdoc.PeriodStart(a.now(), p).Add(p))
		a.testAll(pctx)
		cancel()
		p = a.schedule(a.now())
		next := netdoc.PeriodStart(a.now(), p).Add(p)
		if !a.sleepUntil(ctx, next) {
			return
		}
	}
}

// testAll tests every relay whose descriptor the authority holds.
func (a *Authority) testAll(ctx context.Context) {
	a.mu.Lock()
	todo := make([]*netdoc.Descriptor, 0, len(a.descs))
	for _, h := range a.descs {
		todo = append(todo, h.d)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, d := range todo {
		select {
		case a.sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-a.sem }()
			tctx, cancel := context.WithTimeout(ctx, a.reachTimeout)
			defer cancel()
			a.testOne(tctx, d)
		}()
	}
	wg.Wait()
	a.log.Debug("reachability tests done", zap.Int("tested", len(todo)))
}

// reachableLocked reports whether the relay of h counts as Running at
// now: a test of the address it now names succeeded within the last
// 1.5 voting periods. As in Tor (a relay is Running if it was
// reached in the last 45 minutes), one failed test does not drop a relay
// that answered the test before: a test can fail on the authority's side,
// and a relay that is really gone is dropped one vote later. A relay that
// presents another identity loses its past successes at once.
func (a *Authority) reachableLocked(h heldDesc, now time.Time) bool {
	res, ok := a.reach[h.d.ID]
	return ok && res.addr == h.d.Addr && !res.lastOK.IsZero() &&
		now.Sub(res.lastOK) <= a.period*reachableWindowHalves/2
}

// reachableWindowHalves is that window in half periods: 1.5 periods
// covers one failed test of the tests made at every period start, as seen
// from a vote a quarter period later.
const reachableWindowHalves = 3

// testOne opens a link to the relay's address, requiring the identity the
// descriptor names, closes it at once and records the result.
func (a *Authority) testOne(ctx context.Context, d *netdoc.Descriptor) {
	l, err := link.Dial(ctx, d.Addr.String(), d.ID, &link.Config{
		HandshakeTimeout: a.reachTimeout,
		PaddingMax:       -1,
	})
	result := "reachable"
	if err == nil {
		l.Close()
	} else if errors.Is(err, link.ErrWrongIdentity) || errors.Is(err, link.ErrNoIdentity) {
		result = "wrong_identity"
	} else {
		result = "unreachable"
	}
	if err != nil && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return // shutting down: no verdict
	}
	a.m.reachability.WithLabelValues(result).Inc()
	a.log.Debug("reachability test", zap.String("relay", d.ID.Short()), zap.String("result", result),
		obs.Addr(d.Addr.String(), a.unsafe), obs.Err(err, a.unsafe))
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	// Keep the result only if the descriptor still names this address.
	h, ok := a.descs[d.ID]
	if !ok || h.d.Addr != d.Addr {
		return
	}
	res := a.reach[d.ID]
	if res.addr != d.Addr {
		res = reachResult{addr: d.Addr}
	}
	res.tested = now
	switch result {
	case "reachable":
		res.lastOK = now
	case "wrong_identity":
		res.lastOK = time.Time{}
	}
	a.reach[d.ID] = res
}

// testUploads tests relays soon after they upload a descriptor with a new
// address, so that a relay that starts between two votes is voted Running
// in the next one.
func (a *Authority) testUploads(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var id layercrypt.RelayID
		select {
		case <-ctx.Done():
			return
		case id = <-a.toTest:
		}
		a.mu.Lock()
		h, ok := a.descs[id]
		a.mu.Unlock()
		if !ok {
			continue
		}
		select {
		case a.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-a.sem }()
			tctx, cancel := context.WithTimeout(ctx, a.reachTimeout)
			defer cancel()
			a.testOne(tctx, h.d)
		}()
	}
}
