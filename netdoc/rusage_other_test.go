//go:build !unix

package netdoc

import "time"

func cpuTime() time.Duration { return 0 }
