package onionproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/chive-net/chive/dirclient"
	"github.com/chive-net/chive/dnsproxy"
	"github.com/chive-net/chive/internal/config"
	"github.com/chive-net/chive/internal/obs"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/netdoc"
)

// ConsensusSource gives the proxy verified consensuses: the directory
// client (dirclient) in production, an in-memory twin in tests.
type ConsensusSource interface {
	// Cached returns the cached consensus, verified and still valid.
	Cached() (*netdoc.Consensus, error)
	// Fetch fetches a consensus from the authorities and verifies it.
	Fetch(ctx context.Context) (*netdoc.Consensus, error)
}

// Option changes one of the proxy's edges (tests, embedding).
type Option func(*options)

type options struct {
	source    ConsensusSource
	dialRelay func(ctx context.Context, network, addr string) (net.Conn, error)
	now       func() time.Time
	reg       *prometheus.Registry
}

// WithConsensusSource replaces the directory client.
func WithConsensusSource(s ConsensusSource) Option { return func(o *options) { o.source = s } }

// WithRelayDialer replaces the TCP dialer of links to guards. It is only
// ever called with an IP:port literal from the consensus.
func WithRelayDialer(d func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *options) { o.dialRelay = d }
}

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithRegistry makes the proxy register its metrics with reg (served on
// the control listener) instead of a registry of its own.
func WithRegistry(reg *prometheus.Registry) Option { return func(o *options) { o.reg = reg } }

// Proxy is the onion proxy: SOCKS5, HTTP CONNECT and DNS front-ends whose
// every request travels through circuits; nothing is resolved or connected
// to locally except links to guards and HTTP to the authorities.
type Proxy struct {
	cfg    Config
	log    *zap.Logger
	unsafe bool
	src    ConsensusSource
	opts   options
	reg    *prometheus.Registry
	m      *metrics
	links  *link.Manager
	guards *guardSet
	circs  *circManager
	sel    *selector

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	cons          atomic.Pointer[netdoc.Consensus]
	haveCons      chan struct{} // closed at the first consensus
	haveConsOnce  sync.Once
	firstTry      chan struct{} // closed when the first attempt to get one ended
	firstTryOnce  sync.Once
	bootstrapped  chan struct{} // closed at 100%
	firstCircuit  chan struct{} // closed when the first circuit is built
	firstCircOnce sync.Once

	bootMu   sync.Mutex // guards the following fields
	percent  int
	phase    string
	bootErr  string
	warnedAt map[string]time.Time

	socks   []*socksFrontend
	https   []*httpFrontend
	dns     *dnsproxy.Server
	control *obs.Server

	runOnce   sync.Once
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New checks cfg, prepares the data directory and binds every listener;
// Run then bootstraps and serves.
func New(cfg *Config, log *zap.Logger, opts ...Option) (*Proxy, error) {
	c := *cfg
	if err := c.Check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Proxy{
		cfg:          c,
		log:          log,
		unsafe:       c.Log.UnsafeLogging,
		haveCons:     make(chan struct{}),
		firstTry:     make(chan struct{}),
		bootstrapped: make(chan struct{}),
		firstCircuit: make(chan struct{}),
		warnedAt:     make(map[string]time.Time),
		sel:          newSelector(),
	}
	for _, o := range opts {
		o(&p.opts)
	}
	if p.opts.now == nil {
		p.opts.now = time.Now
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	p.src = p.opts.source
	if p.src == nil {
		dc, err := p.newDirClient()
		if err != nil {
			return nil, err
		}
		p.src = dc
	}
	p.reg = p.opts.reg
	if p.reg == nil {
		p.reg = obs.NewRegistry()
	}
	m, err := newMetrics(p.reg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	p.m = m
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.links = link.NewManager(&link.Config{Dial: p.dialRelay, Log: log.Named("link"), UnsafeLogging: p.unsafe})
	p.guards = newGuardSet(c.Guards, c.DataDir, p.opts.now, p.sel, log.Named("guards"))
	classes := map[uint8]bool{}
	for _, l := range c.SOCKSListeners {
		classes[l.DelayClass] = true
	}
	for _, l := range c.HTTPConnectListeners {
		classes[l.DelayClass] = true
	}
	if !c.DNSListener.Disabled {
		classes[c.DNSListener.DelayClass] = true
	}
	var classList []uint8
	for cl := 0; cl < 256; cl++ {
		if classes[uint8(cl)] {
			classList = append(classList, uint8(cl))
		}
	}
	p.circs = newCircManager(circDeps{
		cfg:             c.Circuits,
		distinctSubnets: c.distinctSubnets(),
		links:           p.links,
		guards:          p.guards,
		sel:             p.sel,
		consensus:       p.consensus,
		waitConsensus:   p.waitConsensus,
		m:               m,
		log:             log.Named("circuits"),
		now:             p.opts.now,
		classes:         classList,
		onBuilt:         func() { p.firstCircOnce.Do(func() { close(p.firstCircuit) }) },
	})
	if err := p.listen(); err != nil {
		p.closeListeners()
		p.links.Close()
		p.cancel()
		return nil, err
	}
	p.setProgress(0, "starting")
	return p, nil
}

// listen binds every front-end and the control listener.
func (p *Proxy) listen() error {
	for i, lc := range p.cfg.SOCKSListeners {
		ln, err := net.Listen("tcp", lc.Address)
		if err != nil {
			return fmt.Errorf("socks_listeners[%d]: %w", i, err)
		}
		p.warnExposed("SOCKS", ln.Addr())
		p.socks = append(p.socks, &socksFrontend{
			p: p, addr: ln.Addr().String(), class: lc.DelayClass, log: p.log.Named("socks"),
			ll: newLimitListener(ln, p.cfg.Limits.MaxConnections, p.m.rejected.WithLabelValues("socks", "max_connections")),
		})
	}
	for i, lc := range p.cfg.HTTPConnectListeners {
		ln, err := net.Listen("tcp", lc.Address)
		if err != nil {
			return fmt.Errorf("http_connect_listeners[%d]: %w", i, err)
		}
		p.warnExposed("HTTP CONNECT", ln.Addr())
		f := &httpFrontend{
			p: p, addr: ln.Addr().String(), class: lc.DelayClass, log: p.log.Named("http"), ctx: p.ctx,
			ll: newLimitListener(ln, p.cfg.Limits.MaxConnections, p.m.rejected.WithLabelValues("http", "max_connections")),
		}
		f.srv = &http.Server{
			Handler:                      f,
			ReadHeaderTimeout:            p.cfg.Limits.HandshakeTimeout,
			IdleTimeout:                  p.cfg.Limits.HandshakeTimeout,
			MaxHeaderBytes:               p.cfg.Limits.MaxHeaderBytes,
			ErrorLog:                     discardLog, // its messages name client addresses
			DisableGeneralOptionsHandler: true,
		}
		p.https = append(p.https, f)
	}
	if !p.cfg.DNSListener.Disabled {
		d := p.cfg.DNSListener
		srv, err := dnsproxy.NewServer(dnsproxy.ServerConfig{
			Addr:          d.Address,
			Exchanger:     dnsExchanger{p: p, class: d.DelayClass},
			Log:           p.log.Named("dns"),
			UnsafeLogging: p.unsafe,
			CacheEntries:  d.CacheEntries,
			Timeout:       d.Timeout,
			Metrics:       p.m.dns,
			MaxInflight:   d.MaxInflight,
			MaxTCPConns:   d.MaxTCPConns,
		})
		if err != nil {
			return fmt.Errorf("dns_listener: %w", err)
		}
		if err := srv.Start(); err != nil {
			return fmt.Errorf("dns_listener: %w", err)
		}
		p.dns = srv
	}
	ctl, err := obs.Serve(p.cfg.ControlListener, p.reg, map[string]http.Handler{
		"/status": localOnly(http.HandlerFunc(p.serveStatus)),
		"/newnym": localOnly(http.HandlerFunc(p.serveNewnym)),
	}, p.log.Named("control"))
	if err != nil {
		return fmt.Errorf("control_listener: %w", err)
	}
	p.control = ctl
	return nil
}

func (p *Proxy) warnExposed(what string, a net.Addr) {
	if t, ok := a.(*net.TCPAddr); ok && !t.IP.IsLoopback() {
		p.log.Warn(what + " listener is not on a loopback address: anyone who can reach it can use this proxy and its circuits")
	}
}

// newDirClient is the directory client for the configured authorities: it
// caches the consensus in the data directory, and reaches the authorities
// at their IP literals only, never through a proxy from the environment.
func (p *Proxy) newDirClient() (*dirclient.Client, error) {
	if len(p.cfg.Authorities) == 0 {
		return nil, config.Errorf("authorities", "list the directory authorities (id and IP:port) of the network to join")
	}
	auths := make([]dirclient.Authority, 0, len(p.cfg.Authorities))
	for _, a := range p.cfg.Authorities {
		id, err := layercrypt.ParseRelayID(a.ID)
		if err != nil {
			return nil, config.Errorf("authorities", "%v", err)
		}
		auths = append(auths, dirclient.Authority{ID: id, Addr: a.Address})
	}
	hc := &http.Client{Transport: &http.Transport{
		Proxy:             nil,
		DialContext:       dialLiteral,
		DisableKeepAlives: true,
	}}
	return dirclient.New(dirclient.Config{Authorities: auths, CacheDir: p.cfg.DataDir, HTTP: hc, Log: p.log.Named("dirclient"), Now: p.opts.now})
}

// dialLiteral connects to an IP:port literal and refuses names: reaching
// the directory never needs a DNS lookup.
func dialLiteral(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("onionproxy: refusing to dial %q: authorities are reached at IP literals only", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", ap.String())
}

// dialRelay opens the TCP connection of a link. Links go to guards only,
// at IP literals from the consensus: a name here would be a lookup, so it
// is refused.
func (p *Proxy) dialRelay(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("onionproxy: refusing to dial %q: relays are reached at IP literals only", addr)
	}
	if p.opts.dialRelay != nil {
		return p.opts.dialRelay(ctx, network, ap.String())
	}
	return dialLiteral(ctx, network, ap.String())
}

// Run bootstraps (progress in the log, the bootstrap metric and /status),
// serves until ctx ends, then shuts everything down.
func (p *Proxy) Run(ctx context.Context) error {
	started := false
	p.runOnce.Do(func() { started = true })
	if !started {
		return errors.New("onionproxy: Run called twice")
	}
	for _, f := range p.socks {
		f.wg.Add(1)
		go f.serve(p.ctx)
	}
	for _, f := range p.https {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			f.srv.Serve(f.ll)
		}()
	}
	p.circs.start()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.bootstrapAndRefresh(p.ctx)
	}()
	select {
	case <-ctx.Done():
	case <-p.ctx.Done():
	}
	p.Close()
	return nil
}

// Close shuts the proxy down and waits for its goroutines. It is
// idempotent; Run calls it when its context ends.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		p.closeListeners()
		p.circs.close()
		p.wg.Wait()
		for _, f := range p.socks {
			f.wg.Wait()
		}
		for _, f := range p.https {
			f.wg.Wait()
		}
		p.links.Close()
		if err := p.guards.save(); err != nil {
			p.log.Warn("could not save guard state", zap.Error(err))
		}
	})
	return nil
}

