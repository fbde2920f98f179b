// Package testnet brings up a whole chive network on 127.0.0.1: directory
// authorities, relays (some of them exits), one onion proxy, and the web and
// DNS servers the exits reach, each program a real process built from this
// tree. The launcher (testnet/cmd/testnet), the end-to-end tests and the
// benchmark all use it.
package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"

	"golang.org/x/net/proxy"

	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
	"github.com/chive-net/chive/testnet/services"
)

// Options shape a network. Zero values take the defaults.
type Options struct {
	// Dir holds keys, configs, data and logs. It is created if missing.
	Dir string
	// Authorities (default 3), Relays (non-exit relays, default 3) and
	// Exits (default 2).
	Authorities, Relays, Exits int
	// VotingPeriod is the authorities' voting period (default 3s).
	// InitialVotingPeriod is their period until they hold a usable
	// consensus (default 1s; it must divide VotingPeriod): the first
	// usable consensus comes a second or two after the relays start.
	VotingPeriod, InitialVotingPeriod time.Duration
	// Bins are prebuilt binaries by program name ("directory",
	// "relaynode", "onionproxy"); nil builds them into Dir/bin.
	Bins map[string]string
	// SOCKSPort, HTTPPort and DNSPort fix the onion proxy's ports; 0 picks
	// free ones.
	SOCKSPort, HTTPPort, DNSPort int
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// UnsafeLogging turns on addresses in every program's logs.
	UnsafeLogging bool
	// LogLevel for every program (default info).
	LogLevel string
	// ReadyTimeout bounds waiting for the network to carry a page (default 90s).
	ReadyTimeout time.Duration
	// HostAddr is the address authorities and relays listen on and
	// advertise (default 127.0.0.1). ClientAddr is where the onion proxy's
	// listeners bind (default 127.0.0.1). ClientWrap prefixes the proxy's
	// command line, e.g. "ip netns exec NS" to run it in its own network
	// namespace, where a packet capture sees only its traffic.
	HostAddr, ClientAddr netip.Addr
	ClientWrap           []string
}

func (o *Options) defaults() {
	if o.Authorities == 0 {
		o.Authorities = 3
	}
	if o.Relays == 0 {
		o.Relays = 3
	}
	if o.Exits == 0 {
		o.Exits = 2
	}
	if o.VotingPeriod == 0 {
		o.VotingPeriod = 3 * time.Second
	}
	if o.InitialVotingPeriod == 0 {
		o.InitialVotingPeriod = time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 90 * time.Second
	}
	if !o.HostAddr.IsValid() {
		o.HostAddr = netip.MustParseAddr("127.0.0.1")
	}
	if !o.ClientAddr.IsValid() {
		o.ClientAddr = netip.MustParseAddr("127.0.0.1")
	}
}

// Authority is one authority as the configs name it.
type Authority struct {
	Nickname string
	ID       layercrypt.RelayID
	Addr     netip.AddrPort
}

// Network is a running test network.
type Network struct {
	Dir string
	// The onion proxy's front-ends and control listener.
	SOCKS, HTTPConnect, DNS, Control string
	// Web is the web server; WebURL names it by a host only the exits'
	// resolver knows.
	Web    netip.AddrPort
	WebURL string
	// DNSServer is the exits' resolver (the chive.test zone).
	DNSServer   netip.AddrPort
	Authorities []Authority
	// BootstrapTime runs from starting the first process to the first
	// page fetched through the proxy (which starts with the relays).
	BootstrapTime time.Duration

	opts     Options
	bins     map[string]string
	services *services.Servers

	mu    sync.Mutex // guards procs and ports
	procs []*Process
	ports map[int]bool // ports handed out to this network's nodes

	closeOnce sync.Once
}

