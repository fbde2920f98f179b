package testnet_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chive-net/chive/testnet"
	"github.com/chive-net/chive/testnet/services"
)

// nickByShortID maps the short relay IDs of the proxy's /status to
// nicknames (which are the process names).
func nickByShortID(t *testing.T, n *testnet.Network) map[string]string {
	t.Helper()
	c, err := n.Consensus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, r := range c.Relays {
		m[r.ID.Short()] = r.Nickname
	}
	return m
}

// busyPath returns the relays' names, guard first, of the one circuit
// carrying a stream. Call it once the stream is connected: before that the
// proxy may still move the stream to another circuit.
func busyPath(t *testing.T, n *testnet.Network) []string {
	t.Helper()
	names := nickByShortID(t, n)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var busy [][]string
		for _, c := range proxyStatus(t, n).Circuits {
			if c.Active > 0 && c.State != "closing" {
				var path []string
				for _, id := range c.Path {
					path = append(path, names[id])
				}
				busy = append(busy, path)
			}
		}
		if len(busy) == 1 {
			return busy[0]
		}
		if len(busy) > 1 {
			t.Fatalf("%d circuits carry streams, want only the download's: %v", len(busy), busy)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no circuit with an active stream")
	return nil
}

// cleanPath returns the path of some built circuit (guard first).
func anyPath(t *testing.T, n *testnet.Network) []string {
	t.Helper()
	names := nickByShortID(t, n)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range proxyStatus(t, n).Circuits {
			if len(c.Path) == 3 && c.State != "closing" {
				return []string{names[c.Path[0]], names[c.Path[1]], names[c.Path[2]]}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no built circuit")
	return nil
}

// download is a curl process fetching a slow 1 GiB body through the proxy.
type download struct {
	cmd  *exec.Cmd
	out  string     // the body so far
	done chan error // cmd.Wait's result; only this goroutine waits
}

// longDownload starts curl on a slow 1 GiB download and returns once its
// first bytes have arrived, so the stream is connected and settled on its
// circuit.
func longDownload(t *testing.T, n *testnet.Network) *download {
	t.Helper()
	d := &download{out: filepath.Join(t.TempDir(), "body"), done: make(chan error, 1)}
	url := fmt.Sprintf("http://%s:%d/size/%d", services.WebHost, n.Web.Port(), 1<<30)
	d.cmd = exec.Command("curl", "-sS", "-o", d.out, "--limit-rate", "4M", "--socks5-hostname", n.SOCKS, url)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(d.out); err == nil && fi.Size() > 0 {
			return d
		}
		select {
		case err := <-d.done:
			d.done <- err // for the cleanup
			t.Fatalf("the download ended before its first byte: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("no byte of the download within 30 s")
	return nil
}

// expectFailsPromptly checks that an interrupted download ends with an
// error, not a hang.
func expectFailsPromptly(t *testing.T, d *download, what string) {
	t.Helper()
	select {
	case err := <-d.done:
		d.done <- err // for the cleanup
		if err == nil {
			t.Fatalf("%s: the 1 GiB download completed", what)
		}
		t.Logf("%s: the download failed promptly: %v", what, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: the download neither failed nor finished within 20 s", what)
	}
}

// recovers measures how long until a new request succeeds.
func recovers(t *testing.T, n *testnet.Network, what string) {
	t.Helper()
	start := time.Now()
	for {
		out, err := runErr(15*time.Second, "curl", "-sS", "--fail", "--max-time", "10", "--socks5-hostname", n.SOCKS, n.WebURL)
		if err == nil && string(out) == services.Page {
			t.Logf("%s: a new request succeeded %.1fs after the failure", what, time.Since(start).Seconds())
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("%s: recovery took %v, want seconds", what, d)
			}
			return
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("%s: no request succeeded within 60 s: %v", what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestFaults kills exits, guards and an authority while the network works:
// interrupted downloads fail promptly, new requests succeed within seconds,
// and the remaining authorities keep signing consensuses.
func TestFaults(t *testing.T) {
	need(t, "curl")
	// Every relay of a test network may be a guard, exits included, so the
	// four kills below can take out four exits: keep enough of them.
	n := startNet(t, testnet.Options{Relays: 3, Exits: 5})

	t.Run("exit dies during a download", func(t *testing.T) {
		dl := longDownload(t, n)
		path := busyPath(t, n)
		t.Logf("download runs over %v; killing %s", path, path[2])
		n.Process(path[2]).Kill()
		expectFailsPromptly(t, dl, "exit killed")
		recovers(t, n, "exit killed mid-download")
	})
	t.Run("guard dies during a download", func(t *testing.T) {
		dl := longDownload(t, n)
		path := busyPath(t, n)
		t.Logf("download runs over %v; killing %s", path, path[0])
		n.Process(path[0]).Kill()
		expectFailsPromptly(t, dl, "guard killed")
		recovers(t, n, "guard killed mid-download")
	})
	t.Run("exit dies while idle", func(t *testing.T) {
		path := anyPath(t, n)
		t.Logf("idle circuits; killing exit %s of %v", path[2], path)
		n.Process(path[2]).Kill()
		recovers(t, n, "exit killed while idle")
	})
	t.Run("guard dies while idle", func(t *testing.T) {
		path := anyPath(t, n)
		t.Logf("idle circuits; killing guard %s of %v", path[0], path)
		n.Process(path[0]).Kill()
		recovers(t, n, "guard killed while idle")
	})
	t.Run("an authority dies", func(t *testing.T) {
		killed := time.Now()
		n.Process("auth1").Kill()
		// Consensuses voted after the kill (two periods on: the first one's
		// votes were cast before it) carry two votes and two signatures,
		// and verify.
		deadline := time.Now().Add(60 * time.Second)
		for {
			c, err := n.Consensus(context.Background())
			if err == nil && c.ValidAfter.After(killed.Add(2*c.VotingPeriod+time.Second)) {
				var signers []string
				for _, s := range c.Signatures {
					signers = append(signers, s.Authority.Short())
				}
				t.Logf("consensus valid-after %s signed by %d authorities (%s)", c.ValidAfter.Format(time.TimeOnly),
					len(c.Signatures), strings.Join(signers, " "))
				if len(c.Signatures) != 2 {
					t.Fatalf("signatures: %d, want the 2 live authorities'", len(c.Signatures))
				}
				if len(c.Voters) != 2 {
					t.Errorf("voters: %d, want the 2 live authorities", len(c.Voters))
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no new consensus from the two live authorities within 60 s: %v", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		recovers(t, n, "authority down")
	})
}
