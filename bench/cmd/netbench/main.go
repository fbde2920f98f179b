// Command netbench runs chive's whole-network benchmark: fresh C tor and
// chive test networks on 127.0.0.1, one after the other, the same
// workloads through each, and a table with both columns and their ratio.
// See bench/README.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chive-net/chive/bench/ctor"
	"github.com/chive-net/chive/bench/harness"
	"github.com/chive-net/chive/bench/report"
	"github.com/chive-net/chive/bench/workload"
	"github.com/chive-net/chive/testnet"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "netbench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		networks   = flag.Int("networks", 3, "fresh networks of each kind (results vary per network; cells are medians across networks)")
		reps       = flag.Int("reps", 5, "repetitions of each workload per network")
		workloads  = flag.String("workloads", "all", "comma-separated workloads: "+strings.Join(workload.All, ",")+" (bootstrap, CPU and memory are always reported)")
		bulkMiB    = flag.Int("bulk-mib", 100, "size of the bulk transfer in MiB")
		streams    = flag.Int("streams", 4, "concurrent streams (each on its own circuit) of the bulkN workload")
		classes    = flag.String("classes", "0,1", "chive delay classes to measure, one column each")
		noTor      = flag.Bool("no-tor", false, "do not run the C tor networks")
		noChive    = flag.Bool("no-chive", false, "do not run the chive networks")
		torBin     = flag.String("tor", "", "tor binary (default: from PATH, /usr/bin, /usr/sbin)")
		gencert    = flag.String("tor-gencert", "", "tor-gencert binary (default: next to tor)")
		torVoting  = flag.Duration("tor-voting", 10*time.Second, "C tor's V3AuthVotingInterval (at least 10s)")
		torInitial = flag.Duration("tor-initial-voting", 5*time.Second, "C tor's TestingV3AuthInitialVotingInterval, until the first consensus (5s, 6s, 8s, 9s, 10s, ...)")
		bulkCap    = flag.Duration("bulk-cap", 2*time.Minute, "cut a bulk transfer after this long and take its rate so far (0: never)")
		chVoting   = flag.Duration("chive-voting", 0, "chive's authority voting period (0: the testnet default)")
		chLogLevel = flag.String("chive-log-level", "", "log level of chive's programs (default: the testnet's)")
		mdPath     = flag.String("md", "", "write the table as Markdown to this file")
		jsonPath   = flag.String("json", "", "write the results (with raw samples) as JSON to this file")
		dir        = flag.String("dir", "", "work directory for the networks' data and logs (default: a new temporary directory)")
		keep       = flag.Bool("keep", false, "keep the work directory (logs) afterwards")
		quiet      = flag.Bool("q", false, "no progress on stderr")
	)
	flag.Parse()

	var ws []string
	if *workloads != "all" {
		for _, w := range strings.Split(*workloads, ",") {
			w = strings.TrimSpace(w)
			if _, ok := workload.Units[w]; !ok {
				return fmt.Errorf("-workloads: unknown workload %q (have %s)", w, strings.Join(workload.All, ", "))
			}
			ws = append(ws, w)
		}
	}
	var cls []int
	for _, c := range strings.Split(*classes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 0 || n > 255 {
			return fmt.Errorf("-classes: %q is not a delay class (0 to 255)", c)
		}
		cls = append(cls, n)
	}
	if *networks < 1 || *reps < 1 || *bulkMiB < 1 || *streams < 1 {
		return errors.New("-networks, -reps, -bulk-mib and -streams must be at least 1")
	}

	var progress io.Writer = os.Stderr
	if *quiet {
		progress = io.Discard
	}
	work := *dir
	if work == "" {
		d, err := os.MkdirTemp("", "netbench-")
		if err != nil {
			return err
		}
		work = d
	}
	if !*keep {
		defer os.RemoveAll(work)
	} else {
		defer fmt.Fprintf(progress, "logs and data kept in %s\n", work)
	}

	// Ctrl-C or SIGTERM ends the run: the networks are stopped on the way
	// out (their processes are in their own process groups, so the signal
	// reaches this program alone).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	o := harness.Options{
		Dir:       work,
		Networks:  *networks,
		Workloads: ws,
		Config:    workload.Config{BulkSize: *bulkMiB << 20, Streams: *streams, Reps: *reps, BulkCap: *bulkCap},
		Log:       progress,
	}
	o.Skip = map[string]string{}
	tor := &harness.TorLauncher{VotingInterval: *torVoting, InitialVotingInterval: *torInitial}
	chive := &harness.ChiveLauncher{VotingPeriod: *chVoting, Classes: cls, LogLevel: *chLogLevel}
	o.Launchers = []harness.Launcher{tor, chive}
	if *noTor {
		o.Skip[tor.Kind()] = "not run (-no-tor)"
	} else if path, gc, err := ctor.Find(*torBin, *gencert); err != nil {
		fmt.Fprintf(os.Stderr, "netbench: skipping the C tor column: %v\n", err)
		o.Skip[tor.Kind()] = "tor not installed: " + ctor.InstallHint
	} else {
		v, err := ctor.Version(path)
		if err != nil {
			return err
		}
		o.Machine = append(o.Machine, report.KV{Key: "C tor", Value: v + " (" + path + ")"})
		tor.Tor, tor.Gencert = path, gc
	}
	if *noChive {
		o.Skip[chive.Kind()] = "not run (-no-chive)"
	} else {
		if src := sourceVersion(); src != "" {
			o.Machine = append(o.Machine, report.KV{Key: "chive source", Value: src})
		}
		if err := chive.Build(ctx, filepath.Join(work, "chive-bin"), progress); err != nil {
			return fmt.Errorf("build chive: %w", err)
		}
	}
	if len(o.Skip) == len(o.Launchers) {
		return errors.New("nothing to run")
	}
	o.Settings = []report.KV{
		{Key: "C tor voting interval", Value: torVoting.String() + " (" + torInitial.String() + " until the first consensus)"},
		{Key: "bulk transfer time cap", Value: capString(*bulkCap)},
		{Key: "chive voting period", Value: durationOrDefault(*chVoting)},
	}

	rep, runErr := harness.Run(ctx, o)
	if rep == nil {
		return runErr
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		return err
	}
	os.Stdout.Write(md.Bytes())
	if *mdPath != "" {
		if err := os.WriteFile(*mdPath, md.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if *jsonPath != "" {
		var js bytes.Buffer
		if err := rep.WriteJSON(&js); err != nil {
			return err
		}
		if err := os.WriteFile(*jsonPath, js.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if runErr != nil {
		return fmt.Errorf("run ended early (the table has what was measured): %w", runErr)
	}
	return nil
}

// sourceVersion describes the working tree chive is built from: the
// commit, "-dirty" if it has uncommitted changes.
func sourceVersion() string {
	root, err := testnet.ModuleRoot()
	if err != nil {
		return ""
	}
	out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return "git " + strings.TrimSpace(string(out)) + " (built from the working tree)"
}

func capString(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}

func durationOrDefault(d time.Duration) string {
	if d == 0 {
		return "testnet default"
	}
	return d.String()
}
