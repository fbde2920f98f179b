package onionproxy

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// inUse returns the in-use circuits, by ID.
func inUse(s Status) map[uint64]CircuitStatus {
	out := map[uint64]CircuitStatus{}
	for _, c := range s.Circuits {
		if c.State == "in_use" {
			out[c.ID] = c
		}
	}
	return out
}

// newCircuit returns the one in-use circuit in after that is not in before.
func newCircuit(t *testing.T, before, after map[uint64]CircuitStatus) CircuitStatus {
	t.Helper()
	var fresh []CircuitStatus
	for id, c := range after {
		if _, ok := before[id]; !ok {
			fresh = append(fresh, c)
		}
	}
	if len(fresh) != 1 {
		t.Fatalf("%d new in-use circuits, want 1: before %v after %v", len(fresh), before, after)
	}
	return fresh[0]
}

func TestIsolation(t *testing.T) {
	n, rp := startNetAndProxy(t, func(c *Config) {
		c.SOCKSListeners = append(c.SOCKSListeners, ListenerConfig{Address: "127.0.0.1:0"})
	})
	a := rp.Addrs()
	port, _ := strconv.Atoi(n.port())
	fetch := func(socks string, r socksReq) {
		t.Helper()
		r.host, r.port = webName, uint16(port)
		body, err := fetchVia(socks, r, "/page")
		if err != nil || !bytes.Equal(body, n.page) {
			t.Fatalf("fetch %+v: %q %v", r, body, err)
		}
	}
	s0 := inUse(status(t, rp))
	if len(s0) != 0 {
		t.Fatalf("in-use circuits before any stream: %v", s0)
	}

	fetch(a.SOCKS[0], socksReq{user: "alice", pass: "x"})
	s1 := inUse(status(t, rp))
	alice := newCircuit(t, s0, s1)

	// The same credentials reuse the circuit.
	fetch(a.SOCKS[0], socksReq{user: "alice", pass: "x"})
	s2 := inUse(status(t, rp))
	if len(s2) != 1 || s2[alice.ID].Streams != 2 {
		t.Fatalf("alice's second stream: circuits %v, want alice's one with 2 streams", s2)
	}

	// Every other credential, client address, listener gets its own.
	others := []struct {
		name  string
		socks string
		r     socksReq
	}{
		{"another username", a.SOCKS[0], socksReq{user: "bob", pass: "x"}},
		{"same username, another password", a.SOCKS[0], socksReq{user: "alice", pass: "y"}},
		{"no credentials", a.SOCKS[0], socksReq{}},
		{"another client address", a.SOCKS[0], socksReq{user: "alice", pass: "x", from: "127.0.0.2"}},
		{"another listener", a.SOCKS[1], socksReq{user: "alice", pass: "x"}},
		{"a delay class prefix", a.SOCKS[0], socksReq{user: "class=1:alice", pass: "x"}},
	}
	groups := map[int]string{alice.Group: "alice"}
	prev := s2
	for _, o := range others {
		fetch(o.socks, o.r)
		cur := inUse(status(t, rp))
		c := newCircuit(t, prev, cur)
		if who, dup := groups[c.Group]; dup {
			t.Errorf("%s: isolation group %d already used by %s", o.name, c.Group, who)
		}
		groups[c.Group] = o.name
		if o.r.user == "class=1:alice" && c.DelayClass != 1 {
			t.Errorf("class=1 prefix: circuit class %d", c.DelayClass)
		}
		if cur[alice.ID].Streams != 2 {
			t.Errorf("%s: alice's circuit has %d streams, want 2 (disjoint circuits)", o.name, cur[alice.ID].Streams)
		}
		prev = cur
	}
	// Same for the HTTP CONNECT front-end: Proxy-Authorization isolates.
	connectFetch := func(user string) {
		t.Helper()
		c, err := net.Dial("tcp", a.HTTPConnect[0])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		auth := ""
		if user != "" {
			auth = "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":pw")) + "\r\n"
		}
		target := webName + ":" + n.port()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n" + auth + "\r\n"))
		buf := make([]byte, len("HTTP/1.1 200 Connection established\r\n\r\n"))
		if _, err := ioReadFull(c, buf); err != nil || !strings.HasPrefix(string(buf), "HTTP/1.1 200") {
			t.Fatalf("CONNECT: %q %v", buf, err)
		}
		body, err := httpGet(c, webName, "/page")
		if err != nil || !bytes.Equal(body, n.page) {
			t.Fatalf("GET through CONNECT: %q %v", body, err)
		}
	}
	for _, u := range []string{"", "carol", "dave"} {
		connectFetch(u)
		cur := inUse(status(t, rp))
		c := newCircuit(t, prev, cur)
		if _, dup := groups[c.Group]; dup {
			t.Errorf("HTTP CONNECT user %q shares an isolation group", u)
		}
		groups[c.Group] = "http " + u
		prev = cur
	}
	connectFetch("carol")
	if cur := inUse(status(t, rp)); len(cur) != len(prev) {
		t.Errorf("carol's second CONNECT built a circuit: %d in use, want %d", len(cur), len(prev))
	}
}

