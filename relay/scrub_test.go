package relay

import (
	"errors"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

type addrStringer struct{}

func (addrStringer) String() string { return "peer 198.51.100.7:443" }

func TestScrubCore(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(newScrubCore(core, "127.0.0.1:9001"))
	log.With(zap.String("ctx", "from 10.1.2.3")).Info("dial [2001:db8::1]:443 and 192.0.2.1 failed",
		zap.Error(errors.New("read tcp 127.0.0.1:9001->203.0.113.9:51234: reset")),
		zap.String("v6", "fe80::1%eth0 and 2001:db8::2"),
		zap.Stringer("s", addrStringer{}),
		zap.Strings("list", []string{"192.0.2.55"}),
		zap.Int("n", 7), zap.Duration("d", 1500000000))
	e := logs.All()[0]
	if want := "dial [scrubbed] and [scrubbed] failed"; e.Message != want {
		t.Errorf("message %q, want %q", e.Message, want)
	}
	got := e.ContextMap()
	want := map[string]any{
		"ctx":   "from [scrubbed]",
		"error": "read tcp 127.0.0.1:9001->[scrubbed]: reset",
		"v6":    "[scrubbed] and [scrubbed]",
		"s":     "peer [scrubbed]",
		"list":  "[[scrubbed]]",
		"n":     int64(7),
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("field %s = %#v, want %#v", k, got[k], w)
		}
	}
}
