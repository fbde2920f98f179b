// Package harness is the whole-network benchmark's logic: it brings up
// fresh C tor and chive test networks one after the other (never two at
// once, so that they do not share the CPU), runs the same workloads
// through each, and builds the report table. cmd/netbench is its thin
// main.
package harness

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/chive-net/chive/bench/procstat"
	"github.com/chive-net/chive/bench/report"
	"github.com/chive-net/chive/bench/workload"
	"github.com/chive-net/chive/testnet/services"
)

// Network is a running test network of either kind.
type Network interface {
	// SOCKSAddr and DNSAddr are the client's SOCKS5 and DNS (UDP)
	// front-ends.
	SOCKSAddr() string
	DNSAddr() string
	// BootstrapTime runs from starting the network's first process to the
	// first page loaded through its client.
	BootstrapTime() time.Duration
	// Procs are its processes; Relay marks those that carry circuits.
	Procs() []procstat.Proc
	// Close stops every process it started.
	Close() error
}

// Env is what a launcher's networks need from the harness.
type Env struct {
	// Resolver is a DNS server for the test zone (chive.test) that the
	// exits may resolve with.
	Resolver string
	// ProbeURL is a page on the benchmark's web server, by a name only the
	// exits' resolver knows; a network is up when it loads.
	ProbeURL string
	Log      io.Writer
}

// Column is one column of the table: a network kind driven with a SOCKS
// username prefix.
type Column struct {
	Name       string // "C tor", "chive class 1"
	UserPrefix string // "class=1:"
}

// Launcher starts fresh networks of one kind.
type Launcher interface {
	// Kind names the network ("C tor", "chive").
	Kind() string
	// Columns are the ways the network is measured; network-wide figures
	// (bootstrap, memory) are reported under the first.
	Columns() []Column
	// Up starts a fresh network under dir and returns once a page has
	// loaded through it.
	Up(ctx context.Context, dir string, env Env) (Network, error)
}

// Options of a benchmark run.
type Options struct {
	// Dir is the work directory (network data and logs).
	Dir string
	// Launchers in the order of the table's columns; the first column is
	// the base of the ratios (C tor).
	Launchers []Launcher
	// Skip names launchers (by Kind) that are not run, with the reason
	// (e.g. "tor not installed (apt-get install tor)"); their columns stay
	// in the table with the reason in their cells.
	Skip map[string]string
	// Networks is the number of fresh networks of each kind (3).
	Networks int
	// Workloads to run (nil: all of them).
	Workloads []string
	// Workload settings (Host, Port and Body are filled in here).
	Config workload.Config
	// BaseColumn is the column ratios are taken against (0).
	BaseColumn int
	// UpTimeout bounds one network's start (4 minutes).
	UpTimeout time.Duration
	// Machine and Settings add lines to the report's header (tor
	// version, voting periods...).
	Machine, Settings []report.KV
	Log               io.Writer
}

// hops is the path length of both networks' circuits (guard, middle,
// exit): relay CPU per byte is the relays' total over this.
const hops = 3

// NetworkRun is the raw data of one network, for the JSON output.
type NetworkRun struct {
	Kind          string             `json:"kind"`
	Index         int                `json:"index"`
	Error         string             `json:"error,omitempty"`
	BootstrapSecs float64            `json:"bootstrap_seconds,omitempty"`
	Procs         []ProcFigures      `json:"processes,omitempty"`
	Results       []*workload.Result `json:"results,omitempty"`
}

