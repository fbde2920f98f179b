package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Exchanger carries one raw DNS query to an exit over a circuit and returns
// the exit's raw answer. isolation names the stream-isolation key (queries
// with different keys never share a circuit).
//
// The Server calls it with a normalised query (see the package doc) of at
// most MaxQuerySize bytes, under a context that ends after
// ServerConfig.Timeout or when the Server closes; Exchange must return when
// the context ends. The answer must be a DNS response to that query, at most
// MaxAnswerSize bytes; anything else counts as a network failure and the
// stub gets SERVFAIL.
type Exchanger interface {
	Exchange(ctx context.Context, isolation string, query []byte) ([]byte, error)
}

// Defaults for zero ServerConfig fields.
const (
	DefaultAddr           = "127.0.0.1:9053"
	DefaultTimeout        = 10 * time.Second
	DefaultMaxInflight    = 256
	DefaultMaxTCPConns    = 64
	DefaultTCPIdleTimeout = 5 * time.Second
)

// ServerConfig configures the DNS front-end. Zero fields take the defaults
// named on them.
type ServerConfig struct {
	// Addr is the IP:port to listen on, UDP and TCP on the same address
	// (DefaultAddr). Port 0 picks a free port, the same one for both. It must
	// be an IP literal: resolving a name here would be a local lookup.
	Addr string
	// Exchanger carries queries to exits. Required.
	Exchanger Exchanger
	// Log receives the server's logs (a no-op logger if nil).
	Log *zap.Logger
	// UnsafeLogging lets query names, answers and client addresses appear
	// in debug logs. Off by default.
	UnsafeLogging bool
	// CacheEntries bounds each isolation key's answer cache
	// (DefaultCacheEntries); negative disables caching.
	CacheEntries int
	// Timeout bounds each query over the network (DefaultTimeout).
	Timeout time.Duration
	// Metrics receives the server's metrics (unregistered metrics if nil).
	Metrics *Metrics
	// MaxInflight bounds the queries waiting for the network at once
	// (DefaultMaxInflight); beyond it stubs get REFUSED, counted as
	// rejected{reason="inflight"}.
	MaxInflight int
	// MaxTCPConns bounds open TCP connections (DefaultMaxTCPConns); beyond
	// it new connections are closed, counted as rejected{reason="tcp_conns"}.
	MaxTCPConns int
	// TCPIdleTimeout is how long a TCP connection may take to deliver a
	// query, and to take a reply (DefaultTCPIdleTimeout).
	TCPIdleTimeout time.Duration
}

// serverState is a Server's lifecycle state. Transitions: stateNew ->
// stateRunning (Start) -> stateClosed (Close); stateNew -> stateClosed
// (Close without Start, or a failed Start).
type serverState uint8

const (
	stateNew serverState = iota
	stateRunning
	stateClosed
)

func (s serverState) String() string {
	switch s {
	case stateNew:
		return "new"
	case stateRunning:
		return "running"
	case stateClosed:
		return "closed"
	default:
		return "serverState(" + strconv.Itoa(int(s)) + ")"
	}
}

// Server is the client's DNS front-end: it answers stubs over UDP and TCP by
// sending their queries through an Exchanger, never by a local lookup.
type Server struct {
	cfg     ServerConfig
	log     *zap.Logger
	metrics *Metrics
	cache   *answerCache // nil when caching is disabled
	sem     chan struct{}
	now     func() time.Time // the clock; tests replace it before Start
	ctx     context.Context  // ends when the server closes
	cancel  context.CancelFunc
	closing atomic.Bool // set first thing in Close; read by the TCP reader

	flightMu sync.Mutex // guards flights
	flights  map[flightKey]*flight

	mu      sync.Mutex // guards the following fields
	state   serverState
	addr    string
	udpConn *net.UDPConn
	tcpLn   *limitListener
	udpSrv  *dns.Server
	tcpSrv  *dns.Server

	wg sync.WaitGroup // the serve goroutines
}

// flightKey names a query on the network; identical concurrent queries with
// the same isolation key share one exchange.
type flightKey struct {
	iso string
	key queryKey
}

type flight struct {
	done chan struct{} // closed when msg and err are set
	msg  *dns.Msg
	err  error
}

