//go:build linux

package layercrypt

import (
	"time"

	"golang.org/x/sys/unix"
)

// cgoThreadCPU returns the CPU time the calling OS thread has used
// (CLOCK_THREAD_CPUTIME_ID, exact to the nanosecond even for the running
// thread, unlike getrusage).
func cgoThreadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
