// Package relay is the relay program (cmd/relaynode) as a library: its
// configuration, its keys (the Ed25519 identity and the rotating X25519 onion
// keys), its descriptor and the publishing of it to the directory
// authorities, and Run, which accepts links and serves circuits with the
// circuit package until its context ends.
//
// Run's life:
//
//	listen -> link.Listen -> accept loop (links.Add + circuit.Relay.ServeLink)
//	       -> mix scheduler, metrics server, key rotation timer, publisher
//	ctx done -> stop accepting -> circuit.Relay.Shutdown (DESTROY HIBERNATING
//	         to every circuit, bounded by shutdown_timeout) -> close links
//	         -> stop the rest -> wipe the keys
//
// Logs never carry client addresses, destinations or names unless
// log.unsafe_logging is on; the relay's own addresses and the authorities'
// are not private and are logged.
package relay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/dnsproxy"
	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/internal/obs"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/mix"
)

// ErrAlreadyRun is returned by a second call of Run.
var ErrAlreadyRun = errors.New("relay: Run called twice")

// rotationRetry is how long the relay waits before retrying a failed onion
// key rotation (a full disk, say).
const rotationRetry = time.Minute

// Option changes how New builds a relay (tests, embedding).
type Option func(*options)

type options struct {
	clock    mix.Clock
	client   *http.Client
	registry *prometheus.Registry
	exitDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// WithClock sets the clock of key rotation, descriptor publishing and
// descriptor times (a mix.FakeClock in tests). Links, circuits and the mix
// keep real time.
func WithClock(c mix.Clock) Option { return func(o *options) { o.clock = c } }

// WithHTTPClient sets the client that uploads descriptors.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithRegistry sets the Prometheus registry (default obs.NewRegistry()).
func WithRegistry(r *prometheus.Registry) Option { return func(o *options) { o.registry = r } }

// WithExitDial replaces the exit's dialer for destinations.
func WithExitDial(d func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *options) { o.exitDial = d }
}

// Relay is one relay: keys, listener, circuits, descriptor.
type Relay struct {
	cfg   *Config
	log   *zap.Logger
	opts  options
	keys  *keyStore
	id    layercrypt.RelayID
	reg   *prometheus.Registry
	m     *relayMetrics
	cm    *circuit.Metrics
	mm    *mix.Metrics
	ran   atomic.Bool
	ready chan struct{} // closed once listening

	// Set by Run before ready closes, then read-only.
	started     time.Time
	addr        netip.AddrPort // advertised
	listenAddr  net.Addr
	metricsAddr net.Addr
	exitPolicy  *exitpolicy.Policy // nil unless an exit
	circuits    atomic.Pointer[circuit.Relay]

	descMu sync.Mutex // guards desc
	desc   []byte

	inMu    sync.Mutex // guards inbound
	inbound map[*link.Link]struct{}
}

