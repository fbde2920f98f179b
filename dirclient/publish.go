package dirclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

// RefusedError is an authority's answer to a descriptor it would not take.
// It matches ErrRefused.
type RefusedError struct {
	Authority layercrypt.RelayID
	Status    int    // HTTP status
	Reason    string // the authority's one-line reason
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("authority %s refused the descriptor (HTTP %d): %s", e.Authority.Short(), e.Status, e.Reason)
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Publish uploads a signed descriptor to every authority at once and
// returns each authority's result: nil when it answered "accepted", a
// *RefusedError with its reason when it refused, or the transport error.
// hc nil means a private client without keep-alives whose requests time out
// after DefaultRequestTimeout; ctx bounds the whole upload. Relays publish
// at start, whenever the descriptor changes, and periodically (well within
// netdoc.DefaultDescriptorMaxAge).
func Publish(ctx context.Context, hc *http.Client, auths []Authority, descriptor []byte) map[layercrypt.RelayID]error {
	if hc == nil {
		hc = defaultHTTPClient()
		hc.Timeout = DefaultRequestTimeout
	}
	out := make(map[layercrypt.RelayID]error, len(auths))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, a := range auths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := publishTo(ctx, hc, a, descriptor)
			mu.Lock()
			out[a.ID] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func publishTo(ctx context.Context, hc *http.Client, a Authority, descriptor []byte) error {
	if len(descriptor) > netdoc.MaxDescriptorSize {
		return fmt.Errorf("publish to %s: descriptor is %d bytes, more than the %d an authority takes", a, len(descriptor), netdoc.MaxDescriptorSize)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.baseURL()+DescriptorPath, bytes.NewReader(descriptor))
	if err != nil {
		return fmt.Errorf("publish to %s: %w", a, err)
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("publish to %s: %w", a, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return fmt.Errorf("publish to %s: reading the answer: %w", a, err)
	}
	if resp.StatusCode != http.StatusOK {
		return &RefusedError{Authority: a.ID, Status: resp.StatusCode, Reason: reason(b)}
	}
	return nil
}