// ProcFigures is one process's figures.
type ProcFigures struct {
	Name       string  `json:"name"`
	Role       string  `json:"role"`
	Relay      bool    `json:"relay"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

// Run runs the benchmark and returns the report (partial if ctx ended;
// the error says so).
func Run(ctx context.Context, o Options) (*report.Report, error) {
	if o.Networks == 0 {
		o.Networks = 3
	}
	if o.UpTimeout == 0 {
		o.UpTimeout = 4 * time.Minute
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Config.BulkSize == 0 {
		o.Config.BulkSize = 100 << 20
	}
	if o.Config.PageSize == 0 {
		o.Config.PageSize = 1 << 10
	}
	if o.Config.Streams == 0 {
		o.Config.Streams = 4
	}
	if o.Config.Reps == 0 {
		o.Config.Reps = 5
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("harness: %w", err)
	}

	web, err := workload.StartWeb("127.0.0.1:0", max(o.Config.BulkSize, o.Config.PageSize))
	if err != nil {
		return nil, err
	}
	defer web.Close()
	// The chive.test zone for exits that resolve with it (C tor's; chive's
	// testnet runs its own, answering the same). Its own web server is
	// not used: ours serves from memory.
	zone, err := services.Start("127.0.0.1:0", "127.0.0.1:0", netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		return nil, fmt.Errorf("harness: DNS zone server: %w", err)
	}
	defer zone.Close()

	cfg := o.Config
	cfg.Host, cfg.Port, cfg.Body = services.WebHost, int(web.Addr.Port()), web.Body()
	cfg.DNSName, cfg.DNSZone = services.WebHost, services.Zone
	if cfg.Log == nil {
		cfg.Log = o.Log
	}
	env := Env{
		Resolver: zone.DNS.String(),
		ProbeURL: fmt.Sprintf("http://%s:%d/size/%d", services.WebHost, web.Addr.Port(), cfg.PageSize),
		Log:      o.Log,
	}

	machine := append(MachineInfo(), o.Machine...)
	machine = append(machine, report.KV{Key: "load average at start", Value: LoadAvg()})
	if direct, err := directRate(ctx, web, cfg); err == nil {
		machine = append(machine, report.KV{Key: "loopback HTTP without a proxy", Value: direct})
	}

	var cols []column
	for _, l := range o.Launchers {
		for i, c := range l.Columns() {
			cols = append(cols, column{Column: c, kind: l.Kind(), first: i == 0})
		}
	}

	var runs []NetworkRun
	var runErr error
	// Networks of different kinds alternate, so that a change in the
	// machine's load over the run touches every kind alike.
networks:
	for i := range o.Networks {
		for _, l := range o.Launchers {
			if _, skip := o.Skip[l.Kind()]; skip {
				continue
			}
			if ctx.Err() != nil {
				runErr = ctx.Err()
				break networks
			}
			run := runOne(ctx, l, i, filepath.Join(o.Dir, fmt.Sprintf("%s-%d", slug(l.Kind()), i+1)), env, cfg, o)
			runs = append(runs, run)
		}
	}
	if runErr == nil && ctx.Err() != nil {
		runErr = ctx.Err()
	}

	rep := buildReport(o, cols, runs, cfg)
	rep.Machine = append(machine, report.KV{Key: "load average at end", Value: LoadAvg()})
	rep.Extra = runs
	return rep, runErr
}

// directRate fetches the bulk file from the web server without a proxy:
// the machine's loopback ceiling.
func directRate(ctx context.Context, web *workload.Web, cfg workload.Config) (string, error) {
	var xs []float64
	for range 3 {
		t, err := workload.GetDirect(ctx, web.Addr.String(), cfg.Host, cfg.BulkSize, cfg.Body[:cfg.BulkSize], time.Minute)
		if err != nil {
			return "", err
		}
		xs = append(xs, t.MBps())
	}
	s, _ := report.Summarize(xs)
	return fmt.Sprintf("%s MB/s (median of 3, %s–%s)", report.Num(s.Median), report.Num(s.Min), report.Num(s.Max)), nil
}

func slug(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, " ", ""))
}

// runOne brings up one network, measures each of its columns and stops it.
func runOne(ctx context.Context, l Launcher, i int, dir string, env Env, cfg workload.Config, o Options) NetworkRun {
	run := NetworkRun{Kind: l.Kind(), Index: i + 1}
	fmt.Fprintf(o.Log, "== %s network %d of %d (%s)\n", l.Kind(), i+1, o.Networks, dir)
	upCtx, cancel := context.WithTimeout(ctx, o.UpTimeout)
	n, err := l.Up(upCtx, dir, env)
	cancel()
	if err != nil {
		run.Error = fmt.Sprintf("start: %v", err)
		fmt.Fprintf(o.Log, "== %s network %d did not start: %v\n", l.Kind(), i+1, err)
		return run
	}
	defer func() {
		if err := n.Close(); err != nil {
			fmt.Fprintf(o.Log, "== %s network %d: stop: %v\n", l.Kind(), i+1, err)
		}
	}()
	run.BootstrapSecs = n.BootstrapTime().Seconds()
	fmt.Fprintf(o.Log, "== %s network %d up, first page after %.1f s\n", l.Kind(), i+1, run.BootstrapSecs)
	procs := n.Procs()
	var pids []string
	for _, p := range procs {
		pids = append(pids, fmt.Sprintf("%s=%d", p.Name, p.PID))
	}
	// For attaching a profiler (perf record -p PID) while the workloads run.
	fmt.Fprintf(o.Log, "== %s network %d processes: %s\n", l.Kind(), i+1, strings.Join(pids, " "))
	for ci, col := range l.Columns() {
		t := workload.Target{Name: col.Name, SOCKS: n.SOCKSAddr(), DNS: n.DNSAddr(), UserPrefix: col.UserPrefix, Procs: procs}
		if ci > 0 {
			// A DNS front-end has no delay class: measured once per network.
			t.DNS = ""
		}
		c := cfg
		c.Run = fmt.Sprintf("n%d%s", i+1, randToken())
		res, err := workload.Run(ctx, t, c, o.Workloads)
		if res != nil {
			run.Results = append(run.Results, res)
		}
		if err != nil {
			run.Error = fmt.Sprintf("%s: %v", col.Name, err)
			break
		}
	}
	snap := procstat.Take(procs)
	for j, p := range procs {
		f := ProcFigures{Name: p.Name, Role: p.Role, Relay: p.Relay, PeakRSSMiB: -1}
		if snap.Errs[j] == nil {
			f.PeakRSSMiB = float64(snap.Samples[j].HWM) / (1 << 20)
		}
		run.Procs = append(run.Procs, f)
	}
	return run
}

// metric is a row of the table.
type metric struct {
	key, name, unit string
	better          report.Better
	// firstOnly: measured under a launcher's first column only, with this
	// note under its other columns.
	firstOnly string
}

func metrics(cfg workload.Config) []metric {
	size := sizeName(cfg.BulkSize)
	return []metric{
		{workload.Bulk1, "bulk " + size + ", 1 stream", "MB/s", report.Higher, ""},
		{workload.BulkN, fmt.Sprintf("bulk %s, %d streams on %d circuits (aggregate)", size, cfg.Streams, cfg.Streams), "MB/s", report.Higher, ""},
		{workload.TTFBReady, "time to first byte, " + sizeName(cfg.PageSize) + " page, ready circuit", "ms", report.Lower, ""},
		{workload.TTFBFresh, "time to first byte, " + sizeName(cfg.PageSize) + " page, new isolation credentials", "ms", report.Lower, ""},
		{workload.DNSCached, "DNS query, name asked before", "ms", report.Lower, noClassNote},
		{workload.DNSUncached, "DNS query, new name each time (NXDOMAIN)", "ms", report.Lower, noClassNote},
		{"bootstrap", "bootstrap: processes started to first page", "s", report.Lower, sameNetNote},
		{"cpu-relay", "relay CPU per 100 MiB carried: all relays' total / 3 hops", "CPU s", report.Lower, ""},
		{"cpu-busiest", "relay CPU per 100 MiB carried, busiest relay", "CPU s", report.Lower, ""},
		{"cpu-client", "client CPU per 100 MiB carried", "CPU s", report.Lower, ""},
		{"rss-relay", "relay peak RSS, largest relay", "MiB", report.Lower, sameNetNote},
		{"rss-client", "client peak RSS", "MiB", report.Lower, sameNetNote},
	}
}

const (
	noClassNote = "no delay class: see first column"
	sameNetNote = "same networks: see first column"
)

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}

// buildReport turns the runs into the table.
// column is a Column with its launcher.
type column struct {
	Column
	kind  string
	first bool // the launcher's first column
}

func buildReport(o Options, cols []column, runs []NetworkRun, cfg workload.Config) *report.Report {
	rep := &report.Report{
		Title: "chive and C tor on one machine: whole-network benchmark",
		Settings: []report.KV{
			{Key: "fresh networks of each kind", Value: strconv.Itoa(o.Networks)},
			{Key: "repetitions of each workload per network", Value: strconv.Itoa(cfg.Reps)},
			{Key: "bulk transfer", Value: sizeName(cfg.BulkSize)},
			{Key: "workloads", Value: workloadList(o.Workloads)},
			{Key: "cells", Value: "median over networks of each network's median (min–max over all samples)"},
		},
	}
	rep.Settings = append(rep.Settings, o.Settings...)
	for _, c := range cols {
		rep.Columns = append(rep.Columns, c.Name)
	}
	for i := range cols {
		if i != o.BaseColumn {
			rep.Ratios = append(rep.Ratios, report.Ratio{Name: cols[i].Name + " / " + cols[o.BaseColumn].Name, Num: i, Den: o.BaseColumn})
		}
	}
	// Other classes against class 0 of the same kind: delays should cost
	// latency, not throughput.
	for i := range cols {
		for j := range cols {
			if i != j && j != o.BaseColumn && strings.HasPrefix(cols[i].UserPrefix, "class=") &&
				cols[j].UserPrefix == "class=0:" && cols[i].kind == cols[j].kind {
				rep.Ratios = append(rep.Ratios, report.Ratio{Name: cols[i].Name + " / " + cols[j].Name, Num: i, Den: j})
			}
		}
	}

	for _, m := range metrics(cfg) {
		if !wanted(o.Workloads, m.key) {
			continue
		}
		row := report.Row{Key: m.key, Metric: m.name, Unit: m.unit, Better: m.better, Cells: make([]report.Cell, len(cols))}
		for ci, col := range cols {
			if reason, ok := o.Skip[col.kind]; ok {
				row.Cells[ci] = report.Cell{Note: reason}
				continue
			}
			if m.firstOnly != "" && !col.first {
				row.Cells[ci] = report.Cell{Note: m.firstOnly}
				continue
			}
			var per [][]float64
			failures, capped := 0, 0
			for _, r := range runs {
				if r.Kind != col.kind {
					continue
				}
				xs, f, c := samplesOf(m.key, col.Name, r)
				per = append(per, xs)
				failures += f
				capped += c
			}
			row.Cells[ci] = report.Aggregate(per, failures)
			row.Cells[ci].Capped = capped
		}
		rep.Rows = append(rep.Rows, row)
	}

	rep.Notes = append(rep.Notes,
		"MB/s is 10^6 bytes per second, over the whole request (connect to the proxy to last byte) on a circuit built beforehand.",
		"Time to first byte runs from connecting to the proxy to the first byte of the response; a new isolation credential makes the client use a new circuit (possibly one it built ahead of time, as clients do).",
		"Relay CPU is utime+stime from /proc over each bulk transfer. C tor's authorities are relays and carry circuits, so they are counted with the relays; chive's authorities do not carry circuits and are not.",
		"Peak RSS is VmHWM read after all workloads of a network.",
		"Bootstrap and memory are properties of a network, shown under its first column; chive's class columns share networks. DNS queries carry no delay class and are measured once per network.",
	)
	for _, r := range runs {
		if r.Error != "" {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s network %d: %s", r.Kind, r.Index, r.Error))
		}
	}
	// Why attempts failed, each distinct reason once per column and
	// workload.
	for _, c := range cols {
		for _, w := range workload.All {
			seen := map[string]int{}
			var order []string
			for _, r := range runs {
				for _, res := range r.Results {
					if res.Target != c.Name || res.Measurements[w] == nil {
						continue
					}
					for _, f := range res.Measurements[w].Failures {
						if seen[f] == 0 {
							order = append(order, f)
						}
						seen[f]++
					}
				}
			}
			for _, f := range order {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s %s failed %d time(s): %s", c.Name, w, seen[f], f))
			}
		}
	}
	for _, l := range o.Launchers {
		if reason, ok := o.Skip[l.Kind()]; ok {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: not measured: %s", l.Kind(), reason))
		}
	}
	return rep
}

func workloadList(ws []string) string {
	if ws == nil {
		ws = workload.All
	}
	return strings.Join(ws, ", ") + ", bootstrap, cpu, rss"
}

// wanted reports whether a row's workload ran.
func wanted(ws []string, key string) bool {
	if ws == nil {
		return true
	}
	want := map[string]bool{}
	for _, w := range ws {
		want[w] = true
	}
	switch {
	case strings.HasPrefix(key, "cpu-"):
		return want[workload.Bulk1] || want[workload.BulkN]
	case key == "bootstrap" || strings.HasPrefix(key, "rss-"):
		return true
	}
	return want[key]
}

// samplesOf returns one network's samples of a metric for a column, the
// failed attempts and the capped samples.
func samplesOf(key, col string, r NetworkRun) (xs []float64, failed, capped int) {
	var res *workload.Result
	for _, x := range r.Results {
		if x.Target == col {
			res = x
		}
	}
	switch key {
	case "bootstrap":
		if r.BootstrapSecs == 0 {
			return nil, 0, 0
		}
		return []float64{r.BootstrapSecs}, 0, 0
	case "rss-relay", "rss-client":
		best := -1.0
		for _, p := range r.Procs {
			if p.PeakRSSMiB >= 0 && (p.Relay == (key == "rss-relay")) && (p.Relay || p.Role == "client") {
				best = max(best, p.PeakRSSMiB)
			}
		}
		if best < 0 {
			return nil, 0, 0
		}
		return []float64{best}, 0, 0
	}
	if res == nil {
		return nil, 0, 0
	}
	if strings.HasPrefix(key, "cpu-") {
		return cpuSamples(key, res, r.Procs), 0, 0
	}
	m := res.Measurements[key]
	if m == nil {
		return nil, 0, 0
	}
	return m.Samples, len(m.Failures), m.Capped
}

// cpuSamples turns each bulk transfer's CPU times into seconds per 100 MiB
// carried.
func cpuSamples(key string, res *workload.Result, procs []ProcFigures) []float64 {
	var xs []float64
	for _, s := range res.CPU {
		if s.Bytes == 0 || len(s.CPU) != len(procs) {
			continue
		}
		per := float64(s.Bytes) / (100 << 20)
		var sum, busiest, client float64
		ok := true
		for i, c := range s.CPU {
			if c < 0 {
				ok = false
				break
			}
			switch {
			case procs[i].Relay:
				sum += c
				busiest = max(busiest, c)
			case procs[i].Role == "client":
				client += c
			}
		}
		if !ok {
			continue
		}
		switch key {
		case "cpu-relay":
			xs = append(xs, sum/hops/per)
		case "cpu-busiest":
			xs = append(xs, busiest/per)
		case "cpu-client":
			xs = append(xs, client/per)
		}
	}
	return xs
}

// MachineInfo describes the machine for the report.
func MachineInfo() []report.KV {
	kv := []report.KV{
		{Key: "CPU", Value: fmt.Sprintf("%d x %s", runtime.NumCPU(), cpuModel())},
		{Key: "memory", Value: memTotal()},
		{Key: "kernel", Value: readTrim("/proc/sys/kernel/osrelease")},
		{Key: "Go", Value: runtime.Version()},
		{Key: "date", Value: time.Now().UTC().Format(time.RFC3339)},
	}
	return kv
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				return fmt.Sprintf("%.1f GiB", float64(n)/(1<<20))
			}
		}
	}
	return "unknown"
}

// LoadAvg is the 1-, 5- and 15-minute load average.
func LoadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func randToken() string {
	return strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
}