// New loads (or, on first run, creates) the relay's keys, brings the onion
// keys up to date and returns a relay ready to Run. cfg must have passed
// Validate (Load does that).
func New(cfg *Config, log *zap.Logger, opts ...Option) (*Relay, error) {
	if cfg == nil {
		return nil, errors.New("relay: no config")
	}
	if cfg.classes == nil {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	if log == nil {
		log = zap.NewNop()
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.clock == nil {
		o.clock = mix.SystemClock()
	}
	if o.client == nil {
		// No keep-alive: uploads are rare, and no idle connection outlives Run.
		o.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	}
	if o.registry == nil {
		o.registry = obs.NewRegistry()
	}
	keys, err := openKeyStore(cfg.DataDir, cfg.OnionKeyRotation, o.clock.Now())
	if err != nil {
		return nil, err
	}
	r := &Relay{
		cfg:     cfg,
		log:     log,
		opts:    o,
		keys:    keys,
		id:      keys.id.ID(),
		reg:     o.registry,
		ready:   make(chan struct{}),
		inbound: make(map[*link.Link]struct{}),
	}
	r.m = newRelayMetrics(r.reg)
	r.cm = circuit.NewMetrics(r.reg, MetricsNamespace)
	r.mm = mix.NewMetrics(r.reg, "chive")
	exit := "0"
	if cfg.Exit.Enabled {
		exit = "1"
	}
	r.m.info.WithLabelValues(Version, cfg.Nickname, r.id.String(), exit).Set(1)
	return r, nil
}

// ID returns the relay's identity.
func (r *Relay) ID() layercrypt.RelayID { return r.id }

// Ready is closed once Run listens; Addr, ListenAddr, MetricsAddr and Hop
// are valid from then on.
func (r *Relay) Ready() <-chan struct{} { return r.ready }

// Addr returns the advertised address (after Ready).
func (r *Relay) Addr() netip.AddrPort { return r.addr }

// ListenAddr returns the address links are accepted on (after Ready).
func (r *Relay) ListenAddr() net.Addr { return r.listenAddr }

// MetricsAddr returns the metrics server's address, nil if disabled (after
// Ready).
func (r *Relay) MetricsAddr() net.Addr { return r.metricsAddr }

// Hop returns what a consensus says about this relay for a client's path:
// ID, advertised address, current onion key (after Ready).
func (r *Relay) Hop() circuit.Hop {
	cur, _ := r.keys.publicKeys()
	return circuit.Hop{ID: r.id, Addr: r.addr, OnionKey: cur}
}

// OnionKeys returns the current and previous (zero if none) onion public
// keys.
func (r *Relay) OnionKeys() (current, previous layercrypt.OnionPublicKey) {
	return r.keys.publicKeys()
}

// Descriptor returns the latest signed descriptor (nil before Run built one).
func (r *Relay) Descriptor() []byte {
	r.descMu.Lock()
	defer r.descMu.Unlock()
	return r.desc
}

// NumCircuits returns the circuits open through the relay.
func (r *Relay) NumCircuits() int {
	cr := r.circuits.Load()
	if cr == nil {
		return 0
	}
	return cr.NumCircuits()
}

// Run serves until ctx ends, then shuts down gracefully and returns nil; it
// returns an error if the relay cannot start. It wipes the relay's keys
// before returning, so a Relay runs once.
func (r *Relay) Run(ctx context.Context) error {
	if !r.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	defer r.keys.close()
	defer r.log.Sync()
	cfg := r.cfg
	r.started = r.opts.clock.Now()

	tcp, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("relay: listen on %s: %w (check listen in the config; is another relay running?)", cfg.Listen, err)
	}
	r.listenAddr = tcp.Addr()
	r.addr = cfg.address
	if r.addr.Port() == 0 {
		port := uint16(0)
		if ta, ok := r.listenAddr.(*net.TCPAddr); ok {
			port = uint16(ta.Port)
		}
		r.addr = netip.AddrPortFrom(r.addr.Addr(), port)
	}
	own := r.ownAddrStrings()
	linkCfg := &link.Config{
		Identity:         r.keys.id,
		HandshakeTimeout: cfg.Link.HandshakeTimeout,
		StreamWindow:     uint32(cfg.Link.StreamWindow),
		AcceptBacklog:    cfg.Link.AcceptBacklog,
		Log:              r.layerLog("link", own...),
		UnsafeLogging:    cfg.Log.UnsafeLogging,
	}
	ln, err := link.Listen(tcp, linkCfg)
	if err != nil {
		tcp.Close()
		return fmt.Errorf("relay: %w", err)
	}
	defer ln.Close()

	links := link.NewManager(linkCfg)
	defer links.Close()
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: MetricsNamespace,
		Name: "relay_links_open", Help: "Links to other relays held for reuse (either direction)."},
		func() float64 { return float64(links.Len()) }))

	var sched *mix.Scheduler
	if len(cfg.classes) > 0 {
		sched = mix.NewScheduler(mix.Config{Metrics: r.mm, Resolution: cfg.Mixing.Resolution, Budget: cfg.Mixing.BudgetCells})
	}
	rcfg := circuit.RelayConfig{
		Identity:           r.keys.id,
		OnionKeys:          r.keys.onionKeys,
		Links:              links,
		Mix:                sched,
		Classes:            cfg.classes,
		MixQueueCells:      cfg.Mixing.QueueCells,
		MaxMixCells:        cfg.Mixing.MaxCells,
		AllowPrivateExtend: cfg.Testnet,
		MaxCircuits:        cfg.Limits.MaxCircuits,
		CreateRate:         cfg.Limits.CreateRate,
		CreateBurst:        cfg.Limits.CreateBurst,
		BandwidthRate:      int(cfg.Bandwidth.Rate),
		BandwidthBurst:     int(cfg.Bandwidth.Burst),
		HandshakeTimeout:   cfg.Limits.HandshakeTimeout,
		ExtendTimeout:      cfg.Limits.ExtendTimeout,
		Log:                r.layerLog("circuit", own...),
		UnsafeLogging:      cfg.Log.UnsafeLogging,
		Metrics:            r.cm,
	}
	if cfg.Exit.Enabled {
		ec, err := r.exitConfig()
		if err != nil {
			return err
		}
		rcfg.Exit = ec
	}
	cr, err := circuit.NewRelay(rcfg)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r.circuits.Store(cr)
	links.OnDial(cr.ServeLink)

	var ms *obs.Server
	if *cfg.Metrics.Listen != "" {
		pages := map[string]http.Handler{"/status": http.HandlerFunc(r.serveStatus)}
		if cfg.Metrics.PProf {
			maps.Copy(pages, obs.PProfHandlers())
		}
		ms, err = obs.Serve(*cfg.Metrics.Listen, r.reg, pages, r.log.Named("metrics"))
		if err != nil {
			return fmt.Errorf("relay: %w (set metrics.listen to a free port, or \"\" to disable metrics)", err)
		}
		defer ms.Close()
		r.metricsAddr = ms.Addr()
	}

	desc, err := r.buildDescriptor(r.opts.clock.Now())
	if err != nil {
		return err
	}
	r.setDescriptor(desc)

	// Everything that runs until ctx ends, and stops with bg.
	bg, stopBG := context.WithCancel(context.Background())
	var bgWG sync.WaitGroup
	defer func() {
		stopBG()
		bgWG.Wait()
	}()
	if sched != nil {
		bgWG.Add(1)
		go func() {
			defer bgWG.Done()
			sched.Run(bg)
		}()
	}
	pub := newPublisher(cfg.authorities, r.opts.client, r.opts.clock, cfg.PublishInterval, r.log.Named("publish"), r.m)
	pub.update(desc)
	bgWG.Add(2)
	go func() {
		defer bgWG.Done()
		pub.run(bg)
	}()
	go func() {
		defer bgWG.Done()
		r.maintain(bg, pub)
	}()

	r.log.Info("relay running",
		zap.String("nickname", cfg.Nickname), zap.Stringer("id", r.id),
		zap.Stringer("address", r.addr), zap.Stringer("listen", r.listenAddr),
		zap.Bool("exit", cfg.Exit.Enabled), zap.Uint8s("delay_classes", cfg.sortedClasses()),
		zap.Int("authorities", len(cfg.authorities)), zap.Bool("testnet", cfg.Testnet))
	if len(cfg.authorities) == 0 {
		r.log.Warn("no authorities configured: the relay publishes no descriptor, so no consensus will list it")
	}
	if cfg.Log.UnsafeLogging {
		r.log.Warn("unsafe logging is on: logs will contain client addresses and destinations")
	}
	close(r.ready)

	var serveWG sync.WaitGroup
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		r.acceptLoop(ctx, ln, links, cr, &serveWG)
	}()

	<-ctx.Done()
	r.log.Info("shutting down: no new links; destroying circuits", zap.Int("circuits", cr.NumCircuits()))
	ln.Close()
	<-acceptDone
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	err = cr.Shutdown(sctx)
	cancel()
	if err != nil {
		r.log.Warn("circuits did not all close in time; closing their links", zap.Error(err), zap.Duration("shutdown_timeout", cfg.ShutdownTimeout))
	}
	r.closeInbound()
	links.Close()
	serveWG.Wait()
	r.log.Info("relay stopped")
	return nil
}

