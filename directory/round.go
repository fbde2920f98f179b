package directory

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

// addVote keeps a verified vote for r, storing it first. via names the
// authority it came from ("" for this authority's own vote, "push" for a
// POST). It returns the HTTP status and message for the sender.
func (a *Authority) addVote(r *round, hv heldVote, via string) (int, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := hv.v.Authority
	if old, ok := r.votes[id]; ok {
		if old.v.Digest() == hv.v.Digest() {
			if via != "" {
				a.m.votesReceived.WithLabelValues("duplicate").Inc()
			}
			return http.StatusOK, "accepted (already held)"
		}
		a.m.votesReceived.WithLabelValues("refused").Inc()
		a.log.Warn("an authority sent two different votes for one period; keeping the first",
			zap.String("authority", id.String()), zap.Time("valid_after", r.va))
		return http.StatusConflict, fmt.Sprintf("this authority already holds a different vote from %s for the period starting %s; an authority votes once per period",
			id, r.va.Format(time.RFC3339))
	}
	if err := a.store.putVote(r.va, id, hv.raw); err != nil {
		a.log.Error("could not store a vote", zap.Error(err))
		return http.StatusInternalServerError, "could not store the vote: " + err.Error()
	}
	r.votes[id] = hv
	switch via {
	case "":
	case "push":
		a.m.votesReceived.WithLabelValues("accepted").Inc()
	default:
		a.m.votesReceived.WithLabelValues("fetched").Inc()
	}
	a.m.votesHeld.Set(float64(len(r.votes)))
	a.log.Debug("vote held", zap.String("authority", id.Short()), zap.Time("valid_after", r.va), zap.String("via", via))
	return http.StatusOK, "accepted"
}

// fetchVotes asks for the votes of r that this authority lacks. Before the
// vote deadline (union false) it asks each missing authority for its own
// vote; after it (union true) it asks every other authority for every vote
// still missing, so that every authority ends up with every vote that any
// live authority held at the deadline. Requests stop at deadline.
func (a *Authority) fetchVotes(ctx context.Context, r *round, union bool, deadline time.Time) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	missing := func() []layercrypt.RelayID {
		a.mu.Lock()
		defer a.mu.Unlock()
		var out []layercrypt.RelayID
		for _, id := range a.auths {
			if _, ok := r.votes[id]; !ok {
				out = append(out, id)
			}
		}
		return out
	}
	if len(missing()) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, p := range a.peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, want := range missing() {
				if !union && want != p.id || a.hasVote(r, want) {
					continue
				}
				u := p.base + votePath + "/" + strconv.FormatInt(r.va.Unix(), 10)
				if want != p.id {
					u += "?authority=" + url.QueryEscape(want.String())
				}
				b, status, err := a.get(ctx, u, netdoc.MaxVoteSize)
				if err != nil || status != http.StatusOK {
					a.log.Debug("vote fetch failed", zap.String("from", p.name), zap.String("authority", want.Short()),
						zap.Int("status", status), zap.Error(err))
					if err != nil {
						return // the peer is down: asking it for the next vote would wait again
					}
					continue
				}
				v, err := netdoc.ParseVote(b, a.auths, a.now())
				if err == nil && (v.Authority != want || !v.ValidAfter.Equal(r.va)) {
					err = fmt.Errorf("asked for the vote of %s for %s, got one of %s for %s", want, r.va, v.Authority, v.ValidAfter)
				}
				if err != nil {
					a.m.votesReceived.WithLabelValues("refused").Inc()
					a.log.Warn("refused a fetched vote", zap.String("from", p.name), zap.Error(err))
					continue
				}
				a.addVote(r, heldVote{v: v, raw: b}, p.name)
			}
		}()
	}
	wg.Wait()
}

// compute computes, signs and pushes the consensus of r from the votes
// held, once.
func (a *Authority) compute(ctx context.Context, r *round) {
	a.mu.Lock()
	if r.cons != nil || r.failed {
		a.mu.Unlock()
		return
	}
	votes := make([]*netdoc.Vote, 0, len(r.votes))
	for _, hv := range r.votes {
		votes = append(votes, hv.v)
	}
	a.mu.Unlock()
	cons, err := netdoc.ComputeConsensus(votes, a.auths)
	if err != nil {
		a.mu.Lock()
		r.failed = true
		a.mu.Unlock()
		if len(votes) == 0 && r.va.Add(-r.period).Before(a.started) {
			a.log.Info("started during this voting round, too late to take part in it", zap.Time("valid_after", r.va))
			return
		}
		if len(votes) == 0 && r.late {
			// Joined after voting closed (on switching schedules), and
			// no other authority had votes for this round either.
			a.log.Info("joined this voting round after it closed; no votes to compute from", zap.Time("valid_after", r.va))
			return
		}
		a.m.consensusFailures.WithLabelValues("votes").Inc()
		a.log.Warn("no consensus for this period; clients keep the previous one",
			zap.Time("valid_after", r.va), zap.Int("votes", len(votes)), zap.Int("authorities", len(a.auths)), zap.Error(err))
		return
	}
	body := cons.Body()
	own := netdoc.SignConsensus(body, a.key)
	if err := cons.AddSignature(own); err != nil {
		a.log.Error("could not sign the consensus", zap.Error(err))
		return
	}
	a.mu.Lock()
	r.cons, r.body = cons, body
	for id, s := range r.early {
		a.addSignatureLocked(r, s, "early push from "+id.Short())
	}
	clear(r.early)
	a.mu.Unlock()
	a.log.Info("computed the consensus", zap.Time("valid_after", r.va), zap.Int("votes", len(votes)),
		zap.Int("relays", len(cons.Relays)), zap.String("digest", cons.Digest().String()))
	line := own.Line()
	a.broadcast(ctx, a.roundTimeout(r), "signature", func(p peer) (string, []byte) {
		return p.base + signaturePath + "/" + strconv.FormatInt(r.va.Unix(), 10), line
	})
}

