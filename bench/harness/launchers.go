package harness

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/chive-net/chive/bench/ctor"
	"github.com/chive-net/chive/bench/procstat"
	"github.com/chive-net/chive/testnet"
)

// TorLauncher starts C tor networks (bench/ctor).
type TorLauncher struct {
	Tor, Gencert string // binaries; empty looks them up
	// VotingInterval and InitialVotingInterval: 0 takes ctor's defaults
	// (10 s and 5 s).
	VotingInterval, InitialVotingInterval time.Duration
}

// Kind implements Launcher.
func (*TorLauncher) Kind() string { return "C tor" }

// Columns implements Launcher: Tor as users run it, no prefix.
func (*TorLauncher) Columns() []Column { return []Column{{Name: "C tor"}} }

// Up implements Launcher.
func (l *TorLauncher) Up(ctx context.Context, dir string, env Env) (Network, error) {
	n, err := ctor.Start(ctx, ctor.Options{
		Dir: dir, Tor: l.Tor, Gencert: l.Gencert,
		VotingInterval: l.VotingInterval, InitialVotingInterval: l.InitialVotingInterval,
		ExitResolver: env.Resolver, ProbeURL: env.ProbeURL, Log: env.Log,
	})
	if err != nil {
		return nil, err
	}
	return torNet{n}, nil
}

type torNet struct{ n *ctor.Network }

func (t torNet) SOCKSAddr() string            { return t.n.SOCKS }
func (t torNet) DNSAddr() string              { return t.n.DNS }
func (t torNet) BootstrapTime() time.Duration { return t.n.BootstrapTime }
func (t torNet) Procs() []procstat.Proc       { return t.n.Procs() }
func (t torNet) Close() error                 { return t.n.Close() }

// ChiveLauncher starts chive networks through the testnet package, with
// binaries built once.
type ChiveLauncher struct {
	// Bins are the built programs (testnet.Build); nil builds them into
	// the first network's directory, once.
	Bins map[string]string
	// VotingPeriod of the authorities; 0 is testnet's default.
	VotingPeriod time.Duration
	// Classes are the delay classes measured, one column each (0 and 1).
	Classes []int
	// LogLevel of the programs ("" is testnet's default).
	LogLevel string
}

// Kind implements Launcher.
func (*ChiveLauncher) Kind() string { return "chive" }

// Columns implements Launcher: one per delay class, asked for by the SOCKS
// username prefix "class=N:".
func (l *ChiveLauncher) Columns() []Column {
	classes := l.Classes
	if len(classes) == 0 {
		classes = []int{0, 1}
	}
	cols := make([]Column, len(classes))
	for i, c := range classes {
		cols[i] = Column{Name: "chive class " + strconv.Itoa(c), UserPrefix: "class=" + strconv.Itoa(c) + ":"}
	}
	return cols
}

// Build compiles the chive programs into dir (run inside the source tree).
func (l *ChiveLauncher) Build(ctx context.Context, dir string, log io.Writer) error {
	root, err := testnet.ModuleRoot()
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "building chive's programs into %s\n", dir)
	bins, err := testnet.Build(ctx, root, dir)
	if err != nil {
		return err
	}
	l.Bins = bins
	return nil
}

// Up implements Launcher. The exits resolve with the testnet's own
// chive.test server, which names the same 127.0.0.1 as the harness's.
func (l *ChiveLauncher) Up(ctx context.Context, dir string, env Env) (Network, error) {
	if l.Bins == nil {
		if err := l.Build(ctx, filepath.Join(filepath.Dir(dir), "chive-bin"), env.Log); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	n, err := testnet.Up(ctx, testnet.Options{
		Dir: dir, Bins: l.Bins, VotingPeriod: l.VotingPeriod, LogLevel: l.LogLevel, Log: env.Log,
	})
	if err != nil {
		return nil, err
	}
	return chiveNet{n}, nil
}

type chiveNet struct{ n *testnet.Network }

func (c chiveNet) SOCKSAddr() string            { return c.n.SOCKS }
func (c chiveNet) DNSAddr() string              { return c.n.DNS }
func (c chiveNet) BootstrapTime() time.Duration { return c.n.BootstrapTime }
func (c chiveNet) Close() error                 { return c.n.Close() }

// Procs implements Network: chive's relays and exits carry circuits, its
// authorities and the client do not.
func (c chiveNet) Procs() []procstat.Proc {
	var out []procstat.Proc
	for _, p := range c.n.Processes() {
		out = append(out, procstat.Proc{Name: p.Name, Role: string(p.Role), PID: p.PID,
			Relay: p.Role == testnet.RoleRelay || p.Role == testnet.RoleExit})
	}
	return out
}
