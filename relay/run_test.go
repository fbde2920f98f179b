package relay

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/mix"
)

// TestMetricsServer: /metrics carries the relay's, the circuit layer's,
// the mix's and the process's collectors; /status summarises.
func TestMetricsServer(t *testing.T) {
	cfg := testConfig(t, "metered")
	on := "127.0.0.1:0"
	cfg.Metrics.Listen = &on
	r := runRelay(t, cfg, nil)
	build(t, newClient(t), []circuit.Hop{r.Hop()}, 0) // one open circuit
	get := func(path string) string {
		resp, err := http.Get("http://" + r.MetricsAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	m := get("/metrics")
	for _, want := range []string{
		fmt.Sprintf(`chive_relay_info{exit="0",id="%s",nickname="metered",version="%s"} 1`, r.ID(), Version),
		"chive_relay_circuits_open 1",
		"chive_relay_circuits_created_total 1",
		`chive_relay_links_accepted_total{peer="client"} 1`,
		"chive_relay_inbound_links_open 1",
		"chive_relay_relay_links_open 0",
		"chive_mix_pool_cells",
		"process_cpu_seconds_total",
		"go_goroutines",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	s := get("/status")
	if !strings.Contains(s, "nickname metered\n") || !strings.Contains(s, "circuits 1\n") {
		t.Errorf("/status:\n%s", s)
	}
}

// TestBandwidthRate: the token bucket slows a relay's forwarding.
func TestBandwidthRate(t *testing.T) {
	body := make([]byte, 1<<20)
	rand.Read(body)
	_, port := startWeb(t, body)
	cfg := exitConfig(t, "slow", "127.0.0.1:9", true, "accept *:*")
	cfg.Bandwidth = BandwidthConfig{Rate: 256 << 10, Burst: 256 << 10}
	r := runRelay(t, cfg, nil)
	c := build(t, newClient(t), []circuit.Hop{r.Hop()}, 0)
	start := time.Now()
	got := httpGet(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port))
	took := time.Since(start)
	if len(got) != len(body) {
		t.Fatalf("got %d bytes", len(got))
	}
	// 1 MiB (plus cell overhead) at 256 KiB/s after a 256 KiB burst: at
	// least 3 s.
	if took < 2500*time.Millisecond {
		t.Errorf("1 MiB through a 256KiB/s relay took %v, want about 3s or more", took)
	}
	t.Logf("1 MiB at 256KiB/s: %v", took)
}

// TestPeriodicRepublish: the descriptor is re-published every
// publish_interval, with a new published time and uptime.
func TestPeriodicRepublish(t *testing.T) {
	start := time.Now().Truncate(time.Second)
	fc := mix.NewFakeClock(start)
	a := startAuthority(t, fc.Now)
	cfg := testConfig(t, "repub")
	cfg.PublishInterval = 30 * time.Minute
	cfg.OnionKeyRotation = 24 * time.Hour
	cfg.Authorities = []AuthorityConfig{a.config("auth")}
	runRelay(t, cfg, nil, WithClock(fc))
	first := a.next(t, 5*time.Second)
	for i := 1; i <= 2; i++ {
		at := start.Add(time.Duration(i) * 30 * time.Minute)
		waitFor(t, "the publish timer", 5*time.Second, func() bool {
			d, ok := fc.NextDeadline()
			return ok && !d.After(at)
		})
		fc.AdvanceTo(at)
		d := a.next(t, 5*time.Second)
		if !d.Published.Equal(at) || d.Uptime != time.Duration(i)*30*time.Minute || d.OnionKey != first.OnionKey {
			t.Errorf("re-publication %d: published %v uptime %v (same onion key %v); want %v, %v, true",
				i, d.Published, d.Uptime, d.OnionKey == first.OnionKey, at, time.Duration(i)*30*time.Minute)
		}
	}
}
