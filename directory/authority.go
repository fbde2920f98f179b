package directory

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

// Errors a caller may branch on.
var (
	// ErrNotListed: this authority's key is not in its own authorities list.
	ErrNotListed = errors.New("directory: this authority's ID is not in the authorities list")
)

// peer is one configured authority.
type peer struct {
	name string
	id   layercrypt.RelayID
	base string // http://host:port
}

// heldDesc is a descriptor and the exact bytes it was uploaded as.
type heldDesc struct {
	d   *netdoc.Descriptor
	raw []byte
}

// heldVote is a verified vote and its exact bytes.
type heldVote struct {
	v   *netdoc.Vote
	raw []byte
}

// reachResult is what the reachability tests of one relay address found.
type reachResult struct {
	addr   netip.AddrPort // the address tested
	lastOK time.Time      // when a test last succeeded; zero if none did
	tested time.Time      // when the last test ended
}

// round is the voting round for the consensus that becomes valid at va.
// Its fields are guarded by Authority.mu, except period and late, which
// runRound sets before the round's steps and only the goroutine running
// the rounds reads.
type round struct {
	va        time.Time
	period    time.Duration // the schedule's period: the round is [va-period, va), its steps eighths of it
	votes     map[layercrypt.RelayID]heldVote
	cons      *netdoc.Consensus // computed consensus, with the signatures collected; nil before
	body      []byte            // cons.Body()
	early     map[layercrypt.RelayID]netdoc.Signature
	failed    bool // the consensus could not be computed
	published bool
	given     bool // gave up publishing (counted as a failure)
	recovered bool // fetched the other authorities' consensus after this round failed
	late      bool // this authority joined the round after its voting closed
}

// phase returns the time of step eighths/8 of r (see the constants below).
func (r *round) phase(eighths int) time.Time { return phaseTime(r.va, r.period, eighths) }

// phaseTime returns the time of step eighths/8 of the round of the given
// period whose consensus becomes valid at va.
func phaseTime(va time.Time, period time.Duration, eighths int) time.Time {
	return va.Add(-period).Add(period * time.Duration(eighths) / 8)
}

// Authority is a directory authority: it takes relay descriptors, tests
// relays' reachability, votes, computes and signs the consensus with the
// other authorities, and serves it.
type Authority struct {
	log          *zap.Logger
	unsafe       bool
	key          *layercrypt.IdentityKey
	id           layercrypt.RelayID
	name         string
	auths        []layercrypt.RelayID // every configured authority, this one included
	peers        []peer               // the other authorities
	period       time.Duration        // the voting period
	initial      time.Duration        // the initial voting period, while no usable consensus is held; == period if none
	flags        netdoc.FlagParams
	descLimits   netdoc.DescriptorLimits
	maxDescs     int
	reqTimeout   time.Duration // one request to another authority
	readTimeout  time.Duration // the HTTP server's body read bound
	reachTimeout time.Duration
	store        *store
	m            *metrics
	hc           *http.Client
	ln           net.Listener
	now          func() time.Time
	sem          chan struct{}           // bounds concurrent reachability tests
	toTest       chan layercrypt.RelayID // relays to test after an upload

	started   time.Time // when Run started
	runOnce   sync.Once
	closeOnce sync.Once

	mu         sync.Mutex // guards the following
	descs      map[layercrypt.RelayID]heldDesc
	reach      map[layercrypt.RelayID]reachResult
	rounds     map[int64]*round // by valid-after, Unix seconds
	current    *netdoc.Consensus
	currentRaw []byte
}

