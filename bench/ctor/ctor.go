// Package ctor brings up a C tor test network on 127.0.0.1, of the same
// shape as a chive test network (3 directory authorities, 3 middle relays,
// 2 exits, 1 client), for the whole-network benchmark to compare against.
//
// It does what chutney does, in Go and for this one shape: authority keys
// from tor-gencert, relay identities from `tor --list-fingerprint`, one
// torrc per node with TestingTorNetwork and short voting intervals, every
// node's DataDirectory and logs under one directory. The client keeps Tor's
// defaults (conflux included), as users run it; only the directory
// (DirAuthority lines, TestingTorNetwork) is the test network's.
//
// The exits resolve names with the resolver named in Options.ExitResolver
// (written into a resolv.conf of their own), so that a name known only to
// that resolver, such as the test network's web server, is resolved at the
// exit as in the chive network.
package ctor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chive-net/chive/bench/procstat"
	"github.com/chive-net/chive/bench/socks5"
)

// InstallHint tells a user how to get C tor.
const InstallHint = "install C tor with: apt-get install tor (it brings tor and tor-gencert)"

// ErrNotInstalled means tor or tor-gencert was not found.
var ErrNotInstalled = errors.New("ctor: C tor is not installed; " + InstallHint)

// Roles of the nodes.
const (
	RoleAuthority = "authority"
	RoleMiddle    = "middle"
	RoleExit      = "exit"
	RoleClient    = "client"
)

