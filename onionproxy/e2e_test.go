package onionproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// failLocalDNS replaces net.DefaultResolver with one whose every lookup
// fails the test, for as long as the test runs.
func failLocalDNS(t *testing.T) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	old := net.DefaultResolver
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		n.Add(1)
		t.Errorf("a local DNS lookup was attempted (%s to %s): the proxy must never resolve locally", network, address)
		return nil, errors.New("local DNS is forbidden in this test")
	}}
	t.Cleanup(func() { net.DefaultResolver = old })
	return &n
}

// TestRealClients is the product's promise checked with real programs:
// curl through SOCKS5 (names sent unresolved) and HTTP CONNECT, and dig
// through the DNS front-end, for names only the exits' resolver knows,
// while any local lookup in this process fails the test.
func TestRealClients(t *testing.T) {
	curl := needTool(t, "curl")
	dig := needTool(t, "dig")
	lookups := failLocalDNS(t)
	n, rp := startNetAndProxy(t, nil)
	a := rp.Addrs()

	// The host's resolver cannot know the names.
	if _, err := (&net.Resolver{}).LookupHost(context.Background(), webName); err == nil {
		// (our failing DefaultResolver is not this one)
		t.Logf("note: the host resolves %s", webName)
	}

	t.Run("curl SOCKS5 hostname", func(t *testing.T) {
		for _, path := range []string{"/page", "/big"} {
			out, err := run(t, curl, "-sS", "--fail", "--max-time", "20", "--socks5-hostname", a.SOCKS[0],
				"http://"+webName+":"+n.port()+path)
			if err != nil {
				t.Fatal(err)
			}
			want := n.page
			if path == "/big" {
				want = n.big
			}
			if !bytes.Equal(out, want) {
				t.Fatalf("%s: got %d bytes, want %d byte-exact", path, len(out), len(want))
			}
		}
	})
	t.Run("curl SOCKS5 IPv4 literal", func(t *testing.T) {
		out, err := run(t, curl, "-sS", "--fail", "--max-time", "20", "--socks5", a.SOCKS[0], "http://127.0.0.1:"+n.port()+"/page")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, n.page) {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("curl HTTP CONNECT https", func(t *testing.T) {
		out, err := run(t, curl, "-sS", "--fail", "--max-time", "20", "-k", "--proxy", "http://"+a.HTTPConnect[0],
			"https://"+webName+":"+n.tlsPort()+"/big")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, n.big) {
			t.Fatalf("got %d bytes, want %d byte-exact", len(out), len(n.big))
		}
	})
	t.Run("curl HTTP CONNECT tunnel for http", func(t *testing.T) {
		out, err := run(t, curl, "-sS", "--fail", "--max-time", "20", "-p", "--proxy", "http://"+a.HTTPConnect[0],
			"http://"+webName+":"+n.port()+"/page")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, n.page) {
			t.Fatalf("got %q", out)
		}
	})
	host, port, _ := net.SplitHostPort(a.DNS)
	digq := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := run(t, dig, append([]string{"@" + host, "-p", port, "+time=5", "+tries=1"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	t.Run("dig", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"+short", webName, "A"}, "127.0.0.1"},
			{[]string{"+short", webName, "AAAA"}, "2001:db8::c0de"},
			{[]string{"+short", webName, "MX"}, "10 mail.chive.test."},
			{[]string{"+short", webName, "TXT"}, `"only the exit knows this"`},
			{[]string{"+short", "+tcp", webName, "TXT"}, `"only the exit knows this"`},
		} {
			got := strings.TrimSpace(digq(t, tc.args...))
			if got != tc.want {
				t.Errorf("dig %v: got %q, want %q", tc.args, got, tc.want)
			}
		}
		out := digq(t, "nosuch.chive.test", "A")
		if !strings.Contains(out, "status: NXDOMAIN") {
			t.Errorf("dig nosuch: want NXDOMAIN, got\n%s", out)
		}
		srv := strings.TrimSpace(digq(t, "+short", "_http._tcp."+webName, "SRV"))
		if srv != "0 5 80 "+webName+"." {
			t.Errorf("dig SRV: got %q", srv)
		}
		// A 2.6 KB answer: truncated over UDP, then whole over TCP (dig
		// retries by itself).
		big := digq(t, bigName, "TXT")
		if !strings.Contains(big, "Truncated, retrying in TCP mode") || strings.Count(big, "300\tIN\tTXT") != 12 {
			t.Errorf("dig big TXT: want a TCP retry and 12 records, got\n%s", big)
		}
	})
	if lookups.Load() != 0 {
		t.Fatalf("%d local lookups", lookups.Load())
	}
}

