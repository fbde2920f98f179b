package onionproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/chive-net/chive/cell"
	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/netdoc"
)

// Errors of the circuit manager.
var (
	// ErrNoConsensus: there is no valid consensus, so no circuit can be
	// built. The error text says why (the bootstrap's last error).
	ErrNoConsensus = errors.New("onionproxy: no valid consensus")
	// ErrStreamTimeout: no exit answered a stream request in time, on
	// any of the circuits tried.
	ErrStreamTimeout = errors.New("onionproxy: stream timed out")
	// ErrTooManyCircuits: circuits.max_circuits circuits are open.
	ErrTooManyCircuits = errors.New("onionproxy: too many circuits open")
	// ErrClosed: the proxy is shutting down.
	ErrClosed = errors.New("onionproxy: closed")
)

// preemptivePorts are the ports clean circuits' exits should allow when
// some exit allows them all.
var preemptivePorts = []uint16{80, 443}

// circ is one circuit the manager holds.
type circ struct {
	id    uint64 // local number, for the status page
	c     *circuit.Circuit
	lk    *link.Link // the link to the guard it runs on
	path  []*netdoc.ConsensusEntry
	class uint8
	gen   uint64 // identity generation it was built in

	// The following are guarded by circManager.mu.
	key        string        // isolation key; "" while clean
	group      int           // status-page number of key (0 while clean)
	dirtySince time.Time     // first stream; zero while unused
	active     int           // open streams
	padAfter   time.Duration // idle time after which a DROP is sent
	retired    string        // why it takes no new streams; "" if it does
	closing    bool
}

func (c *circ) exit() *netdoc.ConsensusEntry { return c.path[len(c.path)-1] }

// pendingBuild is a circuit being built; streams that it suits wait for it.
type pendingBuild struct {
	key   string // guarded by circManager.mu: a clean build is claimed by setting it
	class uint8
	gen   uint64
	exit  *netdoc.ConsensusEntry
	done  chan struct{}
	c     *circ // set before done closes, nil on failure
	err   error
}

// circDeps are the circuit manager's edges.
type circDeps struct {
	cfg             CircuitsConfig
	distinctSubnets bool
	links           circuit.LinkDialer
	guards          *guardSet
	sel             *selector
	// consensus returns the current valid consensus, or nil.
	consensus func() *netdoc.Consensus
	// waitConsensus returns nil once there is a consensus, or why not.
	waitConsensus func(ctx context.Context) error
	m             *metrics
	log           *zap.Logger
	now           func() time.Time
	classes       []uint8 // delay classes to keep clean circuits for
	onBuilt       func()  // called after each successful build; may be nil
}

// circManager keeps clean circuits ready, hands circuits to streams by
// isolation key, retires circuits that are too dirty, and retries streams
// whose circuit failed.
type circManager struct {
	circDeps

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}
	// refillArmed: a delayed kick (claimedCleanLocked) is pending.
	refillArmed atomic.Bool
	kicks       atomic.Int64 // kick calls, for tests

	mu          sync.Mutex // guards the following fields and circ's mutable ones
	circs       []*circ
	pending     []*pendingBuild
	gen         uint64
	nextID      uint64
	groups      map[string]int
	nextGroup   int
	relayFail   map[layercrypt.RelayID]time.Time // avoid until
	preFails    int
	nextPreempt time.Time
	lastErr     error // the last build failure, or why none could start
	closed      bool
}

// lastError says why the last circuit build failed, for a person.
func (m *circManager) lastError() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastErr == nil {
		return "no circuit built yet"
	}
	return "the last circuit build failed: " + m.lastErr.Error()
}

func newCircManager(d circDeps) *circManager {
	ctx, cancel := context.WithCancel(context.Background())
	m := &circManager{
		circDeps:  d,
		ctx:       ctx,
		cancel:    cancel,
		wake:      make(chan struct{}, 1),
		groups:    make(map[string]int),
		relayFail: make(map[layercrypt.RelayID]time.Time),
	}
	return m
}

// start runs the maintenance loop.
func (m *circManager) start() {
	m.wg.Add(1)
	go m.run()
}

