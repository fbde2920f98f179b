package relay

import (
	"context"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/chive-net/chive/dirclient"
	"github.com/chive-net/chive/mix"
)

// DescriptorPath is the authorities' upload endpoint (COMMON directory API).
const DescriptorPath = dirclient.DescriptorPath

// Publishing retries back off from minBackoff, doubling, up to the publish
// interval (and never beyond maxBackoff). The first retry is quick: a
// network whose processes start together (a test network, containers)
// has relays that upload before an authority listens, and an authority
// on its initial voting schedule votes every second or so.
const (
	minBackoff     = 250 * time.Millisecond
	maxBackoff     = 5 * time.Minute
	publishTimeout = 30 * time.Second
)

// publisher uploads the latest descriptor to every authority: each one has
// its own goroutine, which posts a descriptor once and retries with backoff
// until it is accepted or a newer one replaces it.
type publisher struct {
	auths    []Authority
	client   *http.Client
	clock    mix.Clock
	log      *zap.Logger
	m        *relayMetrics
	maxRetry time.Duration

	mu    sync.Mutex // guards the following fields
	desc  []byte
	gen   uint64
	kicks []chan struct{}
}

func newPublisher(auths []Authority, client *http.Client, clock mix.Clock, interval time.Duration, log *zap.Logger, m *relayMetrics) *publisher {
	p := &publisher{auths: auths, client: client, clock: clock, log: log, m: m, maxRetry: min(interval, maxBackoff)}
	p.kicks = make([]chan struct{}, len(auths))
	for i := range p.kicks {
		p.kicks[i] = make(chan struct{}, 1)
	}
	return p
}

// update makes desc the descriptor to publish and wakes every authority's
// goroutine.
func (p *publisher) update(desc []byte) {
	p.mu.Lock()
	p.desc = desc
	p.gen++
	p.mu.Unlock()
	for _, k := range p.kicks {
		select {
		case k <- struct{}{}:
		default:
		}
	}
}

func (p *publisher) latest() ([]byte, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.desc, p.gen
}

// run publishes until ctx ends.
func (p *publisher) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, a := range p.auths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.runAuthority(ctx, a, p.kicks[i])
		}()
	}
	wg.Wait()
}

func (p *publisher) runAuthority(ctx context.Context, a Authority, kick <-chan struct{}) {
	log := p.log.With(zap.String("authority", a.name()))
	var sent uint64
	var backoff time.Duration
	for {
		var timer mix.Timer
		var retry <-chan time.Time
		if desc, gen := p.latest(); gen != sent && desc != nil {
			err := p.post(ctx, a, desc)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				sent, backoff = gen, 0
				p.m.published.WithLabelValues(a.name(), "accepted").Inc()
				log.Info("descriptor published")
			} else {
				backoff = min(max(2*backoff, minBackoff), p.maxRetry)
				p.m.published.WithLabelValues(a.name(), "failed").Inc()
				// The authority's address and answer are not private.
				log.Warn("publishing the descriptor failed; the relay keeps running and retries",
					zap.Error(err), zap.Duration("retry_in", backoff))
				timer = p.clock.NewTimer(p.clock.Now().Add(backoff))
				retry = timer.C()
			}
		}
		select {
		case <-ctx.Done():
		case <-kick:
		case <-retry:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// post uploads desc to one authority with dirclient.Publish.
func (p *publisher) post(ctx context.Context, a Authority, desc []byte) error {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	res := dirclient.Publish(ctx, p.client, []dirclient.Authority{{ID: a.ID, Addr: a.Addr}}, desc)
	return res[a.ID]
}