func (p *Proxy) closeListeners() {
	for _, f := range p.socks {
		f.ll.closeAll()
	}
	for _, f := range p.https {
		if f.srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			f.srv.Shutdown(sctx)
			cancel()
		}
		f.ll.closeAll()
	}
	if p.dns != nil {
		p.dns.Close()
	}
	if p.control != nil {
		p.control.Close()
	}
}

// consensus returns the current consensus if it is still valid.
func (p *Proxy) consensus() *netdoc.Consensus {
	c := p.cons.Load()
	if c == nil || p.opts.now().After(c.ValidUntil) {
		return nil
	}
	return c
}

// waitConsensus waits for a consensus while the first attempt to get one
// is under way; after that, no consensus is an error at once, not a hang.
func (p *Proxy) waitConsensus(ctx context.Context) error {
	if p.consensus() != nil {
		return nil
	}
	select {
	case <-p.haveCons:
	case <-p.firstTry:
	case <-ctx.Done():
		return ctx.Err()
	}
	if p.consensus() != nil {
		return nil
	}
	p.bootMu.Lock()
	why := p.bootErr
	p.bootMu.Unlock()
	if why == "" {
		why = "the consensus expired and no fresh one could be fetched"
	}
	return fmt.Errorf("%w: %s", ErrNoConsensus, why)
}

