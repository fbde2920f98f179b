package testnet_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chive-net/chive/testnet"
)

// netns makes a network namespace joined to this one by a veth pair:
// hostAddr on this side, nsAddr inside. It is removed when the test ends.
func netns(t *testing.T) (name, hostIf string, hostAddr, nsAddr netip.Addr) {
	t.Helper()
	need(t, "ip", "tcpdump")
	if os.Geteuid() != 0 {
		msg := "network namespaces need root"
		if os.Getenv("CHIVE_REQUIRE_E2E_TOOLS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	id := os.Getpid() % 10000
	name = fmt.Sprintf("chive-e2e-%d", id)
	hostIf, nsIf := fmt.Sprintf("chv%dh", id), fmt.Sprintf("chv%dn", id)
	hostAddr, nsAddr = netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")
	steps := [][]string{
		{"netns", "add", name},
		{"link", "add", hostIf, "type", "veth", "peer", "name", nsIf},
		{"link", "set", nsIf, "netns", name},
		{"addr", "add", hostAddr.String() + "/30", "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"netns", "exec", name, "ip", "addr", "add", nsAddr.String() + "/30", "dev", nsIf},
		{"netns", "exec", name, "ip", "link", "set", nsIf, "up"},
		{"netns", "exec", name, "ip", "link", "set", "lo", "up"},
	}
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", hostIf).Run()
		exec.Command("ip", "netns", "del", name).Run()
	})
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	// No IPv6 inside: router solicitations and the like would be noise.
	exec.Command("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1").Run()
	exec.Command("sysctl", "-qw", "net.ipv6.conf."+hostIf+".disable_ipv6=1").Run()
	return name, hostIf, hostAddr, nsAddr
}

var tcpdumpLine = regexp.MustCompile(`^(IP6?) (\S+)\.(\d+) > (\S+)\.(\d+): (\S+)`)

// TestNoLeaks runs the onion proxy alone in a network namespace and captures
// everything it sends while curl, dig and a browser-like client use it: the
// proxy may open TCP connections to relays (TLS links) and to directory
// authorities (the consensus), and nothing else: no DNS packet, no
// connection to the web server or any destination.
func TestNoLeaks(t *testing.T) {
	need(t, "curl", "dig")
	ns, hostIf, hostAddr, nsAddr := netns(t)

	capFile := t.TempDir() + "/capture.txt"
	capOut, err := os.Create(capFile)
	if err != nil {
		t.Fatal(err)
	}
	tcpdump := exec.Command("tcpdump", "-i", hostIf, "-nn", "-l", "-q", "-t", "ip or ip6")
	tcpdump.Stdout = capOut
	var tdErr syncBuffer
	tcpdump.Stderr = &tdErr
	if err := tcpdump.Start(); err != nil {
		t.Fatal(err)
	}
	stopCapture := func() {
		time.Sleep(500 * time.Millisecond) // let the last packets reach the file
		tcpdump.Process.Signal(os.Interrupt)
		tcpdump.Wait()
		capOut.Close()
	}
	captured := false
	t.Cleanup(func() {
		if !captured {
			stopCapture()
		}
	})
	// tcpdump prints "listening on" once it captures.
	for i := 0; i < 50 && !strings.Contains(tdErr.String(), "listening on"); i++ {
		time.Sleep(100 * time.Millisecond)
	}

	n := startNet(t, testnet.Options{
		HostAddr:   hostAddr,
		ClientAddr: nsAddr,
		ClientWrap: []string{"ip", "netns", "exec", ns},
	})

	// Use it: pages by name over SOCKS5 and HTTP CONNECT, and DNS queries.
	page := run(t, time.Minute, "curl", "-sS", "--fail", "--socks5-hostname", n.SOCKS, n.WebURL)
	if !strings.Contains(string(page), "chive") {
		t.Fatalf("no page: %s", page)
	}
	run(t, time.Minute, "curl", "-sS", "--fail", "-p", "--proxy", "http://"+n.HTTPConnect, n.WebURL)
	host, port := splitHostPort(t, n.DNS)
	for _, q := range [][]string{{"www.chive.test", "A"}, {"chive.test", "MX"}, {"nope.chive.test", "A"}} {
		run(t, 30*time.Second, "dig", append([]string{"@" + host, "-p", port, "+tries=2"}, q...)...)
	}
	if testing.Verbose() {
		t.Log("traffic generated; checking the capture")
	}
	stopCapture()
	captured = true

	allowed := map[int]string{}
	for _, a := range n.Authorities {
		allowed[int(a.Addr.Port())] = "authority " + a.Nickname
	}
	c, err := n.Consensus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range c.Relays {
		allowed[int(r.Addr.Port())] = "relay " + r.Nickname
	}
	// Replies from the proxy's own listeners to the local clients are not
	// the proxy reaching out.
	listeners := map[int]bool{}
	for _, l := range []string{n.SOCKS, n.HTTPConnect, n.DNS, n.Control} {
		_, p := splitHostPort(t, l)
		v, _ := strconv.Atoi(p)
		listeners[v] = true
	}

	b, err := os.ReadFile(capFile)
	if err != nil {
		t.Fatal(err)
	}
	r := analyzeCapture(string(b), nsAddr, hostAddr, allowed, listeners)
	for _, v := range r.violations {
		t.Errorf("leak: %s", v)
	}
	fromClient, toRelays, toAuthorities := r.fromClient, r.toRelays, r.toAuthorities
	if fromClient == 0 || toRelays == 0 {
		t.Fatalf("the capture holds %d packets from the proxy (%d to relays): it did not see the proxy's traffic", fromClient, toRelays)
	}
	t.Logf("capture: %d packets from the proxy: %d to relays (TLS links), %d to authorities (consensus); none elsewhere",
		fromClient, toRelays, toAuthorities)
}

type captureReport struct {
	fromClient, toRelays, toAuthorities int
	violations                          []string
}

// analyzeCapture checks tcpdump -nn -q -t lines: every packet the client
// (nsAddr) originates must be TCP to hostAddr on an allowed port. Packets
// from the client's listener ports are replies to local programs.
func analyzeCapture(capture string, nsAddr, hostAddr netip.Addr, allowed map[int]string, listeners map[int]bool) captureReport {
	var r captureReport
	sc := bufio.NewScanner(strings.NewReader(capture))
	for sc.Scan() {
		line := sc.Text()
		m := tcpdumpLine.FindStringSubmatch(line)
		if m == nil {
			continue // ARP and the like are not IP
		}
		src, sport, dst, dport, proto := m[2], m[3], m[4], m[5], strings.TrimSuffix(m[6], ":")
		if src != nsAddr.String() {
			continue
		}
		sp, _ := strconv.Atoi(sport)
		dp, _ := strconv.Atoi(dport)
		if listeners[sp] {
			continue
		}
		r.fromClient++
		if dst != hostAddr.String() || proto != "tcp" {
			r.violations = append(r.violations, "non-TCP or off-network packet: "+line)
			continue
		}
		what, ok := allowed[dp]
		switch {
		case !ok:
			r.violations = append(r.violations, fmt.Sprintf("connection to port %d, which is no relay or authority: %s", dp, line))
		case strings.HasPrefix(what, "relay"):
			r.toRelays++
		default:
			r.toAuthorities++
		}
	}
	return r
}

// TestAnalyzeCapture shows the leak check catches what it must: a DNS
// packet, a connection to a destination, traffic to another host.
func TestAnalyzeCapture(t *testing.T) {
	ns, host := netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.1")
	allowed := map[int]string{9001: "relay r1", 7000: "authority a1"}
	listeners := map[int]bool{9050: true, 9053: true}
	clean := `IP 10.77.0.2.40000 > 10.77.0.1.9001: tcp 517
IP 10.77.0.1.9001 > 10.77.0.2.40000: tcp 0
IP 10.77.0.2.40002 > 10.77.0.1.7000: tcp 0
IP 10.77.0.2.9050 > 10.77.0.1.51000: tcp 10
IP 10.77.0.2.9053 > 10.77.0.1.51001: UDP, length 60
ARP, Request who-has 10.77.0.1 tell 10.77.0.2, length 28
`
	if r := analyzeCapture(clean, ns, host, allowed, listeners); len(r.violations) != 0 || r.toRelays != 1 || r.toAuthorities != 1 {
		t.Fatalf("clean capture: %+v", r)
	}
	for _, leak := range []string{
		"IP 10.77.0.2.41000 > 10.77.0.1.53: UDP, length 40",   // a DNS query
		"IP 10.77.0.2.41001 > 10.77.0.1.8080: tcp 0",          // a direct connection
		"IP 10.77.0.2.41002 > 192.0.2.1.9001: tcp 0",          // another host
		"IP 10.77.0.2.41003 > 10.77.0.1.9001: UDP, length 10", // UDP to a relay port
	} {
		if r := analyzeCapture(clean+leak+"\n", ns, host, allowed, listeners); len(r.violations) != 1 {
			t.Errorf("capture with %q: %d violations, want 1", leak, len(r.violations))
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writing process and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
