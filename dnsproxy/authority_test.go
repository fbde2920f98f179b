package dnsproxy

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap/zaptest"
)

// The test zone: names only the in-test authority knows. It stands in for
// the exit's upstream resolver.
const testZone = `
$ORIGIN chive.test.
$TTL 300
@          60 IN SOA  ns.chive.test. hostmaster.chive.test. 1 3600 600 86400 30
@             IN NS   ns.chive.test.
ns            IN A    192.0.2.1
www           IN A    192.0.2.10
www           IN AAAA 2001:db8::10
www           IN HTTPS 1 . alpn="h2,h3"
@             IN MX   10 mail.chive.test.
@             IN CAA  0 issue "letsencrypt.org"
txt           IN TXT  "hello chive"
_xmpp._tcp    IN SRV  5 0 5222 xmpp.chive.test.
alias         IN CNAME www.chive.test.
dangling      IN CNAME gone.chive.test.
short       2 IN A    192.0.2.20
v6only        IN AAAA 2001:db8::66
10.2.0.192.in-addr.arpa. IN PTR www.chive.test.
`

// Special names the authority answers with a failure.
const (
	servfailName = "servfail.chive.test."
	refusedName  = "refused.chive.test."
	benchSuffix  = ".bench.chive.test." // any name under it: A 192.0.2.99
)

// bigTXT returns n TXT strings of size bytes each, distinct and ordered.
func bigTXT(n, size int) []string {
	out := make([]string, n)
	for i := range out {
		s := strings.Repeat(string(rune('a'+i%26)), size)
		out[i] = s
	}
	return out
}

// authority is an in-test authoritative DNS server for chive.test on
// loopback, over UDP and TCP on the same port. It truncates UDP answers to
// the asker's size, like a real server.
type authority struct {
	t       testing.TB
	addr    string
	records map[string][]dns.RR // canonical name -> records
	soa     *dns.SOA
	udp     *dns.Server
	tcp     *dns.Server

	mu      sync.Mutex // guards queries
	queries map[string]int

	total  atomic.Int64
	delay  atomic.Int64 // nanoseconds to wait before answering
	silent atomic.Bool  // drop every query (a dead upstream)
}

func newAuthority(t testing.TB) *authority {
	t.Helper()
	a := &authority{t: t, records: make(map[string][]dns.RR), queries: make(map[string]int)}
	zp := dns.NewZoneParser(strings.NewReader(testZone), "", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		a.add(rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone: %v", err)
	}
	// medium: one TXT record of about 700 bytes (above 512, below 1232).
	a.add(&dns.TXT{Hdr: hdr("medium.chive.test.", dns.TypeTXT, 300), Txt: bigTXT(3, 230)})
	// big: a TXT record set of about 4 KB.
	for i, s := range bigTXT(20, 200) {
		a.add(&dns.TXT{Hdr: hdr("big.chive.test.", dns.TypeTXT, 300), Txt: []string{string(rune('A'+i)) + s}})
	}

	// The same port for UDP and TCP, as the server under test does it.
	uc, l, err := listenPair("127.0.0.1:0")
	if err != nil {
		t.Fatalf("authority: %v", err)
	}
	u := uc
	a.addr = u.LocalAddr().String()
	started := make(chan struct{}, 2)
	a.udp = &dns.Server{PacketConn: u, Handler: a, NotifyStartedFunc: func() { started <- struct{}{} }}
	a.tcp = &dns.Server{Listener: l, Handler: a, NotifyStartedFunc: func() { started <- struct{}{} }}
	done := make(chan struct{}, 2)
	for _, srv := range []*dns.Server{a.udp, a.tcp} {
		go func() {
			defer func() { done <- struct{}{} }()
			srv.ActivateAndServe()
		}()
	}
	<-started
	<-started
	t.Cleanup(func() {
		a.udp.Shutdown()
		a.tcp.Shutdown()
		<-done
		<-done
	})
	return a
}

func hdr(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

func (a *authority) add(rr dns.RR) {
	if s, ok := rr.(*dns.SOA); ok {
		a.soa = s
	}
	n := dns.CanonicalName(rr.Header().Name)
	a.records[n] = append(a.records[n], rr)
}

// count returns how many times name/qtype was asked over network ("udp",
// "tcp" or "" for both).
func (a *authority) count(name string, qtype uint16, network string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if network == "" {
		return a.queries[queryID(name, qtype, "udp")] + a.queries[queryID(name, qtype, "tcp")]
	}
	return a.queries[queryID(name, qtype, network)]
}

func queryID(name string, qtype uint16, network string) string {
	return network + " " + dns.CanonicalName(name) + " " + dns.TypeToString[qtype]
}

func (a *authority) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	q := req.Question[0]
	a.mu.Lock()
	a.queries[queryID(q.Name, q.Qtype, network)]++
	a.mu.Unlock()
	a.total.Add(1)
	if a.silent.Load() {
		return
	}
	if d := time.Duration(a.delay.Load()); d > 0 {
		time.Sleep(d)
	}
	m := a.answer(req)
	if network == "udp" {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	if err := w.WriteMsg(m); err != nil {
		a.t.Errorf("authority: write: %v", err)
	}
}

func (a *authority) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true // it stands in for a recursive resolver
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(4096, opt.Do())
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	switch {
	case name == servfailName:
		m.Rcode = dns.RcodeServerFailure
		return m
	case name == refusedName:
		m.Rcode = dns.RcodeRefused
		return m
	case strings.HasSuffix(name, benchSuffix):
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(q.Name, dns.TypeA, 300), A: net.IPv4(192, 0, 2, 99)})
		} else {
			m.Ns = append(m.Ns, dns.Copy(a.soa))
		}
		return m
	}
	for hops := 0; hops < 8; hops++ {
		rrs, exists := a.records[name]
		if !exists {
			if !dns.IsSubDomain("chive.test.", name) && !dns.IsSubDomain("in-addr.arpa.", name) {
				m.Rcode = dns.RcodeRefused
				return m
			}
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, dns.Copy(a.soa))
			return m
		}
		var cname *dns.CNAME
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
			if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if cname != nil && q.Qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, dns.Copy(cname))
			name = dns.CanonicalName(cname.Target)
			continue
		}
		if len(m.Answer) == 0 {
			m.Ns = append(m.Ns, dns.Copy(a.soa)) // NODATA
		}
		return m
	}
	return m
}

