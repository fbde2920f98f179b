// Package procstat reads a process's CPU time and memory high-water mark
// from Linux's /proc, for the whole-network benchmark: CPU seconds are
// sampled before and after a workload and subtracted, the peak resident set
// (VmHWM) is read at the end.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
// Linux fixes it at 100 on every architecture Go supports (the kernel
// scales its internal HZ to it for user space), so it is not read from
// sysconf, which would need cgo.
const ClockTicks = 100

// ErrNoProc means the /proc file system is not there (not Linux, or not
// mounted): the benchmark reports no CPU or memory figures then.
var ErrNoProc = errors.New("procstat: /proc is not available")

// Root is where proc is mounted; tests may point it elsewhere.
var Root = "/proc"

// Sample is one reading of a process.
type Sample struct {
	PID  int
	Comm string // the executable's name as the kernel keeps it (15 bytes)
	// CPU is user plus system time consumed so far.
	CPU time.Duration
	// RSS and HWM are the current and peak resident set sizes in bytes
	// (VmRSS and VmHWM).
	RSS, HWM int64
}

// Read samples process pid.
func Read(pid int) (Sample, error) {
	dir := filepath.Join(Root, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, rerr := os.Stat(filepath.Join(Root, "self")); rerr != nil {
				return Sample{}, ErrNoProc
			}
		}
		return Sample{}, fmt.Errorf("procstat: read stat of %d: %w", pid, err)
	}
	s, err := ParseStat(stat)
	if err != nil {
		return Sample{}, fmt.Errorf("procstat: stat of %d: %w", pid, err)
	}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return Sample{}, fmt.Errorf("procstat: read status of %d: %w", pid, err)
	}
	s.RSS, s.HWM, err = ParseStatus(status)
	if err != nil {
		return Sample{}, fmt.Errorf("procstat: status of %d: %w", pid, err)
	}
	return s, nil
}

// ParseStat parses the contents of /proc/PID/stat: the pid, the command
// name and utime+stime. The command name is in parentheses and may itself
// contain spaces and parentheses, so the fields are counted from the last
// ')'.
func ParseStat(b []byte) (Sample, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Sample{}, errors.New("no (comm) field")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return Sample{}, fmt.Errorf("pid field: %w", err)
	}
	// Fields after ')': 3 state, 4 ppid, ... 14 utime, 15 stime (1-based,
	// as proc(5) numbers them).
	rest := strings.Fields(string(b[end+1:]))
	const utime, stime = 14 - 3, 15 - 3
	if len(rest) <= stime {
		return Sample{}, fmt.Errorf("%d fields after comm, want at least %d", len(rest), stime+1)
	}
	u, err := strconv.ParseUint(rest[utime], 10, 64)
	if err != nil {
		return Sample{}, fmt.Errorf("utime field: %w", err)
	}
	s, err := strconv.ParseUint(rest[stime], 10, 64)
	if err != nil {
		return Sample{}, fmt.Errorf("stime field: %w", err)
	}
	// A time.Duration holds 292 years; more ticks than that is no real
	// process (and would wrap negative).
	const maxTicks = uint64(math.MaxInt64 / int64(time.Second/ClockTicks))
	if u > maxTicks || s > maxTicks-u {
		return Sample{}, fmt.Errorf("utime %d + stime %d ticks overflow", u, s)
	}
	ticks := u + s
	return Sample{
		PID:  pid,
		Comm: string(b[open+1 : end]),
		CPU:  time.Duration(ticks) * (time.Second / ClockTicks),
	}, nil
}

// ParseStatus returns VmRSS and VmHWM, in bytes, from the contents of
// /proc/PID/status. A kernel thread or zombie has neither; that is an
// error.
func ParseStatus(b []byte) (rss, hwm int64, err error) {
	var haveRSS, haveHWM bool
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("%s: want \"N kB\", got %q", key, strings.TrimSpace(val))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", key, err)
		}
		if key == "VmRSS" {
			rss, haveRSS = n<<10, true
		} else {
			hwm, haveHWM = n<<10, true
		}
	}
	if !haveRSS || !haveHWM {
		return 0, 0, errors.New("no VmRSS/VmHWM lines (kernel thread or zombie?)")
	}
	return rss, hwm, nil
}

// Proc names a process to watch.
type Proc struct {
	Name string // e.g. "relay2"
	Role string // e.g. "relay", "exit", "authority", "client"
	PID  int
	// Relay is set for a process that carries circuits: the benchmark's
	// relay CPU and memory figures are over these. (C tor's authorities
	// are relays too; chive's are not.)
	Relay bool
}

// Snapshot is one reading of several processes, in the order asked.
type Snapshot struct {
	At      time.Time
	Samples []Sample
	Errs    []error // Errs[i] is set when process i could not be read
}

// Take reads every process in procs.
func Take(procs []Proc) Snapshot {
	s := Snapshot{At: time.Now(), Samples: make([]Sample, len(procs)), Errs: make([]error, len(procs))}
	for i, p := range procs {
		s.Samples[i], s.Errs[i] = Read(p.PID)
	}
	return s
}

// CPUDelta returns the CPU time each process used between two snapshots of
// the same process list; a process that could not be read in either
// snapshot, or whose PID changed, gets -1.
func CPUDelta(before, after Snapshot) []time.Duration {
	d := make([]time.Duration, len(after.Samples))
	for i := range d {
		if i >= len(before.Samples) || before.Errs[i] != nil || after.Errs[i] != nil ||
			before.Samples[i].PID != after.Samples[i].PID {
			d[i] = -1
			continue
		}
		d[i] = after.Samples[i].CPU - before.Samples[i].CPU
	}
	return d
}
