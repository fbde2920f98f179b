package relay

import (
	"fmt"
	"regexp"

	"go.uber.org/zap/zapcore"

	"github.com/chive-net/chive/internal/obs"
)

// scrubCore is defence in depth for the loggers handed to the link, circuit
// and resolver layers when unsafe logging is off: those layers are meant to
// keep addresses out of their logs, but an error from the network stack
// (a TLS handshake's "read tcp A->B: connection reset", say) can carry the
// peer's address. scrubCore replaces every IP address (with its port, if
// any) in messages, strings, stringers and errors with obs.Scrubbed, except
// the addresses in keep: the relay's own and its configured resolvers,
// which are not private.
type scrubCore struct {
	zapcore.Core
	keep map[string]bool
}

func newScrubCore(c zapcore.Core, keep ...string) zapcore.Core {
	k := make(map[string]bool, len(keep))
	for _, s := range keep {
		k[s] = true
	}
	return &scrubCore{Core: c, keep: k}
}

// addrRE matches IPv4 addresses, bracketed IPv6 addresses and bare IPv6
// addresses with at least two colons, each with an optional :port.
var addrRE = regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b|\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*(?:%\w+)?\](?::\d{1,5})?|\b[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?`)

func (s *scrubCore) scrub(text string) string {
	return addrRE.ReplaceAllStringFunc(text, func(m string) string {
		if s.keep[m] {
			return m
		}
		return obs.Scrubbed
	})
}

func (s *scrubCore) scrubFields(fs []zapcore.Field) []zapcore.Field {
	out := make([]zapcore.Field, len(fs))
	for i, f := range fs {
		out[i] = f
		switch f.Type {
		case zapcore.StringType:
			out[i].String = s.scrub(f.String)
		case zapcore.ErrorType:
			if err, ok := f.Interface.(error); ok && err != nil {
				out[i] = zapcore.Field{Key: f.Key, Type: zapcore.StringType, String: s.scrub(err.Error())}
			}
		case zapcore.StringerType:
			if st, ok := f.Interface.(fmt.Stringer); ok && st != nil {
				out[i] = zapcore.Field{Key: f.Key, Type: zapcore.StringType, String: s.scrub(st.String())}
			}
		case zapcore.ReflectType, zapcore.ArrayMarshalerType, zapcore.ObjectMarshalerType:
			out[i] = zapcore.Field{Key: f.Key, Type: zapcore.StringType, String: s.scrub(fmt.Sprint(f.Interface))}
		}
	}
	return out
}

func (s *scrubCore) With(fs []zapcore.Field) zapcore.Core {
	return &scrubCore{Core: s.Core.With(s.scrubFields(fs)), keep: s.keep}
}

func (s *scrubCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if s.Enabled(e.Level) {
		return ce.AddCore(e, s)
	}
	return ce
}

func (s *scrubCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	e.Message = s.scrub(e.Message)
	return s.Core.Write(e, s.scrubFields(fs))
}
