package procstat

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A real line from /proc/PID/stat, with a command name holding a space
	// and a ')' to check that fields are counted from the last ')'.
	line := "13744 (we) ird) R 13741 13741 9865 0 -1 4194304 98 0 0 0 250 37 0 0 20 0 1 0 381801 3133440 382 18446744073709551615 0 0 0\n"
	s, err := ParseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != 13744 || s.Comm != "we) ird" {
		t.Errorf("got pid %d comm %q, want 13744 %q", s.PID, s.Comm, "we) ird")
	}
	if want := 2870 * time.Millisecond; s.CPU != want {
		t.Errorf("got CPU %v, want %v (250+37 ticks)", s.CPU, want)
	}
	for _, bad := range []string{
		"",
		"12 no-parens R 1 2",
		"12 (x) R 1 2 3",
		"x (x) R 13741 13741 9865 0 -1 4194304 98 0 0 0 250 37 0",
		"12 (x) R 13741 13741 9865 0 -1 4194304 98 0 0 0 2x5 37 0",
		"12 (x) R 13741 13741 9865 0 -1 4194304 98 0 0 0 25 -37 0",
		"12 (x) R 1 1 1 0 -1 4 98 0 0 0 1000000000000000000 37 0", // overflows a Duration
	} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q): no error", bad)
		}
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\ttor\nVmPeak:\t  3892 kB\nVmHWM:\t    2020 kB\nVmRSS:\t    1900 kB\nThreads:\t1\n"
	rss, hwm, err := ParseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if rss != 1900*1024 || hwm != 2020*1024 {
		t.Errorf("got rss %d hwm %d, want %d %d", rss, hwm, 1900*1024, 2020*1024)
	}
	for _, bad := range []string{
		"Name:\tkthreadd\nThreads:\t1\n",
		"VmHWM:\t2020 kB\n",
		"VmHWM:\t2020 MB\nVmRSS:\t1 kB\n",
		"VmHWM:\tx kB\nVmRSS:\t1 kB\n",
	} {
		if _, _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q): no error", bad)
		}
	}
}

// burn spins for about d of CPU time in this goroutine.
func burn(d time.Duration) int {
	x := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := range 1000 {
			x += i * x
		}
	}
	return x
}

func TestReadSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	pid := os.Getpid()
	procs := []Proc{{Name: "self", Role: "test", PID: pid}, {Name: "gone", PID: 1 << 30}}
	before := Take(procs)
	if before.Errs[0] != nil {
		t.Fatal(before.Errs[0])
	}
	if before.Errs[1] == nil {
		t.Error("reading a PID that does not exist: no error")
	}
	s := before.Samples[0]
	if s.PID != pid {
		t.Errorf("got pid %d, want %d", s.PID, pid)
	}
	if s.RSS <= 0 || s.HWM < s.RSS {
		t.Errorf("got RSS %d HWM %d, want 0 < RSS <= HWM", s.RSS, s.HWM)
	}
	// Touch 64 MiB so that the high-water mark must rise past it.
	big := make([]byte, 64<<20)
	for i := 0; i < len(big); i += 4096 {
		big[i] = 1
	}
	burn(300 * time.Millisecond)
	after := Take(procs)
	d := CPUDelta(before, after)
	// The CPU clock ticks at 10 ms; 300 ms of spinning on a busy machine
	// still counts for well over 100 ms of CPU.
	if d[0] < 100*time.Millisecond || d[0] > 30*time.Second {
		t.Errorf("CPU delta after 300 ms of spinning: %v", d[0])
	}
	if d[1] != -1 {
		t.Errorf("delta of an unreadable process: got %v, want -1", d[1])
	}
	if after.Samples[0].HWM < 64<<20 {
		t.Errorf("HWM after touching 64 MiB: %d", after.Samples[0].HWM)
	}
	big[0] = 2 // keep it live until here
}

func TestReadNoProc(t *testing.T) {
	old := Root
	Root = t.TempDir()
	defer func() { Root = old }()
	if _, err := Read(1); err != ErrNoProc {
		t.Errorf("got %v, want ErrNoProc", err)
	}
}

// FuzzParseStat: any input either fails or gives a sample whose CPU time
// is the sum of the two tick fields it found, never negative.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("13744 (cat) R 13741 13741 9865 0 -1 4194304 98 0 0 0 250 37 0 0 20 0 1 0 381801 3133440 382 18446744073709551615 0 0 0\n"))
	f.Add([]byte("1 (a) b) S 0 0 0 0 0 0 0 0 0 0 1 2 3 4\n"))
	f.Add([]byte("2 ((x)) S 0 0 0 0 0 0 0 0 0 0 18446744073709551615 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStat(b)
		if err != nil {
			return
		}
		if s.CPU < 0 {
			t.Errorf("negative CPU %v from %q", s.CPU, b)
		}
	})
}

// FuzzParseStatus: any input either fails or gives sizes in whole KiB that
// are not negative.
func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("Name:\ttor\nVmHWM:\t    2020 kB\nVmRSS:\t    1900 kB\n"))
	f.Add([]byte("VmRSS: 1 kB\nVmHWM: 2 kB\nVmRSS: 3 kB"))
	f.Add([]byte("VmHWM:\t-5 kB\nVmRSS:\t1 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rss, hwm, err := ParseStatus(b)
		if err != nil {
			return
		}
		if rss%1024 != 0 || hwm%1024 != 0 {
			t.Errorf("sizes %d %d are not whole KiB", rss, hwm)
		}
	})
}