// ownAddrStrings are the relay's own addresses as logs write them.
func (r *Relay) ownAddrStrings() []string {
	var own []string
	if r.listenAddr != nil {
		own = append(own, r.listenAddr.String())
	}
	if r.addr.IsValid() {
		own = append(own, r.addr.String())
	}
	return own
}

// layerLog is the logger for a lower layer (link, circuit, resolver): with
// unsafe logging off, any address other than keep that slips into a line is
// scrubbed (see scrubCore).
func (r *Relay) layerLog(name string, keep ...string) *zap.Logger {
	l := r.log
	if !r.cfg.Log.UnsafeLogging {
		l = l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return newScrubCore(c, keep...) }))
	}
	if name != "" {
		l = l.Named(name)
	}
	return l
}

// acceptLoop takes authenticated links until ln closes.
func (r *Relay) acceptLoop(ctx context.Context, ln *link.Listener, links *link.Manager, cr *circuit.Relay, wg *sync.WaitGroup) {
	for {
		l, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("link listener failed; no more links are accepted", zap.Error(err))
			}
			return
		}
		peer := "client"
		if !l.Peer().IsZero() {
			peer = "relay"
		}
		r.m.linksAccepted.WithLabelValues(peer).Inc()
		r.inMu.Lock()
		r.inbound[l] = struct{}{}
		r.inMu.Unlock()
		r.m.linksInbound.Inc()
		links.Add(l)
		wg.Add(1)
		go func() {
			defer wg.Done()
			cr.ServeLink(l)
			l.Close()
			r.inMu.Lock()
			delete(r.inbound, l)
			r.inMu.Unlock()
			r.m.linksInbound.Dec()
		}()
	}
}

