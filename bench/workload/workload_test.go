package workload

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	armon "github.com/armon/go-socks5"
	"github.com/miekg/dns"

	"github.com/chive-net/chive/bench/procstat"
	"github.com/chive-net/chive/bench/socks5"
	"github.com/chive-net/chive/testnet/services"
)

// zoneResolver resolves names the way the exits' resolver does: the test
// zone's names to 127.0.0.1, nothing else.
type zoneResolver struct{}

func (zoneResolver) Resolve(ctx context.Context, name string) (context.Context, net.IP, error) {
	if !dns.IsSubDomain(services.Zone, dns.Fqdn(name)) {
		return ctx, nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return ctx, net.IPv4(127, 0, 0, 1), nil
}

// env is an in-process stand-in for a network: armon/go-socks5 as the
// client, services' DNS handler as the DNS front-end, and the benchmark's
// web server.
type env struct {
	socks, dns string
	web        *Web
}

func newEnv(t *testing.T, maxSize int) *env {
	t.Helper()
	srv, err := armon.New(&armon.Config{
		Credentials: armon.CredentialStore(anyCreds{}),
		Resolver:    zoneResolver{},
		Logger:      log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go srv.Serve(l)

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ds := &dns.Server{PacketConn: pc, Handler: services.DNSHandler(services.Records(netip.MustParseAddr("127.0.0.1")))}
	go ds.ActivateAndServe()
	t.Cleanup(func() { ds.Shutdown() })

	web, err := StartWeb("127.0.0.1:0", maxSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { web.Close() })
	return &env{socks: l.Addr().String(), dns: pc.LocalAddr().String(), web: web}
}

type anyCreds struct{}

func (anyCreds) Valid(user, pass string) bool { return strings.HasPrefix(user, "class=1:bench-") }

func TestRunAll(t *testing.T) {
	const size = 1 << 20
	e := newEnv(t, size)
	var logb strings.Builder
	c := Config{
		Host: services.WebHost, Port: int(e.web.Addr.Port()), Body: e.web.body,
		BulkSize: size, PageSize: 1024, Streams: 3, Reps: 2,
		DNSName: services.WebHost, DNSZone: services.Zone,
		OpTimeout: 20 * time.Second, FreshPause: time.Millisecond, Log: &logb,
	}
	tgt := Target{Name: "armon", SOCKS: e.socks, DNS: e.dns, UserPrefix: "class=1:",
		Procs: []procstat.Proc{{Name: "self", Role: "test", PID: os.Getpid(), Relay: true}}}
	res, err := Run(context.Background(), tgt, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Measurements) != len(All) {
		t.Errorf("got %d measurements, want %d", len(res.Measurements), len(All))
	}
	for _, w := range All {
		m := res.Measurements[w]
		if m == nil {
			t.Errorf("%s: not run", w)
			continue
		}
		if len(m.Samples) != 2 || len(m.Failures) != 0 {
			t.Errorf("%s: %d samples, failures %q; want 2 and none", w, len(m.Samples), m.Failures)
		}
		for _, s := range m.Samples {
			if s <= 0 {
				t.Errorf("%s: sample %v", w, s)
			}
		}
		if m.Unit != Units[w] {
			t.Errorf("%s: unit %q", w, m.Unit)
		}
	}
	if len(res.CPU) != 4 {
		t.Fatalf("got %d CPU samples, want 4 (2 reps of 2 bulk workloads)", len(res.CPU))
	}
	if res.CPU[2].Workload != BulkN || res.CPU[2].Bytes != 3*size || len(res.CPU[2].CPU) != 1 || res.CPU[2].CPU[0] < 0 {
		t.Errorf("bulkN CPU sample: %+v", res.CPU[2])
	}
	if !strings.Contains(logb.String(), "armon bulk1 #2:") {
		t.Errorf("log lacks the samples:\n%s", logb.String())
	}
}

func TestRunFailuresRecorded(t *testing.T) {
	e := newEnv(t, 4096)
	c := Config{Host: services.WebHost, Port: int(e.web.Addr.Port()), Body: e.web.body,
		BulkSize: 4096, Reps: 2, OpTimeout: 10 * time.Second, FreshPause: time.Millisecond,
		DNSName: "nothing.chive.test", DNSZone: services.Zone}
	// Credentials the proxy refuses: every attempt fails, and says why.
	tgt := Target{Name: "refused", SOCKS: e.socks, DNS: e.dns, UserPrefix: "class=0:"}
	res, err := Run(context.Background(), tgt, c, []string{TTFBFresh, Bulk1, DNSCached})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{TTFBFresh, Bulk1} {
		m := res.Measurements[w]
		if len(m.Samples) != 0 || len(m.Failures) != 2 || !strings.Contains(m.Failures[0], "rejected") {
			t.Errorf("%s: samples %v failures %q; want none and 2 rejections", w, m.Samples, m.Failures)
		}
	}
	// nothing.chive.test does not exist: the warm-up query fails and the
	// workload stops there.
	if m := res.Measurements[DNSCached]; len(m.Samples) != 0 || len(m.Failures) != 1 || !strings.Contains(m.Failures[0], "NXDOMAIN") {
		t.Errorf("dns: samples %v failures %q", m.Samples, m.Failures)
	}
	if _, ok := res.Measurements[TTFBReady]; ok {
		t.Error("ran a workload not asked for")
	}
	if _, err := Run(context.Background(), tgt, c, []string{"nope"}); err == nil {
		t.Error("unknown workload: no error")
	}
}

func TestRunContextEnds(t *testing.T) {
	e := newEnv(t, 4096)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := Config{Host: services.WebHost, Port: int(e.web.Addr.Port()), Body: e.web.body, BulkSize: 4096}
	if _, err := Run(ctx, Target{SOCKS: e.socks, UserPrefix: "class=1:"}, c, []string{Bulk1}); err != context.Canceled {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestGetChecksBody(t *testing.T) {
	e := newEnv(t, 8192)
	// A server that serves one wrong byte.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	bad := append([]byte(nil), e.web.body[:8192]...)
	bad[5000] ^= 1
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(bad)))
		w.Write(bad)
	}))
	port := l.Addr().(*net.TCPAddr).Port
	auth := &socks5.Auth{User: "class=1:bench-x", Pass: "x"}
	ctx := context.Background()
	if _, err := Get(ctx, e.socks, auth, services.WebHost, port, 8192, e.web.body[:8192], 10*time.Second); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("corrupted body: got %v, want a difference", err)
	}
	tm, err := Get(ctx, e.socks, auth, services.WebHost, int(e.web.Addr.Port()), 8192, e.web.body[:8192], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if tm.Bytes != 8192 || tm.TTFB() <= 0 || tm.End.Before(tm.FirstByte) || tm.MBps() <= 0 {
		t.Errorf("timing %+v", tm)
	}
	// Asking for more than the server holds is a 404, reported as such.
	if _, err := Get(ctx, e.socks, auth, services.WebHost, int(e.web.Addr.Port()), 8193, make([]byte, 8193), 10*time.Second); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("oversized: got %v, want 404", err)
	}
}