// kick asks the maintenance loop to run soon.
func (m *circManager) kick() {
	m.kicks.Add(1)
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

const maintainEvery = time.Second

// refillDelay is how long the replacement of a clean circuit that a stream
// has just claimed waits while another clean circuit of the class is still
// ready, so that the stream's first round trips do not compete for the CPU
// with the replacement's handshakes (three at the client, one at each relay).
const refillDelay = 100 * time.Millisecond

// claimedCleanLocked starts the replacement of a clean circuit (or build) of
// class that a stream has just claimed: at once if none of the class is
// left, else after refillDelay.
func (m *circManager) claimedCleanLocked(class uint8, now time.Time) {
	spare := slices.ContainsFunc(m.circs, func(c *circ) bool {
		return c.key == "" && c.class == class && m.usableLocked(c, now)
	}) || slices.ContainsFunc(m.pending, func(p *pendingBuild) bool {
		return p.key == "" && p.class == class && p.gen == m.gen
	})
	if !spare {
		m.kick()
		return
	}
	if m.refillArmed.CompareAndSwap(false, true) {
		time.AfterFunc(refillDelay, func() {
			m.refillArmed.Store(false)
			m.kick()
		})
	}
}

func (m *circManager) run() {
	defer m.wg.Done()
	t := time.NewTicker(maintainEvery)
	defer t.Stop()
	for {
		m.maintain()
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		case <-m.wake:
		}
	}
}

// usableLocked reports whether c may take a new stream now.
func (m *circManager) usableLocked(c *circ, now time.Time) bool {
	if c.closing || c.retired != "" || c.gen != m.gen || c.c.Err() != nil || (c.lk != nil && c.lk.IsClosed()) {
		return false
	}
	if !c.dirtySince.IsZero() && now.Sub(c.dirtySince) > m.cfg.MaxDirtiness {
		c.retired = "dirty"
		return false
	}
	return true
}

// maintain closes idle circuits that take no new streams and starts builds
// of clean circuits until each class in use has cfg.Preemptive of them.
func (m *circManager) maintain() {
	now := m.now()
	var toClose []*circ
	var reasons []string
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	for _, c := range m.circs {
		if c.closing || c.active > 0 {
			continue
		}
		reason := ""
		switch {
		case !m.usableLocked(c, now):
			reason = c.retired
			if reason == "" {
				reason = "newnym"
			}
		case c.dirtySince.IsZero() && now.Sub(c.c.Created()) > m.cfg.CleanMaxAge:
			reason = "idle"
		}
		if reason != "" && c.c.Err() == nil {
			c.closing = true
			toClose = append(toClose, c)
			reasons = append(reasons, reason)
		}
	}
	var toPad []*circ
	if m.cfg.PaddingMax > 0 {
		for _, c := range m.circs {
			if c.closing || c.c.Err() != nil {
				continue
			}
			if c.padAfter == 0 {
				c.padAfter = m.paddingDelayLocked()
			}
			if now.Sub(c.c.LastSent()) >= c.padAfter {
				toPad = append(toPad, c)
				c.padAfter = m.paddingDelayLocked()
			}
		}
	}
	for id, until := range m.relayFail {
		if now.After(until) {
			delete(m.relayFail, id)
		}
	}
	if m.cfg.Preemptive > 0 && m.consensus() != nil && !now.Before(m.nextPreempt) {
	classes:
		for _, class := range m.classes {
			clean := 0
			for _, c := range m.circs {
				if c.key == "" && c.class == class && m.usableLocked(c, now) {
					clean++
				}
			}
			for _, p := range m.pending {
				if p.key == "" && p.class == class && p.gen == m.gen {
					clean++
				}
			}
			for ; clean < m.cfg.Preemptive; clean++ {
				if _, err := m.startBuildLocked("", pathSpec{class: class, prefer: preemptivePorts}); err != nil {
					m.lastErr = err
					m.log.Debug("no preemptive circuit", zap.Uint8("class", class), zap.Error(err))
					break classes
				}
			}
		}
	}
	m.mu.Unlock()
	for i, c := range toClose {
		m.closeCirc(c, reasons[i])
	}
	for _, c := range toPad {
		// Long-range padding to the last hop: it crosses every relay of the
		// circuit, which cannot tell it from data, and the exit drops it.
		if err := c.c.SendDrop(len(c.path) - 1); err == nil {
			m.m.dropCells.Inc()
		}
	}
}

