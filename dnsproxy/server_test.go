package dnsproxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// digResult is what dig printed, normalised: answer lines have their
// fields joined by single spaces.
type digResult struct {
	status    string   // NOERROR, NXDOMAIN, ...
	flags     []string // qr, rd, ra, tc, ...
	answer    []string
	retried   bool   // dig said it retried over TCP after truncation
	transport string // UDP or TCP, from the SERVER line
	raw       string
}

// dig runs the real dig against addr and parses its output. The test is
// skipped if dig is not installed.
func dig(t *testing.T, addr string, args ...string) digResult {
	t.Helper()
	path, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig is not installed (apt-get install dnsutils); the DNS front-end tests drive the real dig")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("split %q: %v", addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"@" + host, "-p", port, "+time=3", "+tries=1",
		"+noall", "+comments", "+answer", "+stats", "+nottlid", "+nocl"}, args...)
	out, err := exec.CommandContext(ctx, path, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	res := digResult{raw: string(out)}
	inAnswer := false
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "Truncated, retrying in TCP mode"):
			res.retried = true
		case strings.Contains(line, "->>HEADER<<-"):
			_, after, _ := strings.Cut(line, "status: ")
			res.status, _, _ = strings.Cut(after, ",")
		case strings.HasPrefix(line, ";; flags:"):
			f, _, _ := strings.Cut(strings.TrimPrefix(line, ";; flags:"), ";")
			res.flags = strings.Fields(f)
		case strings.HasPrefix(line, ";; ANSWER SECTION:"):
			inAnswer = true
		case strings.HasPrefix(line, ";; SERVER:"):
			if i := strings.LastIndex(line, "("); i >= 0 {
				res.transport = strings.Trim(line[i:], "()")
			}
		case strings.TrimSpace(line) == "":
			inAnswer = false
		case inAnswer && !strings.HasPrefix(line, ";"):
			res.answer = append(res.answer, strings.Join(strings.Fields(line), " "))
		}
	}
	if res.status == "" {
		t.Fatalf("dig %v: no header in output:\n%s", args, out)
	}
	return res
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	m, ok := c.(prometheus.Metric)
	if !ok {
		t.Fatalf("%T is not a single metric", c)
	}
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatalf("read metric: %v", err)
	}
	return d.GetCounter().GetValue()
}

func queriesCount(t *testing.T, m *Metrics, result string) float64 {
	t.Helper()
	return counterValue(t, m.Queries.WithLabelValues(result))
}

func rejectedCount(t *testing.T, m *Metrics, reason string) float64 {
	t.Helper()
	return counterValue(t, m.Rejected.WithLabelValues(reason))
}

// txtLine is how dig prints one TXT record of big.chive.test.
func bigTXTLines() []string {
	var out []string
	for i, s := range bigTXT(20, 200) {
		out = append(out, fmt.Sprintf(`big.chive.test. TXT "%c%s"`, 'A'+i, s))
	}
	return out
}

