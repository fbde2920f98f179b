package harness

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	armon "github.com/armon/go-socks5"
	"github.com/miekg/dns"

	"github.com/chive-net/chive/bench/procstat"
	"github.com/chive-net/chive/bench/report"
	"github.com/chive-net/chive/bench/workload"
	"github.com/chive-net/chive/testnet/services"
)

// zoneResolver resolves the test zone's names to 127.0.0.1, as the exits'
// resolver does.
type zoneResolver struct{}

func (zoneResolver) Resolve(ctx context.Context, name string) (context.Context, net.IP, error) {
	if !dns.IsSubDomain(services.Zone, dns.Fqdn(name)) {
		return ctx, nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return ctx, net.IPv4(127, 0, 0, 1), nil
}

// flakyCreds accepts every user except on the third use of a class 1
// "ready" credential: one ttfb-ready sample of class 1 fails (the warm-up
// and the first sample pass).
type flakyCreds struct {
	mu   sync.Mutex
	uses map[string]int
}

func (f *flakyCreds) Valid(user, pass string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uses[user]++
	return !(strings.HasPrefix(user, "class=1:") && strings.HasSuffix(user, "-ready") && f.uses[user] == 3)
}

// fakeNet is an in-process stand-in for a network: armon/go-socks5 as the
// client and the zone's DNS handler as its DNS front-end; its "processes"
// are this test process.
type fakeNet struct {
	socks, dns string
	closed     *int
	stop       func()
}

func (f fakeNet) SOCKSAddr() string            { return f.socks }
func (f fakeNet) DNSAddr() string              { return f.dns }
func (f fakeNet) BootstrapTime() time.Duration { return 1500 * time.Millisecond }
func (f fakeNet) Procs() []procstat.Proc {
	return []procstat.Proc{
		{Name: "relay1", Role: "relay", PID: os.Getpid(), Relay: true},
		{Name: "client", Role: "client", PID: os.Getpid()},
	}
}
func (f fakeNet) Close() error { *f.closed++; f.stop(); return nil }

type fakeLauncher struct {
	kind    string
	cols    []Column
	ups     int
	closed  int
	failAt  int // Up number that fails (1-based); 0 never
	lastEnv Env
}

func (l *fakeLauncher) Kind() string      { return l.kind }
func (l *fakeLauncher) Columns() []Column { return l.cols }
func (l *fakeLauncher) Up(ctx context.Context, dir string, env Env) (Network, error) {
	l.ups++
	l.lastEnv = env
	if l.ups == l.failAt {
		return nil, io.ErrUnexpectedEOF
	}
	srv, err := armon.New(&armon.Config{Credentials: &flakyCreds{uses: map[string]int{}}, Resolver: zoneResolver{}, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		return nil, err
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go srv.Serve(sl)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ds := &dns.Server{PacketConn: pc, Handler: services.DNSHandler(services.Records(netip.MustParseAddr("127.0.0.1")))}
	go ds.ActivateAndServe()
	return fakeNet{socks: sl.Addr().String(), dns: pc.LocalAddr().String(), closed: &l.closed,
		stop: func() { sl.Close(); ds.Shutdown() }}, nil
}

func TestRun(t *testing.T) {
	tor := &fakeLauncher{kind: "C tor", cols: []Column{{Name: "C tor"}}}
	chive := &fakeLauncher{kind: "chive", failAt: 2, cols: []Column{
		{Name: "chive class 0", UserPrefix: "class=0:"}, {Name: "chive class 1", UserPrefix: "class=1:"}}}
	var logb bytes.Buffer
	rep, err := Run(context.Background(), Options{
		Dir: t.TempDir(), Launchers: []Launcher{tor, chive}, Networks: 2,
		Config: workload.Config{BulkSize: 256 << 10, Reps: 2, Streams: 2, FreshPause: time.Millisecond},
		Log:    &logb,
	})
	if err != nil {
		t.Fatal(err)
	}
	if tor.ups != 2 || tor.closed != 2 || chive.ups != 2 || chive.closed != 1 {
		t.Errorf("tor up %d closed %d, chive up %d closed %d; want 2 2 2 1", tor.ups, tor.closed, chive.ups, chive.closed)
	}
	if !strings.HasPrefix(tor.lastEnv.ProbeURL, "http://www.chive.test:") || tor.lastEnv.Resolver == "" {
		t.Errorf("env %+v", tor.lastEnv)
	}
	if got := strings.Join(rep.Columns, ","); got != "C tor,chive class 0,chive class 1" {
		t.Errorf("columns %q", got)
	}
	var ratios []string
	for _, r := range rep.Ratios {
		ratios = append(ratios, r.Name)
	}
	if got := strings.Join(ratios, ","); got != "chive class 0 / C tor,chive class 1 / C tor,chive class 1 / chive class 0" {
		t.Errorf("ratios %q", got)
	}
	rows := map[string]report.Row{}
	for _, r := range rep.Rows {
		rows[r.Key] = r
	}
	if len(rows) != 12 {
		t.Errorf("got %d rows, want 12", len(rows))
	}
	for key, r := range rows {
		base := r.Cells[0]
		if base.Stat == nil {
			t.Errorf("%s: no C tor figure", key)
			continue
		}
		// Two networks of C tor; chive's second failed to start.
		if len(base.PerNetwork) != 2 || len(r.Cells[1].PerNetwork) != 1 {
			t.Errorf("%s: per-network medians %v and %v, want 2 and 1", key, base.PerNetwork, r.Cells[1].PerNetwork)
		}
	}
	if c := rows[workload.Bulk1].Cells[0]; c.Stat.N != 4 || c.Stat.Median <= 0 {
		t.Errorf("bulk1: %+v", c.Stat)
	}
	if c := rows[workload.DNSCached].Cells[2]; c.Stat != nil || c.Note != noClassNote {
		t.Errorf("class 1 DNS cell: %+v", c)
	}
	if c := rows["bootstrap"].Cells[0]; c.Stat.Median != 1.5 {
		t.Errorf("bootstrap %+v", c.Stat)
	}
	if c := rows["rss-relay"].Cells[2]; c.Note != sameNetNote {
		t.Errorf("class 1 RSS cell: %+v", c)
	}
	for _, key := range []string{"cpu-relay", "cpu-client", "rss-relay", "rss-client"} {
		if c := rows[key].Cells[1]; c.Stat == nil || c.Stat.Median < 0 {
			t.Errorf("%s: %+v", key, c)
		}
	}
	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "chive network 2: start: unexpected EOF") {
		t.Errorf("the failed start is not in the notes:\n%s", md.String())
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "chive class 1 ttfb-ready failed 1 time(s): socks5: proxy rejected the username/password") {
		t.Errorf("the failure reason is not in the notes:\n%s", strings.Join(rep.Notes, "\n"))
	}
	if c := rows[workload.TTFBReady].Cells[2]; c.Failures != 1 {
		t.Errorf("class 1 ttfb-ready failures: %+v", c)
	}
	if _, ok := rep.Extra.([]NetworkRun); !ok {
		t.Errorf("raw data: %T", rep.Extra)
	}
}

func TestRunSkipAndSelect(t *testing.T) {
	tor := &fakeLauncher{kind: "C tor", cols: []Column{{Name: "C tor"}}}
	chive := &fakeLauncher{kind: "chive", cols: []Column{{Name: "chive class 0", UserPrefix: "class=0:"}}}
	rep, err := Run(context.Background(), Options{
		Dir: t.TempDir(), Launchers: []Launcher{tor, chive}, Networks: 1,
		Skip:      map[string]string{"C tor": "tor not installed: apt-get install tor"},
		Workloads: []string{workload.TTFBReady},
		Config:    workload.Config{BulkSize: 4096, Reps: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if tor.ups != 0 || chive.ups != 1 {
		t.Errorf("ups: tor %d chive %d", tor.ups, chive.ups)
	}
	var keys []string
	for _, r := range rep.Rows {
		keys = append(keys, r.Key)
		if r.Cells[0].Note != "tor not installed: apt-get install tor" {
			t.Errorf("%s: skipped cell %+v", r.Key, r.Cells[0])
		}
	}
	if got := strings.Join(keys, ","); got != "ttfb-ready,bootstrap,rss-relay,rss-client" {
		t.Errorf("rows %q", got)
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := &fakeLauncher{kind: "C tor", cols: []Column{{Name: "C tor"}}}
	rep, err := Run(ctx, Options{Dir: t.TempDir(), Launchers: []Launcher{l}, Networks: 3, Config: workload.Config{BulkSize: 4096}})
	if err != context.Canceled || rep == nil || l.ups != 0 {
		t.Errorf("got %v, report %v, %d ups; want Canceled, a report, no networks", err, rep != nil, l.ups)
	}
}