// NewServer checks cfg, fills in defaults and returns a Server that is not
// yet listening.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Exchanger == nil {
		return nil, errors.New("dnsproxy: ServerConfig.Exchanger is nil: the server needs the circuit layer's Exchanger")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if _, err := netip.ParseAddrPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("dnsproxy: listen address %q: want IP:port, e.g. %s: %w", cfg.Addr, DefaultAddr, err)
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.CacheEntries == 0 {
		cfg.CacheEntries = DefaultCacheEntries
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.MaxTCPConns == 0 {
		cfg.MaxTCPConns = DefaultMaxTCPConns
	}
	if cfg.TCPIdleTimeout == 0 {
		cfg.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("dnsproxy: Timeout %v is negative: use a positive duration such as %v", cfg.Timeout, DefaultTimeout)
	case cfg.MaxInflight < 0:
		return nil, fmt.Errorf("dnsproxy: MaxInflight %d is negative: use a positive bound such as %d", cfg.MaxInflight, DefaultMaxInflight)
	case cfg.MaxTCPConns < 0:
		return nil, fmt.Errorf("dnsproxy: MaxTCPConns %d is negative: use a positive bound such as %d", cfg.MaxTCPConns, DefaultMaxTCPConns)
	case cfg.TCPIdleTimeout < 0:
		return nil, fmt.Errorf("dnsproxy: TCPIdleTimeout %v is negative: use a positive duration such as %v", cfg.TCPIdleTimeout, DefaultTCPIdleTimeout)
	}
	metrics := cfg.Metrics
	if metrics == nil {
		var err error
		if metrics, err = NewMetrics(nil); err != nil {
			return nil, err
		}
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Log.Named("dns"),
		metrics: metrics,
		sem:     make(chan struct{}, cfg.MaxInflight),
		now:     time.Now,
		flights: make(map[flightKey]*flight),
	}
	if cfg.CacheEntries > 0 {
		s.cache = newAnswerCache(cfg.CacheEntries, maxCacheKeys, maxCacheBytes)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Start binds UDP and TCP on the configured address and serves until Close.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		return fmt.Errorf("dnsproxy: start: server is %s", s.state)
	}
	udpConn, tcpLn, err := listenPair(s.cfg.Addr)
	if err != nil {
		s.state = stateClosed
		s.cancel()
		return fmt.Errorf("dnsproxy: start: %w", err)
	}
	s.udpConn = udpConn
	s.addr = udpConn.LocalAddr().String()
	s.tcpLn = newLimitListener(tcpLn, s.cfg.MaxTCPConns, s.cfg.TCPIdleTimeout, func() {
		s.metrics.Rejected.WithLabelValues(reasonTCPConns).Inc()
	})
	idle := s.cfg.TCPIdleTimeout
	common := func(srv *dns.Server) *dns.Server {
		srv.Handler = s
		srv.ReadTimeout = idle
		srv.WriteTimeout = idle
		srv.IdleTimeout = func() time.Duration { return idle }
		srv.MsgAcceptFunc = s.accept
		srv.MsgInvalidFunc = s.invalid
		srv.DecorateReader = func(r dns.Reader) dns.Reader { return queryReader{inner: r, s: s} }
		return srv
	}
	// The UDP buffer is one byte larger than any query we accept, so that a
	// larger datagram is seen as such (the kernel truncates it to the
	// buffer) and dropped.
	s.udpSrv = common(&dns.Server{PacketConn: udpConn, UDPSize: MaxQuerySize + 1})
	s.tcpSrv = common(&dns.Server{Listener: s.tcpLn})

	// Each serve goroutine reports once: nil when it is serving, or the
	// error that stopped it before.
	servers := []*dns.Server{s.udpSrv, s.tcpSrv}
	ready := make([]chan error, len(servers))
	for i, srv := range servers {
		ready[i] = make(chan error, 1)
		var once sync.Once
		report := func(err error) { once.Do(func() { ready[i] <- err }) }
		srv.NotifyStartedFunc = func() { report(nil) }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := srv.ActivateAndServe()
			if err == nil {
				err = errors.New("stopped")
			}
			report(err)
			if !s.closing.Load() {
				s.log.Error("dns listener stopped", zap.String("net", netOf(srv)), zap.Error(err))
			}
		}()
	}
	var errs []error
	for i, srv := range servers {
		if err := <-ready[i]; err != nil {
			errs = append(errs, fmt.Errorf("serve %s: %w", netOf(srv), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Undo: every server has either stopped or is serving.
		s.state = stateClosed
		s.closing.Store(true)
		s.cancel()
		s.tcpLn.Close()
		for _, srv := range servers {
			srv.Shutdown() // "not started" for the one that failed
		}
		s.udpConn.Close()
		s.wg.Wait()
		return fmt.Errorf("dnsproxy: start: %w", err)
	}
	s.state = stateRunning
	s.log.Info("dns listener started", zap.String("addr", s.addr))
	return nil
}

func netOf(srv *dns.Server) string {
	if srv.PacketConn != nil {
		return "udp"
	}
	return "tcp"
}

// listenPair binds UDP and TCP on the same IP:port. With port 0 it binds UDP
// on a free port and then TCP on that port, trying again if TCP's is taken.
func listenPair(addr string) (*net.UDPConn, net.Listener, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	const attempts = 16
	for range attempts {
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp: %w", err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		t, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr(), uint16(port))))
		if err == nil {
			return u, t, nil
		}
		u.Close()
		if ap.Port() != 0 {
			return nil, nil, fmt.Errorf("listen tcp: %w", err)
		}
	}
	return nil, nil, fmt.Errorf("listen: no port free for both udp and tcp after %d attempts", attempts)
}

// FlushCache forgets every cached answer, of every isolation key. A client
// taking a new identity calls it: answers fetched under the old identity
// must not be served, and replayed as cache hits, under the new one.
func (s *Server) FlushCache() {
	if s.cache != nil {
		s.cache.clear()
	}
}

// Addr returns the bound IP:port (after Start), the same for UDP and TCP.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// UDPAddr returns the bound UDP address, or nil before Start.
func (s *Server) UDPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.udpConn == nil {
		return nil
	}
	return s.udpConn.LocalAddr()
}

// TCPAddr returns the bound TCP address, or nil before Start.
func (s *Server) TCPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcpLn == nil {
		return nil
	}
	return s.tcpLn.Addr()
}