// resolverExchanger stands in for the circuit: it hands the query straight
// to the exit's Resolver and records what it was asked.
type resolverExchanger struct {
	r     *Resolver
	calls atomic.Int64
	fail  atomic.Bool // answer every query with an error (a failed circuit)

	concurrent    atomic.Int64
	maxConcurrent atomic.Int64

	mu   sync.Mutex // guards isos
	isos []string
}

var errCircuitDown = errors.New("test: circuit down")

func (e *resolverExchanger) Exchange(ctx context.Context, isolation string, query []byte) ([]byte, error) {
	e.calls.Add(1)
	c := e.concurrent.Add(1)
	defer e.concurrent.Add(-1)
	for m := e.maxConcurrent.Load(); c > m && !e.maxConcurrent.CompareAndSwap(m, c); m = e.maxConcurrent.Load() {
	}
	e.mu.Lock()
	e.isos = append(e.isos, isolation)
	e.mu.Unlock()
	if e.fail.Load() {
		return nil, errCircuitDown
	}
	return e.r.Exchange(ctx, query)
}

func (e *resolverExchanger) isolations() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.isos...)
}

// testNet is an authority, a Resolver using it as its only upstream, and a
// Server in front whose Exchanger calls the Resolver.
type testNet struct {
	auth     *authority
	resolver *Resolver
	exch     *resolverExchanger
	server   *Server
	metrics  *Metrics
}

func newTestNet(t testing.TB, edit func(*ServerConfig)) *testNet {
	t.Helper()
	return newTestNetClock(t, edit, nil)
}

// newTestNetClock is newTestNet with the server's clock replaced by now
// (if not nil).
func newTestNetClock(t testing.TB, edit func(*ServerConfig), now func() time.Time) *testNet {
	t.Helper()
	auth := newAuthority(t)
	r, err := NewResolver(ResolverConfig{Upstreams: []string{auth.addr}, Timeout: 2 * time.Second, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("NewResolver: %v", err)
	}
	exch := &resolverExchanger{r: r}
	metrics, err := NewMetrics(nil)
	if err != nil {
		t.Fatalf("NewMetrics: %v", err)
	}
	cfg := ServerConfig{
		Addr:      "127.0.0.1:0",
		Exchanger: exch,
		Log:       zaptest.NewLogger(t),
		Timeout:   3 * time.Second,
		Metrics:   metrics,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if now != nil {
		s.now = now
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testNet{auth: auth, resolver: r, exch: exch, server: s, metrics: metrics}
}