func TestDigRecordTypes(t *testing.T) {
	n := newTestNet(t, nil)
	medium := bigTXT(3, 230)
	cases := []struct {
		name   string
		args   []string
		status string
		answer []string
	}{
		{"A", []string{"www.chive.test", "A"}, "NOERROR", []string{"www.chive.test. A 192.0.2.10"}},
		{"AAAA", []string{"www.chive.test", "AAAA"}, "NOERROR", []string{"www.chive.test. AAAA 2001:db8::10"}},
		{"MX", []string{"chive.test", "MX"}, "NOERROR", []string{"chive.test. MX 10 mail.chive.test."}},
		{"TXT", []string{"txt.chive.test", "TXT"}, "NOERROR", []string{`txt.chive.test. TXT "hello chive"`}},
		{"SRV", []string{"_xmpp._tcp.chive.test", "SRV"}, "NOERROR", []string{"_xmpp._tcp.chive.test. SRV 5 0 5222 xmpp.chive.test."}},
		{"PTR", []string{"-x", "192.0.2.10"}, "NOERROR", []string{"10.2.0.192.in-addr.arpa. PTR www.chive.test."}},
		{"HTTPS", []string{"www.chive.test", "HTTPS"}, "NOERROR", []string{`www.chive.test. HTTPS 1 . alpn="h2,h3"`}},
		{"CAA", []string{"chive.test", "CAA"}, "NOERROR", []string{`chive.test. CAA 0 issue "letsencrypt.org"`}},
		{"CNAME", []string{"alias.chive.test", "A"}, "NOERROR", []string{"alias.chive.test. CNAME www.chive.test.", "www.chive.test. A 192.0.2.10"}},
		{"medium TXT", []string{"medium.chive.test", "TXT"}, "NOERROR",
			[]string{fmt.Sprintf(`medium.chive.test. TXT "%s" "%s" "%s"`, medium[0], medium[1], medium[2])}},
		{"NXDOMAIN", []string{"nope.chive.test", "A"}, "NXDOMAIN", nil},
		{"NODATA", []string{"www.chive.test", "MX"}, "NOERROR", nil},
		{"SERVFAIL", []string{"servfail.chive.test", "A"}, "SERVFAIL", nil},
		{"REFUSED", []string{"refused.chive.test", "A"}, "REFUSED", nil},
		{"mixed case", []string{"WwW.ChIvE.TeSt", "A"}, "NOERROR", []string{"www.chive.test. A 192.0.2.10"}},
	}
	for _, transport := range []string{"UDP", "TCP"} {
		for _, c := range cases {
			t.Run(transport+"/"+c.name, func(t *testing.T) {
				args := c.args
				if transport == "TCP" {
					args = append([]string{"+tcp"}, args...)
				}
				got := dig(t, n.server.Addr(), args...)
				if got.status != c.status {
					t.Errorf("status: got %q, want %q\n%s", got.status, c.status, got.raw)
				}
				if !slices.Equal(got.answer, c.answer) {
					t.Errorf("answer:\ngot  %q\nwant %q", got.answer, c.answer)
				}
				if got.transport != transport {
					t.Errorf("transport: got %q, want %q", got.transport, transport)
				}
				if slices.Contains(got.flags, "tc") || got.retried {
					t.Errorf("unexpected truncation: flags %v retried %v", got.flags, got.retried)
				}
			})
		}
	}
}

func TestDigLargeAnswerTruncation(t *testing.T) {
	n := newTestNet(t, nil)
	addr := n.server.Addr()

	// Over UDP the 4 KB TXT set exceeds dig's 1232-byte EDNS0 size: dig
	// must see TC, retry over TCP and get every record.
	got := dig(t, addr, "big.chive.test", "TXT")
	if !got.retried || got.transport != "TCP" {
		t.Fatalf("dig did not retry over TCP: retried=%v transport=%q\n%s", got.retried, got.transport, got.raw)
	}
	if want := bigTXTLines(); !slices.Equal(got.answer, want) {
		t.Errorf("answer over TCP: got %d records, want %d", len(got.answer), len(want))
	}
	// The exit's resolver also had to fall back to TCP with its upstream.
	if c := n.auth.count("big.chive.test.", dns.TypeTXT, "tcp"); c != 1 {
		t.Errorf("upstream TCP queries: got %d, want 1", c)
	}
	// The TCP retry has the same isolation key as the UDP query, so it is a
	// cache hit: one exchange in all.
	if c := n.exch.calls.Load(); c != 1 {
		t.Errorf("exchanger calls: got %d, want 1", c)
	}

	// +ignore: dig shows the truncated UDP reply as it came.
	got = dig(t, addr, "+ignore", "big.chive.test", "TXT")
	if got.transport != "UDP" || !slices.Contains(got.flags, "tc") {
		t.Errorf("+ignore: got transport %q flags %v, want UDP with tc", got.transport, got.flags)
	}
	if len(got.answer) == 0 || len(got.answer) >= 20 {
		t.Errorf("+ignore: got %d records, want some but not all 20", len(got.answer))
	}

	// Without EDNS0 the limit is 512 bytes: the 740-byte medium TXT is
	// truncated over UDP and whole over TCP.
	got = dig(t, addr, "+noedns", "medium.chive.test", "TXT")
	if !got.retried || got.transport != "TCP" || len(got.answer) != 1 {
		t.Errorf("+noedns medium: retried=%v transport=%q answers=%d\n%s", got.retried, got.transport, len(got.answer), got.raw)
	}
	// With EDNS0 (1232) it fits.
	got = dig(t, addr, "medium.chive.test", "TXT")
	if got.retried || got.transport != "UDP" || len(got.answer) != 1 {
		t.Errorf("edns medium: retried=%v transport=%q answers=%d", got.retried, got.transport, len(got.answer))
	}
	// A stub advertising more than we allow is capped at 1232: still TC.
	got = dig(t, addr, "+ignore", "+bufsize=4096", "big.chive.test", "TXT")
	if !slices.Contains(got.flags, "tc") {
		t.Errorf("+bufsize=4096: flags %v, want tc", got.flags)
	}
	// +tcp from the start: whole, no truncation.
	got = dig(t, addr, "+tcp", "big.chive.test", "TXT")
	if got.retried || len(got.answer) != 20 {
		t.Errorf("+tcp: retried=%v answers=%d", got.retried, len(got.answer))
	}
}