// Up builds (if needed) and starts a network: the authorities, then the
// relays and the onion proxy at once. It returns once a page has been
// fetched through the proxy (BootstrapTime) and a consensus lists every
// relay Running. On failure it stops everything it started.
func Up(ctx context.Context, o Options) (n *Network, err error) {
	o.defaults()
	if o.Dir == "" {
		return nil, errors.New("testnet: Options.Dir is required")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	// n is a named result: "return nil, err" clears it before deferred
	// functions run, so the cleanup keeps its own reference.
	nw := &Network{Dir: o.Dir, opts: o}
	n = nw
	defer func() {
		if err != nil {
			nw.Close()
			n = nil
		}
	}()
	n.bins = o.Bins
	if n.bins == nil {
		root, err := ModuleRoot()
		if err != nil {
			return nil, err
		}
		n.logf("building directory, relaynode and onionproxy ...")
		if n.bins, err = Build(ctx, root, filepath.Join(o.Dir, "bin")); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	svc, err := services.Start("127.0.0.1:0", "127.0.0.1:0", netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		return nil, err
	}
	n.services = svc
	n.Web, n.DNSServer = svc.Web, svc.DNS
	n.WebURL = fmt.Sprintf("http://%s:%d/", services.WebHost, svc.Web.Port())
	n.logf("web server %s and chive.test DNS %s (names the exits resolve)", svc.Web, svc.DNS)

	if err := n.startAuthorities(ctx); err != nil {
		return nil, err
	}
	if err := n.startRelays(ctx); err != nil {
		return nil, err
	}
	// The proxy fetches the consensus quickly until one is usable, so it
	// starts with the relays rather than after the consensus lists them.
	if err := n.startClient(ctx); err != nil {
		return nil, err
	}
	if err := n.waitPage(ctx); err != nil {
		return nil, err
	}
	n.BootstrapTime = time.Since(start)
	n.logf("first page through the proxy after %.1fs", n.BootstrapTime.Seconds())
	if err := n.waitConsensus(ctx); err != nil {
		return nil, err
	}
	n.logf("ready after %.1fs", time.Since(start).Seconds())
	return n, nil
}

func (n *Network) logf(format string, args ...any) {
	fmt.Fprintf(n.opts.Log, "testnet: "+format+"\n", args...)
}

// freePort picks an unused TCP port on 127.0.0.1 for this network.
func (n *Network) freePort() (int, error) { return n.freePortOn(netip.MustParseAddr("127.0.0.1")) }

// freePortOn picks an unused TCP port on addr, never one it already handed
// out for this network: the kernel may offer a port again once its probe
// listener is closed, and two nodes on one port would make one of them fail.
func (n *Network) freePortOn(addr netip.Addr) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ports == nil {
		n.ports = map[int]bool{}
	}
	for range 100 {
		p, err := probePort(addr)
		if err != nil {
			return 0, err
		}
		if !n.ports[p] {
			n.ports[p] = true
			return p, nil
		}
	}
	return 0, errors.New("testnet: no fresh free port after 100 tries")
}

// probePort asks the kernel for an unused TCP port on addr.
// It draws from 20000-32767, below Linux's ephemeral range (32768-60999),
// so that no outgoing connection can take the port between this probe and
// the node binding it.
func probePort(addr netip.Addr) (int, error) {
	var lastErr error
	for range 50 {
		port := 20000 + mrand.IntN(32768-20000)
		ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, uint16(port)).String())
		if err != nil {
			lastErr = err
			continue
		}
		ln.Close()
		return port, nil
	}
	return 0, fmt.Errorf("testnet: no free port on %v in 20000-32767: %w", addr, lastErr)
}

func (n *Network) add(p *Process) {
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
}

// keygen runs "<prog> keygen -data-dir dir" and returns the printed ID.
func (n *Network) keygen(ctx context.Context, prog, dir string) (layercrypt.RelayID, error) {
	out, err := exec.CommandContext(ctx, n.bins[prog], "keygen", "-data-dir", dir).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return layercrypt.RelayID{}, fmt.Errorf("%s keygen: %w: %s", prog, err, ee.Stderr)
		}
		return layercrypt.RelayID{}, fmt.Errorf("%s keygen: %w", prog, err)
	}
	id, err := layercrypt.ParseRelayID(strings.TrimSpace(string(out)))
	if err != nil {
		return layercrypt.RelayID{}, fmt.Errorf("%s keygen printed %q: %w", prog, out, err)
	}
	return id, nil
}