func TestBulkCap(t *testing.T) {
	e := newEnv(t, 64<<10)
	// A web server that trickles the pattern: 1 KiB every 20 ms.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	body := e.web.body[:64<<10]
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/size/"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for off := 0; off < n; off += 1024 {
			if _, err := w.Write(body[off:min(off+1024, n)]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if n > 1024 {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}))
	c := Config{Host: services.WebHost, Port: l.Addr().(*net.TCPAddr).Port, Body: e.web.body,
		BulkSize: 64 << 10, Reps: 1, Streams: 2, BulkCap: 300 * time.Millisecond, OpTimeout: 10 * time.Second}
	res, err := Run(context.Background(), Target{Name: "slow", SOCKS: e.socks, UserPrefix: "class=1:"}, c, []string{Bulk1, BulkN})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{Bulk1, BulkN} {
		m := res.Measurements[w]
		if len(m.Samples) != 1 || m.Capped != 1 || len(m.Failures) != 0 {
			t.Fatalf("%s: samples %v capped %d failures %q; want 1 capped sample", w, m.Samples, m.Capped, m.Failures)
		}
		// About 50 KiB/s per stream; far below the uncapped rate.
		if m.Samples[0] <= 0 || m.Samples[0] > 1 {
			t.Errorf("%s: %v MB/s", w, m.Samples[0])
		}
	}
	if b := res.CPU[0].Bytes; b <= 0 || b >= 64<<10 {
		t.Errorf("capped transfer carried %d bytes, want some but not all", b)
	}
}