func (p *Proxy) setProgress(pct int, phase string) {
	p.bootMu.Lock()
	changed := p.percent != pct || p.phase != phase
	p.percent, p.phase = pct, phase
	if pct == 100 {
		p.bootErr = ""
	}
	p.bootMu.Unlock()
	p.m.bootstrap.Set(float64(pct))
	if changed {
		p.log.Info(fmt.Sprintf("Bootstrapped %d%%: %s", pct, phase))
	}
}

func (p *Proxy) setBootErr(msg string) {
	p.bootMu.Lock()
	p.bootErr = msg
	p.bootMu.Unlock()
}

// setConsensus installs a verified consensus and updates the guards.
func (p *Proxy) setConsensus(c *netdoc.Consensus) {
	p.cons.Store(c)
	p.guards.update(c)
	if err := p.guards.save(); err != nil {
		p.log.Warn("could not save guard state; guards will be chosen again after a restart", zap.Error(err))
	}
	listed := 0
	for _, g := range p.guards.status() {
		if g.Listed {
			listed++
		}
	}
	p.m.guardsUsable.Set(float64(listed))
	p.setBootErr("")
	p.haveConsOnce.Do(func() { close(p.haveCons) })
	p.circs.kick()
}

// errNothingNewer: a refresh found only the consensus already held.
var errNothingNewer = errors.New("the authorities have no newer consensus")