func writeConfig(path string, tmpl *template.Template, data any) error {
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

func (n *Network) startAuthorities(ctx context.Context) error {
	o := n.opts
	for i := 1; i <= o.Authorities; i++ {
		name := fmt.Sprintf("auth%d", i)
		dir := filepath.Join(n.Dir, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		id, err := n.keygen(ctx, "directory", dir)
		if err != nil {
			return err
		}
		port, err := n.freePortOn(o.HostAddr)
		if err != nil {
			return err
		}
		n.Authorities = append(n.Authorities, Authority{Nickname: name, ID: id,
			Addr: netip.AddrPortFrom(o.HostAddr, uint16(port))})
	}
	for _, a := range n.Authorities {
		metrics, err := n.freePort()
		if err != nil {
			return err
		}
		cfg := filepath.Join(n.Dir, a.Nickname+".yaml")
		err = writeConfig(cfg, authorityTmpl, map[string]any{
			"Name": a.Nickname, "Dir": filepath.Join(n.Dir, a.Nickname), "Listen": a.Addr,
			"Authorities": n.Authorities, "Period": o.VotingPeriod, "Initial": o.InitialVotingPeriod, "Metrics": metrics,
			"Level": o.LogLevel, "Unsafe": o.UnsafeLogging,
		})
		if err != nil {
			return err
		}
		p, err := startProcess(a.Nickname, RoleAuthority, n.bins["directory"], cfg,
			filepath.Join(n.Dir, a.Nickname+".log"), "-config", cfg)
		if err != nil {
			return err
		}
		n.add(p)
	}
	n.logf("started %d authorities (voting period %v, %v until a consensus is usable)", len(n.Authorities), o.VotingPeriod, o.InitialVotingPeriod)
	return nil
}

func (n *Network) startRelays(ctx context.Context) error {
	o := n.opts
	total := o.Relays + o.Exits
	for i := 1; i <= total; i++ {
		exit := i > o.Relays
		name := fmt.Sprintf("relay%d", i)
		role := RoleRelay
		if exit {
			name = fmt.Sprintf("exit%d", i-o.Relays)
			role = RoleExit
		}
		port, err := n.freePortOn(o.HostAddr)
		if err != nil {
			return err
		}
		metrics, err := n.freePort()
		if err != nil {
			return err
		}
		cfg := filepath.Join(n.Dir, name+".yaml")
		err = writeConfig(cfg, relayTmpl, map[string]any{
			"Name": name, "Dir": filepath.Join(n.Dir, name), "Host": o.HostAddr, "Port": port, "Exit": exit,
			"Resolver": n.DNSServer, "Authorities": n.Authorities, "Metrics": metrics,
			"Publish": o.VotingPeriod / 2, "Level": o.LogLevel, "Unsafe": o.UnsafeLogging,
		})
		if err != nil {
			return err
		}
		p, err := startProcess(name, role, n.bins["relaynode"], cfg, filepath.Join(n.Dir, name+".log"), "-config", cfg)
		if err != nil {
			return err
		}
		n.add(p)
	}
	n.logf("started %d relays (%d exits)", total, o.Exits)
	return nil
}

// Consensus fetches and verifies the current consensus from the first
// authority that has one.
func (n *Network) Consensus(ctx context.Context) (*netdoc.Consensus, error) {
	ids := make([]layercrypt.RelayID, len(n.Authorities))
	for i, a := range n.Authorities {
		ids[i] = a.ID
	}
	var errs []error
	for _, a := range n.Authorities {
		c, err := fetchConsensus(ctx, a.Addr.String(), ids)
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a.Nickname, err))
	}
	return nil, errors.Join(errs...)
}

func fetchConsensus(ctx context.Context, addr string, ids []layercrypt.RelayID) (*netdoc.Consensus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/chive/v1/consensus", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return netdoc.ParseConsensus(b, ids, time.Now())
}

// pollEvery is how often Up checks for the consensus and the page.
const pollEvery = 100 * time.Millisecond

// waitConsensus waits until a verified consensus lists every relay as
// Running.
func (n *Network) waitConsensus(ctx context.Context) error {
	want := n.opts.Relays + n.opts.Exits
	deadline := time.Now().Add(n.opts.ReadyTimeout)
	last := -1
	var lastErr error
	for time.Now().Before(deadline) {
		if err := n.crashed(); err != nil {
			return err
		}
		c, err := n.Consensus(ctx)
		if err == nil {
			running := 0
			for _, r := range c.Relays {
				if r.Flags.Has(netdoc.FlagRunning) {
					running++
				}
			}
			if running != last {
				n.logf("consensus lists %d of %d relays as Running", running, want)
				last = running
			}
			if running >= want {
				return nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEvery):
		}
	}
	return fmt.Errorf("testnet: no consensus listing all %d relays within %v (last error: %v); see the logs in %s",
		want, n.opts.ReadyTimeout, lastErr, n.Dir)
}

