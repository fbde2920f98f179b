package link

import (
	"context"
	"errors"
	"sync"

	"github.com/chive-net/chive/layercrypt"
)

// Manager keeps at most one live link per peer identity and hands it to every
// caller that needs that peer: a relay extending many circuits to the same
// next hop uses one TLS connection. Concurrent requests for a peer that is
// being dialed wait for that one dial.
type Manager struct {
	cfg *Config

	mu      sync.Mutex // guards the following fields
	onDial  func(*Link)
	links   map[layercrypt.RelayID]*Link
	dialing map[layercrypt.RelayID]*dialCall
	closed  bool
	wg      sync.WaitGroup // watchers that forget closed links
}

type dialCall struct {
	done chan struct{}
	link *Link
	err  error
}

// ErrManagerClosed is returned by Get after Close.
var ErrManagerClosed = errors.New("link: manager closed")

// NewManager returns a manager dialing with cfg.
func NewManager(cfg *Config) *Manager {
	return &Manager{
		cfg:     cfg,
		links:   make(map[layercrypt.RelayID]*Link),
		dialing: make(map[layercrypt.RelayID]*dialCall),
	}
}

// OnDial sets a function called (in its own goroutine) with every link the
// manager dials. A relay serves the streams its peer opens on such links, so
// that a relay it extended to can extend circuits back over the same link.
func (m *Manager) OnDial(f func(*Link)) {
	m.mu.Lock()
	m.onDial = f
	m.mu.Unlock()
}

// Get returns a live link to the relay id, dialing addr if there is none.
func (m *Manager) Get(ctx context.Context, id layercrypt.RelayID, addr string) (*Link, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrManagerClosed
	}
	if l := m.links[id]; l != nil && !l.IsClosed() {
		m.mu.Unlock()
		return l, nil
	}
	if c := m.dialing[id]; c != nil {
		m.mu.Unlock()
		select {
		case <-c.done:
			return c.link, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &dialCall{done: make(chan struct{})}
	m.dialing[id] = c
	m.mu.Unlock()

	c.link, c.err = Dial(ctx, addr, id, m.cfg)

	m.mu.Lock()
	delete(m.dialing, id)
	if c.err == nil {
		if m.closed {
			c.link.Close()
			c.link, c.err = nil, ErrManagerClosed
		} else {
			m.addLocked(c.link)
			if m.onDial != nil {
				m.wg.Add(1)
				go func(f func(*Link), l *Link) {
					defer m.wg.Done()
					f(l)
				}(m.onDial, c.link)
			}
		}
	}
	m.mu.Unlock()
	close(c.done)
	return c.link, c.err
}

// Add registers a link that the peer opened, so it can be reused for
// circuits toward that peer. Links from anonymous peers are not registered.
func (m *Manager) Add(l *Link) {
	if l.Peer().IsZero() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if old := m.links[l.Peer()]; old != nil && !old.IsClosed() {
		return // keep the link already in use; the new one still serves its own streams
	}
	m.addLocked(l)
}

func (m *Manager) addLocked(l *Link) {
	m.links[l.Peer()] = l
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		<-l.CloseChan()
		m.mu.Lock()
		if m.links[l.Peer()] == l {
			delete(m.links, l.Peer())
		}
		m.mu.Unlock()
	}()
}

// Len returns the number of live links held.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.links)
}

// Close closes every link the manager holds and waits for its goroutines.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	links := make([]*Link, 0, len(m.links))
	for _, l := range m.links {
		links = append(links, l)
	}
	m.mu.Unlock()
	for _, l := range links {
		l.Close()
	}
	m.wg.Wait()
}