// Options shape the network. The zero value of every field but Dir and
// ProbeURL has a default.
type Options struct {
	// Dir holds every node's DataDirectory, torrc and logs. It is created
	// if needed and left in place afterwards (logs are worth reading).
	Dir string

	// Tor and Gencert are the binaries; empty looks them up (PATH, then
	// /usr/bin and /usr/sbin).
	Tor, Gencert string

	// Authorities, Relays (middles) and Exits count the relays: 3, 3 and 2
	// by default.
	Authorities, Relays, Exits int

	// VotingInterval is V3AuthVotingInterval and the initial voting
	// interval: 10 s by default. Tor wants whole seconds dividing a day,
	// at least 10 s.
	VotingInterval time.Duration

	// InitialVotingInterval is TestingV3AuthInitialVotingInterval, the
	// interval until the first consensus: 5 s by default (tor's smallest;
	// on this machine it bootstrapped in 10-13 s where 10 s took 16-27 s).
	InitialVotingInterval time.Duration

	// ExitResolver is the DNS server (ip:port) the exits resolve names
	// with. Empty: the system's resolv.conf.
	ExitResolver string

	// ProbeURL is the page (http://host:port/path) that must load through
	// the client before Start returns; its time to load first is the
	// network's bootstrap time.
	ProbeURL string

	// Timeout bounds the wait for that page (3 minutes by default).
	Timeout time.Duration

	// StopGrace is how long Close waits after SIGTERM before SIGKILL (10 s
	// by default: a relay that has carried a lot can take over 5 s to
	// free its memory and exit on a busy machine).
	StopGrace time.Duration

	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Process is one tor process of the network.
type Process struct {
	Name    string // "auth0", "middle1", "exit0", "client"
	Role    string
	PID     int
	Torrc   string
	LogFile string // tor's notice log

	// ORPort is the relay's onion-router port (0 for the client).
	ORPort int
	// Fingerprint is the relay's RSA identity fingerprint (empty for the
	// client and for relays, whose keys tor makes when it starts).
	Fingerprint string

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // its exit status, valid once done is closed
}

// Running reports whether the process is still alive.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Network is a running C tor network.
type Network struct {
	// SOCKS and DNS are the client's SocksPort and DNSPort (127.0.0.1:port).
	SOCKS, DNS string
	// BootstrapTime is the time from starting the processes to the first
	// successful load of ProbeURL.
	BootstrapTime time.Duration
	// ClientBootstrapped is the time from starting the processes to the
	// client's "Bootstrapped 100%".
	ClientBootstrapped time.Duration
	// Version is tor's version line.
	Version string
	// Dir is Options.Dir.
	Dir string

	procs     []*Process
	grace     time.Duration
	log       io.Writer
	closeOnce sync.Once
	closeErr  error
}

// Processes lists the network's processes.
func (n *Network) Processes() []Process {
	out := make([]Process, len(n.procs))
	for i, p := range n.procs {
		out[i] = Process{Name: p.Name, Role: p.Role, PID: p.PID, Torrc: p.Torrc, LogFile: p.LogFile,
			ORPort: p.ORPort, Fingerprint: p.Fingerprint}
	}
	return out
}

// Procs lists the processes for procstat. Every node but the client is a
// relay: tor's authorities carry circuits too.
func (n *Network) Procs() []procstat.Proc {
	out := make([]procstat.Proc, len(n.procs))
	for i, p := range n.procs {
		out[i] = procstat.Proc{Name: p.Name, Role: p.Role, PID: p.PID, Relay: p.Role != RoleClient}
	}
	return out
}

// Close stops every process: SIGTERM, then SIGKILL for any still running
// after the grace period. It is safe to call more than once.
func (n *Network) Close() error {
	n.closeOnce.Do(func() { n.closeErr = stopAll(n.procs, n.grace) })
	return n.closeErr
}

// stopAll signals every process at once, waits up to grace for them all,
// then kills any left.
func stopAll(procs []*Process, grace time.Duration) error {
	for _, p := range procs {
		if p.Running() {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
wait:
	for _, p := range procs {
		select {
		case <-p.done:
		case <-timer.C:
			break wait
		}
	}
	var errs []error
	for _, p := range procs {
		if p.Running() {
			p.cmd.Process.Kill()
			errs = append(errs, fmt.Errorf("ctor: %s (pid %d) did not exit within %v of SIGTERM and was killed", p.Name, p.PID, grace))
		}
	}
	for _, p := range procs {
		<-p.done
	}
	return errors.Join(errs...)
}

// Find returns the tor and tor-gencert binaries: the given paths if not
// empty, else from PATH or the usual Debian places. The error wraps
// ErrNotInstalled.
func Find(tor, gencert string) (torPath, gencertPath string, err error) {
	look := func(given, name string) (string, error) {
		if given != "" {
			if _, err := exec.LookPath(given); err != nil {
				return "", fmt.Errorf("%w (%s: %v)", ErrNotInstalled, given, err)
			}
			return given, nil
		}
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"} {
			p := filepath.Join(dir, name)
			if _, err := exec.LookPath(p); err == nil {
				return p, nil
			}
		}
		return "", fmt.Errorf("%w (%s not found)", ErrNotInstalled, name)
	}
	if torPath, err = look(tor, "tor"); err != nil {
		return "", "", err
	}
	if gencertPath, err = look(gencert, "tor-gencert"); err != nil {
		return "", "", err
	}
	return torPath, gencertPath, nil
}

// Version returns the first line of `tor --version`.
func Version(tor string) (string, error) {
	out, err := exec.Command(tor, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("ctor: %s --version: %w", tor, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

func (o *Options) setDefaults() error {
	if o.Dir == "" {
		return errors.New("ctor: Options.Dir is required")
	}
	if o.ProbeURL == "" {
		return errors.New("ctor: Options.ProbeURL is required (a page the client must load)")
	}
	u, err := url.Parse(o.ProbeURL)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		return fmt.Errorf("ctor: Options.ProbeURL %q: want http://host:port/path", o.ProbeURL)
	}
	if o.Authorities == 0 {
		o.Authorities = 3
	}
	if o.Relays == 0 {
		o.Relays = 3
	}
	if o.Exits == 0 {
		o.Exits = 2
	}
	if o.Authorities < 1 || o.Relays < 0 || o.Exits < 1 {
		return fmt.Errorf("ctor: %d authorities, %d relays, %d exits: want at least 1 authority and 1 exit",
			o.Authorities, o.Relays, o.Exits)
	}
	if o.VotingInterval == 0 {
		o.VotingInterval = 10 * time.Second
	}
	v := o.VotingInterval
	if v%time.Second != 0 || v < 10*time.Second || (24*time.Hour)%v != 0 {
		return fmt.Errorf("ctor: Options.VotingInterval %v: tor wants whole seconds, at least 10, dividing 24 hours (10s, 12s, 15s, 20s, ...)", v)
	}
	if o.InitialVotingInterval == 0 {
		o.InitialVotingInterval = 5 * time.Second
	}
	iv := o.InitialVotingInterval
	if iv%time.Second != 0 || iv < 5*time.Second || (24*time.Hour)%iv != 0 {
		return fmt.Errorf("ctor: Options.InitialVotingInterval %v: tor wants whole seconds, at least 5, dividing 24 hours", iv)
	}
	if o.ExitResolver != "" {
		if _, _, err := net.SplitHostPort(o.ExitResolver); err != nil {
			return fmt.Errorf("ctor: Options.ExitResolver %q: want ip:port", o.ExitResolver)
		}
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	if o.StopGrace == 0 {
		o.StopGrace = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return nil
}

// node is one node being configured.
type node struct {
	name, role string
	dir        string
	orPort     int
	dirPort    int // authorities
	socksPort  int // client
	dnsPort    int // client
	v3ident    string
	fp         string
}

// Start generates the network's keys and torrcs under o.Dir, starts every
// node and waits until the client has bootstrapped and ProbeURL loads
// through it. On any failure it stops what it started. The network
// outlives ctx; ctx bounds only the start.
func Start(ctx context.Context, o Options) (*Network, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	tor, gencert, err := Find(o.Tor, o.Gencert)
	if err != nil {
		return nil, err
	}
	version, err := Version(tor)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ctor: %w", err)
	}

	nodes := make([]*node, 0, o.Authorities+o.Relays+o.Exits+1)
	add := func(role, prefix string, count int) {
		for i := range count {
			name := prefix + strconv.Itoa(i)
			if role == RoleClient {
				name = prefix
			}
			nodes = append(nodes, &node{name: name, role: role, dir: filepath.Join(dir, name)})
		}
	}
	add(RoleAuthority, "auth", o.Authorities)
	add(RoleMiddle, "middle", o.Relays)
	add(RoleExit, "exit", o.Exits)
	add(RoleClient, "client", 1)

	nPorts := 0
	for _, nd := range nodes {
		switch nd.role {
		case RoleAuthority:
			nPorts += 2
		default:
			nPorts++
		}
		if nd.role == RoleClient {
			nPorts++
		}
	}
	ports, err := freePorts(nPorts)
	if err != nil {
		return nil, err
	}
	for _, nd := range nodes {
		if err := os.MkdirAll(nd.dir, 0o700); err != nil {
			return nil, fmt.Errorf("ctor: %w", err)
		}
		switch nd.role {
		case RoleClient:
			nd.socksPort, nd.dnsPort, ports = ports[0], ports[1], ports[2:]
		case RoleAuthority:
			nd.orPort, nd.dirPort, ports = ports[0], ports[1], ports[2:]
		default:
			nd.orPort, ports = ports[0], ports[1:]
		}
	}

	// An empty defaults file: the system's torrc-defaults must not leak in.
	defaults := filepath.Join(dir, "torrc-defaults")
	if err := os.WriteFile(defaults, nil, 0o600); err != nil {
		return nil, fmt.Errorf("ctor: %w", err)
	}
	resolvConf := ""
	if o.ExitResolver != "" {
		// libevent's evdns, which tor's exits resolve with, accepts
		// "ip:port" on a nameserver line.
		resolvConf = filepath.Join(dir, "exit-resolv.conf")
		if err := os.WriteFile(resolvConf, []byte("nameserver "+o.ExitResolver+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("ctor: %w", err)
		}
	}

	fmt.Fprintf(o.Log, "ctor: %s; making authority keys\n", version)
	if err := makeAuthorityKeys(ctx, tor, gencert, defaults, nodes); err != nil {
		return nil, err
	}
	var authLines []string
	for _, nd := range nodes {
		if nd.role == RoleAuthority {
			authLines = append(authLines, fmt.Sprintf("DirAuthority %s orport=%d v3ident=%s 127.0.0.1:%d %s",
				nd.name, nd.orPort, nd.v3ident, nd.dirPort, nd.fp))
		}
	}
	vi, ivi := int(o.VotingInterval/time.Second), int(o.InitialVotingInterval/time.Second)
	torrcs := make([]string, len(nodes))
	for i, nd := range nodes {
		torrcs[i] = filepath.Join(nd.dir, "torrc")
		conf := torrc(nd, authLines, vi, ivi, resolvConf)
		if err := os.WriteFile(torrcs[i], []byte(conf), 0o600); err != nil {
			return nil, fmt.Errorf("ctor: %w", err)
		}
	}

	n := &Network{Version: version, Dir: dir, grace: o.StopGrace, log: o.Log}
	ok := false
	defer func() {
		if !ok {
			n.Close()
		}
	}()
	started := time.Now()
	for i, nd := range nodes {
		p, err := startTor(nd, tor, torrcs[i], defaults)
		if err != nil {
			return nil, err
		}
		n.procs = append(n.procs, p)
		if nd.role == RoleClient {
			n.SOCKS = "127.0.0.1:" + strconv.Itoa(nd.socksPort)
			n.DNS = "127.0.0.1:" + strconv.Itoa(nd.dnsPort)
		}
	}
	fmt.Fprintf(o.Log, "ctor: started %d tor processes under %s; waiting for the client to bootstrap\n", len(n.procs), dir)

	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	client := n.procs[len(n.procs)-1]
	if err := n.waitBootstrapped(ctx, client); err != nil {
		return nil, err
	}
	n.ClientBootstrapped = time.Since(started)
	fmt.Fprintf(o.Log, "ctor: client bootstrapped 100%% after %v; loading %s\n", n.ClientBootstrapped.Round(time.Millisecond), o.ProbeURL)
	if err := n.waitPage(ctx, o.ProbeURL); err != nil {
		return nil, err
	}
	n.BootstrapTime = time.Since(started)
	fmt.Fprintf(o.Log, "ctor: first page loaded %v after start\n", n.BootstrapTime.Round(time.Millisecond))
	ok = true
	return n, nil
}

// freePorts reserves n distinct loopback TCP ports by listening on port 0
// and closing the listeners together. Another program could take one in
// between; tor would then fail to bind and Start would say so.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("ctor: reserve a port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	// The DNSPort is UDP; the same number is almost always free for UDP
	// too, and tor fails loudly if it is not.
	return ports, nil
}

// makeAuthorityKeys runs tor-gencert and tor --list-fingerprint for every
// authority, in parallel.
func makeAuthorityKeys(ctx context.Context, tor, gencert, defaults string, nodes []*node) error {
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, nd := range nodes {
		if nd.role != RoleAuthority {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = authorityKeys(ctx, tor, gencert, defaults, nd)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func authorityKeys(ctx context.Context, tor, gencert, defaults string, nd *node) error {
	keys := filepath.Join(nd.dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return fmt.Errorf("ctor: %w", err)
	}
	// The v3 authority identity and signing keys, unencrypted (an empty
	// passphrase on stdin), valid 12 months.
	cmd := exec.CommandContext(ctx, gencert, "--create-identity-key", "--passphrase-fd", "0",
		"-i", filepath.Join(keys, "authority_identity_key"),
		"-s", filepath.Join(keys, "authority_signing_key"),
		"-c", filepath.Join(keys, "authority_certificate"),
		"-m", "12", "-a", fmt.Sprintf("127.0.0.1:%d", nd.dirPort))
	cmd.Stdin = strings.NewReader("\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctor: tor-gencert for %s: %w\n%s", nd.name, err, out)
	}
	cert, err := os.ReadFile(filepath.Join(keys, "authority_certificate"))
	if err != nil {
		return fmt.Errorf("ctor: %s: %w", nd.name, err)
	}
	nd.v3ident, err = certFingerprint(cert)
	if err != nil {
		return fmt.Errorf("ctor: %s's authority certificate: %w", nd.name, err)
	}
	// The relay identity key: tor makes it and prints its fingerprint. The
	// DirAuthority line is a placeholder that only satisfies the parser
	// (a custom DirAuthority set needs one).
	cmd = exec.CommandContext(ctx, tor, "--defaults-torrc", defaults, "-f", defaults,
		"--list-fingerprint", "--DataDirectory", nd.dir, "--ORPort", strconv.Itoa(nd.orPort),
		"--Nickname", nd.name, "--Log", "err stderr",
		"--DirAuthority", "placeholder orport=1 v3ident="+strings.Repeat("0", 40)+" 127.0.0.1:1 "+strings.Repeat("0", 40))
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("ctor: tor --list-fingerprint for %s: %w\n%s", nd.name, err, out)
	}
	nd.fp, err = listedFingerprint(out, nd.name)
	if err != nil {
		return fmt.Errorf("ctor: tor --list-fingerprint for %s: %w", nd.name, err)
	}
	return nil
}

// certFingerprint returns the "fingerprint" line of a v3 authority
// certificate: the v3ident of a DirAuthority line.
func certFingerprint(cert []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(cert))
	for sc.Scan() {
		if fp, ok := strings.CutPrefix(sc.Text(), "fingerprint "); ok {
			fp = strings.TrimSpace(fp)
			if !isHexFingerprint(fp) {
				return "", fmt.Errorf("fingerprint %q is not 40 hex digits", fp)
			}
			return fp, nil
		}
	}
	return "", errors.New("no fingerprint line")
}

// listedFingerprint finds "<nickname> XXXX XXXX ..." in the output of tor
// --list-fingerprint and returns the 40 hex digits.
func listedFingerprint(out []byte, nickname string) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), nickname+" ")
		if !ok {
			continue
		}
		fp := strings.ReplaceAll(rest, " ", "")
		if isHexFingerprint(fp) {
			return fp, nil
		}
	}
	return "", fmt.Errorf("no fingerprint line for %s in %q", nickname, out)
}

func isHexFingerprint(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// torrc writes a node's configuration.
func torrc(nd *node, authLines []string, votingInterval, initialInterval int, resolvConf string) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# %s (%s) of the chive benchmark's C tor network; written by bench/ctor", nd.name, nd.role)
	line("TestingTorNetwork 1")
	line("DataDirectory %s", nd.dir)
	line("PidFile %s", filepath.Join(nd.dir, "pid"))
	line("Nickname %s", nd.name)
	line("Log notice file %s", filepath.Join(nd.dir, "notice.log"))
	// A test network's addresses are all 127.0.0.1: no need to scrub them.
	line("SafeLogging 0")
	for _, a := range authLines {
		line("%s", a)
	}
	if nd.role != RoleClient {
		line("Address 127.0.0.1")
		line("ORPort 127.0.0.1:%d", nd.orPort)
		line("SocksPort 0")
		line("ContactInfo %s@bench.invalid", nd.name)
		// No self-test of reachability: every node is on 127.0.0.1.
		line("AssumeReachable 1")
	}
	switch nd.role {
	case RoleAuthority:
		line("AuthoritativeDirectory 1")
		line("V3AuthoritativeDirectory 1")
		line("DirPort 127.0.0.1:%d", nd.dirPort)
		line("ExitRelay 0")
		// Voting and distribution delays must together stay under half
		// the interval (tor votes at half the interval until it has a
		// consensus).
		// Tor refuses delays under 2 s.
		d, id := max(votingInterval/5, 2), max(initialInterval/5, 2)
		line("V3AuthVotingInterval %d", votingInterval)
		line("V3AuthVoteDelay %d", d)
		line("V3AuthDistDelay %d", d)
		line("TestingV3AuthInitialVotingInterval %d", initialInterval)
		line("TestingV3AuthInitialVoteDelay %d", id)
		line("TestingV3AuthInitialDistDelay %d", id)
		// A fresh network has no relay old enough for the Guard flag, nor
		// measured bandwidth for the Exit flag's threshold.
		line("TestingDirAuthVoteGuard *")
		line("TestingMinExitFlagThreshold 0")
	case RoleMiddle:
		line("ExitRelay 0")
	case RoleExit:
		line("ExitRelay 1")
		line("ExitPolicyRejectPrivate 0")
		line("ExitPolicy accept 127.0.0.0/8:*")
		// Clients see an exit's policy only as the microdescriptor's port
		// summary, which counts public addresses alone: an exit accepting
		// just 127.0.0.0/8 looks like it accepts nothing, and the client
		// finds no exit (tor bug 11264; chutney does the same). There is
		// no Internet here for the wider policy to reach.
		line("ExitPolicy accept *:*")
		if resolvConf != "" {
			line("ServerDNSResolvConfFile %s", resolvConf)
		}
		// There is no Internet to test for DNS hijacking against; the
		// test's lookups of well-known names would only mark the test
		// resolver as failing.
		line("ServerDNSDetectHijacking 0")
	case RoleClient:
		line("SocksPort 127.0.0.1:%d", nd.socksPort)
		line("DNSPort 127.0.0.1:%d", nd.dnsPort)
	}
	return b.String()
}

func startTor(nd *node, tor, torrcPath, defaults string) (*Process, error) {
	out, err := os.OpenFile(filepath.Join(nd.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ctor: %w", err)
	}
	cmd := exec.Command(tor, "--defaults-torrc", defaults, "-f", torrcPath)
	cmd.Stdout = out
	cmd.Stderr = out
	// Its own process group, so that a Ctrl-C at the terminal reaches the
	// benchmark alone, which then stops every node; and SIGTERM if the
	// benchmark dies without doing so.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("ctor: start %s: %w", nd.name, err)
	}
	p := &Process{
		Name: nd.name, Role: nd.role, PID: cmd.Process.Pid, Torrc: torrcPath,
		LogFile: filepath.Join(nd.dir, "notice.log"), ORPort: nd.orPort, Fingerprint: nd.fp,
		cmd: cmd, done: make(chan struct{}),
	}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// crashed returns an error naming the first process that has exited.
func (n *Network) crashed() error {
	for _, p := range n.procs {
		if !p.Running() {
			return fmt.Errorf("ctor: %s exited (%v) while the network was starting; see %s and %s",
				p.Name, p.err, p.LogFile, filepath.Join(filepath.Dir(p.Torrc), "stdout.log"))
		}
	}
	return nil
}

// waitBootstrapped polls the client's log for "Bootstrapped 100%".
func (n *Network) waitBootstrapped(ctx context.Context, client *Process) error {
	last := ""
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if err := n.crashed(); err != nil {
			return err
		}
		b, _ := os.ReadFile(client.LogFile)
		if pct, line := lastBootstrap(b); pct == 100 {
			return nil
		} else if line != last && line != "" {
			last = line
			fmt.Fprintf(n.log, "ctor: client: %s\n", line)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ctor: client not bootstrapped (last: %q): %w; see %s", last, ctx.Err(), client.LogFile)
		case <-t.C:
		}
	}
}

// lastBootstrap returns the last "Bootstrapped N%" percentage in a tor log
// and the text after the percentage; -1 if there is none.
func lastBootstrap(log []byte) (int, string) {
	i := bytes.LastIndex(log, []byte("Bootstrapped "))
	if i < 0 {
		return -1, ""
	}
	rest := log[i+len("Bootstrapped "):]
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	num, _, ok := bytes.Cut(rest, []byte("%"))
	if !ok {
		return -1, ""
	}
	pct, err := strconv.Atoi(string(num))
	if err != nil {
		return -1, ""
	}
	return pct, string(rest)
}

// waitPage loads url through the client until it answers 200.
func (n *Network) waitPage(ctx context.Context, pageURL string) error {
	var last error
	for attempt := 0; ; attempt++ {
		if err := n.crashed(); err != nil {
			return err
		}
		last = FetchPage(ctx, n.SOCKS, "bench-probe", pageURL)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ctor: %s never loaded through the client (last error: %v): %w", pageURL, last, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// FetchPage GETs pageURL through a SOCKS5 proxy with the given user name
// (an isolation key) and checks for 200 OK; the body is read and dropped.
func FetchPage(ctx context.Context, socks, user, pageURL string) error {
	d := &socks5.Dialer{Proxy: socks, Auth: &socks5.Auth{User: user, Pass: "x"}}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true, Proxy: nil}}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pageURL, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}