// TestNewIdentity: after POST /newnym new streams use new circuits, and
// the old ones close once idle.
func TestNewIdentity(t *testing.T) {
	n, rp := startNetAndProxy(t, nil)
	a := rp.Addrs()
	port, _ := strconv.Atoi(n.port())
	r := socksReq{user: "alice", host: webName, port: uint16(port)}
	if _, err := fetchVia(a.SOCKS[0], r, "/page"); err != nil {
		t.Fatal(err)
	}
	before := inUse(status(t, rp))
	if len(before) != 1 {
		t.Fatalf("%d in-use circuits", len(before))
	}
	// A GET, a cross-site request and a DNS-rebinding Host are refused.
	ctl := func(method, host, origin string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+a.Control+"/newnym", nil)
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := ctlClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ctl(http.MethodGet, "", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /newnym: %d", code)
	}
	if code := ctl(http.MethodPost, "", "http://evil.example"); code != http.StatusForbidden {
		t.Errorf("cross-site POST /newnym: %d", code)
	}
	if code := ctl(http.MethodPost, "rebind.example", ""); code != http.StatusForbidden {
		t.Errorf("rebinding POST /newnym: %d", code)
	}
	if code := ctl(http.MethodPost, "", ""); code != http.StatusOK {
		t.Fatalf("POST /newnym: %d", code)
	}
	if _, err := fetchVia(a.SOCKS[0], r, "/page"); err != nil {
		t.Fatal(err)
	}
	after := inUse(status(t, rp))
	newCircuit(t, before, after)
	var old uint64
	for id := range before {
		old = id
	}
	waitFor(t, "the old circuit to close", 5*time.Second, func() bool {
		return !slices.ContainsFunc(status(t, rp).Circuits, func(c CircuitStatus) bool { return c.ID == old })
	})
}

// TestMaxDirtiness: a circuit used longer ago than max_dirtiness takes no
// new streams; a stream open on it keeps working until it ends.
func TestMaxDirtiness(t *testing.T) {
	n, rp := startNetAndProxy(t, func(c *Config) { c.Circuits.MaxDirtiness = 500 * time.Millisecond })
	a := rp.Addrs()
	port, _ := strconv.Atoi(n.port())
	r := socksReq{user: "alice", host: webName, port: uint16(port)}
	long, code, err := socksDial(a.SOCKS[0], r)
	if err != nil || code != 0 {
		t.Fatal(code, err)
	}
	defer long.Close()
	first := inUse(status(t, rp))
	time.Sleep(700 * time.Millisecond)
	if _, err := fetchVia(a.SOCKS[0], r, "/page"); err != nil {
		t.Fatal(err)
	}
	s := status(t, rp)
	var id uint64
	for k := range first {
		id = k
	}
	var oldState string
	for _, c := range s.Circuits {
		if c.ID == id {
			oldState = c.State + "/" + c.Retired
		}
	}
	if oldState != "retired/dirty" {
		t.Errorf("the dirty circuit is %q, want retired/dirty", oldState)
	}
	newCircuit(t, first, inUse(s))
	// The long stream still works on the retired circuit.
	body, err := httpGet(long, webName, "/page")
	if err != nil || !bytes.Equal(body, n.page) {
		t.Fatalf("stream on the retired circuit: %v", err)
	}
	long.Close()
	waitFor(t, "the retired circuit to close with its last stream", 5*time.Second, func() bool {
		return !slices.ContainsFunc(status(t, rp).Circuits, func(c CircuitStatus) bool { return c.ID == id })
	})
}

// TestMaxCircuitsEvictsIdle: at circuits.max_circuits, a stream with new
// credentials closes the longest-idle used circuit instead of failing.
func TestMaxCircuitsEvictsIdle(t *testing.T) {
	n, rp := startNetAndProxy(t, func(c *Config) {
		c.Circuits.MaxCircuits = 3
		c.Circuits.Preemptive = 1
	})
	a := rp.Addrs()
	port, _ := strconv.Atoi(n.port())
	for i := 0; i < 8; i++ {
		body, err := fetchVia(a.SOCKS[0], socksReq{user: fmt.Sprintf("user%d", i), pass: "x", host: webName, port: uint16(port)}, "/page")
		if err != nil || !bytes.Equal(body, n.page) {
			t.Fatalf("fetch %d with new credentials at the circuit cap: %q %v", i, body, err)
		}
		open := 0
		for _, c := range status(t, rp).Circuits {
			if c.State != "closing" {
				open++
			}
		}
		if open > 3 {
			t.Fatalf("%d circuits open, cap 3", open)
		}
	}
}