// New loads (or creates) the authority's key and state from cfg.DataDir
// and opens its listener; Run serves and votes. cfg is completed in place
// (Complete). Descriptors, votes and the last consensus stored by a
// previous run are served at once.
func New(cfg *Config, logger *zap.Logger) (*Authority, error) {
	if err := cfg.Complete(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	key, created, err := LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a := &Authority{
		log:     logger,
		unsafe:  cfg.Log.UnsafeLogging,
		key:     key,
		id:      key.ID(),
		name:    cfg.Nickname,
		period:  cfg.VotingPeriod,
		initial: cfg.InitialVotingPeriod,
		flags:   cfg.FlagParams(),
		now:     time.Now,
		descs:   make(map[layercrypt.RelayID]heldDesc),
		reach:   make(map[layercrypt.RelayID]reachResult),
		rounds:  make(map[int64]*round),
		sem:     make(chan struct{}, cfg.Reachability.Concurrency),
		toTest:  make(chan layercrypt.RelayID, 256),
	}
	if created {
		logger.Info("created a new identity key; put its ID in every authority's and client's authorities list",
			zap.String("id", a.id.String()))
	}
	listed := false
	for _, p := range cfg.peers() {
		a.auths = append(a.auths, p.id)
		if p.id == a.id {
			listed = true
			continue
		}
		a.peers = append(a.peers, p)
	}
	if !listed {
		return nil, fmt.Errorf("%w: the key in %s has ID %s; add it (with this authority's address) to the authorities of every authority's config",
			ErrNotListed, cfg.DataDir, a.id)
	}
	a.descLimits = netdoc.DescriptorLimits{MaxAge: a.flags.MaxDescriptorAge, MaxFuture: netdoc.DefaultDescriptorMaxFuture}
	if a.descLimits.MaxAge <= 0 {
		a.descLimits.MaxAge = netdoc.DefaultDescriptorMaxAge
	}
	a.maxDescs = cfg.MaxDescriptors
	a.reqTimeout = min(cfg.RequestTimeout, a.period/8)
	a.readTimeout = cfg.RequestTimeout
	a.reachTimeout = min(cfg.Reachability.Timeout, a.period/2)
	a.hc = &http.Client{Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true, // a few requests per period; no idle connections to leak
	}}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if a.m, err = newMetrics(reg); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if a.store, err = openStore(cfg.DataDir); err != nil {
		return nil, err
	}
	a.loadState()
	if cfg.Listener != nil {
		a.ln = cfg.Listener
	} else if a.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return a, nil
}

// ID returns the authority's identity.
func (a *Authority) ID() layercrypt.RelayID { return a.id }

// Addr returns the address the HTTP API listens on.
func (a *Authority) Addr() net.Addr { return a.ln.Addr() }

// Consensus returns the consensus being served (nil if none), with the
// signatures collected so far. Treat it as read-only.
func (a *Authority) Consensus() *netdoc.Consensus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}

// Close releases the listener of an authority whose Run was never called.
// Run closes it itself.
func (a *Authority) Close() error {
	var err error
	a.closeOnce.Do(func() { err = a.ln.Close() })
	return err
}

