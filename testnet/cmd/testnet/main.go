// Command testnet runs a whole chive network on 127.0.0.1.
//
//	testnet up [flags]     build, start, wait until a page loads, print how to use it; Ctrl-C stops it
//	testnet status [-dir]  show each process and the current consensus
//	testnet down [-dir]    stop the network that "up" started in that directory
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
	"github.com/chive-net/chive/testnet"
)

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		err = down(os.Args[2:])
	case "status":
		err = status(os.Args[2:])
	case "compose":
		err = compose(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage(os.Stdout)
		return
	default:
		usage(os.Stderr)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testnet:", err)
		os.Exit(1)
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  testnet up [-dir DIR] [-relays N] [-exits N] [-authorities N] [-period 4s] [-initial-period 1s] [-ports 9050,9080,9053]
  testnet status [-dir DIR]
  testnet down [-dir DIR]
  testnet compose generate|up|down [-relays N] [-exits N]   the same network in docker containers
`)
}

func defaultDir() string {
	if root, err := testnet.ModuleRoot(); err == nil {
		return filepath.Join(root, "testnet", "run")
	}
	return filepath.Join(os.TempDir(), "chive-testnet")
}

func up(args []string) error {
	fs := flag.NewFlagSet("testnet up", flag.ContinueOnError)
	dir := fs.String("dir", defaultDir(), "working directory for keys, configs, data and logs (wiped at start)")
	relays := fs.Int("relays", 3, "non-exit relays")
	exits := fs.Int("exits", 2, "exit relays")
	auths := fs.Int("authorities", 3, "directory authorities (3 or 5)")
	period := fs.Duration("period", 3*time.Second, "authorities' voting period")
	initial := fs.Duration("initial-period", time.Second, "authorities' voting period until a consensus is usable (divides -period)")
	ports := fs.String("ports", "9050,9080,9053", "onion proxy SOCKS5,HTTP CONNECT,DNS ports; each busy one is replaced by a free one")
	level := fs.String("log-level", "info", "log level of every program")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *relays+*exits < 3 || *exits < 1 {
		return errors.New("need at least 3 relays in all, one of them an exit")
	}
	if st, err := testnet.ReadState(*dir); err == nil && testnet.Alive(st.LauncherPID, "") {
		return fmt.Errorf("a test network is already running from %s (launcher PID %d); stop it with \"testnet down -dir %s\"", *dir, st.LauncherPID, *dir)
	}
	if err := os.RemoveAll(*dir); err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	socks, httpPort, dnsPort, err := parsePorts(*ports)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	n, err := testnet.Up(ctx, testnet.Options{
		Dir: *dir, Authorities: *auths, Relays: *relays, Exits: *exits, VotingPeriod: *period, InitialVotingPeriod: *initial,
		SOCKSPort: socks, HTTPPort: httpPort, DNSPort: dnsPort, Log: os.Stdout, LogLevel: *level,
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("testnet: stopping every process ...")
		if err := n.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "testnet:", err)
		}
		os.Remove(testnet.StatePath(*dir))
		fmt.Println("testnet: stopped")
	}()
	if err := testnet.WriteState(*dir, n.State(true)); err != nil {
		return err
	}
	printReady(n, *dir, time.Since(start))
	<-ctx.Done()
	return nil
}

// parsePorts reads "S,H,D"; a busy port becomes 0 (pick a free one).
func parsePorts(s string) (int, int, int, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return 0, 0, 0, fmt.Errorf("-ports wants three ports, SOCKS5,HTTP,DNS; got %q", s)
	}
	var out [3]int
	for i, p := range parts {
		var v int
		if _, err := fmt.Sscanf(strings.TrimSpace(p), "%d", &v); err != nil || v < 0 || v > 65535 {
			return 0, 0, 0, fmt.Errorf("-ports: %q is not a port", p)
		}
		if v != 0 && !free(v, i == 2) {
			v = 0
		}
		out[i] = v
	}
	return out[0], out[1], out[2], nil
}

func free(port int, udpToo bool) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	ln.Close()
	if udpToo {
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return false
		}
		pc.Close()
	}
	return true
}

func printReady(n *testnet.Network, dir string, took time.Duration) {
	_, dnsPort, _ := net.SplitHostPort(n.DNS)
	fmt.Printf(`
chive test network is up (%.1fs): %d authorities, %d relays.

  SOCKS5        %s
  HTTP CONNECT  %s
  DNS           %s (UDP and TCP)
  control       http://%s/status

Fetch a page whose name only the exits can resolve:

  curl --socks5-hostname %s %s

  curl -p --proxy http://%s %s      (HTTP CONNECT)
  dig @127.0.0.1 -p %s www.chive.test A

Logs, configs and keys are in %s.
Press Ctrl-C (or run "testnet down -dir %s") to stop everything.
`, took.Seconds(), len(n.Authorities), countRelays(n), n.SOCKS, n.HTTPConnect, n.DNS, n.Control,
		n.SOCKS, n.WebURL, n.HTTPConnect, n.WebURL, dnsPort, dir, dir)
}

func countRelays(n *testnet.Network) int {
	c := 0
	for _, p := range n.Processes() {
		if p.Role == testnet.RoleRelay || p.Role == testnet.RoleExit {
			c++
		}
	}
	return c
}

func down(args []string) error {
	fs := flag.NewFlagSet("testnet down", flag.ContinueOnError)
	dir := fs.String("dir", defaultDir(), "the directory \"testnet up\" used")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := testnet.ReadState(*dir)
	if err != nil {
		return err
	}
	if testnet.Alive(st.LauncherPID, "") {
		syscall.Kill(st.LauncherPID, syscall.SIGTERM)
		deadline := time.Now().Add(30 * time.Second)
		for testnet.Alive(st.LauncherPID, "") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Whatever the launcher did not stop (it was killed, say) is stopped here.
	stopped := 0
	for _, p := range st.Processes {
		if testnet.Alive(p.PID, p.Binary) {
			syscall.Kill(p.PID, syscall.SIGTERM)
			stopped++
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, p := range st.Processes {
		for testnet.Alive(p.PID, p.Binary) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if testnet.Alive(p.PID, p.Binary) {
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	os.Remove(testnet.StatePath(*dir))
	fmt.Printf("testnet: stopped (%d processes needed stopping after the launcher)\n", stopped)
	return nil
}

func status(args []string) error {
	fs := flag.NewFlagSet("testnet status", flag.ContinueOnError)
	dir := fs.String("dir", defaultDir(), "the directory \"testnet up\" used")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := testnet.ReadState(*dir)
	if err != nil {
		return err
	}
	fmt.Printf("launcher PID %d (%s)\n\n", st.LauncherPID, aliveWord(testnet.Alive(st.LauncherPID, "")))
	fmt.Printf("%-8s %-10s %-8s %-7s %s\n", "NAME", "ROLE", "PID", "STATE", "LOG")
	for _, p := range st.Processes {
		fmt.Printf("%-8s %-10s %-8d %-7s %s\n", p.Name, p.Role, p.PID, aliveWord(testnet.Alive(p.PID, p.Binary)), p.Log)
	}
	fmt.Printf("\nSOCKS5 %s   HTTP CONNECT %s   DNS %s\n\n", st.SOCKS, st.HTTPConnect, st.DNS)
	var auths []testnet.Authority
	for _, a := range st.Authorities {
		id, err := layercrypt.ParseRelayID(a.ID)
		if err != nil {
			return err
		}
		auths = append(auths, testnet.Authority{Nickname: a.Nickname, ID: id, Addr: mustAddrPort(a.Addr)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := (&testnet.Network{Authorities: auths}).Consensus(ctx)
	if err != nil {
		fmt.Printf("consensus: none verifies right now: %v\n", err)
		return nil
	}
	printConsensus(c)
	return nil
}

func printConsensus(c *netdoc.Consensus) {
	fmt.Printf("consensus valid-after %s, fresh-until %s, valid-until %s; signed by %d of %d voters\n",
		c.ValidAfter.Format(time.TimeOnly), c.FreshUntil.Format(time.TimeOnly), c.ValidUntil.Format(time.TimeOnly),
		len(c.Signatures), len(c.Voters))
	rows := make([]string, 0, len(c.Relays))
	for _, r := range c.Relays {
		rows = append(rows, fmt.Sprintf("  %-10s %s  %-21s %s", r.Nickname, r.ID.Short(), r.Addr, r.Flags))
	}
	sort.Strings(rows)
	fmt.Println(strings.Join(rows, "\n"))
}

func mustAddrPort(s string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}
	}
	return ap
}

func aliveWord(alive bool) string {
	if alive {
		return "running"
	}
	return "stopped"
}
