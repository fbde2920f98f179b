// Package obs is what every chive program shares for being observed: a zap
// logger built from config, the address-eliding helpers that keep logs
// private by default, and the local HTTP server for Prometheus metrics and
// status pages.
package obs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// LogConfig is the logging section of every program's config.
type LogConfig struct {
	// Level is debug, info, warn or error (default info).
	Level string `yaml:"level"`
	// Format is console (default) or json.
	Format string `yaml:"format"`
	// UnsafeLogging puts client addresses, destinations, DNS names and keys
	// into logs. Never on a production relay or client: logs then identify
	// users.
	UnsafeLogging bool `yaml:"unsafe_logging"`
}

// NewLogger builds the program's root logger.
func NewLogger(c LogConfig) (*zap.Logger, error) {
	level := zapcore.InfoLevel
	if c.Level != "" {
		if err := level.Set(c.Level); err != nil {
			return nil, fmt.Errorf("log.level %q: use debug, info, warn or error", c.Level)
		}
	}
	var cfg zap.Config
	switch c.Format {
	case "", "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false
		cfg.DisableStacktrace = true
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "json":
		cfg = zap.NewProductionConfig()
		cfg.Sampling = nil
	default:
		return nil, fmt.Errorf("log.format %q: use console or json", c.Format)
	}
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.OutputPaths = []string{"stderr"}
	cfg.ErrorOutputPaths = []string{"stderr"}
	return cfg.Build()
}

// Scrubbed stands in for anything private in a log line.
const Scrubbed = "[scrubbed]"

// Addr returns addr for a log line only when unsafe logging is on.
func Addr(addr string, unsafe bool) zap.Field {
	if unsafe {
		return zap.String("addr", addr)
	}
	return zap.String("addr", Scrubbed)
}

// Err returns err for a log line only when unsafe logging is on: errors from
// dialing, resolving and parsing often embed addresses and names.
func Err(err error, unsafe bool) zap.Field {
	if unsafe || err == nil {
		return zap.Error(err)
	}
	return zap.String("error", Scrubbed)
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Server is a small local HTTP server for /metrics and program pages.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	err  error
	once sync.Once
}

// Serve listens on addr and serves /metrics from reg plus the extra
// handlers (path -> handler). It returns once listening.
func Serve(addr string, reg *prometheus.Registry, extra map[string]http.Handler, log *zap.Logger) (*Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	for path, h := range extra {
		mux.Handle(path, h)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
			log.Error("metrics server stopped", zap.Error(err))
		}
	}()
	return s, nil
}

// Addr returns the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// PProfHandlers returns Go's profiling endpoints under /debug/pprof/, for
// Serve's extra handlers. They reveal nothing of users but cost CPU while a
// profile runs: programs offer them only when their config asks.
func PProfHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		"/debug/pprof/":        http.HandlerFunc(pprof.Index),
		"/debug/pprof/cmdline": http.HandlerFunc(pprof.Cmdline),
		"/debug/pprof/profile": http.HandlerFunc(pprof.Profile),
		"/debug/pprof/symbol":  http.HandlerFunc(pprof.Symbol),
		"/debug/pprof/trace":   http.HandlerFunc(pprof.Trace),
	}
}

// Close stops the server and waits for it.
func (s *Server) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.srv.Shutdown(ctx)
	})
	<-s.done
	return s.err
}
