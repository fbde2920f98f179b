package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Resolver defaults.
const (
	DefaultResolverTimeout = 5 * time.Second
	DefaultResolvConf      = "/etc/resolv.conf"
	defaultDNSPort         = 53
	// maxCNAMEHops bounds how far LookupHost follows a CNAME chain inside
	// one answer.
	maxCNAMEHops = 16
)

// ResolverConfig configures the exit's resolver side.
type ResolverConfig struct {
	// Upstreams are the resolvers to ask, in order, each "IP" or "IP:port"
	// (port 53 by default; IPv6 as "[2001:db8::1]:53"). Names are refused:
	// resolving them would need a resolver. Empty means the nameservers of
	// ResolvConf.
	Upstreams []string
	// Timeout bounds one attempt at one upstream (DefaultResolverTimeout).
	Timeout time.Duration
	// Log receives the resolver's logs (a no-op logger if nil).
	Log *zap.Logger
	// ResolvConf is the file whose nameservers are used when Upstreams is
	// empty (DefaultResolvConf).
	ResolvConf string
	// LookupCache bounds the answers LookupHost keeps, within their TTLs
	// (DefaultLookupCache; negative: no cache). An exit resolves the same
	// names for many streams, as Tor exits do with their DNS cache.
	LookupCache int
	// Now is the clock (time.Now if nil; tests set it).
	Now func() time.Time
}

// DefaultLookupCache is LookupHost's default cache size, in answers.
const DefaultLookupCache = 4096

// lookupCacheKey is the one "isolation key" of the exit's lookup cache: its
// answers serve every stream, as an exit's resolver does.
const lookupCacheKey = "exit"

// Resolver is the exit's side: it answers raw queries, and resolves names
// for CONNECT requests, with its upstream resolvers only: UDP first, TCP
// when the UDP answer is truncated, the next upstream when one fails.
type Resolver struct {
	upstreams []string
	timeout   time.Duration
	log       *zap.Logger
	cache     *answerCache // LookupHost's answers; nil when off
	now       func() time.Time
}

// NewResolver checks cfg and returns a Resolver. With no Upstreams it reads
// the nameservers from ResolvConf once, now.
func NewResolver(cfg ResolverConfig) (*Resolver, error) {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultResolverTimeout
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("dnsproxy: resolver timeout %v is negative: use a positive duration such as %v", cfg.Timeout, DefaultResolverTimeout)
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = DefaultResolvConf
	}
	r := &Resolver{timeout: cfg.Timeout, log: cfg.Log.Named("resolver"), now: cfg.Now}
	if r.now == nil {
		r.now = time.Now
	}
	if cfg.LookupCache == 0 {
		cfg.LookupCache = DefaultLookupCache
	}
	if cfg.LookupCache > 0 {
		r.cache = newAnswerCache(cfg.LookupCache, 1, maxCacheBytes)
	}
	if len(cfg.Upstreams) == 0 {
		cc, err := dns.ClientConfigFromFile(cfg.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("dnsproxy: no upstreams configured and %s unreadable: %w; set the resolver's upstreams", cfg.ResolvConf, err)
		}
		port := cc.Port
		if port == "" {
			port = strconv.Itoa(defaultDNSPort)
		}
		for _, s := range cc.Servers {
			cfg.Upstreams = append(cfg.Upstreams, net.JoinHostPort(s, port))
		}
		if len(cfg.Upstreams) == 0 {
			return nil, fmt.Errorf("dnsproxy: no upstreams configured and no nameserver in %s; set the resolver's upstreams", cfg.ResolvConf)
		}
	}
	for _, u := range cfg.Upstreams {
		ap, err := parseUpstream(u)
		if err != nil {
			return nil, err
		}
		r.upstreams = append(r.upstreams, ap.String())
	}
	r.log.Info("resolver ready", zap.Strings("upstreams", r.upstreams))
	return r, nil
}

// parseUpstream parses "IP" or "IP:port".
func parseUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("dnsproxy: upstream %q: port 0: use the resolver's port, usually 53", s)
		}
		return ap, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a, defaultDNSPort), nil
	}
	return netip.AddrPort{}, fmt.Errorf("dnsproxy: upstream %q: want an IP address with optional port, e.g. 9.9.9.9:53 or [2620:fe::fe]:53", s)
}

// Upstreams returns the upstream resolvers in the order they are asked.
func (r *Resolver) Upstreams() []string {
	return append([]string(nil), r.upstreams...)
}

// Exchange answers one raw query from a circuit. The query is checked like
// the front-end checks a stub's (one question, standard query, class IN, no
// zone transfers, at most MaxQuerySize bytes); a query that breaks a rule
// gets its DNS error reply (FORMERR, NOTIMP, REFUSED, BADVERS) with a nil
// error. A message that cannot be answered at all returns
// ErrMalformedQuery; when no upstream answers, ErrUpstream. Otherwise the
// upstream's answer comes back with the query's ID and question.
func (r *Resolver) Exchange(ctx context.Context, query []byte) ([]byte, error) {
	req, err := parseQuery(query)
	if err != nil {
		return nil, err
	}
	if rcode, _ := checkQuery(req); rcode != dns.RcodeSuccess {
		b, err := errorReply(req, rcode).Pack()
		if err != nil {
			return nil, fmt.Errorf("dnsproxy: pack error reply: %w", err)
		}
		return b, nil
	}
	a, err := r.query(ctx, keyOf(req))
	if err != nil {
		return nil, err
	}
	b, err := makeReply(req, a, 0).Pack()
	if err != nil {
		return nil, fmt.Errorf("dnsproxy: pack answer: %w", err)
	}
	return b, nil
}

