package testnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Role names what a process is in the network.
type Role string

// Roles.
const (
	RoleAuthority Role = "authority"
	RoleRelay     Role = "relay"
	RoleExit      Role = "exit"
	RoleClient    Role = "client"
)

// Process is one program the network started.
type Process struct {
	Name    string
	Role    Role
	Config  string // its config file
	LogFile string
	PID     int

	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // its exit status, once done

	mu      sync.Mutex
	stopped bool // stopped on purpose (Kill/Stop): not a crash
}

// Running reports whether the process is still alive.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// startProcess runs bin with args, its output going to logFile.
func startProcess(name string, role Role, bin, config, logFile string, args ...string) (*Process, error) {
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	// Its own process group: a Ctrl-C at the launcher's terminal reaches the
	// launcher alone, which then stops every child in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Role: role, Config: config, LogFile: logFile, PID: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it.
func (p *Process) Stop(grace time.Duration) error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	if !p.Running() {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM and was killed", p.Name, grace)
	}
}

// Kill stops the process at once (SIGKILL), as a crash would.
func (p *Process) Kill() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	if p.Running() {
		p.cmd.Process.Kill()
	}
	<-p.done
}

// crashed reports an unexpected exit.
func (p *Process) crashed() error {
	if p.Running() {
		return nil
	}
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	if stopped {
		return nil
	}
	return fmt.Errorf("%s exited unexpectedly (%v); see %s", p.Name, p.err, p.LogFile)
}

// Wait blocks until the process exits or ctx ends.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tail returns the last n bytes of a log file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	f.ReadAt(b, off)
	return string(b)
}

// Programs are the binaries a network runs, by name, with their packages.
var Programs = map[string]string{
	"directory":    "./cmd/directory",
	"relaynode":    "./cmd/relaynode",
	"onionproxy":   "./cmd/onionproxy",
	"testservices": "./testnet/cmd/testservices",
}

// Build compiles the named programs (default: the three chive programs),
// statically (CGO_ENABLED=0, so they also run in a FROM scratch image), into
// dir and returns their paths by name. root is the module root.
func Build(ctx context.Context, root, dir string, names ...string) (map[string]string, error) {
	if len(names) == 0 {
		names = []string{"directory", "relaynode", "onionproxy"}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"build", "-trimpath", "-o", dir + string(filepath.Separator)}
	bins := map[string]string{}
	for _, name := range names {
		pkg, ok := Programs[name]
		if !ok {
			return nil, fmt.Errorf("testnet: no program %q", name)
		}
		args = append(args, pkg)
		bins[name] = filepath.Join(dir, name)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w\n%s", err, out)
	}
	for _, b := range bins {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("go build did not produce %s", b)
		}
	}
	return bins, nil
}

// ModuleRoot finds the chive module root from the working directory upward.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && len(b) > 0 && containsModule(b) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testnet: run this inside the chive source tree (no go.mod for github.com/chive-net/chive found above the working directory)")
		}
		dir = parent
	}
}

func containsModule(gomod []byte) bool {
	const want = "module github.com/chive-net/chive\n"
	return len(gomod) >= len(want) && string(gomod[:len(want)]) == want
}