// TestBootstrapProgressAndRestart checks the progress lines, the status
// endpoint, the 0600 state files, and that a restart keeps its guards.
func TestBootstrapProgressAndRestart(t *testing.T) {
	n := newTestNet(t, netOpts{})
	cfg := testConfig(t)
	rp := startProxy(t, cfg, WithConsensusSource(n.source()))
	rp.waitBootstrapped(t)
	var lines []string
	for _, e := range rp.logs.FilterMessageSnippet("Bootstrapped").All() {
		lines = append(lines, e.Message)
	}
	want := []string{"Bootstrapped 0%: starting", "Bootstrapped 10%: loading cached state", "Bootstrapped 40%: fetching consensus",
		"Bootstrapped 80%: building circuits", "Bootstrapped 100%: done"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("progress lines:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	s := status(t, rp)
	if s.Bootstrap.Percent != 100 || s.Consensus == nil || !s.Consensus.Valid || s.Consensus.Relays != len(n.relays) {
		t.Fatalf("status: %+v %+v", s.Bootstrap, s.Consensus)
	}
	if len(s.Guards) == 0 || len(s.Circuits) == 0 {
		t.Fatalf("status has %d guards, %d circuits", len(s.Guards), len(s.Circuits))
	}
	fi, err := os.Stat(filepath.Join(cfg.DataDir, GuardStateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("guard state mode %v, want 0600", fi.Mode().Perm())
	}
	var primaries []string
	for _, g := range s.Guards {
		if g.Primary {
			primaries = append(primaries, g.ID)
		}
	}
	rp.stop()

	// Restart on the same data directory.
	rp2 := startProxy(t, cfg, WithConsensusSource(n.source()))
	rp2.waitBootstrapped(t)
	var again []string
	for _, g := range status(t, rp2).Guards {
		if g.Primary {
			again = append(again, g.ID)
		}
	}
	if strings.Join(primaries, ",") != strings.Join(again, ",") {
		t.Errorf("primary guards changed across a restart: %v then %v", primaries, again)
	}
}

// TestNoConsensus: with no authority able to give a consensus, a SOCKS
// client gets a general-failure reply at once and the log says why.
func TestNoConsensus(t *testing.T) {
	n := newTestNet(t, netOpts{})
	n.dir.set(nil) // the authority has no consensus
	cfg := testConfig(t)
	rp := startProxy(t, cfg, WithConsensusSource(n.source()))
	start := time.Now()
	_, code, err := socksDial(rp.Addrs().SOCKS[0], socksReq{host: webName, port: 80})
	if err != nil {
		t.Fatal(err)
	}
	if code != socksGeneralFailure {
		t.Errorf("reply %d, want %d (general failure)", code, socksGeneralFailure)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v: that is a hang", d)
	}
	waitFor(t, "a log line about the consensus", 5*time.Second, func() bool {
		return rp.logs.FilterMessageSnippet("bootstrap stuck at fetching consensus").Len() > 0 &&
			rp.logs.FilterMessageSnippet("stream refused").Len() > 0
	})
	s := status(t, rp)
	if s.Bootstrap.Percent != 40 || !strings.Contains(s.Bootstrap.Error, "authorities") {
		t.Errorf("status bootstrap %+v", s.Bootstrap)
	}
	// HTTP CONNECT says so too.
	resp := connectRaw(t, rp.Addrs().HTTPConnect[0], "CONNECT "+webName+":80 HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(resp, "HTTP/1.1 502") || !strings.Contains(resp, "consensus") {
		t.Errorf("HTTP CONNECT answer %q", resp)
	}
}

// connectRaw sends raw bytes to an HTTP CONNECT listener and returns what
// comes back before the connection closes (or 5s pass).
func connectRaw(t testing.TB, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte(req))
	var b bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil || bytes.Contains(b.Bytes(), []byte("\r\n\r\n")) && !bytes.HasPrefix(b.Bytes(), []byte("HTTP/1.1 200")) && bytes.Count(b.Bytes(), []byte("\n")) > 6 {
			break
		}
		if bytes.HasPrefix(b.Bytes(), []byte("HTTP/1.1 200")) && bytes.Contains(b.Bytes(), []byte("\r\n\r\n")) {
			break
		}
	}
	return b.String()
}

// TestMetricsExposed: the control listener's /metrics has the proxy's
// figures: bootstrap, circuit builds and build time, streams by result,
// bytes, DNS queries by result.
func TestMetricsExposed(t *testing.T) {
	n, rp := startNetAndProxy(t, nil)
	port, _ := strconv.Atoi(n.port())
	if _, err := fetchVia(rp.Addrs().SOCKS[0], socksReq{host: webName, port: uint16(port)}, "/page"); err != nil {
		t.Fatal(err)
	}
	cl := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion("nosuch.chive.test.", dns.TypeA)
	if r, _, err := cl.Exchange(q, rp.Addrs().DNS); err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("DNS: %v %v", r, err)
	}
	resp, err := ctlClient.Get("http://" + rp.Addrs().Control + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"chive_onionproxy_bootstrap_percent 100",
		`chive_onionproxy_circuit_builds_total{result="ok"}`,
		"chive_onionproxy_circuit_build_seconds_bucket",
		`chive_onionproxy_streams_total{frontend="socks",result="ok"} 1`,
		`chive_onionproxy_stream_bytes_total{direction="received"}`,
		`chive_onionproxy_stream_bytes_total{direction="sent"}`,
		`result="nxdomain"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestLogsArePrivate: with unsafe_logging off, no log line (debug
// included) carries a destination name, a queried name or a client's
// address, whatever happens to the streams.
func TestLogsArePrivate(t *testing.T) {
	n, rp := startNetAndProxy(t, nil)
	port, _ := strconv.Atoi(n.port())
	socks := rp.Addrs().SOCKS[0]
	var clientPorts []string
	for _, r := range []socksReq{
		{host: webName, port: uint16(port)},
		{host: "nosuch.chive.test", port: 80},
		{host: "bad name.chive.test", port: 80},
		{host: deniedName, port: 80},
		{host: unreachName, port: 80},
		{user: "class=x", host: webName, port: 80},
	} {
		c, _, err := socksDial(socks, r)
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			_, p, _ := net.SplitHostPort(c.LocalAddr().String())
			clientPorts = append(clientPorts, p)
			c.Close()
		}
	}
	connectRaw(t, rp.Addrs().HTTPConnect[0], "CONNECT nosuch.chive.test:443 HTTP/1.1\r\nHost: x\r\n\r\n")
	cl := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	for _, name := range []string{webName, "secret.chive.test"} {
		q := new(dns.Msg)
		q.SetQuestion(name+".", dns.TypeTXT)
		cl.Exchange(q, rp.Addrs().DNS)
	}
	rp.stop()
	entries := rp.logs.All()
	if len(entries) < 10 {
		t.Fatalf("only %d log entries observed", len(entries))
	}
	for _, e := range entries {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += fmt.Sprintf(" %s=%v", k, v)
		}
		if strings.Contains(line, "chive.test") {
			t.Errorf("a log line names a destination: %s", line)
		}
		for _, p := range clientPorts {
			if strings.Contains(line, "127.0.0.1:"+p) {
				t.Errorf("a log line has a client address: %s", line)
			}
		}
	}
}

// TestConsensusDoesNotVerify: a consensus signed by one of three
// authorities is refused, and the log and /status say what to check.
func TestConsensusDoesNotVerify(t *testing.T) {
	n := newTestNet(t, netOpts{})
	n.dir.set(n.auth.consensus(t, n.relays, time.Now(), 1))
	rp := startProxy(t, testConfig(t), WithConsensusSource(n.source()))
	waitFor(t, "the bootstrap error", 5*time.Second, func() bool {
		return rp.logs.FilterMessageSnippet("fewer than half of the configured authorities signed").Len() > 0
	})
	s := status(t, rp)
	if s.Bootstrap.Percent != 40 || !strings.Contains(s.Bootstrap.Error, "authorities[].id") || s.Consensus != nil {
		t.Errorf("status %+v consensus %+v", s.Bootstrap, s.Consensus)
	}
	// Once the authorities serve a properly signed one, bootstrap goes on.
	n.publish(t)
	rp.waitBootstrapped(t)
}

// TestDropPadding: idle circuits get DROP cells to their last hop at random
// intervals, and relays accept them (the circuits stay up and usable).
func TestDropPadding(t *testing.T) {
	n, rp := startNetAndProxy(t, func(c *Config) {
		c.Circuits.PaddingMin = 50 * time.Millisecond
		c.Circuits.PaddingMax = 100 * time.Millisecond
	})
	metric := func() float64 {
		resp, err := ctlClient.Get("http://" + rp.Addrs().Control + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "chive_onionproxy_drop_cells_sent_total "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return 0
	}
	waitFor(t, "DROP cells on idle circuits", 10*time.Second, func() bool { return metric() >= 4 })
	for _, c := range status(t, rp).Circuits {
		if c.State == "closing" {
			t.Fatalf("a padded circuit is closing: %+v", c)
		}
	}
	port, _ := strconv.Atoi(n.port())
	if body, err := fetchVia(rp.Addrs().SOCKS[0], socksReq{host: webName, port: uint16(port)}, "/page"); err != nil || !bytes.Equal(body, n.page) {
		t.Fatalf("fetch over padded circuits: %q %v", body, err)
	}
}