// Close stops the listeners, ends queries on the network and waits for all
// of the server's goroutines. It may be called more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		return nil
	}
	s.state = stateClosed
	udpSrv, tcpSrv, tcpLn := s.udpSrv, s.tcpSrv, s.tcpLn
	s.mu.Unlock()

	s.closing.Store(true)
	s.cancel()
	if tcpLn != nil {
		tcpLn.Close() // closes every TCP connection too
	}
	var errs []error
	for _, srv := range []*dns.Server{udpSrv, tcpSrv} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("shutdown %s: %w", netOf(srv), err))
		}
	}
	s.wg.Wait()
	if udpSrv != nil && len(errs) == 0 {
		s.log.Info("dns listener closed")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dnsproxy: close: %w", err)
	}
	return nil
}

// IsolationKey is the stream-isolation key of a query that reached the
// listener at listener (IP:port) from client: "dns|" + listener + "|" +
// client IP. Queries from one client to one listener share circuits and
// cache; anything else does not.
func IsolationKey(listener string, client net.Addr) string {
	var ip netip.Addr
	switch a := client.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		if client != nil {
			if ap, err := netip.ParseAddrPort(client.String()); err == nil {
				ip = ap.Addr()
			}
		}
	}
	return "dns|" + listener + "|" + ip.Unmap().String()
}

// accept is the dns.Server's header check.
func (s *Server) accept(dh dns.Header) dns.MsgAcceptAction {
	action, reason := acceptQuery(dh)
	if action != dns.MsgAccept {
		s.metrics.Rejected.WithLabelValues(reason).Inc()
		switch action {
		case dns.MsgReject:
			s.metrics.Queries.WithLabelValues(resultFormErr).Inc()
		case dns.MsgRejectNotImplemented:
			s.metrics.Queries.WithLabelValues(resultOther).Inc()
		}
	}
	return action
}

// invalid counts messages dns.Server could not parse.
func (s *Server) invalid(_ []byte, _ error) {
	s.metrics.Rejected.WithLabelValues(reasonMalformed).Inc()
}