// explainFetch turns a fetch failure into a message a person can act on.
func explainFetch(err error) string {
	switch {
	case errors.Is(err, errNothingNewer):
		return err.Error() + " yet"
	case errors.Is(err, netdoc.ErrNotEnoughSignatures), errors.Is(err, netdoc.ErrBadSignature), errors.Is(err, netdoc.ErrUnknownAuthority):
		return fmt.Sprintf("no consensus verified: fewer than half of the configured authorities signed what they served; check authorities[].id in the config (%v)", err)
	case errors.Is(err, netdoc.ErrExpired), errors.Is(err, netdoc.ErrNotYetValid):
		return fmt.Sprintf("the authorities served a consensus outside its validity window; check this computer's clock (%v)", err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Sprintf("no directory authority answered in time; check authorities[].address in the config and the network (%v)", err)
	default:
		return fmt.Sprintf("could not get a consensus from any directory authority; check authorities[].address in the config and that they are running (%v)", err)
	}
}

// fetchTimeout bounds one attempt to fetch a consensus.
const fetchTimeout = 30 * time.Second

// While the proxy holds no usable consensus (none, an expired one, or one
// listing too few Running relays: netdoc.Consensus.Usable), it fetches
// again after bootstrapRetryMin, the wait growing by half at each attempt
// up to bootstrapRetryMax and starting over whenever a newer consensus
// arrives: a network whose authorities are on their initial voting
// schedule publishes a usable consensus seconds after an unusable one,
// and a proxy started with the network picks it up within a few hundred
// milliseconds. Each wait is drawn within 20% of its nominal value, so
// that proxies started together do not ask in step. Refreshes of a usable
// consensus start at DefaultRefetchMin and double up to DefaultRefetchMax.
const (
	bootstrapRetryMin = 250 * time.Millisecond
	bootstrapRetryMax = 30 * time.Second
)

// nextRetry returns the wait after one of wait: half as long again when
// quick, else twice as long, and at most max.
func nextRetry(wait time.Duration, quick bool, max time.Duration) time.Duration {
	if quick {
		return min(wait+wait/2, max)
	}
	return min(2*wait, max)
}

// jitter returns d scaled by a random factor in [0.8, 1.2].
func (p *Proxy) jitter(d time.Duration) time.Duration {
	return p.sel.durationIn(d-d/5, d+d/5)
}

// usable reports whether c can carry circuits now.
func (p *Proxy) usable(c *netdoc.Consensus) bool {
	return c != nil && c.Usable(p.opts.now()) == nil
}

// bootstrapAndRefresh loads state, gets a consensus, waits for the first
// circuit, and then keeps the consensus fresh.
func (p *Proxy) bootstrapAndRefresh(ctx context.Context) {
	p.setProgress(10, "loading cached state")
	if err := p.guards.load(); err != nil {
		p.log.Warn("could not read guard state; choosing new guards", zap.Error(err))
	}
	if c, err := p.src.Cached(); err == nil && c != nil {
		p.setConsensus(c)
		p.log.Info("using the cached consensus", zap.Time("valid_until", c.ValidUntil), zap.Int("relays", len(c.Relays)))
	}
	if p.consensus() == nil {
		p.setProgress(40, "fetching consensus")
		if !p.fetchUntilOK(ctx, true) {
			return
		}
	}
	p.firstTryOnce.Do(func() { close(p.firstTry) })
	// Keep the consensus fresh from now on, also while the first circuit
	// is being built (a consensus may list no usable path yet).
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.refreshLoop(ctx)
	}()
	p.setProgress(80, "building circuits")
	if p.cfg.Circuits.Preemptive > 0 {
		p.circs.kick()
		t := time.NewTicker(stuckWarnEvery)
		defer t.Stop()
	wait:
		for {
			select {
			case <-p.firstCircuit:
				break wait
			case <-ctx.Done():
				return
			case <-t.C:
				p.log.Warn("bootstrap stuck at building circuits: " + p.circs.lastError())
			}
		}
	}
	p.setProgress(100, "done")
	close(p.bootstrapped)
}