func (n *Network) startClient(ctx context.Context) error {
	o := n.opts
	pick := func(fixed int) (int, error) {
		if fixed != 0 {
			return fixed, nil
		}
		if len(o.ClientWrap) > 0 {
			// The proxy binds inside another namespace: any port will do.
			return n.freePort()
		}
		return n.freePortOn(o.ClientAddr)
	}
	socks, err := pick(o.SOCKSPort)
	if err != nil {
		return err
	}
	httpPort, err := pick(o.HTTPPort)
	if err != nil {
		return err
	}
	dnsPort, err := pick(o.DNSPort)
	if err != nil {
		return err
	}
	control, err := n.freePort()
	if err != nil {
		return err
	}
	ca := o.ClientAddr
	n.SOCKS = netip.AddrPortFrom(ca, uint16(socks)).String()
	n.HTTPConnect = netip.AddrPortFrom(ca, uint16(httpPort)).String()
	n.DNS = netip.AddrPortFrom(ca, uint16(dnsPort)).String()
	n.Control = netip.AddrPortFrom(ca, uint16(control)).String()
	cfg := filepath.Join(n.Dir, "client.yaml")
	err = writeConfig(cfg, clientTmpl, map[string]any{
		"Dir": filepath.Join(n.Dir, "client"), "Authorities": n.Authorities,
		"SOCKS": n.SOCKS, "HTTP": n.HTTPConnect, "DNS": n.DNS, "Control": n.Control,
		"Level": o.LogLevel, "Unsafe": o.UnsafeLogging,
	})
	if err != nil {
		return err
	}
	bin, args := n.bins["onionproxy"], []string{"-config", cfg}
	if len(o.ClientWrap) > 0 {
		args = append(append(append([]string(nil), o.ClientWrap[1:]...), bin), args...)
		bin = o.ClientWrap[0]
	}
	p, err := startProcess("client", RoleClient, bin, cfg, filepath.Join(n.Dir, "client.log"), args...)
	if err != nil {
		return err
	}
	n.add(p)
	n.logf("started the onion proxy")
	return nil
}

// HTTPClient returns an HTTP client whose connections go through the
// proxy's SOCKS5 port with the given credentials (empty: none).
func (n *Network) HTTPClient(user, pass string) (*http.Client, error) {
	var auth *proxy.Auth
	if user != "" {
		auth = &proxy.Auth{User: user, Password: pass}
	}
	d, err := proxy.SOCKS5("tcp", n.SOCKS, auth, proxy.Direct)
	if err != nil {
		return nil, err
	}
	cd := d.(proxy.ContextDialer)
	return &http.Client{
		Transport: &http.Transport{DialContext: cd.DialContext, DisableKeepAlives: true},
		Timeout:   60 * time.Second,
	}, nil
}

// waitPage fetches WebURL through the proxy until it works.
func (n *Network) waitPage(ctx context.Context) error {
	hc, err := n.HTTPClient("", "")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(n.opts.ReadyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		if err := n.crashed(); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, n.WebURL, nil)
		resp, err := hc.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if rerr == nil && resp.StatusCode == 200 && bytes.Contains(b, []byte(services.PageText)) {
				return nil
			}
			lastErr = fmt.Errorf("HTTP %s, read error %v", resp.Status, rerr)
		} else {
			cancel()
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEvery):
		}
	}
	return fmt.Errorf("testnet: no page through the proxy within %v (last error: %v); see %s",
		n.opts.ReadyTimeout, lastErr, filepath.Join(n.Dir, "client.log"))
}

// crashed reports a process that died on its own, with its log's end.
func (n *Network) crashed() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.procs {
		if err := p.crashed(); err != nil {
			return fmt.Errorf("%w\n--- end of %s ---\n%s", err, p.LogFile, tail(p.LogFile, 2000))
		}
	}
	return nil
}

// Processes returns every process started, in start order.
func (n *Network) Processes() []*Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Process(nil), n.procs...)
}

// Process returns the process named name ("auth1", "relay2", "exit1",
// "client"), or nil.
func (n *Network) Process(name string) *Process {
	for _, p := range n.Processes() {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Close stops every process (client first, authorities last) and the
// services. It is idempotent.
func (n *Network) Close() error {
	var errs []error
	n.closeOnce.Do(func() {
		procs := n.Processes()
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := len(procs) - 1; i >= 0; i-- {
			wg.Add(1)
			go func(p *Process) {
				defer wg.Done()
				if err := p.Stop(15 * time.Second); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}(procs[i])
		}
		wg.Wait()
		if n.services != nil {
			n.services.Close()
		}
	})
	return errors.Join(errs...)
}