// paddingDelayLocked draws the idle time before a circuit's next DROP.
func (m *circManager) paddingDelayLocked() time.Duration {
	return m.sel.durationIn(m.cfg.PaddingMin, m.cfg.PaddingMax)
}

func (m *circManager) closeCirc(c *circ, reason string) {
	m.m.circuitsClosed.WithLabelValues(reason).Inc()
	c.c.Close()
}

// findLocked returns a circuit for a stream: first one already bound to
// key, then a clean one of the class; both with an exit allowing port.
func (m *circManager) findLocked(key string, class uint8, port uint16, now time.Time) *circ {
	var best *circ
	for _, c := range m.circs {
		if c.key != key || c.class != class || !exitAllows(c.exit(), port) || !m.usableLocked(c, now) {
			continue
		}
		if best == nil || c.dirtySince.After(best.dirtySince) {
			best = c
		}
	}
	if best != nil {
		return best
	}
	for _, c := range m.circs {
		if c.key == "" && c.class == class && exitAllows(c.exit(), port) && m.usableLocked(c, now) {
			return c
		}
	}
	return nil
}

// findPendingLocked returns a build a stream may wait for, claiming a clean
// one for key.
func (m *circManager) findPendingLocked(key string, class uint8, port uint16) *pendingBuild {
	for _, p := range m.pending {
		if p.key == key && p.class == class && p.gen == m.gen && exitAllows(p.exit, port) {
			return p
		}
	}
	for _, p := range m.pending {
		if p.key == "" && p.class == class && p.gen == m.gen && exitAllows(p.exit, port) {
			p.key = key
			m.claimedCleanLocked(class, m.now()) // a clean circuit fewer: build another
			return p
		}
	}
	return nil
}

// takeLocked binds c to key and counts a stream on it.
func (m *circManager) takeLocked(c *circ, key string, now time.Time) {
	if c.key == "" {
		c.key = key
		m.claimedCleanLocked(c.class, now)
	}
	if c.group == 0 {
		c.group = m.groupLocked(key)
	}
	if c.dirtySince.IsZero() {
		c.dirtySince = now
	}
	c.active++
}

func (m *circManager) groupLocked(key string) int {
	if g, ok := m.groups[key]; ok {
		return g
	}
	m.nextGroup++
	m.groups[key] = m.nextGroup
	return m.nextGroup
}

// release ends one stream on c; a circuit that takes no new streams closes
// with its last stream.
func (m *circManager) release(c *circ) {
	m.mu.Lock()
	c.active--
	closeIt := c.active == 0 && !c.closing && !m.usableLocked(c, m.now()) && c.c.Err() == nil
	reason := c.retired
	if reason == "" {
		reason = "newnym"
	}
	if closeIt {
		c.closing = true
	}
	m.mu.Unlock()
	if closeIt {
		m.closeCirc(c, reason)
	}
}

// retire stops c taking new streams.
func (m *circManager) retire(c *circ, reason string) {
	m.mu.Lock()
	if c.retired == "" {
		c.retired = reason
	}
	closeIt := c.active == 0 && !c.closing && c.c.Err() == nil
	if closeIt {
		c.closing = true
	}
	m.mu.Unlock()
	if closeIt {
		m.closeCirc(c, reason)
	}
}

// newIdentity makes every new stream use a new circuit; circuits in use
// close when their last stream ends.
func (m *circManager) newIdentity() {
	m.mu.Lock()
	m.gen++
	m.nextPreempt = time.Time{}
	m.mu.Unlock()
	m.kick()
}

