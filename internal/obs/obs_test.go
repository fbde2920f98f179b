package obs

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestNewLogger(t *testing.T) {
	for _, c := range []LogConfig{{}, {Level: "debug", Format: "json"}, {Level: "warn", Format: "console"}} {
		if _, err := NewLogger(c); err != nil {
			t.Errorf("NewLogger(%+v): %v", c, err)
		}
	}
	for _, c := range []LogConfig{{Level: "loud"}, {Format: "xml"}} {
		if _, err := NewLogger(c); err == nil {
			t.Errorf("NewLogger(%+v) accepted a bad value", c)
		}
	}
}

func TestPrivateFields(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	log.Info("x", Addr("192.0.2.1:80", false), Err(errors.New("dial 192.0.2.1:80: refused"), false))
	log.Info("y", Addr("192.0.2.1:80", true))
	all := logs.All()
	if s := all[0].ContextMap(); s["addr"] != Scrubbed || s["error"] != Scrubbed {
		t.Fatalf("safe fields leaked: %v", s)
	}
	if s := all[1].ContextMap(); s["addr"] != "192.0.2.1:80" {
		t.Fatalf("unsafe field elided: %v", s)
	}
}

func TestServe(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "chive_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	pages := PProfHandlers()
	pages["/status"] = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	s, err := Serve("127.0.0.1:0", reg, pages, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func(path string) string {
		resp, err := http.Get("http://" + s.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if m := get("/metrics"); !strings.Contains(m, "chive_test_total 3") || !strings.Contains(m, "go_goroutines") {
		t.Fatalf("metrics page lacks the counter or runtime metrics:\n%.500s", m)
	}
	if got := get("/status"); got != "ok" {
		t.Fatalf("/status = %q", got)
	}
	if got := get("/debug/pprof/"); !strings.Contains(got, "goroutine") {
		t.Fatalf("/debug/pprof/ lacks the profile list:\n%.300s", got)
	}
}
