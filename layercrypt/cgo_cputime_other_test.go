//go:build !linux

package layercrypt

import "time"

// cgoThreadCPU is unavailable here; benchmarks then report wall time only.
func cgoThreadCPU() (time.Duration, bool) { return 0, false }
