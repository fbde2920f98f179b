package testnet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// State is what a running launcher records in Dir/state.json, so that
// "testnet down" and "testnet status" can find what it started.
type State struct {
	LauncherPID int            `json:"launcher_pid"`
	Ready       bool           `json:"ready"`
	SOCKS       string         `json:"socks"`
	HTTPConnect string         `json:"http_connect"`
	DNS         string         `json:"dns"`
	Control     string         `json:"control"`
	WebURL      string         `json:"web_url"`
	Authorities []StateAuth    `json:"authorities"`
	Processes   []StateProcess `json:"processes"`
}

// StateAuth names an authority.
type StateAuth struct {
	Nickname string `json:"nickname"`
	ID       string `json:"id"`
	Addr     string `json:"addr"`
}

// StateProcess is one started process.
type StateProcess struct {
	Name   string `json:"name"`
	Role   Role   `json:"role"`
	PID    int    `json:"pid"`
	Binary string `json:"binary"`
	Log    string `json:"log"`
}

// StatePath is where a network in dir keeps its state.
func StatePath(dir string) string { return filepath.Join(dir, "state.json") }

// State describes the running network.
func (n *Network) State(ready bool) State {
	st := State{LauncherPID: os.Getpid(), Ready: ready, SOCKS: n.SOCKS, HTTPConnect: n.HTTPConnect,
		DNS: n.DNS, Control: n.Control, WebURL: n.WebURL}
	for _, a := range n.Authorities {
		st.Authorities = append(st.Authorities, StateAuth{Nickname: a.Nickname, ID: a.ID.String(), Addr: a.Addr.String()})
	}
	for _, p := range n.Processes() {
		st.Processes = append(st.Processes, StateProcess{Name: p.Name, Role: p.Role, PID: p.PID,
			Binary: p.cmd.Path, Log: p.LogFile})
	}
	return st
}

// WriteState saves st atomically.
func WriteState(dir string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := StatePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, StatePath(dir))
}

// ReadState loads the state a launcher wrote.
func ReadState(dir string) (State, error) {
	var st State
	b, err := os.ReadFile(StatePath(dir))
	if err != nil {
		if os.IsNotExist(err) {
			return st, fmt.Errorf("no test network recorded in %s (start one with \"testnet up\")", dir)
		}
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", StatePath(dir), err)
	}
	return st, nil
}

// Alive reports whether pid is a live process running binary (when binary
// is set), so that a recycled PID is never mistaken for ours.
func Alive(pid int, binary string) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	if binary == "" {
		return true
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return false
	}
	return strings.TrimSuffix(exe, " (deleted)") == binary
}