func (r *Relay) closeInbound() {
	r.inMu.Lock()
	ls := make([]*link.Link, 0, len(r.inbound))
	for l := range r.inbound {
		ls = append(ls, l)
	}
	r.inMu.Unlock()
	for _, l := range ls {
		l.Close()
	}
}

// maintain rotates onion keys when due and re-publishes the descriptor
// after each rotation and every publish interval.
func (r *Relay) maintain(ctx context.Context, pub *publisher) {
	clock := r.opts.clock
	rot := clock.NewTimer(r.keys.nextRotation())
	defer rot.Stop()
	repub := clock.NewTimer(clock.Now().Add(r.cfg.PublishInterval))
	defer repub.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rot.C():
			changed, err := r.keys.rotate(clock.Now())
			next := r.keys.nextRotation()
			if err != nil {
				r.log.Error("onion key rotation failed; retrying", zap.Error(err), zap.Duration("retry_in", rotationRetry))
				next = clock.Now().Add(rotationRetry)
			}
			if changed {
				r.m.rotations.Inc()
				_, prev := r.keys.publicKeys()
				r.log.Info("onion keys rotated", zap.Bool("previous_kept", !prev.IsZero()),
					zap.Time("next_rotation", next))
				r.republish(pub)
				repub.Reset(clock.Now().Add(r.cfg.PublishInterval))
			}
			rot.Reset(next)
		case <-repub.C():
			r.republish(pub)
			repub.Reset(clock.Now().Add(r.cfg.PublishInterval))
		}
	}
}

func (r *Relay) republish(pub *publisher) {
	desc, err := r.buildDescriptor(r.opts.clock.Now())
	if err != nil {
		r.log.Error("cannot build the descriptor", zap.Error(err))
		return
	}
	r.setDescriptor(desc)
	pub.update(desc)
}

func (r *Relay) setDescriptor(d []byte) {
	r.descMu.Lock()
	r.desc = d
	r.descMu.Unlock()
}

// exitConfig builds the exit role: policy (with the private and own-address
// rules first unless allowed), resolver, limits.
func (r *Relay) exitConfig() (*circuit.ExitConfig, error) {
	e := r.cfg.Exit
	pol := r.cfg.exitPolicy
	if !e.AllowPrivateDestinations {
		pol = pol.Prepend(exitpolicy.RejectPrivate(r.ownAddrs()...)...)
	}
	if err := pol.Validate(); err != nil {
		return nil, fmt.Errorf("relay: exit policy with the private-address rules in front: %w (shorten exit.policy)", err)
	}
	r.exitPolicy = &pol
	res, err := dnsproxy.NewResolver(dnsproxy.ResolverConfig{
		Upstreams: e.Resolvers,
		Timeout:   e.ResolverTimeout,
		Log:       r.layerLog("", append(r.ownAddrStrings(), e.Resolvers...)...),
	})
	if err != nil {
		return nil, fmt.Errorf("relay: exit resolver: %w (set exit.resolvers to the IP:port of a DNS resolver)", err)
	}
	return &circuit.ExitConfig{
		Policy:               pol,
		Resolver:             exitResolver{res},
		Dial:                 r.opts.exitDial,
		ConnectTimeout:       e.ConnectTimeout,
		IdleTimeout:          e.IdleTimeout,
		MaxStreamsPerCircuit: e.MaxStreamsPerCircuit,
		MaxStreams:           e.MaxStreams,
		MaxBufferedBytes:     int64(e.BufferMiB) << 20,
	}, nil
}

// ownAddrs are the relay's own addresses, which its exit refuses: the
// advertised and listen addresses and those of the host's interfaces.
func (r *Relay) ownAddrs() []netip.Addr {
	own := []netip.Addr{r.addr.Addr()}
	if ip := r.cfg.listenAddrIP; ip.IsValid() && !ip.IsUnspecified() {
		own = append(own, ip)
	}
	if ifs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				own = append(own, p.Addr().Unmap())
			}
		}
	}
	return own
}

// serveStatus is a one-screen summary for operators on the metrics port.
func (r *Relay) serveStatus(w http.ResponseWriter, _ *http.Request) {
	cur, prev := r.keys.publicKeys()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "nickname %s\nid %s\naddress %s\nversion %s\nexit %t\ncircuits %d\nonion-key %s\n",
		r.cfg.Nickname, r.id, r.addr, Version, r.cfg.Exit.Enabled, r.NumCircuits(), cur)
	if !prev.IsZero() {
		fmt.Fprintf(w, "onion-key-previous %s\n", prev)
	}
	fmt.Fprintf(w, "uptime %s\n", strconv.FormatInt(int64(r.opts.clock.Now().Sub(r.started)/time.Second), 10)+"s")
}