// parseQuery parses a raw query; only messages that cannot be replied to
// at all are errors.
func parseQuery(query []byte) (*dns.Msg, error) {
	if len(query) > MaxQuerySize {
		return nil, fmt.Errorf("%w: %d bytes, above %d", ErrMalformedQuery, len(query), MaxQuerySize)
	}
	req := new(dns.Msg)
	if err := req.Unpack(query); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedQuery, err)
	}
	if req.Response {
		return nil, fmt.Errorf("%w: a response", ErrMalformedQuery)
	}
	return req, nil
}

// query asks the upstreams in order for k.
func (r *Resolver) query(ctx context.Context, k queryKey) (*dns.Msg, error) {
	var errs []error
	for _, up := range r.upstreams {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		a, err := r.queryUpstream(ctx, forwardQuery(k, dns.Id()), up)
		if err == nil {
			return a, nil
		}
		r.log.Debug("upstream failed", zap.String("upstream", up), zap.Error(err))
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
	}
	return nil, fmt.Errorf("%w: %w", ErrUpstream, errors.Join(errs...))
}

// queryUpstream asks one upstream: UDP, then TCP if the answer is truncated.
func (r *Resolver) queryUpstream(ctx context.Context, q *dns.Msg, upstream string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	a, err := r.exchangeNet(ctx, "udp", q, upstream)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	if !a.Truncated {
		return a, nil
	}
	a, err = r.exchangeNet(ctx, "tcp", q, upstream)
	if err != nil {
		return nil, fmt.Errorf("tcp after truncated udp: %w", err)
	}
	return a, nil
}

// exchangeNet sends q to upstream over network and checks that the answer
// is a response to q. Cancelling ctx ends the I/O at once.
func (r *Resolver) exchangeNet(ctx context.Context, network string, q *dns.Msg, upstream string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, UDPSize: forwardUDPSize, Timeout: r.timeout}
	conn, err := c.DialContext(ctx, upstream)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	a, _, err := c.ExchangeWithConnContext(ctx, q, conn)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	if err := matchAnswer(q, a); err != nil {
		return nil, err
	}
	if err := roundTrips(a); err != nil {
		return nil, err
	}
	return a, nil
}

// lookupQuery is query through LookupHost's cache.
func (r *Resolver) lookupQuery(ctx context.Context, k queryKey) (*dns.Msg, error) {
	if r.cache != nil {
		if m, _, ok := r.cache.get(lookupCacheKey, k, r.now()); ok {
			return m, nil
		}
	}
	m, err := r.query(ctx, k)
	if err == nil && r.cache != nil {
		r.cache.put(lookupCacheKey, k, m, m.Len(), cacheTTL(m), r.now())
	}
	return m, err
}

// LookupHost resolves host to its addresses with the upstreams (A and AAAA,
// asked at once), never with the system's resolver. An IP literal is
// returned as is. A name that does not exist, or has no addresses, gives
// ErrNotFound; an upstream failure gives ErrUpstream or ErrServerFailure;
// a host that is not a valid DNS name gives ErrInvalidName. Errors do not
// contain the name.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a}, nil
	}
	if !validHostname(host) {
		return nil, ErrInvalidName
	}
	name := dns.CanonicalName(host)

	qtypes := [2]uint16{dns.TypeA, dns.TypeAAAA}
	var (
		msgs [2]*dns.Msg
		errs [2]error
		wg   sync.WaitGroup
	)
	for i, t := range qtypes {
		wg.Go(func() {
			msgs[i], errs[i] = r.lookupQuery(ctx, queryKey{name: name, qtype: t, qclass: dns.ClassINET})
		})
	}
	wg.Wait()

	var (
		addrs    []netip.Addr
		nxdomain bool
		failure  error
		netErr   error
	)
	for i, m := range msgs {
		if errs[i] != nil {
			netErr = errs[i]
			continue
		}
		switch m.Rcode {
		case dns.RcodeSuccess:
			addrs = append(addrs, addressesOf(m, name, qtypes[i])...)
		case dns.RcodeNameError:
			nxdomain = true
		default:
			failure = fmt.Errorf("%w: %s", ErrServerFailure, dns.RcodeToString[m.Rcode])
		}
	}
	switch {
	case len(addrs) > 0:
		return addrs, nil
	case nxdomain:
		return nil, fmt.Errorf("%w: NXDOMAIN", ErrNotFound)
	case netErr != nil:
		return nil, netErr
	case failure != nil:
		return nil, failure
	default:
		return nil, fmt.Errorf("%w: no A or AAAA records", ErrNotFound)
	}
}

// validHostname accepts the names a CONNECT request may carry: ASCII
// letters, digits, '-', '_' and dots (IDNs in their punycode form), a valid
// DNS name as a whole, without escapes.
func validHostname(host string) bool {
	if host == "" || host == "." || len(host) > 254 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	_, ok := dns.IsDomainName(host)
	return ok && !strings.Contains(host, "..")
}

// addressesOf collects the addresses of type qtype for name in m's answer,
// following the CNAME chain from name.
func addressesOf(m *dns.Msg, name string, qtype uint16) []netip.Addr {
	chain := map[string]bool{name: true}
	target := name
	for range maxCNAMEHops {
		next := ""
		for _, rr := range m.Answer {
			if c, ok := rr.(*dns.CNAME); ok && dns.CanonicalName(c.Hdr.Name) == target {
				next = dns.CanonicalName(c.Target)
				break
			}
		}
		if next == "" || chain[next] {
			break
		}
		chain[next] = true
		target = next
	}
	var out []netip.Addr
	for _, rr := range m.Answer {
		if !chain[dns.CanonicalName(rr.Header().Name)] {
			continue
		}
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				ip = v.A
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				ip = v.AAAA
			}
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			if qtype == dns.TypeA {
				a = a.Unmap()
			}
			out = append(out, a)
		}
	}
	return out
}
