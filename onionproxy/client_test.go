package onionproxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// socksReq is a SOCKS5 request made by hand, to see exactly what the proxy
// answers.
type socksReq struct {
	user, pass string // username/password auth if user != "" or auth
	auth       bool
	cmd        byte   // default CONNECT
	host       string // domain name (ATYP 3) unless ip is set
	ip         netip.Addr
	atyp       byte // override ATYP (for "address type not supported")
	port       uint16
	from       string // local IP to connect from (client-address isolation)
}

// socksDial speaks SOCKS5 to the proxy at addr; it returns the connection
// (ready for data after a success) and the reply code.
func socksDial(addr string, r socksReq) (net.Conn, byte, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if r.from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(r.from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	fail := func(err error) (net.Conn, byte, error) {
		c.Close()
		return nil, 0, err
	}
	useAuth := r.auth || r.user != ""
	if useAuth {
		// Offer no-auth first, as curl does: the proxy must still pick
		// username/password.
		c.Write([]byte{5, 2, 0, 2})
	} else {
		c.Write([]byte{5, 1, 0})
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil {
		return fail(fmt.Errorf("method selection: %w", err))
	}
	if useAuth {
		if sel[1] != 2 {
			return fail(fmt.Errorf("proxy chose method %d, want 2", sel[1]))
		}
		b := []byte{1, byte(len(r.user))}
		b = append(b, r.user...)
		b = append(b, byte(len(r.pass)))
		b = append(b, r.pass...)
		c.Write(b)
		var st [2]byte
		if _, err := io.ReadFull(c, st[:]); err != nil || st[1] != 0 {
			return fail(fmt.Errorf("auth: %v %v", st, err))
		}
	} else if sel[1] != 0 {
		return fail(fmt.Errorf("proxy chose method %d, want 0", sel[1]))
	}
	cmd := r.cmd
	if cmd == 0 {
		cmd = 1
	}
	req := []byte{5, cmd, 0}
	switch {
	case r.atyp != 0:
		req = append(req, r.atyp, 1, 2, 3, 4)
	case r.ip.Is4():
		a := r.ip.As4()
		req = append(req, 1)
		req = append(req, a[:]...)
	case r.ip.Is6():
		a := r.ip.As16()
		req = append(req, 4)
		req = append(req, a[:]...)
	default:
		req = append(req, 3, byte(len(r.host)))
		req = append(req, r.host...)
	}
	req = binary.BigEndian.AppendUint16(req, r.port)
	if _, err := c.Write(req); err != nil {
		return fail(err)
	}
	var rep [4]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return fail(fmt.Errorf("reply: %w", err))
	}
	var skip int
	switch rep[3] {
	case 1:
		skip = 4 + 2
	case 4:
		skip = 16 + 2
	case 3:
		var l [1]byte
		io.ReadFull(c, l[:])
		skip = int(l[0]) + 2
	}
	bnd := make([]byte, skip)
	if _, err := io.ReadFull(c, bnd); err != nil {
		return fail(fmt.Errorf("reply address: %w", err))
	}
	if rep[1] != 0 {
		c.Close()
		return nil, rep[1], nil
	}
	if rep[3] != 1 || string(bnd) != "\x00\x00\x00\x00\x00\x00" {
		return fail(fmt.Errorf("bound address %v % x: want 0.0.0.0:0", rep, bnd))
	}
	c.SetDeadline(time.Time{})
	return c, 0, nil
}

// httpGet sends GET path over c (a tunnel) and returns the body.
func httpGet(c net.Conn, host, path string) ([]byte, error) {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// fetchVia fetches http://host:port/path through the SOCKS port.
func fetchVia(socks string, r socksReq, path string) ([]byte, error) {
	c, code, err := socksDial(socks, r)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, fmt.Errorf("SOCKS reply %d", code)
	}
	defer c.Close()
	return httpGet(c, r.host, path)
}

// needTool skips the test when a real client is missing.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed on this machine; this test runs the real client", name)
	}
	return p
}

// run runs a command with a deadline and returns its stdout.
func run(t testing.TB, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// Keep the curl/dig environment free of proxies the host may set.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// status fetches GET /status from the control listener, as a tool would.
func status(t testing.TB, rp *runningProxy) Status {
	t.Helper()
	resp, err := ctlClient.Get("http://" + rp.Addrs().Control + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// circuitsOfGroup returns the circuits the status page shows for group.
func circuitsOfGroup(s Status, group int) []CircuitStatus {
	var out []CircuitStatus
	for _, c := range s.Circuits {
		if c.Group == group {
			out = append(out, c)
		}
	}
	return out
}

var errNoCircuit = errors.New("no circuit")

func ioReadFull(c net.Conn, b []byte) (int, error) { return io.ReadFull(c, b) }

// ctlClient talks to control listeners without keeping connections.
var ctlClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
