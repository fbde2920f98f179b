package onionproxy

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestExitDies: the exit of a circuit in use dies mid-session; the stream
// on it breaks, and new requests succeed on another circuit within a few
// seconds.
func TestExitDies(t *testing.T) {
	n, rp := startNetAndProxy(t, nil)
	a := rp.Addrs()
	port, _ := strconv.Atoi(n.port())
	r := socksReq{user: "alice", host: webName, port: uint16(port)}
	long, code, err := socksDial(a.SOCKS[0], r)
	if err != nil || code != 0 {
		t.Fatal(code, err)
	}
	defer long.Close()
	cur := inUse(status(t, rp))
	if len(cur) != 1 {
		t.Fatalf("%d circuits in use", len(cur))
	}
	var path []string
	for _, c := range cur {
		path = c.Path
	}
	exit := n.relayByShortID(path[2])
	if exit == nil || !exit.exit {
		t.Fatalf("circuit path %v: no exit found", path)
	}
	exit.kill()

	// The stream in flight fails.
	long.SetDeadline(time.Now().Add(10 * time.Second))
	if body, err := httpGet(long, webName, "/page"); err == nil {
		t.Errorf("a stream through the dead exit still works: %q", body)
	}
	start := time.Now()
	body, err := fetchVia(a.SOCKS[0], r, "/page")
	if err != nil || !bytes.Equal(body, n.page) {
		t.Fatalf("after the exit died: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("recovery took %v, want a few seconds", d)
	}
	t.Logf("new request succeeded %v after the exit died", time.Since(start))
	for _, c := range inUse(status(t, rp)) {
		if c.Path[2] == path[2] {
			t.Errorf("a circuit in use still exits at the dead relay: %v", c.Path)
		}
	}
	if got := counterValue(t, rp.m.circuitsClosed.WithLabelValues("failed")); got < 1 {
		t.Errorf("circuits_closed_total{reason=failed} = %v, want >= 1", got)
	}
}

// TestGuardDies: the primary guard in use dies; the client moves to its
// next guard and marks the dead one unreachable without dropping it.
func TestGuardDies(t *testing.T) {
	n, rp := startNetAndProxy(t, nil)
	a := rp.Addrs()
	port, _ := strconv.Atoi(n.port())
	r := socksReq{user: "alice", host: webName, port: uint16(port)}
	if _, err := fetchVia(a.SOCKS[0], r, "/page"); err != nil {
		t.Fatal(err)
	}
	var guardID string
	for _, c := range inUse(status(t, rp)) {
		guardID = c.Path[0]
	}
	g := n.relayByShortID(guardID)
	g.kill()
	start := time.Now()
	body, err := fetchVia(a.SOCKS[0], r, "/page")
	if err != nil || !bytes.Equal(body, n.page) {
		t.Fatalf("after the guard died: %v", err)
	}
	t.Logf("new request succeeded %v after the guard died", time.Since(start))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("recovery took %v", d)
	}
	s := status(t, rp)
	for _, c := range inUse(s) {
		if c.Path[0] == guardID {
			t.Errorf("a circuit in use still starts at the dead guard: %v", c.Path)
		}
	}
	found := false
	for _, gs := range s.Guards {
		if gs.ID == g.key.ID().String() {
			found = true
			if gs.Reachable != "no" || gs.RetryAt == nil || !gs.Primary {
				t.Errorf("dead guard status %+v: want unreachable, a retry time, still primary", gs)
			}
		}
	}
	if !found {
		t.Error("the dead guard was dropped from the sample at its first failure")
	}
	if got := counterValue(t, rp.m.buildFailures.WithLabelValues("guard")); got < 1 {
		t.Errorf("circuit_build_failures_total{blame=guard} = %v", got)
	}
}

// counterValue reads a counter.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
