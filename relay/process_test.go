package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chive-net/chive/cell"
	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

// buildRelaynode compiles cmd/relaynode into a temporary directory.
func buildRelaynode(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the relaynode binary")
	}
	bin := filepath.Join(t.TempDir(), "relaynode")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/chive-net/chive/cmd/relaynode").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// lockedBuffer collects a process's output safely while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRelaynodeProcess runs the real binary: version, keygen, a relay that
// publishes to an authority, a circuit through it, and SIGTERM: the circuit
// sees DESTROY(HIBERNATING) and the process exits 0 promptly.
func TestRelaynodeProcess(t *testing.T) {
	bin := buildRelaynode(t)
	dir := t.TempDir()

	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "chive ") {
		t.Fatalf("relaynode version: %q, %v", out, err)
	}

	data := filepath.Join(dir, "data")
	out, err = exec.Command(bin, "keygen", "-data-dir", data).Output()
	if err != nil {
		t.Fatalf("relaynode keygen: %v", err)
	}
	id, err := layercrypt.ParseRelayID(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("keygen printed %q: %v", out, err)
	}

	auth := startAuthority(t, time.Now)
	body := []byte("hello through a real relaynode\n")
	_, webPort := startWeb(t, body)
	cfgPath := filepath.Join(dir, "relay.yaml")
	cfgText := fmt.Sprintf(`nickname: proc
data_dir: %s
listen: 127.0.0.1:0
testnet: true
onion_key_rotation: 1h
shutdown_timeout: 5s
exit:
  enabled: true
  allow_private_destinations: true
  resolvers: [127.0.0.1:9]
  policy: ["accept *:*"]
authorities:
  - {id: %s, address: %s, nickname: a1}
metrics:
  listen: 127.0.0.1:0
log:
  format: json
`, data, auth.id, auth.srv.Listener.Addr())
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfgPath)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	d := func() *netdoc.Descriptor {
		select {
		case d := <-auth.got:
			return d
		case err := <-exited:
			exited <- err
			t.Fatalf("relaynode exited: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Second):
			t.Fatalf("no descriptor from relaynode\n%s", stderr.String())
		}
		return nil
	}()
	if d.ID != id {
		t.Fatalf("descriptor ID %v, keygen printed %v", d.ID, id)
	}
	client := newClient(t)
	c := build(t, client, []circuit.Hop{{ID: d.ID, Addr: d.Addr, OnionKey: d.OnionKey}}, 0)
	// A stream open through the exit when the signal comes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.Dial(ctx, "127.0.0.1", webPort)
	if err != nil {
		t.Fatalf("dial through relaynode: %v", err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("HTTP through relaynode: %v", err)
	}
	got, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(got, body) {
		t.Fatalf("got %q through relaynode, want %q", got, body)
	}

	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the circuit outlived SIGTERM by 5s")
	}
	var de *circuit.DestroyedError
	if err := c.Err(); !errors.As(err, &de) || de.Reason != cell.DestroyHibernating || !de.Remote {
		t.Errorf("circuit ended with %v, want DESTROY(HIBERNATING) from the relay", err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("relaynode exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("relaynode still running 10s after SIGTERM\n%s", stderr.String())
	}
	t.Logf("SIGTERM to exit 0 in %v", time.Since(sent))
	logs := stderr.String()
	for _, want := range []string{`"relay running"`, `"shutting down`, `"relay stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

// TestRelaynodeBadInput: errors a person can act on, and exit codes.
func TestRelaynodeBadInput(t *testing.T) {
	bin := buildRelaynode(t)
	dir := t.TempDir()
	run := func(args ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatalf("relaynode %v: %v", args, err)
		}
		return 0, string(out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("data_dir: "+filepath.Join(dir, "d")+"\nlisten: 127.0.0.1:0\ntestnet: true\nnicknmae: x\n"), 0o600)
	if code, out := run("-config", bad); code != 1 || !strings.Contains(out, `line 4: unknown key "nicknmae"`) {
		t.Errorf("bad config: exit %d, %q", code, out)
	}
	if code, _ := run(); code != 2 {
		t.Errorf("no flags: exit %d, want 2 (usage)", code)
	}
	data := filepath.Join(dir, "data")
	if code, _ := run("keygen", "-data-dir", data); code != 0 {
		t.Fatalf("keygen: exit %d", code)
	}
	os.Chmod(filepath.Join(data, keysDirName, identityFileName), 0o644)
	if code, out := run("keygen", "-data-dir", data); code != 1 || !strings.Contains(out, "chmod 600") {
		t.Errorf("keygen with a world-readable key: exit %d, %q", code, out)
	}
}