// ServeDNS answers one parsed query. It implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	start := time.Now()
	if rcode, reason := checkQuery(req); rcode != dns.RcodeSuccess {
		s.metrics.Rejected.WithLabelValues(reason).Inc()
		s.metrics.Queries.WithLabelValues(resultOf(rcode)).Inc()
		s.reply(w, req, errorReply(req, rcode))
		return
	}
	iso := IsolationKey(s.addr, w.RemoteAddr())
	k := keyOf(req)

	if s.cache != nil {
		if a, age, ok := s.cache.get(iso, k, s.now()); ok {
			// Counters move before the reply, so that a stub that has its
			// answer sees them counted.
			s.metrics.Queries.WithLabelValues(resultCacheHit).Inc()
			s.reply(w, req, makeReply(req, a, age))
			s.metrics.Duration.WithLabelValues(pathCache).Observe(time.Since(start).Seconds())
			s.logQuery(w, k, "cache", a.Rcode, nil)
			return
		}
	}

	select {
	case s.sem <- struct{}{}:
	default:
		s.metrics.Rejected.WithLabelValues(reasonInflight).Inc()
		s.metrics.Queries.WithLabelValues(resultRefused).Inc()
		s.reply(w, req, errorReply(req, dns.RcodeRefused))
		return
	}
	s.metrics.Inflight.Inc()
	a, err := s.resolve(iso, k)
	s.metrics.Inflight.Dec()
	<-s.sem

	var reply *dns.Msg
	if err != nil {
		reply = errorReply(req, dns.RcodeServerFailure)
		s.metrics.Queries.WithLabelValues(resultError).Inc()
	} else {
		reply = makeReply(req, a, 0)
		s.metrics.Queries.WithLabelValues(resultOf(a.Rcode)).Inc()
	}
	s.reply(w, req, reply)
	s.metrics.Duration.WithLabelValues(pathNetwork).Observe(time.Since(start).Seconds())
	rcode := dns.RcodeServerFailure
	if a != nil {
		rcode = a.Rcode
	}
	s.logQuery(w, k, "network", rcode, err)
}

// logQuery writes a debug line for a query; names and addresses only with
// UnsafeLogging.
func (s *Server) logQuery(w dns.ResponseWriter, k queryKey, path string, rcode int, err error) {
	ce := s.log.Check(zap.DebugLevel, "dns query")
	if ce == nil {
		return
	}
	fields := []zap.Field{zap.String("path", path), zap.String("rcode", dns.RcodeToString[rcode])}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	if s.cfg.UnsafeLogging {
		fields = append(fields, zap.String("query", k.String()), zap.Stringer("client", w.RemoteAddr()))
	}
	ce.Write(fields...)
}

// reply sends r to the stub, truncated to the stub's size over UDP. If r
// cannot be packed, the stub gets SERVFAIL.
func (s *Server) reply(w dns.ResponseWriter, req, r *dns.Msg) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	if udp {
		r.Truncate(udpReplySize(req))
	}
	b, err := r.Pack()
	if err != nil {
		s.log.Debug("dns reply does not pack; sending SERVFAIL", zap.Error(err))
		b, err = errorReply(req, dns.RcodeServerFailure).Pack()
		if err != nil {
			s.log.Debug("dns SERVFAIL does not pack", zap.Error(err))
			return
		}
	}
	if _, err := w.Write(b); err != nil {
		s.log.Debug("dns reply not sent", zap.Error(err))
	}
}

// resolve returns the answer for k from the network; identical concurrent
// queries with the same isolation key share one exchange.
func (s *Server) resolve(iso string, k queryKey) (*dns.Msg, error) {
	fk := flightKey{iso: iso, key: k}
	s.flightMu.Lock()
	if f, ok := s.flights[fk]; ok {
		s.flightMu.Unlock()
		select {
		case <-f.done:
			return f.msg, f.err
		case <-s.ctx.Done():
			return nil, ErrClosed
		}
	}
	f := &flight{done: make(chan struct{})}
	s.flights[fk] = f
	s.flightMu.Unlock()

	f.msg, f.err = s.exchange(iso, k)

	s.flightMu.Lock()
	delete(s.flights, fk)
	s.flightMu.Unlock()
	close(f.done)
	return f.msg, f.err
}

// exchange sends the normalised query for k through the Exchanger, checks
// the answer and caches it.
func (s *Server) exchange(iso string, k queryKey) (*dns.Msg, error) {
	q := forwardQuery(k, 0)
	raw, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	ans, err := s.cfg.Exchanger.Exchange(ctx, iso, raw)
	if err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	a, err := checkAnswer(q, ans)
	if err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	if s.cache != nil {
		if ttl := cacheTTL(a); ttl > 0 {
			s.cache.put(iso, k, a, len(ans), ttl, s.now())
		}
	}
	return a, nil
}
