package relay

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/dnsproxy"
)

// exitResolver adapts dnsproxy's exit resolver to circuit.Resolver: a name
// that does not exist becomes circuit.ErrNameNotFound, which the exit answers
// with StatusResolveFailed.
type exitResolver struct {
	r *dnsproxy.Resolver
}

var _ circuit.Resolver = exitResolver{}

func (e exitResolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	addrs, err := e.r.LookupHost(ctx, host)
	if errors.Is(err, dnsproxy.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", circuit.ErrNameNotFound, err)
	}
	return addrs, err
}

func (e exitResolver) Exchange(ctx context.Context, query []byte) ([]byte, error) {
	return e.r.Exchange(ctx, query)
}
