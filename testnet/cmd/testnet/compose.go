package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/net/proxy"

	"github.com/chive-net/chive/testnet"
	"github.com/chive-net/chive/testnet/services"
)

// compose runs "testnet compose generate|up|down".
func compose(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: testnet compose generate|up|down [-relays N] [-exits N]")
	}
	root, err := testnet.ModuleRoot()
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("testnet compose "+args[0], flag.ContinueOnError)
	relays := fs.Int("relays", 3, "non-exit relays")
	exits := fs.Int("exits", 2, "exit relays")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir := filepath.Join(root, "testnet")
	composeFile := filepath.Join(dir, "docker-compose.yml")
	switch args[0] {
	case "generate":
		return generate(ctx, root, *relays, *exits)
	case "up":
		if err := generate(ctx, root, *relays, *exits); err != nil {
			return err
		}
		fmt.Println("compose: building the image (FROM scratch) ...")
		if err := runCompose(ctx, composeFile, "build"); err != nil {
			return err
		}
		if err := runCompose(ctx, composeFile, "up", "-d"); err != nil {
			return err
		}
		fmt.Println("compose: waiting for a page through the client's SOCKS5 port 127.0.0.1:19050 ...")
		if err := waitComposePage(ctx, "127.0.0.1:19050", "http://web/", 120*time.Second); err != nil {
			return fmt.Errorf("%w (see: docker-compose -p chive -f %s logs)", err, composeFile)
		}
		fmt.Printf(`
chive compose network is up. From this host:

  curl --socks5-hostname 127.0.0.1:19050 http://web/
  curl -p --proxy http://127.0.0.1:19080 http://web/
  dig @127.0.0.1 -p 19053 web A

Stop it with: go run ./testnet/cmd/testnet compose down
`)
		return nil
	case "down":
		return runCompose(ctx, composeFile, "down", "--volumes", "--remove-orphans", "--timeout", "20")
	default:
		return fmt.Errorf("unknown compose command %q: use generate, up or down", args[0])
	}
}

func generate(ctx context.Context, root string, relays, exits int) error {
	fmt.Println("compose: building static binaries into testnet/docker/bin ...")
	bins, err := testnet.Build(ctx, root, filepath.Join(root, "testnet", "docker", "bin"),
		"directory", "relaynode", "onionproxy", "testservices")
	if err != nil {
		return err
	}
	gen := filepath.Join(root, "testnet", "generated")
	if err := os.RemoveAll(gen); err != nil {
		return err
	}
	fmt.Println("compose: generating keys and configs into testnet/generated ...")
	return testnet.GenerateCompose(ctx, testnet.ComposeOptions{Dir: gen, Relays: relays, Exits: exits, Bins: bins})
}

// composeCommand returns the compose command this machine has: "docker
// compose" (v2) or "docker-compose" (v1).
func composeCommand() ([]string, error) {
	if err := exec.Command("docker", "compose", "version").Run(); err == nil {
		return []string{"docker", "compose"}, nil
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}, nil
	}
	return nil, errors.New("neither \"docker compose\" nor \"docker-compose\" is installed")
}

func runCompose(ctx context.Context, file string, args ...string) error {
	cc, err := composeCommand()
	if err != nil {
		return err
	}
	full := append(append(cc[1:], "-p", "chive", "-f", file), args...)
	cmd := exec.CommandContext(ctx, cc[0], full...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %v: %w", cc[0], full, err)
	}
	return nil
}

func waitComposePage(ctx context.Context, socks, url string, within time.Duration) error {
	d, err := proxy.SOCKS5("tcp", socks, nil, proxy.Direct)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.(proxy.ContextDialer).DialContext, DisableKeepAlives: true},
		Timeout: 10 * time.Second}
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(b, []byte(services.PageText)) {
				return nil
			}
			last = fmt.Errorf("HTTP %s", resp.Status)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("no page through the compose network within %v: %v", within, last)
}