// loadState reads what a previous run stored. Unreadable or expired files
// are logged and removed: they would be refused if uploaded again.
func (a *Authority) loadState() {
	now := a.now()
	descs, err := a.store.readDir(descDir, ".desc")
	if err != nil {
		a.log.Warn("could not read stored descriptors", zap.Error(err))
	}
	for name, b := range descs {
		d, err := netdoc.ParseDescriptorWithLimits(b, now, netdoc.DescriptorLimits{MaxAge: a.descLimits.MaxAge, MaxFuture: 24 * time.Hour})
		if err == nil && name != hex.EncodeToString(d.ID[:])+".desc" {
			err = fmt.Errorf("file name does not match the relay ID %s", d.ID)
		}
		if err != nil {
			a.log.Info("dropping a stored descriptor", zap.String("file", name), zap.Error(err))
			a.store.removeFile(descDir, name)
			continue
		}
		if len(a.descs) < a.maxDescs {
			a.descs[d.ID] = heldDesc{d: d, raw: b}
		}
	}
	loadedVotes := 0
	votes, err := a.store.readDir(voteDir, ".vote")
	if err != nil {
		a.log.Warn("could not read stored votes", zap.Error(err))
	}
	for name, b := range votes {
		v, err := netdoc.ParseVote(b, a.auths, now)
		if err == nil && name != fmt.Sprintf("%d-%s.vote", v.ValidAfter.Unix(), hex.EncodeToString(v.Authority[:])) {
			err = errors.New("file name does not match the vote")
		}
		if err != nil {
			a.log.Debug("dropping a stored vote", zap.String("file", name), zap.Error(err))
			a.store.removeFile(voteDir, name)
			continue
		}
		a.roundLocked(v.ValidAfter).votes[v.Authority] = heldVote{v: v, raw: b}
		loadedVotes++
	}
	if b, err := readFileIfExists(a.store.consensusPath()); err != nil {
		a.log.Warn("could not read the stored consensus", zap.Error(err))
	} else if b != nil {
		c, err := netdoc.ParseConsensusUnverified(b)
		if err == nil {
			_, err = c.CheckSignatures(a.auths)
		}
		if err != nil {
			a.log.Warn("not serving the stored consensus", zap.Error(err))
		} else {
			a.setCurrentLocked(c, b)
			a.log.Info("serving the stored consensus", zap.Time("valid_after", c.ValidAfter),
				zap.Int("relays", len(c.Relays)), zap.Int("signatures", len(c.Signatures)))
		}
	}
	a.m.descriptorsHeld.Set(float64(len(a.descs)))
	if len(a.descs) > 0 || loadedVotes > 0 {
		a.log.Info("loaded stored state", zap.Int("descriptors", len(a.descs)), zap.Int("votes", loadedVotes))
	}
}

// roundLocked returns the round for va, creating it.
func (a *Authority) roundLocked(va time.Time) *round {
	r := a.rounds[va.Unix()]
	if r == nil {
		r = &round{va: va.UTC(), votes: make(map[layercrypt.RelayID]heldVote), early: make(map[layercrypt.RelayID]netdoc.Signature)}
		a.rounds[va.Unix()] = r
	}
	return r
}

// setCurrentLocked makes c (encoded as raw) the consensus served.
func (a *Authority) setCurrentLocked(c *netdoc.Consensus, raw []byte) {
	a.current, a.currentRaw = c, raw
	a.m.consensusSignatures.Set(float64(len(c.Signatures)))
	a.m.consensusRelays.Set(float64(len(c.Relays)))
	a.m.consensusValidAfter.Set(float64(c.ValidAfter.Unix()))
}

// Run serves the HTTP API and takes part in every voting round until ctx
// ends, then shuts the server down and returns nil. It may be called once.
func (a *Authority) Run(ctx context.Context) error {
	err := errors.New("directory: Run called twice")
	a.runOnce.Do(func() { err = a.run(ctx) })
	return err
}

