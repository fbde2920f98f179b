package testnet_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/testnet"
)

// vmHWM reads a process's peak resident set size in bytes.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// BenchmarkRelayIdleCircuitsRSS builds 10,000 circuits through a test
// network's relays (real relaynode processes) and leaves them idle, then
// reports the middle relay's peak RSS (issue 7: under 256 MiB).
//
//	go test -run '^$' -bench RelayIdleCircuitsRSS -benchtime 1x ./testnet
func BenchmarkRelayIdleCircuitsRSS(b *testing.B) {
	const count = 10000
	root, err := testnet.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	bins, err := testnet.Build(context.Background(), root, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		n, err := testnet.Up(context.Background(), testnet.Options{Dir: b.TempDir(), Bins: bins})
		if err != nil {
			b.Fatal(err)
		}
		c, err := n.Consensus(context.Background())
		if err != nil {
			n.Close()
			b.Fatal(err)
		}
		var path []circuit.Hop
		var middlePID int
		for _, name := range []string{"relay1", "relay2", "exit1"} {
			for _, r := range c.Relays {
				if r.Nickname == name {
					path = append(path, circuit.Hop{ID: r.ID, Addr: r.Addr, OnionKey: r.OnionKey})
				}
			}
		}
		middlePID = n.Process("relay2").PID
		before, _ := vmHWM(middlePID)
		links := link.NewManager(&link.Config{})
		var mu sync.Mutex
		var circs []*circuit.Circuit
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		var failed error
		for j := 0; j < count; j++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cc, err := circuit.Build(ctx, links, path, circuit.BuildOptions{})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = err
					return
				}
				circs = append(circs, cc)
			}()
		}
		wg.Wait()
		time.Sleep(35 * time.Second) // idle: two buffer sweeps pass at the relay
		after, err := vmHWM(middlePID)
		for _, cc := range circs {
			cc.Close()
		}
		links.Close()
		n.Close()
		if failed != nil {
			b.Fatalf("%d of %d circuits built; last error: %v", len(circs), count, failed)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(after)/(1<<20), "MiB-peak-RSS")
		b.ReportMetric(float64(after-before)/float64(count), "B/circuit")
	}
}
