package testnet_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chive-net/chive/testnet"
	"github.com/chive-net/chive/testnet/services"
)

// TestComposeFileCurrent keeps the committed testnet/docker-compose.yml
// equal to what the generator writes for the default network.
func TestComposeFileCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the programs")
	}
	root, err := testnet.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	if err := testnet.GenerateCompose(context.Background(), testnet.ComposeOptions{
		Dir: filepath.Join(tmp, "generated"), Bins: programs(t)}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(tmp, "docker-compose.yml"))
	want, err := os.ReadFile(filepath.Join(root, "testnet", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("testnet/docker-compose.yml is stale: run \"go run ./testnet/cmd/testnet compose generate\" and commit it")
	}
}

// composeCmd returns the compose command: docker compose v2 or docker-compose v1.
func composeCmd(t *testing.T) []string {
	t.Helper()
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	need(t, "docker-compose")
	return []string{"docker-compose"}
}

// TestCompose builds the FROM scratch image, starts the network in
// containers, fetches a page through the client's published SOCKS5 port and
// HTTP CONNECT port with curl, resolves a compose service name through the
// DNS port, and takes it all down.
func TestCompose(t *testing.T) {
	need(t, "docker", "curl", "dig")
	if err := exec.Command("docker", "info").Run(); err != nil {
		msg := "no Docker engine answers (docker info failed)"
		if os.Getenv("CHIVE_REQUIRE_E2E_TOOLS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cc := composeCmd(t)
	root, err := testnet.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bins, err := testnet.Build(ctx, root, filepath.Join(tmp, "docker", "bin"), "directory", "relaynode", "onionproxy", "testservices")
	if err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile(filepath.Join(root, "testnet", "docker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "docker", "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	// Its own subnet, project and ports, so that a compose network a
	// developer has running is left alone.
	socks, httpPort, dnsPort := 29050, 29080, 29053
	err = testnet.GenerateCompose(ctx, testnet.ComposeOptions{
		Dir: filepath.Join(tmp, "generated"), Bins: bins, Subnet: netip.MustParsePrefix("10.214.0.0/24"),
		SOCKSPort: socks, HTTPPort: httpPort, DNSPort: dnsPort,
	})
	if err != nil {
		t.Fatal(err)
	}
	project := fmt.Sprintf("chivee2e%d", os.Getpid())
	file := filepath.Join(tmp, "docker-compose.yml")
	compose := func(timeout time.Duration, args ...string) error {
		cctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		full := append(append(append([]string(nil), cc[1:]...), "-p", project, "-f", file), args...)
		out, err := exec.CommandContext(cctx, cc[0], full...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w\n%s", cc[0], strings.Join(full, " "), err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, _ := exec.CommandContext(cctx, cc[0], append(append([]string(nil), cc[1:]...), "-p", project, "-f", file, "logs", "--tail", "40")...).CombinedOutput()
			cancel()
			t.Logf("compose logs:\n%s", out)
		}
		if err := compose(3*time.Minute, "down", "--volumes", "--remove-orphans", "--timeout", "20"); err != nil {
			t.Errorf("compose down: %v", err)
		}
	})
	if err := compose(5*time.Minute, "build"); err != nil {
		t.Fatal(err)
	}
	if err := compose(3*time.Minute, "up", "-d"); err != nil {
		t.Fatal(err)
	}
	socksAddr := fmt.Sprintf("127.0.0.1:%d", socks)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := runErr(15*time.Second, "curl", "-sS", "--fail", "--max-time", "10", "--socks5-hostname", socksAddr, "http://web/")
		if err == nil && string(out) == services.Page {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no page through the compose network's SOCKS5 port: %v", err)
		}
		time.Sleep(time.Second)
	}
	page := run(t, time.Minute, "curl", "-sS", "--fail", "-p", "--proxy", fmt.Sprintf("http://127.0.0.1:%d", httpPort), "http://web/")
	if string(page) != services.Page {
		t.Fatalf("page via HTTP CONNECT differs:\n%s", page)
	}
	// "web" is a compose service name: only Docker's resolver, at the
	// exits, knows it.
	ans := strings.TrimSpace(string(run(t, 30*time.Second, "dig", "@127.0.0.1", "-p", fmt.Sprint(dnsPort), "+short", "+tries=3", "web", "A")))
	if ans != "10.214.0.200" {
		t.Fatalf("dig web A through the compose client = %q, want 10.214.0.200", ans)
	}
}
