package testnet_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chive-net/chive/onionproxy"
	"github.com/chive-net/chive/testnet"
	"github.com/chive-net/chive/testnet/services"
)

// The end-to-end tests drive real programs (curl, dig, chromium, tcpdump,
// docker) against networks of real processes. CI sets
// CHIVE_REQUIRE_E2E_TOOLS=1 so that a missing tool fails instead of skipping.

func need(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: not in -short mode")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			msg := fmt.Sprintf("%s is not installed (apt-get install %s); .ci/run installs it", tool, debianPackage(tool))
			if os.Getenv("CHIVE_REQUIRE_E2E_TOOLS") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

func debianPackage(tool string) string {
	switch tool {
	case "dig":
		return "dnsutils"
	case "ip":
		return "iproute2"
	case "docker-compose":
		return "docker-compose"
	}
	return tool
}

var (
	binsOnce sync.Once
	bins     map[string]string
	binsErr  error
	binDir   string
)

// programs builds the binaries once for the whole package run.
func programs(t *testing.T) map[string]string {
	t.Helper()
	binsOnce.Do(func() {
		root, err := testnet.ModuleRoot()
		if err != nil {
			binsErr = err
			return
		}
		binDir, err = os.MkdirTemp("", "chive-e2e-bin-")
		if err != nil {
			binsErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		bins, binsErr = testnet.Build(ctx, root, binDir)
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return bins
}

// startNet brings up a network for one test and stops it afterwards.
func startNet(t *testing.T, o testnet.Options) *testnet.Network {
	t.Helper()
	o.Bins = programs(t)
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	o.Log = testWriter{t}
	if o.LogLevel == "" {
		o.LogLevel = os.Getenv("CHIVE_E2E_LOGLEVEL") // "debug" to chase a failure
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n, err := testnet.Up(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("stopping the network: %v", err)
		}
		for _, p := range n.Processes() {
			if p.Running() {
				t.Errorf("%s (PID %d) still running after Close", p.Name, p.PID)
			}
		}
		if t.Failed() {
			dumpLogs(t, n)
		}
	})
	return n
}

// dumpLogs prints the end of every program's log and, when
// CHIVE_E2E_LOGDIR names a directory, copies the whole logs there.
func dumpLogs(t *testing.T, n *testnet.Network) {
	keep := os.Getenv("CHIVE_E2E_LOGDIR")
	if keep != "" {
		keep = filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(keep, 0o755); err != nil {
			t.Logf("keeping logs: %v", err)
			keep = ""
		}
	}
	for _, p := range n.Processes() {
		b, _ := os.ReadFile(p.LogFile)
		if keep != "" {
			if err := os.WriteFile(filepath.Join(keep, filepath.Base(p.LogFile)), b, 0o644); err != nil {
				t.Logf("keeping logs: %v", err)
			}
		}
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("--- end of %s ---\n%s", filepath.Base(p.LogFile), b)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// run executes a command and returns its stdout; a failure fails the test.
func run(t *testing.T, timeout time.Duration, name string, args ...string) []byte {
	t.Helper()
	out, err := runErr(timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func runErr(timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// proxyStatus reads the onion proxy's /status.
func proxyStatus(t *testing.T, n *testnet.Network) onionproxy.Status {
	t.Helper()
	resp, err := http.Get("http://" + n.Control + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st onionproxy.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRealClients is the main promise, with real programs: curl through
// SOCKS5 and HTTP CONNECT, dig through the DNS front-end, and headless
// Chromium, all reaching names that only the exits' resolver knows.
func TestRealClients(t *testing.T) {
	need(t, "curl", "dig")
	n := startNet(t, testnet.Options{})
	big := fmt.Sprintf("http://%s:%d/size/%d", services.WebHost, n.Web.Port(), 5<<20)

	t.Run("curl SOCKS5", func(t *testing.T) {
		page := run(t, time.Minute, "curl", "-sS", "--fail", "--socks5-hostname", n.SOCKS, n.WebURL)
		if string(page) != services.Page {
			t.Fatalf("page through SOCKS5 differs:\n%s", page)
		}
		body := run(t, 2*time.Minute, "curl", "-sS", "--fail", "--socks5-hostname", n.SOCKS, big)
		if got, want := sha(body), services.BodySHA256(5<<20); got != want {
			t.Fatalf("5 MiB body: got %d bytes (sha %s), want sha %s", len(body), got, want)
		}
	})
	t.Run("curl HTTP CONNECT", func(t *testing.T) {
		// -p forces CONNECT even for an http:// URL.
		page := run(t, time.Minute, "curl", "-sS", "--fail", "-p", "--proxy", "http://"+n.HTTPConnect, n.WebURL)
		if string(page) != services.Page {
			t.Fatalf("page through HTTP CONNECT differs:\n%s", page)
		}
		body := run(t, 2*time.Minute, "curl", "-sS", "--fail", "-p", "--proxy", "http://"+n.HTTPConnect, big)
		if got, want := sha(body), services.BodySHA256(5<<20); got != want {
			t.Fatalf("5 MiB body via CONNECT: sha %s, want %s", got, want)
		}
	})
	t.Run("dig", func(t *testing.T) {
		host, port := splitHostPort(t, n.DNS)
		dig := func(args ...string) string {
			return strings.TrimSpace(string(run(t, 30*time.Second, "dig", append([]string{"@" + host, "-p", port, "+short", "+tries=2", "+time=5"}, args...)...)))
		}
		cases := []struct {
			args []string
			want string
		}{
			{[]string{"www.chive.test", "A"}, "127.0.0.1"},
			{[]string{"www.chive.test", "AAAA"}, "::1"},
			{[]string{"chive.test", "MX"}, "10 mail.chive.test."},
			{[]string{"chive.test", "TXT"}, `"chive test network"`},
			{[]string{"+tcp", "www.chive.test", "A"}, "127.0.0.1"},
		}
		for _, tc := range cases {
			if got := dig(tc.args...); got != tc.want {
				t.Errorf("dig %v = %q, want %q", tc.args, got, tc.want)
			}
		}
		full := string(run(t, 30*time.Second, "dig", "@"+host, "-p", port, "nope.chive.test", "A"))
		if !strings.Contains(full, "status: NXDOMAIN") {
			t.Errorf("dig nope.chive.test: no NXDOMAIN in\n%s", full)
		}
		// The host's own resolver knows nothing of chive.test: only the
		// exits do.
		if out, err := runErr(10*time.Second, "dig", "+short", "+tries=1", "+time=2", "www.chive.test", "A"); err == nil && strings.TrimSpace(string(out)) != "" {
			t.Errorf("the host's resolver answers www.chive.test (%q): the test proves nothing", out)
		}
	})
	t.Run("chromium", func(t *testing.T) {
		need(t, "chromium")
		// No local resolution at all: every name maps to NOTFOUND, except the
		// proxy's own address literal.
		dom := run(t, 2*time.Minute, "chromium", "--headless", "--no-sandbox", "--disable-gpu",
			"--user-data-dir="+t.TempDir(), "--no-first-run", "--disable-background-networking",
			"--proxy-server=socks5://"+n.SOCKS,
			"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
			"--virtual-time-budget=10000", "--dump-dom", n.WebURL)
		if !bytes.Contains(dom, []byte(`<h1 id="greeting">`+services.PageText+`</h1>`)) {
			t.Fatalf("Chromium did not render the page; DOM:\n%s", dom)
		}
	})
}

func splitHostPort(t *testing.T, hp string) (string, string) {
	t.Helper()
	i := strings.LastIndex(hp, ":")
	if i < 0 {
		t.Fatalf("bad address %q", hp)
	}
	return hp[:i], hp[i+1:]
}