// acquire returns a circuit for a stream of key (class, port), with the
// stream counted on it: an existing one for key, a clean one, or a new one.
func (m *circManager) acquire(ctx context.Context, key string, class uint8, port uint16) (*circ, error) {
	var lastErr error
	// Builds this stream started, and others' builds it waited for, that
	// failed. Others' failures count less: they were started before their
	// failures taught us which relays to avoid.
	own, others := 0, 0
	for {
		if err := m.waitConsensus(ctx); err != nil {
			return nil, err
		}
		now := m.now()
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, ErrClosed
		}
		if c := m.findLocked(key, class, port, now); c != nil {
			m.takeLocked(c, key, now)
			m.mu.Unlock()
			return c, nil
		}
		mine := false
		p := m.findPendingLocked(key, class, port)
		if p != nil && others >= 2*m.cfg.BuildAttempts {
			p = nil
		}
		if p == nil {
			if own >= m.cfg.BuildAttempts {
				m.mu.Unlock()
				return nil, lastErr
			}
			var err error
			p, err = m.startBuildLocked(key, pathSpec{class: class, port: port})
			if err != nil {
				m.mu.Unlock()
				if lastErr != nil && !errors.Is(err, ErrTooManyCircuits) {
					return nil, fmt.Errorf("%w (after: %v)", err, lastErr)
				}
				return nil, err
			}
			mine = true
		}
		m.mu.Unlock()
		select {
		case <-p.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if p.err != nil {
			lastErr = p.err
			if mine {
				own++
			} else {
				others++
			}
		}
	}
}

// avoidLocked reports whether a relay failed recently.
func (m *circManager) avoidLocked(id layercrypt.RelayID) bool {
	until, ok := m.relayFail[id]
	return ok && m.now().Before(until)
}

// atCapLocked reports whether circuits.max_circuits circuits are open or
// being built (circuits already closing do not count).
func (m *circManager) atCapLocked() bool {
	n := len(m.pending)
	for _, c := range m.circs {
		if !c.closing {
			n++
		}
	}
	return n >= m.cfg.MaxCircuits
}

// evictIdleLocked closes the used circuit that has carried no stream for
// the longest (oldest first use among those with no open stream), to make
// room at the cap: a client that keeps asking for new isolation keys must
// not be refused while old, idle circuits linger until max_dirtiness.
func (m *circManager) evictIdleLocked() bool {
	var victim *circ
	for _, c := range m.circs {
		if c.closing || c.active > 0 || c.dirtySince.IsZero() {
			continue
		}
		if victim == nil || c.dirtySince.Before(victim.dirtySince) {
			victim = c
		}
	}
	if victim == nil {
		return false
	}
	victim.closing = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.closeCirc(victim, "evicted")
	}()
	return true
}

// startBuildLocked chooses a path and starts building it in the
// background.
func (m *circManager) startBuildLocked(key string, spec pathSpec) (*pendingBuild, error) {
	if m.atCapLocked() && !(m.evictIdleLocked() && !m.atCapLocked()) {
		return nil, fmt.Errorf("%w (circuits.max_circuits is %d)", ErrTooManyCircuits, m.cfg.MaxCircuits)
	}
	cons := m.consensus()
	if cons == nil {
		return nil, ErrNoConsensus
	}
	path, err := m.sel.choosePath(cons, m.guards.candidates(), spec, pathOptions{distinctSubnets: m.distinctSubnets, avoid: m.avoidLocked})
	if err != nil {
		return nil, err
	}
	p := &pendingBuild{key: key, class: spec.class, gen: m.gen, exit: path[len(path)-1], done: make(chan struct{})}
	m.pending = append(m.pending, p)
	m.wg.Add(1)
	go m.build(p, path)
	return p, nil
}

// guardDialer remembers the link to the guard: if it could not be opened,
// or closed during the build, the build failed because of the guard.
type guardDialer struct {
	inner circuit.LinkDialer
	link  *link.Link
	err   error
}

func (d *guardDialer) Get(ctx context.Context, id layercrypt.RelayID, addr string) (*link.Link, error) {
	l, err := d.inner.Get(ctx, id, addr)
	d.link, d.err = l, err
	return l, err
}

// guardFailed reports whether the guard's link failed.
func (d *guardDialer) guardFailed() bool {
	return d.err != nil || (d.link != nil && d.link.IsClosed())
}