// exchange sends one query with miekg/dns's client (net "udp" or "tcp")
// from the local address laddr (nil: any).
func exchange(t *testing.T, addr, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("exchange %s %v: %v", network, m.Question, err)
	}
	return r
}

func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func TestServerRejectsZoneTransfersAndOddQueries(t *testing.T) {
	n := newTestNet(t, nil)
	addr := n.server.Addr()
	for _, c := range []struct {
		name   string
		msg    func() *dns.Msg
		rcode  int
		reason string
	}{
		{"AXFR", func() *dns.Msg { return question("chive.test.", dns.TypeAXFR) }, dns.RcodeRefused, reasonZoneTransfer},
		{"IXFR", func() *dns.Msg { return question("chive.test.", dns.TypeIXFR) }, dns.RcodeRefused, reasonZoneTransfer},
		{"class CH", func() *dns.Msg {
			m := question("version.bind.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}, dns.RcodeRefused, reasonClass},
		{"qtype OPT", func() *dns.Msg { return question("chive.test.", dns.TypeOPT) }, dns.RcodeFormatError, reasonMetaType},
		{"EDNS version 1", func() *dns.Msg {
			m := question("www.chive.test.", dns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}, dns.RcodeBadVers, reasonBadVersion},
		{"two OPT", func() *dns.Msg {
			m := question("www.chive.test.", dns.TypeA)
			m.SetEdns0(1232, false)
			m.SetEdns0(1232, false)
			return m
		}, dns.RcodeFormatError, reasonMalformed},
		{"NOTIFY", func() *dns.Msg {
			m := question("chive.test.", dns.TypeSOA)
			m.Opcode = dns.OpcodeNotify
			return m
		}, dns.RcodeNotImplemented, reasonOpcode},
		{"two questions", func() *dns.Msg {
			m := question("www.chive.test.", dns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}, dns.RcodeFormatError, reasonMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := rejectedCount(t, n.metrics, c.reason)
			for _, network := range []string{"udp", "tcp"} {
				r := exchange(t, addr, network, c.msg())
				if r.Rcode != c.rcode {
					t.Errorf("%s: rcode got %s, want %s", network, dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
				}
			}
			if got := rejectedCount(t, n.metrics, c.reason) - before; got != 2 {
				t.Errorf("rejected{%s}: got %v, want 2", c.reason, got)
			}
		})
	}
	if c := n.exch.calls.Load(); c != 0 {
		t.Errorf("exchanger calls: got %d, want 0 (all refused locally)", c)
	}
	if c := n.auth.total.Load(); c != 0 {
		t.Errorf("upstream queries: got %d, want 0", c)
	}
}

func TestServerCache(t *testing.T) {
	n := newTestNet(t, nil)
	addr := n.server.Addr()

	first := dig(t, addr, "www.chive.test", "A")
	second := dig(t, addr, "www.chive.test", "A")
	if !slices.Equal(first.answer, second.answer) || len(first.answer) != 1 {
		t.Fatalf("answers differ: %q vs %q", first.answer, second.answer)
	}
	if c := n.exch.calls.Load(); c != 1 {
		t.Errorf("exchanger calls after two identical queries: got %d, want 1", c)
	}
	if c := n.auth.count("www.chive.test.", dns.TypeA, ""); c != 1 {
		t.Errorf("upstream queries: got %d, want 1", c)
	}
	if got := queriesCount(t, n.metrics, resultCacheHit); got != 1 {
		t.Errorf("cache_hit: got %v, want 1", got)
	}
	// Same question, other type or DO bit: not the same cache entry.
	dig(t, addr, "www.chive.test", "AAAA")
	dig(t, addr, "+dnssec", "www.chive.test", "A")
	if c := n.exch.calls.Load(); c != 3 {
		t.Errorf("exchanger calls: got %d, want 3", c)
	}

	// Another client address is another isolation key: no sharing.
	other := dig(t, addr, "-b", "127.0.0.2", "www.chive.test", "A")
	if !slices.Equal(other.answer, first.answer) {
		t.Errorf("answer from 127.0.0.2: got %q, want %q", other.answer, first.answer)
	}
	if c := n.exch.calls.Load(); c != 4 {
		t.Errorf("exchanger calls after a query from 127.0.0.2: got %d, want 4", c)
	}
	isos := n.exch.isolations()
	want1 := "dns|" + addr + "|127.0.0.1"
	want2 := "dns|" + addr + "|127.0.0.2"
	if isos[0] != want1 || isos[3] != want2 {
		t.Errorf("isolation keys: got %q, want %q then %q", isos, want1, want2)
	}

	// A new identity empties the cache: the same question goes out again.
	n.server.FlushCache()
	dig(t, addr, "www.chive.test", "A")
	if c := n.exch.calls.Load(); c != 5 {
		t.Errorf("exchanger calls after FlushCache: got %d, want 5", c)
	}
	dig(t, addr, "www.chive.test", "A")
	if c := n.exch.calls.Load(); c != 5 {
		t.Errorf("exchanger calls after FlushCache and a repeat: got %d, want 5 (cached again)", c)
	}
}

func TestServerCacheSeparateListeners(t *testing.T) {
	n := newTestNet(t, nil)
	// A second listener sharing the same exchanger: its own isolation key.
	s2, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", Exchanger: n.exch})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	dig(t, n.server.Addr(), "www.chive.test", "A")
	dig(t, s2.Addr(), "www.chive.test", "A")
	dig(t, s2.Addr(), "www.chive.test", "A")
	if c := n.exch.calls.Load(); c != 2 {
		t.Errorf("exchanger calls: got %d, want 2", c)
	}
	isos := n.exch.isolations()
	if len(isos) != 2 || isos[0] == isos[1] {
		t.Errorf("isolation keys: got %q, want two different", isos)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestServerCacheTTL(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	n := newTestNetClock(t, nil, clock.now)
	addr := n.server.Addr()
	ask := func(name string, qtype uint16) *dns.Msg {
		return exchange(t, addr, "udp", question(name, qtype))
	}

	// short.chive.test has TTL 2.
	r := ask("short.chive.test.", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 2 {
		t.Fatalf("first answer: %v", r.Answer)
	}
	clock.advance(1500 * time.Millisecond)
	r = ask("short.chive.test.", dns.TypeA)
	if c := n.exch.calls.Load(); c != 1 {
		t.Errorf("within TTL: exchanger calls %d, want 1", c)
	}
	if got := r.Answer[0].Header().Ttl; got != 1 {
		t.Errorf("TTL after 1.5 s in cache: got %d, want 1", got)
	}
	clock.advance(500 * time.Millisecond) // 2 s: expired
	r = ask("short.chive.test.", dns.TypeA)
	if c := n.exch.calls.Load(); c != 2 {
		t.Errorf("after TTL: exchanger calls %d, want 2", c)
	}
	if got := r.Answer[0].Header().Ttl; got != 2 {
		t.Errorf("fresh TTL: got %d, want 2", got)
	}

	// NXDOMAIN: SOA TTL 60, MINIMUM 30: cached for 30 s (RFC 2308).
	calls := n.exch.calls.Load()
	r = ask("nope.chive.test.", dns.TypeA)
	if r.Rcode != dns.RcodeNameError {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	clock.advance(29 * time.Second)
	r = ask("nope.chive.test.", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || n.exch.calls.Load() != calls+1 {
		t.Errorf("negative answer not served from cache: rcode %s calls %d", dns.RcodeToString[r.Rcode], n.exch.calls.Load()-calls)
	}
	if len(r.Ns) != 1 || r.Ns[0].Header().Ttl != 31 {
		t.Errorf("SOA TTL after 29 s: got %v, want 31", r.Ns)
	}
	clock.advance(time.Second)
	ask("nope.chive.test.", dns.TypeA)
	if got := n.exch.calls.Load(); got != calls+2 {
		t.Errorf("after the SOA minimum: exchanger calls %d, want %d", got, calls+2)
	}

	// SERVFAIL is never cached.
	calls = n.exch.calls.Load()
	ask(servfailName, dns.TypeA)
	ask(servfailName, dns.TypeA)
	if got := n.exch.calls.Load() - calls; got != 2 {
		t.Errorf("SERVFAIL: exchanger calls %d, want 2", got)
	}
	if got := queriesCount(t, n.metrics, resultServFail); got != 2 {
		t.Errorf("servfail results: got %v, want 2", got)
	}
}

func TestServerCacheDisabled(t *testing.T) {
	n := newTestNet(t, func(c *ServerConfig) { c.CacheEntries = -1 })
	for range 3 {
		exchange(t, n.server.Addr(), "udp", question("www.chive.test.", dns.TypeA))
	}
	if c := n.exch.calls.Load(); c != 3 {
		t.Errorf("exchanger calls: got %d, want 3", c)
	}
}

func TestServerExchangerFailure(t *testing.T) {
	n := newTestNet(t, nil)
	n.exch.fail.Store(true)
	got := dig(t, n.server.Addr(), "www.chive.test", "A")
	if got.status != "SERVFAIL" || len(got.answer) != 0 {
		t.Errorf("got %s %q, want SERVFAIL and no answer", got.status, got.answer)
	}
	got = dig(t, n.server.Addr(), "+tcp", "www.chive.test", "A")
	if got.status != "SERVFAIL" {
		t.Errorf("tcp: got %s, want SERVFAIL", got.status)
	}
	if c := n.exch.calls.Load(); c != 2 {
		t.Errorf("exchanger calls: got %d, want 2", c)
	}
	if got := queriesCount(t, n.metrics, resultError); got != 2 {
		t.Errorf("error results: got %v, want 2", got)
	}
	// The failure is not cached: the network comes back, so do answers.
	n.exch.fail.Store(false)
	if got := dig(t, n.server.Addr(), "www.chive.test", "A"); got.status != "NOERROR" || len(got.answer) != 1 {
		t.Errorf("after recovery: %s %q", got.status, got.answer)
	}
	// Nothing but the Exchanger reached any resolver: the upstream saw one
	// query, the one that went through the exit.
	if c := n.auth.total.Load(); c != 1 {
		t.Errorf("upstream queries: got %d, want 1", c)
	}
}

// funcExchanger adapts a function to Exchanger.
type funcExchanger func(ctx context.Context, isolation string, query []byte) ([]byte, error)

func (f funcExchanger) Exchange(ctx context.Context, isolation string, query []byte) ([]byte, error) {
	return f(ctx, isolation, query)
}

func startServer(t *testing.T, cfg ServerConfig) (*Server, *Metrics) {
	t.Helper()
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.Metrics = m
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, m
}

func TestServerBadAnswers(t *testing.T) {
	answerFor := func(query []byte, edit func(*dns.Msg)) []byte {
		q := new(dns.Msg)
		if err := q.Unpack(query); err != nil {
			panic(err)
		}
		a := new(dns.Msg)
		a.SetReply(q)
		a.Answer = []dns.RR{&dns.A{Hdr: hdr(q.Question[0].Name, dns.TypeA, 60), A: net.IPv4(192, 0, 2, 1)}}
		edit(a)
		b, err := a.Pack()
		if err != nil {
			panic(err)
		}
		return b
	}
	for _, c := range []struct {
		name   string
		answer func(query []byte) []byte
	}{
		{"garbage", func([]byte) []byte { return []byte("not dns at all") }},
		{"empty", func([]byte) []byte { return nil }},
		{"the query itself", func(q []byte) []byte { return q }},
		{"other question", func(q []byte) []byte {
			return answerFor(q, func(a *dns.Msg) { a.Question[0].Name = "evil.example." })
		}},
		{"other type", func(q []byte) []byte {
			return answerFor(q, func(a *dns.Msg) { a.Question[0].Qtype = dns.TypeAAAA })
		}},
		{"other id", func(q []byte) []byte {
			return answerFor(q, func(a *dns.Msg) { a.Id++ })
		}},
		{"too large", func(q []byte) []byte { return make([]byte, MaxAnswerSize+1) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, m := startServer(t, ServerConfig{Exchanger: funcExchanger(func(_ context.Context, _ string, q []byte) ([]byte, error) {
				return c.answer(q), nil
			})})
			r := exchange(t, s.Addr(), "udp", question("www.chive.test.", dns.TypeA))
			if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
				t.Errorf("got %s with %d answers, want SERVFAIL and none", dns.RcodeToString[r.Rcode], len(r.Answer))
			}
			if got := queriesCount(t, m, resultError); got != 1 {
				t.Errorf("error results: got %v, want 1", got)
			}
		})
	}
}

func TestServerForwardsNormalisedQuery(t *testing.T) {
	var got []byte
	var mu sync.Mutex
	s, _ := startServer(t, ServerConfig{Exchanger: funcExchanger(func(_ context.Context, _ string, q []byte) ([]byte, error) {
		mu.Lock()
		got = append([]byte(nil), q...)
		mu.Unlock()
		return nil, errCircuitDown
	})})
	m := question("WWW.Chive.Test.", dns.TypeA)
	m.SetEdns0(4096, true)
	// A stub's EDNS options stay on the host.
	m.IsEdns0().Option = append(m.IsEdns0().Option,
		&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(198, 51, 100, 0).To4()},
		&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	exchange(t, s.Addr(), "udp", m)
	mu.Lock()
	defer mu.Unlock()
	want := forwardQuery(queryKey{name: "www.chive.test.", qtype: dns.TypeA, qclass: dns.ClassINET, do: true}, 0)
	wantBytes, err := want.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(wantBytes) {
		t.Errorf("forwarded query:\ngot  %x\nwant %x", got, wantBytes)
	}
}

func TestServerTimeout(t *testing.T) {
	s, m := startServer(t, ServerConfig{
		Timeout: 200 * time.Millisecond,
		Exchanger: funcExchanger(func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}),
	})
	start := time.Now()
	r := exchange(t, s.Addr(), "udp", question("www.chive.test.", dns.TypeA))
	if r.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode: got %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("answered after %v, want about the 200ms timeout", d)
	}
	if got := queriesCount(t, m, resultError); got != 1 {
		t.Errorf("error results: got %v, want 1", got)
	}
}

// gateExchanger blocks every exchange until release is closed, then answers
// with the authority-style answer A 192.0.2.1.
type gateExchanger struct {
	release chan struct{}
	mu      sync.Mutex // guards calls
	calls   int
	entered chan struct{}
}

func (g *gateExchanger) Exchange(ctx context.Context, _ string, query []byte) ([]byte, error) {
	g.mu.Lock()
	g.calls++
	g.mu.Unlock()
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	q := new(dns.Msg)
	if err := q.Unpack(query); err != nil {
		return nil, err
	}
	a := new(dns.Msg)
	a.SetReply(q)
	a.RecursionAvailable = true
	a.Answer = []dns.RR{&dns.A{Hdr: hdr(q.Question[0].Name, dns.TypeA, 60), A: net.IPv4(192, 0, 2, 1)}}
	return a.Pack()
}

func TestServerMaxInflight(t *testing.T) {
	g := &gateExchanger{release: make(chan struct{}), entered: make(chan struct{}, 16)}
	s, m := startServer(t, ServerConfig{Exchanger: g, MaxInflight: 2})
	var wg sync.WaitGroup
	results := make([]*dns.Msg, 2)
	for i := range 2 {
		wg.Go(func() {
			results[i] = exchange(t, s.Addr(), "udp", question(fmt.Sprintf("n%d.chive.test.", i), dns.TypeA))
		})
	}
	<-g.entered
	<-g.entered
	// The third distinct query finds both slots taken.
	r := exchange(t, s.Addr(), "udp", question("n3.chive.test.", dns.TypeA))
	if r.Rcode != dns.RcodeRefused {
		t.Errorf("over the bound: got %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if got := rejectedCount(t, m, reasonInflight); got != 1 {
		t.Errorf("rejected{inflight}: got %v, want 1", got)
	}
	close(g.release)
	wg.Wait()
	for i, r := range results {
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("query %d: %s %v", i, dns.RcodeToString[r.Rcode], r.Answer)
		}
	}
}

func TestServerCoalescesIdenticalQueries(t *testing.T) {
	g := &gateExchanger{release: make(chan struct{}), entered: make(chan struct{}, 16)}
	s, m := startServer(t, ServerConfig{Exchanger: g})
	const n = 5
	var wg sync.WaitGroup
	results := make([]*dns.Msg, n)
	for i := range n {
		wg.Go(func() {
			results[i] = exchange(t, s.Addr(), "udp", question("same.chive.test.", dns.TypeA))
		})
	}
	<-g.entered
	// Wait until all n are in flight, then let the one exchange finish.
	deadline := time.Now().Add(5 * time.Second)
	for gaugeValue(t, m.Inflight) < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(g.release)
	wg.Wait()
	g.mu.Lock()
	calls := g.calls
	g.mu.Unlock()
	if calls != 1 {
		t.Errorf("exchanger calls: got %d, want 1", calls)
	}
	for i, r := range results {
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("query %d: %s %v", i, dns.RcodeToString[r.Rcode], r.Answer)
		}
	}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var d dto.Metric
	if err := g.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetGauge().GetValue()
}

func TestServerConfigErrors(t *testing.T) {
	ex := funcExchanger(func(context.Context, string, []byte) ([]byte, error) { return nil, errCircuitDown })
	for _, c := range []struct {
		name string
		cfg  ServerConfig
		want string
	}{
		{"no exchanger", ServerConfig{Addr: "127.0.0.1:0"}, "Exchanger is nil"},
		{"hostname", ServerConfig{Addr: "localhost:9053", Exchanger: ex}, "want IP:port"},
		{"no port", ServerConfig{Addr: "127.0.0.1", Exchanger: ex}, "want IP:port"},
		{"negative timeout", ServerConfig{Addr: "127.0.0.1:0", Exchanger: ex, Timeout: -1}, "Timeout"},
		{"negative inflight", ServerConfig{Addr: "127.0.0.1:0", Exchanger: ex, MaxInflight: -1}, "MaxInflight"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewServer(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestServerLifecycle(t *testing.T) {
	ex := funcExchanger(func(context.Context, string, []byte) ([]byte, error) { return nil, errCircuitDown })
	s, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", Exchanger: ex})
	if err != nil {
		t.Fatal(err)
	}
	if s.UDPAddr() != nil || s.TCPAddr() != nil || s.Addr() != "" {
		t.Errorf("addresses before Start: %v %v %q", s.UDPAddr(), s.TCPAddr(), s.Addr())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.UDPAddr().String() != s.Addr() || s.TCPAddr().String() != s.Addr() {
		t.Errorf("UDP %v and TCP %v differ from Addr %q", s.UDPAddr(), s.TCPAddr(), s.Addr())
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	// A busy address fails cleanly.
	s2, err := NewServer(ServerConfig{Addr: s.Addr(), Exchanger: ex})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err == nil {
		t.Error("Start on a busy address succeeded")
	}
	s2.Close()
	for range 3 {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	// The port is free again.
	c, err := net.ListenPacket("udp", s.Addr())
	if err != nil {
		t.Errorf("port still bound after Close: %v", err)
	} else {
		c.Close()
	}
	// Close without Start.
	s3, _ := NewServer(ServerConfig{Addr: "127.0.0.1:0", Exchanger: ex})
	if err := s3.Close(); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
	if err := s3.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestServerCloseEndsInflightQueries(t *testing.T) {
	entered := make(chan struct{}, 1)
	ex := funcExchanger(func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	s, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", Exchanger: ex, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		c := &dns.Client{Timeout: 2 * time.Second}
		c.Exchange(question("www.chive.test.", dns.TypeA), s.Addr())
	}()
	<-entered
	done := make(chan error)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a query was on the network")
	}
	<-clientDone
}

func TestIsolationKey(t *testing.T) {
	for _, c := range []struct {
		client net.Addr
		want   string
	}{
		{&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}, "dns|127.0.0.1:9053|127.0.0.1"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 1}, "dns|127.0.0.1:9053|127.0.0.2"},
		{&net.UDPAddr{IP: net.ParseIP("::1"), Port: 5353}, "dns|127.0.0.1:9053|::1"},
		{&net.UDPAddr{IP: net.ParseIP("::ffff:127.0.0.3"), Port: 5353}, "dns|127.0.0.1:9053|127.0.0.3"},
	} {
		if got := IsolationKey("127.0.0.1:9053", c.client); got != c.want {
			t.Errorf("IsolationKey(%v): got %q, want %q", c.client, got, c.want)
		}
	}
}

func TestServerLogsArePrivate(t *testing.T) {
	for _, unsafe := range []bool{false, true} {
		t.Run(fmt.Sprintf("unsafe=%v", unsafe), func(t *testing.T) {
			core, logs := observer.New(zap.DebugLevel)
			n := newTestNet(t, func(c *ServerConfig) {
				c.Log = zap.New(core)
				c.UnsafeLogging = unsafe
			})
			c := &dns.Client{Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}}}
			for _, name := range []string{"www.chive.test.", "nope.chive.test.", servfailName} {
				if _, _, err := c.Exchange(question(name, dns.TypeA), n.server.Addr()); err != nil {
					t.Fatal(err)
				}
			}
			c.Exchange(question("www.chive.test.", dns.TypeA), n.server.Addr()) // cache hit
			n.exch.fail.Store(true)
			c.Exchange(question("fail.chive.test.", dns.TypeA), n.server.Addr())

			// The server logs a query after its reply: wait for all six lines
			// (start, five queries).
			for deadline := time.Now().Add(5 * time.Second); logs.Len() < 6 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			var all strings.Builder
			for _, e := range logs.All() {
				fmt.Fprintln(&all, e.Message, e.ContextMap())
			}
			if logs.Len() < 6 {
				t.Fatalf("want a debug line per query, got:\n%s", all.String())
			}
			leaked := strings.Contains(all.String(), "chive.test") || strings.Contains(all.String(), "127.0.0.2")
			if leaked != unsafe {
				t.Errorf("names or client address in logs: %v, want %v; logs:\n%s", leaked, unsafe, all.String())
			}
		})
	}
}