func (a *Authority) run(ctx context.Context) error {
	a.started = a.now()
	errLog := log.New(io.Discard, "", 0)
	if a.unsafe {
		errLog = zap.NewStdLog(a.log.Named("http"))
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       a.readTimeout,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errLog,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(3)
	go func() {
		defer wg.Done()
		a.reachLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		if err := srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		a.testUploads(ctx)
	}()
	a.log.Info("directory authority running", zap.String("nickname", a.name), zap.String("id", a.id.String()),
		zap.Int("authorities", len(a.auths)), zap.Duration("voting_period", a.period),
		zap.Duration("initial_voting_period", a.initial))

	var prev *round
	var last time.Duration
	for ctx.Err() == nil {
		now := a.now()
		p := a.schedule(now)
		if p != last && a.initial != a.period {
			if p == a.initial {
				a.log.Info("voting on the initial schedule until a usable consensus is held", zap.Duration("period", p))
			} else {
				a.log.Info("holding a usable consensus: voting on the normal schedule", zap.Duration("period", p))
			}
		}
		last = p
		prev = a.runRound(ctx, netdoc.PeriodStart(now, p).Add(p), p, prev)
	}

	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	srv.Shutdown(sctx)
	a.closeOnce.Do(func() {}) // Serve closed the listener
	wg.Wait()
	a.hc.CloseIdleConnections()
	a.log.Info("directory authority stopped")
	select {
	case err := <-serveErr:
		return fmt.Errorf("directory: HTTP server: %w", err)
	default:
		return nil
	}
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sleepUntil waits until t or ctx's end; it reports whether t came.
func (a *Authority) sleepUntil(ctx context.Context, t time.Time) bool {
	d := t.Sub(a.now())
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// schedule returns the period of the voting schedule this authority is on
// at now: the initial voting period while the consensus it holds is not
// usable (netdoc.Consensus.Usable: none, expired, or too few Running
// relays), the voting period once it is. Consensuses made on either
// schedule carry the voting period and its fresh-until and valid-until,
// so the first normal round, at most two voting periods after the switch,
// comes well inside the validity of the last initial consensus.
func (a *Authority) schedule(now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.scheduleLocked(now)
}

func (a *Authority) scheduleLocked(now time.Time) time.Duration {
	if a.initial == a.period || a.current != nil && a.current.Usable(now) == nil {
		return a.period
	}
	return a.initial
}

// scheduleName describes the schedule of period p in messages.
func (a *Authority) scheduleName(p time.Duration) string {
	if p == a.period {
		return fmt.Sprintf("its normal schedule (voting_period %s)", p)
	}
	return fmt.Sprintf("its initial schedule (initial_voting_period %s, until it holds a usable consensus)", p)
}

// roundTimeout bounds one request to another authority during r.
func (a *Authority) roundTimeout(r *round) time.Duration { return min(a.reqTimeout, r.period/8) }

// The round's timeline, in eighths of the voting period after its start
// s = va - period (see the package documentation):
const (
	phaseVote        = 2 // vote, signed and pushed to every authority
	phaseFetchVotes  = 3 // fetch votes still missing from their authors
	phaseCloseVoting = 4 // stop taking votes; fetch missing votes from every authority
	phaseCompute     = 5 // compute the consensus, sign it, push the signature
	phaseFetchSigs1  = 6 // fetch missing signatures
	phaseFetchSigs2  = 7 // and again
	// 8 = va: publish if signed by a majority.
	phaseLatePublish = 9 // (in the next period) last try for a consensus that lacked signatures
)

// runRound takes part in the round of the given period for the consensus
// valid after va, from wherever in it the authority is now, and returns
// the round at va. The previous round, prev, if it lacked signatures at
// its valid-after, gets a last try at its phaseLatePublish. A round that
// fails while the authority holds no usable consensus makes it fetch the
// consensus of the other authorities (recoverConsensus).
func (a *Authority) runRound(ctx context.Context, va time.Time, period time.Duration, prev *round) *round {
	s := va.Add(-period)
	a.mu.Lock()
	r := a.roundLocked(va)
	r.period = period
	r.late = !a.now().Before(r.phase(phaseCloseVoting))
	// Rounds are kept one voting period after their consensus was due,
	// for late signatures and for anyone still asking for their votes.
	for k, old := range a.rounds {
		if old.va.Before(s.Add(-a.period)) {
			delete(a.rounds, k)
		}
	}
	a.mu.Unlock()
	if err := a.store.pruneVotes(s.Add(-a.period)); err != nil {
		a.log.Warn("could not prune stored votes", zap.Error(err))
	}

	if a.now().Before(r.phase(phaseCloseVoting)) && !a.hasVote(r, a.id) {
		if !a.sleepUntil(ctx, r.phase(phaseVote)) {
			return r
		}
		if a.now().Before(r.phase(phaseCloseVoting)) {
			a.vote(ctx, r)
		}
	}
	if prev != nil && prev != r {
		a.lastTry(ctx, prev)
	}
	if a.now().Before(r.phase(phaseCloseVoting)) {
		if !a.sleepUntil(ctx, r.phase(phaseFetchVotes)) {
			return r
		}
		a.fetchVotes(ctx, r, false, r.phase(phaseCloseVoting))
	}
	if !a.sleepUntil(ctx, r.phase(phaseCloseVoting)) {
		return r
	}
	// Twice: the second pass picks up votes that an authority whose clock
	// is a little behind took after this one's first pass asked it.
	second := r.phase(phaseCloseVoting).Add(period / 16)
	a.fetchVotes(ctx, r, true, laterOf(second, a.now().Add(period/16)))
	if !a.sleepUntil(ctx, second) {
		return r
	}
	a.fetchVotes(ctx, r, true, laterOf(r.phase(phaseCompute), a.now().Add(period/16)))
	if !a.sleepUntil(ctx, r.phase(phaseCompute)) {
		return r
	}
	a.compute(ctx, r)
	a.recoverIfFailed(ctx, r)
	for _, p := range []int{phaseFetchSigs1, phaseFetchSigs2} {
		if !a.sleepUntil(ctx, r.phase(p)) {
			return r
		}
		a.fetchSignatures(ctx, r)
	}
	if !a.sleepUntil(ctx, va) {
		return r
	}
	a.mu.Lock()
	a.tryPublishLocked(r)
	a.mu.Unlock()
	a.recoverIfFailed(ctx, r)
	return r
}

// lastTry gives a consensus that lacked signatures at its valid-after one
// more round of signature fetching, then gives up on it.
func (a *Authority) lastTry(ctx context.Context, r *round) {
	a.mu.Lock()
	pending := r.cons != nil && !r.published && !r.given
	a.mu.Unlock()
	if !pending {
		return
	}
	if !a.sleepUntil(ctx, r.phase(phaseLatePublish)) {
		return
	}
	a.fetchSignatures(ctx, r)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tryPublishLocked(r)
	if !r.published && !r.given {
		r.given = true
		a.m.consensusFailures.WithLabelValues("signatures").Inc()
		a.log.Warn("no consensus published for this period: not enough authorities signed the same consensus; clients keep the previous one",
			zap.Time("valid_after", r.va), zap.Int("signatures", len(r.cons.Signatures)), zap.Int("needed", len(a.auths)/2+1))
	}
}

func (a *Authority) hasVote(r *round, id layercrypt.RelayID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := r.votes[id]
	return ok
}

// vote builds, signs, stores and pushes this authority's vote.
func (a *Authority) vote(ctx context.Context, r *round) {
	now := a.now()
	a.mu.Lock()
	descs := make([]*netdoc.Descriptor, 0, len(a.descs))
	reachable := make(map[layercrypt.RelayID]bool, len(a.descs))
	for id, h := range a.descs {
		descs = append(descs, h.d)
		reachable[id] = a.reachableLocked(h, now)
	}
	a.mu.Unlock()
	entries, err := netdoc.AssignFlags(descs, reachable, now, a.flags)
	if err != nil {
		a.log.Error("could not assign flags; not voting this period", zap.Error(err))
		return
	}
	fu, vu := netdoc.PeriodTimes(r.va, a.period)
	v := &netdoc.Vote{
		Authority:        a.id,
		ConsensusMethods: netdoc.SupportedConsensusMethods,
		ValidAfter:       r.va,
		FreshUntil:       fu,
		ValidUntil:       vu,
		VotingPeriod:     a.period,
		KnownFlags:       netdoc.AllFlags,
		Relays:           entries,
	}
	raw, err := v.Sign(a.key)
	if err != nil {
		a.log.Error("could not sign the vote; not voting this period", zap.Error(err))
		return
	}
	// Stored before it leaves: after a restart the authority serves this
	// vote instead of making a second, different one.
	if status, msg := a.addVote(r, heldVote{v: v, raw: raw}, ""); status != http.StatusOK {
		a.log.Error("could not keep the vote; not voting this period", zap.String("reason", msg))
		return
	}
	running := 0
	for i := range entries {
		if entries[i].Flags.Has(netdoc.FlagRunning) {
			running++
		}
	}
	a.log.Info("voted", zap.Time("valid_after", r.va), zap.Int("relays", len(entries)), zap.Int("running", running))
	a.broadcast(ctx, a.roundTimeout(r), "vote", func(p peer) (string, []byte) { return p.base + votePath, raw })
}