func (m *circManager) build(p *pendingBuild, path []*netdoc.ConsensusEntry) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.BuildTimeout)
	gd := &guardDialer{inner: m.links}
	c, err := circuit.Build(ctx, gd, hops(path), circuit.BuildOptions{DelayClass: p.class, Log: m.log, Metrics: m.m.circuit})
	cancel()
	now := m.now()
	if err != nil {
		m.buildFailed(path, gd, err)
	} else {
		m.guards.succeeded(path[0].ID)
	}

	m.mu.Lock()
	m.pending = slices.DeleteFunc(m.pending, func(x *pendingBuild) bool { return x == p })
	if err == nil && m.closed {
		err = ErrClosed
		m.mu.Unlock()
		c.Close()
		m.mu.Lock()
	}
	if err == nil {
		m.nextID++
		cc := &circ{id: m.nextID, c: c, lk: gd.link, path: path, class: p.class, gen: p.gen, key: p.key}
		if p.key != "" {
			cc.group = m.groupLocked(p.key)
		}
		m.circs = append(m.circs, cc)
		m.m.circuitsOpen.Set(float64(len(m.circs)))
		p.c = cc
		m.wg.Add(1)
		go m.watch(cc)
		if p.key == "" {
			m.preFails = 0
		}
		if m.onBuilt != nil {
			defer m.onBuilt()
		}
	} else {
		p.err = err
		m.lastErr = err
		if p.key == "" {
			// Back off preemptive builds while the network is failing.
			m.preFails++
			wait := min(250*time.Millisecond<<min(m.preFails, 8), 30*time.Second)
			m.nextPreempt = now.Add(wait)
		}
	}
	m.mu.Unlock()
	close(p.done)
	m.kick()
}

// buildFailed blames the hop that failed, if one can be told.
func (m *circManager) buildFailed(path []*netdoc.ConsensusEntry, gd *guardDialer, err error) {
	if m.ctx.Err() != nil {
		return // shutting down: nobody failed
	}
	var te *circuit.TruncatedError
	switch {
	case gd.guardFailed():
		m.m.buildFailures.WithLabelValues("guard").Inc()
		m.guards.failed(path[0].ID)
	case errors.As(err, &te) && te.Hop+1 < len(path):
		m.m.buildFailures.WithLabelValues("relay").Inc()
		bad := path[te.Hop+1]
		m.mu.Lock()
		m.relayFail[bad.ID] = m.now().Add(m.cfg.RelayRetry)
		m.mu.Unlock()
		m.log.Info("circuit build failed: a relay could not be reached; avoiding it for a while",
			zap.String("relay", bad.ID.Short()), zap.Int("hop", te.Hop+2), zap.Duration("avoid_for", m.cfg.RelayRetry))
		return
	default:
		m.m.buildFailures.WithLabelValues("none").Inc()
	}
	m.log.Info("circuit build failed", zap.Error(err))
}

// watch removes c once it has been torn down.
func (m *circManager) watch(c *circ) {
	defer m.wg.Done()
	<-c.c.Done()
	m.mu.Lock()
	m.circs = slices.DeleteFunc(m.circs, func(x *circ) bool { return x == c })
	m.m.circuitsOpen.Set(float64(len(m.circs)))
	ours := c.closing || m.closed
	if c.key != "" && !slices.ContainsFunc(m.circs, func(x *circ) bool { return x.key == c.key }) &&
		!slices.ContainsFunc(m.pending, func(p *pendingBuild) bool { return p.key == c.key }) {
		delete(m.groups, c.key)
	}
	m.mu.Unlock()
	if !ours {
		m.m.circuitsClosed.WithLabelValues("failed").Inc()
		m.log.Info("circuit destroyed by the network", zap.Uint64("circ", c.id), zap.Error(c.c.Err()), zap.Int("streams", c.active))
	}
	m.kick()
}

