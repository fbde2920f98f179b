package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap/zaptest"
)

func newTestResolver(t *testing.T, timeout time.Duration, upstreams ...string) *Resolver {
	t.Helper()
	r, err := NewResolver(ResolverConfig{Upstreams: upstreams, Timeout: timeout, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("NewResolver: %v", err)
	}
	return r
}

// resolverExchange packs m, runs it through r.Exchange and parses the
// answer.
func resolverExchange(t *testing.T, r *Resolver, m *dns.Msg) *dns.Msg {
	t.Helper()
	q, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := r.Exchange(context.Background(), q)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	a := new(dns.Msg)
	if err := a.Unpack(raw); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	return a
}

func TestResolverExchange(t *testing.T) {
	auth := newAuthority(t)
	r := newTestResolver(t, 2*time.Second, auth.addr)

	m := question("WWW.chive.TEST.", dns.TypeAAAA)
	m.Id = 0x1234
	a := resolverExchange(t, r, m)
	if a.Id != 0x1234 {
		t.Errorf("id: got %#x, want 0x1234", a.Id)
	}
	if !a.Response || a.Rcode != dns.RcodeSuccess || len(a.Question) != 1 || a.Question[0].Name != "WWW.chive.TEST." {
		t.Errorf("header/question: %v", a)
	}
	if len(a.Answer) != 1 || a.Answer[0].(*dns.AAAA).AAAA.String() != "2001:db8::10" {
		t.Errorf("answer: %v", a.Answer)
	}
	if a.IsEdns0() != nil {
		t.Error("OPT in the answer to a query without one")
	}
	// The upstream saw one UDP query, lower-cased, with EDNS0.
	if c := auth.count("www.chive.test.", dns.TypeAAAA, "udp"); c != 1 {
		t.Errorf("upstream udp queries: %d", c)
	}

	// Every type passes; NXDOMAIN and SERVFAIL come back as such.
	for _, c := range []struct {
		name  string
		qtype uint16
		rcode int
		n     int
	}{
		{"chive.test.", dns.TypeMX, dns.RcodeSuccess, 1},
		{"_xmpp._tcp.chive.test.", dns.TypeSRV, dns.RcodeSuccess, 1},
		{"10.2.0.192.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, 1},
		{"www.chive.test.", dns.TypeHTTPS, dns.RcodeSuccess, 1},
		{"chive.test.", dns.TypeCAA, dns.RcodeSuccess, 1},
		{"nope.chive.test.", dns.TypeA, dns.RcodeNameError, 0},
		{servfailName, dns.TypeA, dns.RcodeServerFailure, 0},
	} {
		a := resolverExchange(t, r, question(c.name, c.qtype))
		if a.Rcode != c.rcode || len(a.Answer) != c.n {
			t.Errorf("%s %s: got %s with %d answers, want %s with %d", c.name, dns.TypeToString[c.qtype],
				dns.RcodeToString[a.Rcode], len(a.Answer), dns.RcodeToString[c.rcode], c.n)
		}
	}
}

func TestResolverTCPFallback(t *testing.T) {
	auth := newAuthority(t)
	r := newTestResolver(t, 2*time.Second, auth.addr)
	a := resolverExchange(t, r, question("big.chive.test.", dns.TypeTXT))
	if a.Truncated || len(a.Answer) != 20 {
		t.Errorf("got %d records (TC %v), want all 20", len(a.Answer), a.Truncated)
	}
	if u, c := auth.count("big.chive.test.", dns.TypeTXT, "udp"), auth.count("big.chive.test.", dns.TypeTXT, "tcp"); u != 1 || c != 1 {
		t.Errorf("upstream queries: udp %d tcp %d, want 1 and 1", u, c)
	}
	// A small answer needs no TCP.
	resolverExchange(t, r, question("www.chive.test.", dns.TypeA))
	if c := auth.count("www.chive.test.", dns.TypeA, "tcp"); c != 0 {
		t.Errorf("tcp queries for a small answer: %d", c)
	}
}

func TestResolverRefusesAndValidates(t *testing.T) {
	auth := newAuthority(t)
	r := newTestResolver(t, 2*time.Second, auth.addr)
	for _, c := range []struct {
		name  string
		msg   func() *dns.Msg
		rcode int
	}{
		{"AXFR", func() *dns.Msg { return question("chive.test.", dns.TypeAXFR) }, dns.RcodeRefused},
		{"IXFR", func() *dns.Msg { return question("chive.test.", dns.TypeIXFR) }, dns.RcodeRefused},
		{"class CH", func() *dns.Msg {
			m := question("version.bind.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}, dns.RcodeRefused},
		{"two questions", func() *dns.Msg {
			m := question("www.chive.test.", dns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}, dns.RcodeFormatError},
		{"no question", func() *dns.Msg {
			m := question("www.chive.test.", dns.TypeA)
			m.Question = nil
			return m
		}, dns.RcodeFormatError},
		{"answer section", func() *dns.Msg {
			m := question("www.chive.test.", dns.TypeA)
			m.Answer = []dns.RR{&dns.A{Hdr: hdr("www.chive.test.", dns.TypeA, 1), A: net.IPv4(1, 2, 3, 4)}}
			return m
		}, dns.RcodeFormatError},
		{"UPDATE", func() *dns.Msg {
			m := question("chive.test.", dns.TypeSOA)
			m.Opcode = dns.OpcodeUpdate
			return m
		}, dns.RcodeNotImplemented},
		{"EDNS version 1", func() *dns.Msg {
			m := question("www.chive.test.", dns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}, dns.RcodeBadVers},
		{"TSIG", func() *dns.Msg {
			m := question("www.chive.test.", dns.TypeA)
			m.Extra = append(m.Extra, &dns.TSIG{Hdr: hdr("key.", dns.TypeTSIG, 0), Algorithm: dns.HmacSHA256, MACSize: 0, OrigId: m.Id})
			return m
		}, dns.RcodeFormatError},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := c.msg()
			m.Id = 0x4242
			a := resolverExchange(t, r, m)
			if a.Rcode != c.rcode || !a.Response || a.Id != 0x4242 {
				t.Errorf("got %s (response %v, id %#x), want %s", dns.RcodeToString[a.Rcode], a.Response, a.Id, dns.RcodeToString[c.rcode])
			}
		})
	}
	// Messages that get no reply at all.
	resp := question("www.chive.test.", dns.TypeA)
	resp.Response = true
	big := question("www.chive.test.", dns.TypeA)
	big.SetEdns0(1232, false)
	big.IsEdns0().Option = append(big.IsEdns0().Option, &dns.EDNS0_PADDING{Padding: make([]byte, MaxQuerySize)})
	for name, raw := range map[string][]byte{
		"garbage":   []byte("\x00\x01garbage"),
		"empty":     nil,
		"response":  mustPack(t, resp),
		"oversized": mustPack(t, big),
	} {
		if _, err := r.Exchange(context.Background(), raw); !errors.Is(err, ErrMalformedQuery) {
			t.Errorf("%s: got %v, want ErrMalformedQuery", name, err)
		}
	}
	if c := auth.total.Load(); c != 0 {
		t.Errorf("upstream queries: got %d, want 0", c)
	}
}

func TestResolverLookupHost(t *testing.T) {
	auth := newAuthority(t)
	r := newTestResolver(t, 2*time.Second, auth.addr)
	ctx := context.Background()
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	for _, c := range []struct {
		host string
		want []netip.Addr
		err  error
	}{
		// Names only the upstream knows: the system resolver
		// (/etc/resolv.conf) could not answer them.
		{"www.chive.test", addrs("192.0.2.10", "2001:db8::10"), nil},
		{"WWW.Chive.Test.", addrs("192.0.2.10", "2001:db8::10"), nil},
		{"alias.chive.test", addrs("192.0.2.10", "2001:db8::10"), nil},
		{"v6only.chive.test", addrs("2001:db8::66"), nil},
		{"192.0.2.77", addrs("192.0.2.77"), nil},
		{"[2001:db8::7]", addrs("2001:db8::7"), nil},
		{"nope.chive.test", nil, ErrNotFound},
		{"dangling.chive.test", nil, ErrNotFound},
		{"txt.chive.test", nil, ErrNotFound}, // NODATA
		{"servfail.chive.test", nil, ErrServerFailure},
		{"refused.chive.test", nil, ErrServerFailure},
		{"", nil, ErrInvalidName},
		{".", nil, ErrInvalidName},
		{"a..b", nil, ErrInvalidName},
		{"bad name.test", nil, ErrInvalidName},
		{`esc\046aped.test`, nil, ErrInvalidName},
		{strings.Repeat("a", 64) + ".test", nil, ErrInvalidName},
		{strings.Repeat("abcdefg.", 40) + "test", nil, ErrInvalidName},
	} {
		got, err := r.LookupHost(ctx, c.host)
		if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
			t.Errorf("LookupHost(%q): error %v, want %v", c.host, err, c.err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("LookupHost(%q): got %v, want %v", c.host, got, c.want)
		}
	}
	// The kinds of failure stay apart.
	_, nx := r.LookupHost(ctx, "nope.chive.test")
	_, sf := r.LookupHost(ctx, "servfail.chive.test")
	if errors.Is(nx, ErrServerFailure) || errors.Is(sf, ErrNotFound) || errors.Is(nx, ErrUpstream) || errors.Is(sf, ErrUpstream) {
		t.Errorf("errors mix: NXDOMAIN %v, SERVFAIL %v", nx, sf)
	}
	if strings.Contains(nx.Error(), "nope") {
		t.Errorf("error names the host: %v", nx)
	}

	// A dead upstream: ErrUpstream, distinct from both.
	auth.silent.Store(true)
	r2 := newTestResolver(t, 200*time.Millisecond, auth.addr)
	_, err := r2.LookupHost(ctx, "www.chive.test")
	if !errors.Is(err, ErrUpstream) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrServerFailure) {
		t.Errorf("silent upstream: got %v, want ErrUpstream only", err)
	}
}

func TestResolverFailover(t *testing.T) {
	auth := newAuthority(t)
	// A port with nobody behind it: ICMP port unreachable, at once.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close()
	// A silent upstream: the attempt times out.
	silent := newAuthority(t)
	silent.silent.Store(true)

	r := newTestResolver(t, 300*time.Millisecond, dead, silent.addr, auth.addr)
	start := time.Now()
	got, err := r.LookupHost(context.Background(), "www.chive.test")
	if err != nil || len(got) != 2 {
		t.Fatalf("LookupHost: %v %v", got, err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("took %v: want one timeout of the silent upstream", d)
	}
	if silent.total.Load() == 0 {
		t.Error("the silent upstream was not asked")
	}
}

func TestResolverContextCancel(t *testing.T) {
	silent := newAuthority(t)
	silent.silent.Store(true)
	r := newTestResolver(t, time.Minute, silent.addr)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := r.Exchange(ctx, mustPack(t, question("www.chive.test.", dns.TypeA)))
	if !errors.Is(err, ErrUpstream) || !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want ErrUpstream wrapping context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned after %v, long after the cancel", d)
	}
}

func TestResolverConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("# test\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := NewResolver(ResolverConfig{ResolvConf: conf})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Upstreams(), []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Errorf("from resolv.conf: got %q, want %q", got, want)
	}
	r, err = NewResolver(ResolverConfig{Upstreams: []string{"9.9.9.9", "[2620:fe::fe]:5353", "127.0.0.1:5300", "2001:db8::1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Upstreams(), []string{"9.9.9.9:53", "[2620:fe::fe]:5353", "127.0.0.1:5300", "[2001:db8::1]:53"}; !slices.Equal(got, want) {
		t.Errorf("configured: got %q, want %q", got, want)
	}
	empty := filepath.Join(dir, "empty.conf")
	os.WriteFile(empty, []byte("search example\n"), 0o600)
	for _, c := range []struct {
		name string
		cfg  ResolverConfig
		want string
	}{
		{"hostname", ResolverConfig{Upstreams: []string{"dns.example:53"}}, "want an IP address"},
		{"port 0", ResolverConfig{Upstreams: []string{"127.0.0.1:0"}}, "port 0"},
		{"no file", ResolverConfig{ResolvConf: filepath.Join(dir, "missing")}, "set the resolver's upstreams"},
		{"no nameserver", ResolverConfig{ResolvConf: empty}, "no nameserver"},
		{"negative timeout", ResolverConfig{Upstreams: []string{"127.0.0.1"}, Timeout: -time.Second}, "negative"},
	} {
		if _, err := NewResolver(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// TestNoSystemResolver replaces the process's Go resolver with one that
// counts and refuses every lookup, then runs the whole path — dig through the
// Server, the Exchanger, the Resolver's Exchange and LookupHost — and checks
// that nothing asked it.
func TestNoSystemResolver(t *testing.T) {
	var systemLookups atomic.Int64
	saved := net.DefaultResolver
	net.DefaultResolver = &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			systemLookups.Add(1)
			return nil, errors.New("test: system resolver used")
		},
	}
	t.Cleanup(func() { net.DefaultResolver = saved })

	// The hook works: a lookup through the system resolver is counted.
	if _, err := net.DefaultResolver.LookupHost(context.Background(), "probe.chive.test"); err == nil {
		t.Fatal("probe lookup succeeded")
	}
	if systemLookups.Load() == 0 {
		t.Fatal("the counting resolver did not see the probe lookup")
	}
	systemLookups.Store(0)

	n := newTestNet(t, nil)
	for _, args := range [][]string{
		{"www.chive.test", "A"}, {"+tcp", "www.chive.test", "AAAA"}, {"big.chive.test", "TXT"}, {"nope.chive.test", "A"},
	} {
		dig(t, n.server.Addr(), args...)
	}
	if _, err := n.resolver.LookupHost(context.Background(), "alias.chive.test"); err != nil {
		t.Errorf("LookupHost: %v", err)
	}
	if got := systemLookups.Load(); got != 0 {
		t.Errorf("system resolver lookups: %d, want 0", got)
	}
	if got := n.exch.calls.Load(); got != 4 {
		t.Errorf("exchanger calls: %d, want 4 (one per distinct query)", got)
	}
}

func TestResolverLookupCache(t *testing.T) {
	a := newAuthority(t)
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	r, err := NewResolver(ResolverConfig{Upstreams: []string{a.addr}, Timeout: 2 * time.Second, Now: clock, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lookup := func(host string) ([]netip.Addr, error) {
		t.Helper()
		return r.LookupHost(ctx, host)
	}
	if _, err := lookup("www.chive.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := lookup("www.chive.test"); err != nil {
		t.Fatal(err)
	}
	if n := a.count("www.chive.test.", dns.TypeA, ""); n != 1 {
		t.Fatalf("upstream asked %d times for A within the TTL, want 1 (cached)", n)
	}
	advance(301 * time.Second) // past the records' 300 s TTL
	if _, err := lookup("www.chive.test"); err != nil {
		t.Fatal(err)
	}
	if n := a.count("www.chive.test.", dns.TypeA, ""); n != 2 {
		t.Fatalf("upstream asked %d times after the TTL, want 2", n)
	}
	// NXDOMAIN is cached for the SOA minimum (30 s), not longer.
	for i := 0; i < 2; i++ {
		if _, err := lookup("nope.chive.test"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("nope.chive.test: %v", err)
		}
	}
	if n := a.count("nope.chive.test.", dns.TypeA, ""); n != 1 {
		t.Fatalf("NXDOMAIN asked %d times, want 1", n)
	}
	advance(31 * time.Second)
	lookup("nope.chive.test")
	if n := a.count("nope.chive.test.", dns.TypeA, ""); n != 2 {
		t.Fatalf("NXDOMAIN asked %d times after the SOA minimum, want 2", n)
	}
	// With the cache off, every lookup asks.
	off, _ := NewResolver(ResolverConfig{Upstreams: []string{a.addr}, LookupCache: -1})
	before := a.count("www.chive.test.", dns.TypeA, "")
	off.LookupHost(ctx, "www.chive.test")
	off.LookupHost(ctx, "www.chive.test")
	if n := a.count("www.chive.test.", dns.TypeA, "") - before; n != 2 {
		t.Fatalf("uncached resolver asked %d times, want 2", n)
	}
}