// stuckWarnEvery is how often a bootstrap stuck at building circuits says
// why.
const stuckWarnEvery = 10 * time.Second

// refreshLoop fetches a new consensus before the held one goes stale, and
// soon (bootstrapRetryMin) while the held one is not usable.
func (p *Proxy) refreshLoop(ctx context.Context) {
	for {
		c := p.cons.Load()
		wait := p.refreshDelay(c)
		if !p.usable(c) {
			wait = min(wait, p.jitter(bootstrapRetryMin))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !p.fetchUntilOK(ctx, false) {
			return
		}
	}
}

// refreshDelay is when to fetch the next consensus: at a random time in
// the first half of the time between fresh-until and valid-until.
func (p *Proxy) refreshDelay(c *netdoc.Consensus) time.Duration {
	now := p.opts.now()
	span := c.ValidUntil.Sub(c.FreshUntil) / 2
	at := c.FreshUntil
	if span > 0 {
		p.sel.mu.Lock()
		at = at.Add(time.Duration(p.sel.rnd.Int64N(int64(span))))
		p.sel.mu.Unlock()
	}
	return max(at.Sub(now), 0)
}

// fetchUntilOK fetches until a consensus verifies (true) or ctx ends
// (false), backing off between attempts and saying clearly what is wrong.
// While no usable consensus is held (also once the one held expires) it
// retries quickly (bootstrapRetryMin); while a usable one is held, at
// least four times before it expires.
func (p *Proxy) fetchUntilOK(ctx context.Context, bootstrapping bool) bool {
	quick := !p.usable(p.cons.Load())
	attempt := 0
	wait, maxWait := DefaultRefetchMin, DefaultRefetchMax
	if quick {
		wait, maxWait = bootstrapRetryMin, bootstrapRetryMax
	}
	for {
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		c, err := p.src.Fetch(fctx)
		cancel()
		if held := p.cons.Load(); !bootstrapping && err == nil && c != nil && held != nil && !c.ValidAfter.After(held.ValidAfter) {
			err = fmt.Errorf("%w than the consensus valid after %s", errNothingNewer, held.ValidAfter.UTC().Format(time.RFC3339))
		}
		if err == nil && c != nil {
			p.setConsensus(c)
			p.log.Info("new consensus", zap.Time("valid_after", c.ValidAfter), zap.Time("valid_until", c.ValidUntil), zap.Int("relays", len(c.Relays)))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			err = errors.New("the directory client returned no consensus")
		}
		msg := explainFetch(err)
		p.setBootErr(msg)
		attempt++
		held := p.consensus()
		if !quick && !p.usable(p.cons.Load()) {
			// The consensus held expired meanwhile.
			quick, wait, maxWait = true, bootstrapRetryMin, bootstrapRetryMax
		}
		if held != nil && !quick {
			// Try at least four more times before the held consensus
			// expires.
			wait = max(min(wait, held.ValidUntil.Sub(p.opts.now())/4), bootstrapRetryMin)
		}
		switch {
		case bootstrapping:
			// A network that is starting serves no consensus for a
			// second or two: the first failure is a warning, the quick
			// retries after it are quiet, and only a bootstrap still
			// stuck once the retries have slowed is an error.
			lvl := zapcore.ErrorLevel
			switch {
			case attempt == 1:
				lvl = zapcore.WarnLevel
			case wait < time.Second:
				lvl = zapcore.DebugLevel
			}
			p.log.Log(lvl, "bootstrap stuck at fetching consensus: "+msg, zap.Duration("retry_in", wait))
			p.firstTryOnce.Do(func() { close(p.firstTry) })
		case quick && held != nil && errors.Is(err, errNothingNewer):
			p.log.Debug("waiting for a usable consensus: "+msg, zap.NamedError("held", held.Usable(p.opts.now())), zap.Duration("retry_in", wait))
		case held != nil:
			p.log.Warn("no fresh consensus; keeping the current one while it is valid: "+msg, zap.Duration("retry_in", wait))
		default:
			p.log.Error("the consensus expired and no fresh one is available; no new circuits can be built: "+msg, zap.Duration("retry_in", wait))
		}
		t := time.NewTimer(p.jitter(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = nextRetry(wait, quick, maxWait)
	}
}

// NewIdentity makes every new stream use new circuits (Tor's NEWNYM);
// circuits still carrying streams close when their streams end.
func (p *Proxy) NewIdentity() {
	p.circs.newIdentity()
	if p.dns != nil {
		p.dns.FlushCache()
	}
	p.log.Info("new identity: new streams will use new circuits; the DNS cache is emptied")
}

// Bootstrapped is closed when bootstrap reaches 100%.
func (p *Proxy) Bootstrapped() <-chan struct{} { return p.bootstrapped }

// Addrs are the bound addresses of the proxy's listeners.
type Addrs struct {
	SOCKS       []string `json:"socks"`
	HTTPConnect []string `json:"http_connect"`
	DNS         string   `json:"dns,omitempty"`
	Control     string   `json:"control"`
}

// Addrs returns the bound listener addresses (useful with port 0).
func (p *Proxy) Addrs() Addrs {
	var a Addrs
	for _, f := range p.socks {
		a.SOCKS = append(a.SOCKS, f.addr)
	}
	for _, f := range p.https {
		a.HTTPConnect = append(a.HTTPConnect, f.addr)
	}
	if p.dns != nil {
		a.DNS = p.dns.Addr()
	}
	if p.control != nil {
		a.Control = p.control.Addr().String()
	}
	return a
}

// BootstrapStatus is the bootstrap's progress.
type BootstrapStatus struct {
	Percent int    `json:"percent"`
	Phase   string `json:"phase"`
	Error   string `json:"error,omitempty"`
}

// ConsensusStatus describes the consensus in use.
type ConsensusStatus struct {
	Valid      bool      `json:"valid"`
	ValidAfter time.Time `json:"valid_after"`
	FreshUntil time.Time `json:"fresh_until"`
	ValidUntil time.Time `json:"valid_until"`
	Relays     int       `json:"relays"`
}

// Status is what GET /status on the control listener returns.
type Status struct {
	Bootstrap BootstrapStatus  `json:"bootstrap"`
	Consensus *ConsensusStatus `json:"consensus"`
	Guards    []GuardStatus    `json:"guards"`
	Circuits  []CircuitStatus  `json:"circuits"`
	Listeners Addrs            `json:"listeners"`
}

// Status returns the proxy's state.
func (p *Proxy) Status() Status {
	var s Status
	p.bootMu.Lock()
	s.Bootstrap = BootstrapStatus{Percent: p.percent, Phase: p.phase, Error: p.bootErr}
	p.bootMu.Unlock()
	if s.Bootstrap.Percent == 80 && s.Bootstrap.Error == "" {
		s.Bootstrap.Error = p.circs.lastError()
	}
	if c := p.cons.Load(); c != nil {
		now := p.opts.now()
		s.Consensus = &ConsensusStatus{
			Valid:      c.CheckTime(now) == nil,
			ValidAfter: c.ValidAfter, FreshUntil: c.FreshUntil, ValidUntil: c.ValidUntil,
			Relays: len(c.Relays),
		}
	}
	s.Guards = p.guards.status()
	s.Circuits = p.circs.status()
	s.Listeners = p.Addrs()
	return s
}

func (p *Proxy) serveStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(p.Status())
}

func (p *Proxy) serveNewnym(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "use POST /newnym", http.StatusMethodNotAllowed)
		return
	}
	p.NewIdentity()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok: new streams will use new circuits")
}