// recoverIfFailed runs recoverConsensus once for r if r failed (no
// consensus computed, or none published at its valid-after) while this
// authority holds no usable consensus.
func (a *Authority) recoverIfFailed(ctx context.Context, r *round) {
	now := a.now()
	a.mu.Lock()
	failed := r.failed || !r.published && !now.Before(r.va)
	usable := a.current != nil && a.current.Usable(now) == nil
	try := failed && !usable && !r.recovered
	if try {
		r.recovered = true
	}
	a.mu.Unlock()
	if try {
		a.recoverConsensus(ctx, r)
	}
}

// recoverConsensus fetches the consensus each other authority serves
// (GET /chive/v1/consensus), and serves and stores the newest one that
// verifies (signed by more than half of the configured authorities and
// valid now) if it is newer than the one this authority holds. An
// authority whose round failed for lack of votes or signatures, because
// the others are on another schedule (it restarted with an empty data
// directory, or was down while they moved to the normal schedule), thus
// rejoins them: once the adopted consensus is usable it votes on the
// normal schedule. Requests are bounded by the round's request timeout.
func (a *Authority) recoverConsensus(ctx context.Context, r *round) {
	ctx, cancel := context.WithTimeout(ctx, a.roundTimeout(r))
	defer cancel()
	var (
		mu      sync.Mutex // guards the following
		best    *netdoc.Consensus
		bestRaw []byte
		from    string
	)
	var wg sync.WaitGroup
	for _, p := range a.peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, status, err := a.get(ctx, p.base+consensusPath, netdoc.MaxConsensusSize)
			if err != nil || status != http.StatusOK {
				a.log.Debug("consensus fetch failed", zap.String("from", p.name), zap.Int("status", status), zap.Error(err))
				return
			}
			c, err := netdoc.ParseConsensus(b, a.auths, a.now())
			if err != nil {
				a.log.Warn("refused the consensus another authority serves", zap.String("from", p.name), zap.Error(err))
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if best == nil || c.ValidAfter.After(best.ValidAfter) {
				best, bestRaw, from = c, b, p.name
			}
		}()
	}
	wg.Wait()
	if best == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.current != nil && !best.ValidAfter.After(a.current.ValidAfter) {
		return
	}
	a.setCurrentLocked(best, bestRaw)
	if err := a.store.putConsensus(bestRaw); err != nil {
		a.log.Error("could not store the consensus", zap.Error(err))
	}
	usable := best.Usable(a.now())
	a.log.Info("this authority's round failed; serving the consensus of the other authorities", zap.String("from", from),
		zap.Time("valid_after", best.ValidAfter), zap.Int("relays", len(best.Relays)),
		zap.Int("signatures", len(best.Signatures)), zap.Bool("usable", usable == nil))
}

// addSignatureLocked adds a signature from another authority to r's
// consensus if it verifies over r's body; via says where it came from.
// It returns the HTTP status and message for the sender.
func (a *Authority) addSignatureLocked(r *round, s netdoc.Signature, via string) (int, string) {
	if !slices.Contains(a.auths, s.Authority) {
		a.m.signaturesReceived.WithLabelValues("refused").Inc()
		return http.StatusBadRequest, fmt.Sprintf("signature from %s, which is not a configured authority", s.Authority)
	}
	for _, have := range r.cons.Signatures {
		if have.Authority == s.Authority {
			if have == s {
				return http.StatusOK, "accepted (already held)"
			}
			a.m.signaturesReceived.WithLabelValues("refused").Inc()
			return http.StatusConflict, fmt.Sprintf("already holding a different valid signature from %s", s.Authority)
		}
	}
	if !s.Verify(r.body) {
		a.m.signaturesReceived.WithLabelValues("mismatch").Inc()
		d := netdoc.ConsensusDigest(r.body)
		a.log.Warn("an authority's signature does not match this authority's consensus: the two computed different documents",
			zap.String("authority", s.Authority.String()), zap.Time("valid_after", r.va), zap.String("digest", d.String()), zap.String("via", via))
		return http.StatusBadRequest, fmt.Sprintf("signature from %s does not verify over this authority's consensus for %s (digest %s): the authorities computed different consensuses",
			s.Authority, r.va.Format(time.RFC3339), d)
	}
	if err := r.cons.AddSignature(s); err != nil {
		return http.StatusConflict, err.Error()
	}
	a.m.signaturesReceived.WithLabelValues("accepted").Inc()
	a.log.Debug("signature added", zap.String("authority", s.Authority.Short()), zap.Time("valid_after", r.va), zap.String("via", via))
	if r.published && a.current == r.cons {
		a.publishLocked(r, false)
	} else {
		a.tryPublishLocked(r)
	}
	return http.StatusOK, "accepted"
}