// dial opens a stream to host:port for key, retrying on other circuits
// when a circuit fails or times out before the exit answers.
func (m *circManager) dial(ctx context.Context, key string, class uint8, host string, port uint16) (net.Conn, error) {
	var conn net.Conn
	err := m.withCircuit(ctx, key, class, port, func(actx context.Context, c *circ) error {
		st, err := c.c.Dial(actx, host, port)
		if err != nil {
			return err
		}
		conn = &streamConn{Conn: st, m: m.m, release: func() { m.release(c) }}
		return nil
	})
	return conn, err
}

// exchangeDNS sends one DNS query for key over a circuit.
func (m *circManager) exchangeDNS(ctx context.Context, key string, class uint8, query []byte) ([]byte, error) {
	var answer []byte
	err := m.withCircuit(ctx, key, class, 0, func(actx context.Context, c *circ) error {
		a, err := c.c.ExchangeDNS(actx, query)
		if err != nil {
			return err
		}
		m.release(c)
		answer = a
		return nil
	})
	return answer, err
}

// withCircuit runs f on a circuit for key; on success f must see to the
// circuit's release (m.release), on failure withCircuit releases it. Failures of the circuit (not
// the exit's answers) and timeouts are retried on another circuit up to
// cfg.StreamRetries times.
func (m *circManager) withCircuit(ctx context.Context, key string, class uint8, port uint16, f func(context.Context, *circ) error) error {
	tries := 1 + max(0, m.cfg.StreamRetries)
	var lastErr error
	for i := 0; i < tries; i++ {
		if i > 0 {
			m.m.streamRetries.Inc()
		}
		c, err := m.acquire(ctx, key, class, port)
		if err != nil {
			if lastErr != nil && ctx.Err() == nil {
				return fmt.Errorf("%w (after: %v)", err, lastErr)
			}
			return err
		}
		actx, cancel := context.WithTimeout(ctx, m.cfg.StreamTimeout)
		err = f(actx, c)
		timedOut := actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return nil
		}
		m.release(c)
		var se *cell.StreamError
		if errors.As(err, &se) {
			switch se.Status {
			case cell.StatusExitLimit, cell.StatusProtocolError:
				lastErr = err
				continue // another exit may take it
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if timedOut {
			// As Tor does: a circuit on which a stream timed out takes no
			// new streams.
			m.retire(c, "timeout")
			lastErr = fmt.Errorf("%w: no answer from the exit within %v", ErrStreamTimeout, m.cfg.StreamTimeout)
			continue
		}
		m.retire(c, "failed")
		lastErr = err
	}
	return lastErr
}

// close shuts the manager down: no new circuits, every circuit closed.
func (m *circManager) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	circs := slices.Clone(m.circs)
	for _, c := range circs {
		c.closing = true
	}
	m.mu.Unlock()
	m.cancel()
	for _, c := range circs {
		m.closeCirc(c, "shutdown")
	}
	m.wg.Wait()
}

// CircuitStatus is one circuit as the status endpoint shows it.
type CircuitStatus struct {
	ID         uint64   `json:"id"`
	State      string   `json:"state"` // clean, in_use, retired, closing
	Retired    string   `json:"retired,omitempty"`
	DelayClass uint8    `json:"delay_class"`
	Group      int      `json:"isolation_group"` // 0 while clean; circuits of one isolation key share a number
	AgeSeconds float64  `json:"age_seconds"`
	Active     int      `json:"active_streams"`
	Streams    int64    `json:"streams_opened"`
	Path       []string `json:"path"` // relay IDs (short form), guard first
}

func (m *circManager) status() []CircuitStatus {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]CircuitStatus, 0, len(m.circs))
	for _, c := range m.circs {
		s := CircuitStatus{
			ID: c.id, DelayClass: c.class, Group: c.group, AgeSeconds: now.Sub(c.c.Created()).Seconds(),
			Active: c.active, Streams: c.c.Streams(), Retired: c.retired,
		}
		switch {
		case c.closing:
			s.State = "closing"
		case !m.usableLocked(c, now):
			s.State = "retired"
			if s.Retired == "" {
				s.Retired = "newnym"
			}
		case c.key == "":
			s.State = "clean"
		default:
			s.State = "in_use"
		}
		for _, e := range c.path {
			s.Path = append(s.Path, e.ID.Short())
		}
		out = append(out, s)
	}
	return out
}
