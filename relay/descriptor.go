package relay

import (
	"cmp"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/chive-net/chive/cell"
	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/netdoc"
)

// Version is the software version; release builds set it with
// -ldflags "-X github.com/chive-net/chive/relay.Version=...".
var Version = "0.1.0-dev"

// Platform is the descriptor's platform line: "chive <version> <os>/<arch>".
func Platform() string {
	return fmt.Sprintf("chive %s %s/%s", Version, runtime.GOOS, runtime.GOARCH)
}

// LinkProtocolVersion is the link protocol (TLS 1.3 + yamux, ALPN chive/1).
const LinkProtocolVersion = 1

// Protocols lists the sub-protocols this relay speaks: the link protocol and
// the circuit-level protocols the circuit layer negotiates in ntor-v3.
func Protocols() netdoc.Protocols {
	ps := netdoc.Protocols{{Name: "Link", Versions: netdoc.Versions(LinkProtocolVersion)}}
	for _, p := range cell.DefaultProtocols() {
		name := p.ID.String()
		if i := slices.IndexFunc(ps, func(q netdoc.Protocol) bool { return q.Name == name }); i >= 0 {
			ps[i].Versions |= netdoc.Versions(uint(p.Version))
			continue
		}
		ps = append(ps, netdoc.Protocol{Name: name, Versions: netdoc.Versions(uint(p.Version))})
	}
	slices.SortFunc(ps, func(a, b netdoc.Protocol) int { return cmp.Compare(a.Name, b.Name) })
	return ps
}

// buildDescriptor makes and signs the relay's descriptor as of now.
func (r *Relay) buildDescriptor(now time.Time) ([]byte, error) {
	cur, prev := r.keys.publicKeys()
	policy := exitpolicy.RejectAll
	if r.exitPolicy != nil {
		policy = *r.exitPolicy
	}
	uptime := now.Sub(r.started)
	if uptime < 0 {
		uptime = 0
	}
	d := &netdoc.Descriptor{
		Nickname:     r.cfg.Nickname,
		ID:           r.id,
		Published:    now.UTC().Truncate(time.Second),
		Platform:     Platform(),
		Protocols:    Protocols(),
		Addr:         r.addr,
		OnionKey:     cur,
		PrevOnionKey: prev,
		Bandwidth:    uint64(r.cfg.Bandwidth.Advertised),
		Uptime:       uptime.Truncate(time.Second),
		DelayClasses: r.cfg.sortedClasses(),
		Family:       netdoc.NormalizeFamily(r.id, r.cfg.family),
		Policy:       policy,
	}
	b, err := d.Sign(r.keys.id)
	if err != nil {
		return nil, fmt.Errorf("relay: build descriptor: %w", err)
	}
	return b, nil
}