// fetchSignatures asks every authority whose signature r's consensus lacks
// for the signatures it holds (its own and any others it collected).
func (a *Authority) fetchSignatures(ctx context.Context, r *round) {
	ctx, cancel := context.WithTimeout(ctx, a.roundTimeout(r))
	defer cancel()
	a.mu.Lock()
	if r.cons == nil {
		a.mu.Unlock()
		return
	}
	var ask []peer
	for _, p := range a.peers {
		if !slices.ContainsFunc(r.cons.Signatures, func(s netdoc.Signature) bool { return s.Authority == p.id }) {
			ask = append(ask, p)
		}
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ask {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, status, err := a.get(ctx, p.base+signaturesPath+"/"+strconv.FormatInt(r.va.Unix(), 10), 64<<10)
			if err != nil || status != http.StatusOK {
				a.log.Debug("signature fetch failed", zap.String("from", p.name), zap.Int("status", status), zap.Error(err))
				return
			}
			for line := range bytes.Lines(b) {
				s, err := netdoc.ParseSignatureLine(line)
				if err != nil {
					a.log.Warn("malformed signature line from an authority", zap.String("from", p.name), zap.Error(err))
					return
				}
				a.mu.Lock()
				a.addSignatureLocked(r, s, "fetched from "+p.name)
				a.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// tryPublishLocked serves r's consensus once it is valid (now >= va) and
// signed by more than half of the authorities.
func (a *Authority) tryPublishLocked(r *round) {
	if r.cons == nil || r.published || a.now().Before(r.va) {
		return
	}
	if rep, _ := r.cons.CheckSignatures(a.auths); !rep.OK() {
		a.log.Debug("consensus not yet signed by a majority", zap.Time("valid_after", r.va),
			zap.Int("valid", len(rep.Valid)), zap.Int("needed", rep.Needed))
		return
	}
	if a.current != nil && !r.va.After(a.current.ValidAfter) {
		return // never replace a newer consensus
	}
	a.publishLocked(r, true)
}

// publishLocked serves r's consensus (first: for the first time) and
// stores it.
func (a *Authority) publishLocked(r *round, first bool) {
	raw := r.cons.Encode()
	r.published = true
	a.setCurrentLocked(r.cons, raw)
	if err := a.store.putConsensus(raw); err != nil {
		a.log.Error("could not store the consensus", zap.Error(err))
	}
	if first {
		a.m.consensusPublished.Inc()
		a.log.Info("published the consensus", zap.Time("valid_after", r.va), zap.Int("relays", len(r.cons.Relays)),
			zap.Int("signatures", len(r.cons.Signatures)), zap.String("digest", netdoc.ConsensusDigest(r.body).String()))
	}
}

// broadcast POSTs a document to every other authority at once, each
// request bounded by timeout, and logs refusals.
func (a *Authority) broadcast(ctx context.Context, timeout time.Duration, what string, req func(peer) (string, []byte)) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range a.peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, body := req(p)
			status, msg, err := a.post(ctx, u, body)
			switch {
			case err != nil:
				a.log.Debug("push failed", zap.String("what", what), zap.String("to", p.name), zap.Error(err))
			case status/100 != 2:
				a.log.Warn("an authority refused this authority's "+what, zap.String("authority", p.name),
					zap.Int("status", status), zap.String("reason", msg))
			}
		}()
	}
	wg.Wait()
}

// get fetches u, reading at most limit bytes.
func (a *Authority) get(ctx context.Context, u string, limit int64) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, a.reqTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if int64(len(b)) > limit {
		return nil, resp.StatusCode, fmt.Errorf("answer larger than %d bytes", limit)
	}
	return b, resp.StatusCode, nil
}

// post sends body to u and returns the status and the first line of the
// answer.
func (a *Authority) post(ctx context.Context, u string, body []byte) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, a.reqTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return resp.StatusCode, string(line), nil
}