// localOnly refuses requests a web page could make: any with an Origin
// header (cross-site requests from browsers carry one), and any whose Host
// is not an IP literal (a DNS-rebinding name pointing at 127.0.0.1).
func localOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		if _, err := netip.ParseAddr(host); err != nil || r.Header.Get("Origin") != "" {
			http.Error(w, "forbidden: the control endpoint takes requests to its IP address from local tools only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// openStream is what every front-end calls for a CONNECT.
func (p *Proxy) openStream(ctx context.Context, frontend string, iso isolation, host string, port uint16) (net.Conn, error) {
	conn, err := p.openStreamErr(ctx, iso, host, port)
	p.m.streams.WithLabelValues(frontend, streamResult(err)).Inc()
	if err != nil {
		p.logStreamFailure(frontend, err)
	}
	return conn, err
}

func (p *Proxy) openStreamErr(ctx context.Context, iso isolation, host string, port uint16) (net.Conn, error) {
	if iso.hasAuth {
		class, ok, err := parseClassUsername(iso.user)
		if err != nil {
			return nil, err
		}
		if ok {
			iso.class = class
		}
	}
	if err := checkHost(host, port); err != nil {
		return nil, err
	}
	return p.circs.dial(ctx, iso.key(), iso.class, host, port)
}

// warnEvery is how often one kind of client-visible failure is logged at
// warning level.
const warnEvery = 10 * time.Second

func (p *Proxy) logStreamFailure(frontend string, err error) {
	result := streamResult(err)
	switch result {
	case "no_consensus", "not_allowed":
		// Neither says anything about the destination beyond its port.
		if p.shouldWarn(result) {
			p.log.Warn("stream refused", zap.String("frontend", frontend), zap.String("result", result), zap.Error(err))
			return
		}
	case "circuit_failed":
		if p.shouldWarn(result) {
			p.log.Warn("stream failed: no circuit could carry it", zap.String("frontend", frontend), obs.Err(err, p.unsafe))
			return
		}
	}
	p.log.Debug("stream failed", zap.String("frontend", frontend), zap.String("result", result), obs.Err(err, p.unsafe))
}

func (p *Proxy) shouldWarn(kind string) bool {
	now := p.opts.now()
	p.bootMu.Lock()
	defer p.bootMu.Unlock()
	if now.Sub(p.warnedAt[kind]) < warnEvery {
		return false
	}
	p.warnedAt[kind] = now
	return true
}

// dnsExchanger carries the DNS front-end's queries over circuits.
type dnsExchanger struct {
	p     *Proxy
	class uint8
}

func (d dnsExchanger) Exchange(ctx context.Context, isolation string, query []byte) ([]byte, error) {
	key := fmt.Sprintf("%s|class=%d", isolation, d.class)
	a, err := d.p.circs.exchangeDNS(ctx, key, d.class, query)
	if err != nil {
		d.p.logStreamFailure("dns", err)
	}
	return a, err
}
