package onionproxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/chive-net/chive/dirclient"
	"github.com/chive-net/chive/directory"
)

// authPeriod is the voting period of the real authorities in these tests.
const authPeriod = 2 * time.Second

// startAuthorities runs n real directory authorities (package directory)
// on loopback, in testnet mode, and returns them as the proxy configures
// them.
func startAuthorities(t *testing.T, n int) []AuthorityConfig {
	t.Helper()
	var list []directory.AuthorityConfig
	var dirs []string
	var lns []net.Listener
	for i := 0; i < n; i++ {
		dir := t.TempDir()
		key, _, err := directory.LoadOrCreateKey(dir)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, directory.AuthorityConfig{Nickname: fmt.Sprintf("auth%d", i), ID: key.ID().String(), Address: ln.Addr().String()})
		dirs = append(dirs, dir)
		lns = append(lns, ln)
	}
	var out []AuthorityConfig
	for i := range list {
		cfg := &directory.Config{
			Nickname:       list[i].Nickname,
			DataDir:        dirs[i],
			Authorities:    list,
			VotingPeriod:   authPeriod,
			Testnet:        true,
			RequestTimeout: 2 * time.Second,
			Reachability:   directory.ReachabilityConfig{Timeout: 2 * time.Second, Concurrency: 4},
			Listener:       lns[i],
			Registry:       prometheus.NewRegistry(),
		}
		a, err := directory.New(cfg, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		out = append(out, AuthorityConfig{ID: list[i].ID, Address: list[i].Address})
	}
	return out
}

// TestRealAuthorities runs the whole network with real directory
// authorities: relays publish their descriptors, the authorities test them,
// vote and sign; the proxy bootstraps through the real directory client,
// serves curl, caches the consensus 0600, and restarts from its cache.
func TestRealAuthorities(t *testing.T) {
	curl := needTool(t, "curl")
	lookups := failLocalDNS(t)
	n := newTestNet(t, netOpts{})
	auths := startAuthorities(t, 3)
	var dir []dirclient.Authority
	for _, a := range auths {
		var d dirclient.Authority
		if err := d.ID.UnmarshalText([]byte(a.ID)); err != nil {
			t.Fatal(err)
		}
		d.Addr = a.Address
		dir = append(dir, d)
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for _, r := range n.relays {
		_, desc := r.signedDescriptor(t, time.Now())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res := dirclient.Publish(ctx, hc, dir, desc)
		cancel()
		for id, err := range res {
			if err != nil {
				t.Fatalf("publish %s to %s: %v", r.name, id.Short(), err)
			}
		}
	}

	cfg := testConfig(t)
	cfg.Authorities = auths
	start := time.Now()
	rp := startProxy(t, cfg) // no consensus source given: the real dirclient
	select {
	case <-rp.Bootstrapped():
	case <-time.After(10 * authPeriod):
		t.Fatalf("not bootstrapped after %v: %+v", 10*authPeriod, rp.Status().Bootstrap)
	}
	t.Logf("bootstrapped %v after the relays published (voting period %v)", time.Since(start), authPeriod)
	// The first consensus lists the relays the authorities had tested by
	// then: at least a path's worth, since a circuit was built.
	if s := rp.Status(); s.Consensus == nil || s.Consensus.Relays < PathLen {
		t.Fatalf("consensus %+v, want at least %d relays", s.Consensus, PathLen)
	}
	out, err := run(t, curl, "-sS", "--fail", "--max-time", "20", "--socks5-hostname", rp.Addrs().SOCKS[0], "http://"+webName+":"+n.port()+"/page")
	if err != nil || !bytes.Equal(out, n.page) {
		t.Fatalf("curl: %q %v", out, err)
	}
	fi, err := os.Stat(filepath.Join(cfg.DataDir, dirclient.CacheFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cached consensus mode %v, want 0600", fi.Mode().Perm())
	}
	rp.stop()

	// A restart uses the cached consensus: no fetch before circuits.
	start = time.Now()
	rp2 := startProxy(t, cfg)
	rp2.waitBootstrapped(t)
	t.Logf("restart bootstrapped in %v from the cache", time.Since(start))
	if rp2.logs.FilterMessage("Bootstrapped 40%: fetching consensus").Len() != 0 {
		t.Error("the restart fetched a consensus instead of using the cached one")
	}
	port, _ := strconv.Atoi(n.port())
	if body, err := fetchVia(rp2.Addrs().SOCKS[0], socksReq{host: webName, port: uint16(port)}, "/page"); err != nil || !bytes.Equal(body, n.page) {
		t.Fatalf("after the restart: %v", err)
	}
	if lookups.Load() != 0 {
		t.Fatalf("%d local lookups", lookups.Load())
	}
}
