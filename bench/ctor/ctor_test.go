package ctor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/chive-net/chive/testnet/services"
)

func TestCertFingerprint(t *testing.T) {
	cert := "dir-key-certificate-version 3\ndir-address 127.0.0.1:7001\nfingerprint 462EDF0B0220DECFDA95DE5CE8B16192479A8BF7\ndir-key-published 2026-11-26 11:56:40\n"
	got, err := certFingerprint([]byte(cert))
	if err != nil || got != "462EDF0B0220DECFDA95DE5CE8B16192479A8BF7" {
		t.Errorf("got %q, %v", got, err)
	}
	for _, bad := range []string{"dir-key-certificate-version 3\n", "fingerprint 462EDF0B\n", "fingerprint 462edf0b0220decfda95de5ce8b16192479a8bf7\n"} {
		if _, err := certFingerprint([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestListedFingerprint(t *testing.T) {
	out := "Nov 26 11:56:43.825 [notice] Your Tor server's identity key fingerprint is 'auth0 055D...'\nauth0 055D 5E16 8CBE 7B29 768A 4E7D FD02 0572 FDDE 76DB\n"
	got, err := listedFingerprint([]byte(out), "auth0")
	if err != nil || got != "055D5E168CBE7B29768A4E7DFD020572FDDE76DB" {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := listedFingerprint([]byte(out), "auth1"); err == nil {
		t.Error("other nickname: no error")
	}
}

func TestLastBootstrap(t *testing.T) {
	for _, tc := range []struct {
		log  string
		pct  int
		text string
	}{
		{"", -1, ""},
		{"Nov 26 [notice] Bootstrapped 0% (starting): Starting\n", 0, "0% (starting): Starting"},
		{"x Bootstrapped 5% (conn): a\ny Bootstrapped 100% (done): Done\n", 100, "100% (done): Done"},
		{"x Bootstrapped 75% (enough_dirinfo): Loaded", 75, "75% (enough_dirinfo): Loaded"},
		{"x Bootstrapped soon\n", -1, ""},
	} {
		pct, text := lastBootstrap([]byte(tc.log))
		if pct != tc.pct || text != tc.text {
			t.Errorf("%q: got %d %q, want %d %q", tc.log, pct, text, tc.pct, tc.text)
		}
	}
}

func TestTorrc(t *testing.T) {
	auth := []string{"DirAuthority auth0 orport=5000 v3ident=AA 127.0.0.1:7000 BB"}
	exit := torrc(&node{name: "exit0", role: RoleExit, dir: "/d/exit0", orPort: 5005}, auth, 10, 10, "/d/resolv.conf")
	for _, want := range []string{
		"TestingTorNetwork 1\n", "DataDirectory /d/exit0\n", "ORPort 127.0.0.1:5005\n", "ExitRelay 1\n",
		"ExitPolicyRejectPrivate 0\n", "ExitPolicy accept 127.0.0.0/8:*\n", "ExitPolicy accept *:*\n",
		"ServerDNSResolvConfFile /d/resolv.conf\n", auth[0] + "\n", "AssumeReachable 1\n",
	} {
		if !strings.Contains(exit, want) {
			t.Errorf("exit torrc lacks %q:\n%s", want, exit)
		}
	}
	a := torrc(&node{name: "auth0", role: RoleAuthority, dir: "/d/auth0", orPort: 5000, dirPort: 7000}, auth, 10, 5, "")
	for _, want := range []string{"V3AuthoritativeDirectory 1\n", "DirPort 127.0.0.1:7000\n", "V3AuthVotingInterval 10\n",
		"V3AuthVoteDelay 2\n", "TestingV3AuthInitialVotingInterval 5\n", "TestingV3AuthInitialVoteDelay 2\n", "ExitRelay 0\n"} {
		if !strings.Contains(a, want) {
			t.Errorf("authority torrc lacks %q:\n%s", want, a)
		}
	}
	c := torrc(&node{name: "client", role: RoleClient, dir: "/d/client", socksPort: 9050, dnsPort: 9053}, auth, 10, 10, "")
	for _, want := range []string{"SocksPort 127.0.0.1:9050\n", "DNSPort 127.0.0.1:9053\n"} {
		if !strings.Contains(c, want) {
			t.Errorf("client torrc lacks %q:\n%s", want, c)
		}
	}
	// The client keeps Tor's defaults: no relay, exit or conflux settings.
	for _, unwanted := range []string{"ORPort", "Conflux", "ExitRelay", "AssumeReachable"} {
		if strings.Contains(c, unwanted) {
			t.Errorf("client torrc sets %s:\n%s", unwanted, c)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{ProbeURL: "http://a:1/"},
		{Dir: "x"},
		{Dir: "x", ProbeURL: "https://a:1/"},
		{Dir: "x", ProbeURL: "http://a/"},
		{Dir: "x", ProbeURL: "http://a:1/", VotingInterval: 7 * time.Second},
		{Dir: "x", ProbeURL: "http://a:1/", VotingInterval: 11 * time.Second},
		{Dir: "x", ProbeURL: "http://a:1/", ExitResolver: "127.0.0.1"},
		{Dir: "x", ProbeURL: "http://a:1/", InitialVotingInterval: 7 * time.Second},
	} {
		if err := o.setDefaults(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestFindMissing(t *testing.T) {
	_, _, err := Find("/nonexistent/tor", "")
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install tor") {
		t.Errorf("got %v, want ErrNotInstalled with the install hint", err)
	}
}

// TestNetwork brings up the whole C tor network, loads the test web
// server's page through it by a name only the exits' resolver knows, and
// resolves that name through the client's DNSPort.
func TestNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 9-process tor network (30-60 s); skipped in -short")
	}
	if _, _, err := Find("", ""); err != nil {
		t.Skip(err)
	}
	svc, err := services.Start("127.0.0.1:0", "127.0.0.1:0", netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var log strings.Builder
	page := fmt.Sprintf("http://%s:%d/", services.WebHost, svc.Web.Port())
	n, err := Start(ctx, Options{Dir: t.TempDir(), ExitResolver: svc.DNS.String(), ProbeURL: page, Log: &log, Timeout: 140 * time.Second})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, log.String())
	}
	t.Logf("bootstrap %v (client 100%% at %v)\n%s", n.BootstrapTime, n.ClientBootstrapped, log.String())
	procs := n.Processes()
	if len(procs) != 9 {
		t.Errorf("got %d processes, want 9", len(procs))
	}
	if err := FetchPage(ctx, n.SOCKS, "another-circuit", fmt.Sprintf("http://%s:%d/size/1024", services.WebHost, svc.Web.Port())); err != nil {
		t.Error(err)
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(services.WebHost), dns.TypeA)
	r, _, err := new(dns.Client).ExchangeContext(ctx, q, n.DNS)
	if err != nil {
		t.Errorf("DNS through the DNSPort: %v", err)
	} else if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
		t.Errorf("DNS through the DNSPort: got %v, want one A 127.0.0.1", r.Answer)
	}
	if err := n.Close(); err != nil {
		t.Error(err)
	}
	for _, p := range procs {
		if err := syscall.Kill(p.PID, 0); err == nil {
			t.Errorf("%s (pid %d) still running after Close", p.Name, p.PID)
		}
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
